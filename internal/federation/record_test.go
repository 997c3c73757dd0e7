package federation

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/records"
)

func sampleShard() Shard {
	return Shard{
		Cluster: "c1", Namespace: DefaultNamespace, Name: "web", State: ShardAdopted, ReadyEndpoints: 2,
		Ingress: Ingress{Source: IngressNodes, IPs: ips("192.168.1.2", "fd00::5"), Hostnames: []string{"lb.example.com"},
			Ports: []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 30001}}},
		ClusterIPs: ips("10.96.0.5", "fd00:96::5"), Region: "r1", Zone: "r1a",
	}
}

func TestRecordsRoundTrip(t *testing.T) {
	s := sampleShard()
	recs := ToRecords(clusterset.MemberNamespace("c1"), fed, s)
	if len(recs) != 3 {
		t.Fatalf("%d slices, want IPv4, IPv6 and FQDN", len(recs))
	}
	for _, r := range recs {
		if errs := validation.IsDNS1123Subdomain(r.Name); len(errs) > 0 || len(r.Name) > 63 {
			t.Errorf("record name %q: %v", r.Name, errs)
		}
		if _, ok := records.Key(r); ok {
			t.Errorf("record %s looks like an MCS export record", r.Name)
		}
		if _, ok := globalservice.RecordKey(r); ok {
			t.Errorf("record %s looks like a global Service record", r.Name)
		}
		if k, ok := RecordKey(r, fed); !ok || k != DefaultNamespace+"/web" {
			t.Errorf("RecordKey = %q, %v", k, ok)
		}
		for _, e := range r.Endpoints {
			if e.Conditions.Ready == nil || !*e.Conditions.Ready {
				t.Errorf("endpoint %v of a shard with ready endpoints is not ready", e.Addresses)
			}
		}
	}
	got := FromRecords(recs, fed)
	want := map[ShardKey]Shard{s.Key(): s}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if len(FromRecords(recs, "other")) != 0 {
		t.Error("records of another federation were read")
	}
	// The cluster is the namespace, whatever a record says.
	moved := recs[0].DeepCopy()
	moved.Namespace = "default"
	if len(FromRecords([]*discoveryv1.EndpointSlice{moved}, fed)) != 0 {
		t.Error("a record outside a member namespace was read")
	}
}

func TestAddresslessShardIsStillRecorded(t *testing.T) {
	s := Shard{Cluster: "c2", Namespace: "ns", Name: "web", State: ShardPending, Problem: "waiting"}
	recs := ToRecords(clusterset.MemberNamespace("c2"), fed, s)
	if len(recs) != 1 || recs[0].AddressType != discoveryv1.AddressTypeIPv4 || len(recs[0].Endpoints) != 0 {
		t.Fatalf("records %+v", recs)
	}
	got := FromRecords(recs, fed)[s.Key()]
	if got.State != ShardPending || got.Problem != "waiting" || got.ReadyEndpoints != 0 {
		t.Errorf("%+v", got)
	}
}

func TestRecordsEqual(t *testing.T) {
	a := ToRecords("strait-member-c1", fed, sampleShard())[0]
	if !RecordsEqual(a, a.DeepCopy()) {
		t.Error("a copy differs")
	}
	s := sampleShard()
	s.ReadyEndpoints = 0
	b := ToRecords("strait-member-c1", fed, s)[0]
	if RecordsEqual(a, b) {
		t.Error("readiness and the ready count must make a difference")
	}
}
