package federation

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	fedpkg "github.com/strait-io/strait/internal/federation"
)

func report() *Report {
	return &Report{Broker: "cluster01", Namespace: fedpkg.DefaultNamespace, Federation: fedpkg.DefaultName, Domain: "example.com",
		Services: []ServiceReport{{
			ServiceStatus: fedpkg.ServiceStatus{
				Namespace: fedpkg.DefaultNamespace, Name: "web", Federation: fedpkg.DefaultName, TTL: 30 * time.Second, TTLSeconds: 30,
				SelectionValid: true, Unknown: []string{"ghost"},
				Shards: []fedpkg.ShardStatus{
					{Cluster: "cluster01", Region: "r1", Zone: "r1a", State: fedpkg.ShardBroker, ReadyEndpoints: 2,
						Health: fedpkg.Health{Healthy: true, Reason: fedpkg.ReasonHealthy, Message: "2 ready endpoints"},
						Ingress: fedpkg.Ingress{Source: fedpkg.IngressNodes, IPs: []netip.Addr{netip.MustParseAddr("10.254.0.11")},
							Ports: []fedpkg.Port{{Protocol: "TCP", Port: 31000}}}},
					{Cluster: "cluster02", Region: "r1", Zone: "r1b", Health: fedpkg.Health{Reason: fedpkg.ReasonMemberDown, Message: "down"}},
				},
			},
			Records:      []string{"web.strait-federation.federation.svc.example.com.\t30\tIN\tA\t10.254.0.11"},
			DNSEndpoints: []string{"DNSEndpoint dns/x (owner lab)"},
		}},
	}
}

func TestPrint(t *testing.T) {
	var b bytes.Buffer
	Print(&b, report(), true)
	out := b.String()
	for _, want := range []string{
		"strait-federation/web: 1 of 2 shards healthy, DNS TTL 30s",
		"unknown clusters in federation.strait.io/clusters (nothing placed there): ghost",
		"cluster01  r1      r1a   Broker  yes      2      10.254.0.11 (NodePorts)  Healthy",
		"31000/TCP",
		"cluster02  r1      r1b   -       no       0      -                        MemberDown",
		"DNS records (example.com):",
		"published as DNSEndpoint dns/x (owner lab)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	Print(&b, &Report{Broker: "b", Namespace: "n", Federation: "f"}, false)
	if !strings.Contains(b.String(), "No federated Services.") {
		t.Errorf("empty: %s", b.String())
	}
}

func TestReportJSON(t *testing.T) {
	data, err := json.Marshal(report())
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	s := back.Services[0]
	if s.Name != "web" || s.TTLSeconds != 30 || len(s.Shards) != 2 || !s.Shards[0].Healthy || s.Shards[0].Ingress.IPs[0].String() != "10.254.0.11" {
		t.Errorf("round trip: %s", data)
	}
	if !strings.Contains(string(data), `"healthy":true`) || !strings.Contains(string(data), `"namespace":"strait-federation"`) {
		t.Errorf("fields are not inline: %s", data)
	}
}

func TestStatusRejectsBadInput(t *testing.T) {
	for _, args := range [][]string{
		{"status", "-o", "xml"},
		{"status", "--domain", "bad..domain"},
		{"status", "--federation-name", "Bad_Name"},
		{"status", "--kubeconfig", "/nonexistent", "--context", "nope"},
	} {
		cmd := New()
		cmd.SetArgs(args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	cmd := New()
	cmd.SetArgs([]string{"status", "--domain", "example.com", "--ttl", "-5s", "--kubeconfig", "/nonexistent"})
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), "--ttl -5s") || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("--ttl -5s: err = %v, want it named and out of range", err)
	}
}
