package dns

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/internal/dns/zone"
)

// FileSource reads the services from a YAML file on every call, so edits take effect on
// the next sync. The format:
//
//	services:
//	- namespace: shop
//	  name: web
//	  federation: fed
//	  ttl: 60s                 # optional
//	  shards:
//	  - cluster: cluster01
//	    region: east
//	    zone: east-a
//	    healthy: true
//	    addresses: [192.0.2.1]
//	    localAddresses: [10.96.0.10]   # optional: answered for the short name inside cluster01
type FileSource struct {
	Path string
}

// File is the YAML document FileSource reads.
type File struct {
	Services []FileService `json:"services"`
}

// FileService is a service in a File.
type FileService struct {
	Namespace  string      `json:"namespace"`
	Name       string      `json:"name"`
	Federation string      `json:"federation"`
	TTL        string      `json:"ttl,omitempty"`
	Shards     []FileShard `json:"shards,omitempty"`
}

// FileShard is a shard in a File.
type FileShard struct {
	Cluster        string       `json:"cluster"`
	Region         string       `json:"region,omitempty"`
	Zone           string       `json:"zone,omitempty"`
	Healthy        bool         `json:"healthy"`
	Addresses      []netip.Addr `json:"addresses,omitempty"`
	LocalAddresses []netip.Addr `json:"localAddresses,omitempty"`
}

// Services reads and parses the file.
func (f FileSource) Services(context.Context) ([]zone.Service, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, err
	}
	return ParseFile(b)
}

// ParseFile parses a services file (strictly: unknown fields are errors).
func ParseFile(b []byte) ([]zone.Service, error) {
	var doc File
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		return nil, fmt.Errorf("parsing services file: %w", err)
	}
	out := make([]zone.Service, 0, len(doc.Services))
	for i, s := range doc.Services {
		svc := zone.Service{Namespace: s.Namespace, Name: s.Name, Federation: s.Federation}
		if s.TTL != "" {
			d, err := time.ParseDuration(s.TTL)
			if err != nil {
				return nil, fmt.Errorf("services[%d] (%s/%s): ttl: %w", i, s.Namespace, s.Name, err)
			}
			svc.TTL = d
		}
		for _, sh := range s.Shards {
			svc.Shards = append(svc.Shards, zone.Shard{Cluster: sh.Cluster, Region: sh.Region, Zone: sh.Zone,
				Healthy: sh.Healthy, Addresses: sh.Addresses, LocalAddresses: sh.LocalAddresses})
		}
		out = append(out, svc)
	}
	return out, nil
}

// FormatFile renders services in the FileSource format (the inverse of ParseFile).
func FormatFile(services []zone.Service) ([]byte, error) {
	var doc File
	for _, s := range services {
		fs := FileService{Namespace: s.Namespace, Name: s.Name, Federation: s.Federation}
		if s.TTL != 0 {
			fs.TTL = s.TTL.String()
		}
		for _, sh := range s.Shards {
			fs.Shards = append(fs.Shards, FileShard{Cluster: sh.Cluster, Region: sh.Region, Zone: sh.Zone,
				Healthy: sh.Healthy, Addresses: sh.Addresses, LocalAddresses: sh.LocalAddresses})
		}
		doc.Services = append(doc.Services, fs)
	}
	return yaml.Marshal(doc)
}
