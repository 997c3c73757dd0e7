package status

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

func TestBuildReportsLivenessExportsAndConflicts(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	members := []clusterset.Member{{ID: "east", Region: "eu"}, {ID: "west"}, {ID: "north"}}
	record := func(id string, created time.Time, port int32) *mcsv1beta1.ServiceImport {
		si := records.ToServiceImport(clusterset.MemberNamespace(id), mcs.Export{Cluster: id, Namespace: "demo", Name: "hello",
			Type: mcsv1beta1.ClusterSetIP, Ports: []mcsv1beta1.ServicePort{{Name: "http", Port: port}}})
		si.CreationTimestamp = metav1.NewTime(created)
		return si
	}
	// The agent's view, on the agent's clock: east renewed 2 s before it was written, west
	// was withdrawn, north has no verdict in it.
	view := &liveness.Published{WrittenAt: now, View: liveness.View{Members: []liveness.Member{
		{ID: "east", State: liveness.Alive, LastRenewalObserved: now.Add(-2 * time.Second), Reason: "lease renewal observed"},
		{ID: "west", State: liveness.Withdrawn, LastRenewalObserved: now.Add(-time.Minute), Reason: "stopped"},
	}}}
	// north exports through an Ingress host: imported apart, so its port 443 conflicts with
	// nobody.
	viaHost := records.ToServiceImport(clusterset.MemberNamespace("north"), mcs.Export{Cluster: "north", Namespace: "demo", Name: "hello",
		Type: mcsv1beta1.ClusterSetIP, Ports: []mcsv1beta1.ServicePort{{Name: "https", Port: 443}}, Host: "hello.example.com"})
	recs := []*mcsv1beta1.ServiceImport{record("east", now.Add(-time.Hour), 80), record("west", now, 8080), viaHost}
	got, conflicts := Build(members, view, recs)
	want := map[string]Member{
		"east":  {ID: "east", Region: "eu", State: "Alive", Alive: true, LastRenewal: "2s", Reason: "lease renewal observed", Exports: 1, Conflicts: 1},
		"west":  {ID: "west", State: "Withdrawn", LastRenewal: "1m0s", Reason: "stopped", Exports: 1, Conflicts: 1},
		"north": {ID: "north", State: "Held", LastRenewal: "never", Exports: 1},
	}
	for _, m := range got {
		if m != want[m.ID] {
			t.Errorf("member %s = %+v, want %+v", m.ID, m, want[m.ID])
		}
	}
	if len(conflicts) != 1 || conflicts[0].Winner != "east" || len(conflicts[0].Conflicts["west"]) == 0 {
		t.Errorf("conflicts = %+v; want demo/hello won by the older east", conflicts)
	}
	// Without the agent's view nobody is judged.
	got, _ = Build(members, nil, recs)
	for _, m := range got {
		if m.State != Unknown || m.Alive {
			t.Errorf("without a view, member %s = %+v, want Unknown", m.ID, m)
		}
	}
}

func TestGlobalServicesShowRemoteClustersAndPortConflicts(t *testing.T) {
	svc := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "rebel-base",
		Annotations: map[string]string{globalservice.CiliumGlobal: "true"}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolUDP}}}}
	plain := corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "other"}}
	rec := discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: clusterset.MemberNamespace("west"), Labels: globalservice.RecordLabels("west", "demo", "rebel-base")},
		Ports:      []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To(int32(80)), Protocol: ptr.To(corev1.ProtocolTCP)}},
		Endpoints:  []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.2"}}},
	}
	got := GlobalServices("east", []corev1.Service{svc, plain}, []discoveryv1.EndpointSlice{rec})
	if len(got) != 1 || got[0].Name != "rebel-base" || len(got[0].Clusters) != 1 || got[0].Clusters[0] != "west" {
		t.Fatalf("global services = %+v", got)
	}
	if len(got[0].Problems) != 1 {
		t.Errorf("problems = %v; want the UDP/TCP conflict on port http", got[0].Problems)
	}
}
