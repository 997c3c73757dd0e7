// Package status computes what `strait status` shows from what the broker holds: members,
// their lease ages, their exports and the conflicts between them. It is pure; the command
// gathers the objects.
package status

import (
	"sort"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// Status of the clusterset as seen from one member.
type Status struct {
	Cluster         string          `json:"cluster"`
	ClusterID       string          `json:"clusterID"`
	Broker          string          `json:"broker"`
	BrokerReachable bool            `json:"brokerReachable"`
	BrokerError     string          `json:"brokerError,omitempty"`
	Members         []Member        `json:"members"`
	Imports         int             `json:"imports"`
	Conflicts       []ServiceStatus `json:"conflicts,omitempty"`
	// GlobalServices lists this cluster's global Services and what they receive.
	GlobalServices []GlobalService `json:"globalServices,omitempty"`
}

// GlobalService is one of this cluster's global Services.
type GlobalService struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Shared    bool     `json:"shared"`
	Affinity  string   `json:"affinity"`
	Clusters  []string `json:"remoteClusters,omitempty"` // members that publish endpoints for it
	Problems  []string `json:"problems,omitempty"`       // port conflicts, annotation problems
}

// Member is one member's line.
type Member struct {
	ID       string `json:"id"`
	Region   string `json:"region,omitempty"`
	Zone     string `json:"zone,omitempty"`
	LeaseAge string `json:"leaseAge"` // "never" before the agent's first heartbeat
	// Alive is true when the agent renewed its lease within the lease duration.
	Alive     bool `json:"alive"`
	Exports   int  `json:"exports"`
	Conflicts int  `json:"conflicts"`
}

// ServiceStatus names a Service whose exports conflict.
type ServiceStatus struct {
	Namespace string              `json:"namespace"`
	Name      string              `json:"name"`
	Winner    string              `json:"winner"`
	Conflicts map[string][]string `json:"conflicts"` // cluster -> reasons
}

// Build computes the status. leases are the members' heartbeat leases on the broker.
func Build(members []clusterset.Member, leases []coordinationv1.Lease, recs []*mcsv1beta1.ServiceImport, now time.Time) ([]Member, []ServiceStatus) {
	byID := map[string]*Member{}
	var out []Member
	for _, m := range members {
		out = append(out, Member{ID: m.ID, Region: m.Region, Zone: m.Zone, LeaseAge: "never"})
	}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	for _, l := range leases {
		id, ok := clusterset.ClusterIDFromNamespace(l.Namespace)
		m := byID[id]
		if !ok || m == nil || l.Spec.RenewTime == nil {
			continue
		}
		age := now.Sub(l.Spec.RenewTime.Time)
		m.LeaseAge = age.Round(time.Second).String()
		if l.Spec.LeaseDurationSeconds != nil {
			m.Alive = age <= time.Duration(*l.Spec.LeaseDurationSeconds)*time.Second
		}
	}
	services := map[string][]mcs.Export{}
	for _, r := range recs {
		e, ok := records.FromServiceImport(r)
		if !ok {
			continue
		}
		if m := byID[e.Cluster]; m != nil {
			m.Exports++
		}
		key := e.Namespace + "/" + e.Name
		services[key] = append(services[key], e)
	}
	var conflicts []ServiceStatus
	var groups [][]mcs.Export
	for _, exports := range services {
		// Exports through addresses and through Ingress hosts are imported apart, and
		// conflict only within their kind.
		addresses, hosts := mcs.SplitByHost(exports)
		groups = append(groups, addresses, hosts)
	}
	for _, exports := range groups {
		if len(exports) == 0 {
			continue
		}
		res, err := mcs.Aggregate(exports[0].Namespace, exports[0].Name, exports)
		if err != nil || len(res.Conflicts) == 0 {
			continue
		}
		ss := ServiceStatus{Namespace: exports[0].Namespace, Name: exports[0].Name, Winner: res.Winner, Conflicts: map[string][]string{}}
		for cluster, cs := range res.Conflicts {
			for _, c := range cs {
				ss.Conflicts[cluster] = append(ss.Conflicts[cluster], string(c.Reason))
			}
			if m := byID[cluster]; m != nil {
				m.Conflicts++
			}
		}
		conflicts = append(conflicts, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	sort.Slice(conflicts, func(i, j int) bool {
		return conflicts[i].Namespace+"/"+conflicts[i].Name < conflicts[j].Namespace+"/"+conflicts[j].Name
	})
	return out, conflicts
}

// GlobalServices describes the cluster's global Services from its Services and the
// members' global records on the broker.
func GlobalServices(cluster string, services []corev1.Service, recs []discoveryv1.EndpointSlice) []GlobalService {
	var out []GlobalService
	for i := range services {
		svc := &services[i]
		opts := globalservice.OptionsOf(svc)
		if !opts.Global {
			continue
		}
		gs := GlobalService{Namespace: svc.Namespace, Name: svc.Name, Shared: opts.Shared, Affinity: string(opts.Affinity)}
		if opts.Problem != "" {
			gs.Problems = append(gs.Problems, opts.Problem)
		}
		byCluster := map[string][]*discoveryv1.EndpointSlice{}
		for j := range recs {
			r := &recs[j]
			key, ok := globalservice.RecordKey(r)
			member, isMember := clusterset.ClusterIDFromNamespace(r.Namespace)
			if ok && isMember && member != cluster && key == svc.Namespace+"/"+svc.Name {
				byCluster[member] = append(byCluster[member], r)
			}
		}
		var remotes []globalservice.Remote
		for c, slices := range byCluster {
			remotes = append(remotes, globalservice.Remote{Cluster: c, Slices: slices})
			gs.Clusters = append(gs.Clusters, c)
		}
		sort.Strings(gs.Clusters)
		all := opts
		all.Affinity = globalservice.AffinityNone
		_, conflicts := globalservice.Desired(svc, all, 0, remotes)
		sort.Strings(conflicts)
		gs.Problems = append(gs.Problems, conflicts...)
		out = append(out, gs)
	}
	return out
}
