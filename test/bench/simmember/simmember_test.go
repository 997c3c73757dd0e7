package simmember

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/agent/exporter"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/records"
)

const ns = "bench"

var spec = Spec{Members: 3, Services: 4, ExportersPerService: 2, Endpoints: 5, Namespace: ns}

// realExport runs the real exporter of member i on a fake member cluster that holds
// what a simulated member pretends to hold (the Service, its export and the
// endpointslice controller's slice with addrs), and returns the broker it wrote to.
func realExport(t *testing.T, i, s int, addrs []string) *agenttest.Member {
	t.Helper()
	name := ServiceName(s)
	w := agenttest.NewMember(t, agenttest.Namespace(ns), Service(ns, name), ServiceExport(ns, name), LocalSlice(ns, name, addrs))
	id := MemberID(i)
	e := &exporter.Exporter{
		ClusterID: id, MemberNamespace: clusterset.MemberNamespace(id),
		Local: w.Local.Kube, LocalMCS: w.Local.MCS, Broker: w.Broker.Kube, BrokerMCS: w.Broker.MCS,
		Exports: w.Local.ServiceExports(t), Services: w.Local.Services(t), Slices: w.Local.EndpointSlices(t),
		Namespaces: w.Local.Namespaces(t), Nodes: w.Local.Nodes(t), Ingresses: w.Local.Ingresses(t),
		Records: w.Broker.ServiceImports(t), RecordSlices: w.Broker.EndpointSlices(t),
	}
	if err := agenttest.Reconcile(w, e, nil, ns+"/"+name); err != nil {
		t.Fatalf("real exporter: %v", err)
	}
	return w
}

// brokerRecords lists member i's records of Service s on a fake broker, with the
// fields only the API server assigns cleared.
func brokerRecords(t *testing.T, b *agenttest.Cluster, i, s int) []runtime.Object {
	t.Helper()
	memberNS := clusterset.MemberNamespace(MemberID(i))
	sel := records.Selector(ns, ServiceName(s))
	var out []runtime.Object
	sis, err := b.ServiceImports(t).ServiceImports(memberNS).List(sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, si := range sis {
		si = si.DeepCopy()
		si.ObjectMeta = serverFieldsCleared(si.ObjectMeta)
		out = append(out, si)
	}
	slices, err := b.EndpointSlices(t).EndpointSlices(memberNS).List(sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, sl := range slices {
		sl = sl.DeepCopy()
		sl.ObjectMeta = serverFieldsCleared(sl.ObjectMeta)
		out = append(out, sl)
	}
	if len(out) != 2 {
		t.Fatalf("member %d, service %d: %d records on the broker, want a ServiceImport and a slice", i, s, len(out))
	}
	return out
}

func serverFieldsCleared(m metav1.ObjectMeta) metav1.ObjectMeta {
	m.UID, m.CreationTimestamp, m.ResourceVersion, m.Generation, m.ManagedFields = "", metav1.Time{}, "", 0, nil
	return m
}

func addresses(i int, versions []uint32) []string {
	out := make([]string, len(versions))
	for ep, v := range versions {
		out[ep] = Address(i, len(versions), ep, v)
	}
	return out
}

func TestSimulatedRecordsEqualTheExporters(t *testing.T) {
	ctx := context.Background()
	broker := agenttest.NewCluster(t)
	g := &Generator{Broker: broker.Kube, BrokerMCS: broker.MCS, Spec: spec}
	for i := range spec.Members {
		if err := g.Register(ctx, i); err != nil {
			t.Fatal(err)
		}
		if err := g.Publish(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	versions := make([]uint32, spec.Endpoints)
	for s := range spec.Services {
		for _, i := range spec.Exporters(s) {
			real := realExport(t, i, s, addresses(i, versions))
			want, got := brokerRecords(t, real.Broker, i, s), brokerRecords(t, broker, i, s)
			if !equality.Semantic.DeepEqual(want, got) {
				t.Errorf("member %d, %s: simulated records differ from the exporter's:\n%s", i, ServiceName(s), cmp.Diff(want, got))
			}
		}
	}

	// A change: the first slot's pod replaced. The exporter, given the new local slice,
	// writes what the simulation wrote.
	i, s := spec.Exporters(1)[0], 1
	addr, err := g.Change(ctx, i, s)
	if err != nil {
		t.Fatal(err)
	}
	versions[0] = 1
	if want := Address(i, spec.Endpoints, 0, 1); addr != want {
		t.Errorf("changed address %s, want %s", addr, want)
	}
	real := realExport(t, i, s, addresses(i, versions))
	want, got := brokerRecords(t, real.Broker, i, s), brokerRecords(t, broker, i, s)
	if !equality.Semantic.DeepEqual(want, got) {
		t.Errorf("after a change, simulated records differ from the exporter's:\n%s", cmp.Diff(want, got))
	}
}

func TestRegisteredLikeJoin(t *testing.T) {
	ctx := context.Background()
	broker := agenttest.NewCluster(t)
	g := &Generator{Broker: broker.Kube, BrokerMCS: broker.MCS, Spec: spec}
	for i := range spec.Members {
		if err := g.Register(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	members, err := clusterset.ReadMembers(ctx, broker.Kube)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != spec.Members {
		t.Fatalf("registry lists %d members, want %d", len(members), spec.Members)
	}
	for i, m := range members {
		if m.ID != MemberID(i) || m.Namespace != clusterset.MemberNamespace(MemberID(i)) || m.JoinedAt.IsZero() {
			t.Errorf("member %d read back as %+v", i, m)
		}
		lease, err := broker.Kube.CoordinationV1().Leases(m.Namespace).Get(ctx, liveness.LeaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("heartbeat lease of %s: %v", m.ID, err)
		}
		if *lease.Spec.HolderIdentity != m.ID || lease.Spec.RenewTime == nil {
			t.Errorf("lease of %s: %+v", m.ID, lease.Spec)
		}
		if _, err := broker.Kube.RbacV1().RoleBindings(m.Namespace).Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); err != nil {
			t.Errorf("reader binding of %s: %v", m.ID, err)
		}
	}
	// Renewing changes the renewal time, as the heartbeat does; a killed member is skipped.
	g.Kill(1)
	if g.Alive(1) || !g.Alive(0) {
		t.Error("Kill(1) should stop member 1 only")
	}
}

func TestExportsSpread(t *testing.T) {
	sp := Spec{Members: 10, Services: 1000, ExportersPerService: 10}
	for i := range sp.Members {
		if n := len(sp.Exports(i)); n != 1000 {
			t.Errorf("member %d exports %d services, want all 1000", i, n)
		}
	}
	sp.Members = 250
	total := 0
	for i := range sp.Members {
		n := len(sp.Exports(i))
		total += n
		if n != 40 {
			t.Errorf("member %d exports %d services, want 40", i, n)
		}
	}
	if total != 10000 {
		t.Errorf("%d exports in all, want 10000", total)
	}
}
