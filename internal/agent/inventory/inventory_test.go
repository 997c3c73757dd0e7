package inventory_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/agent/exporter"
	"github.com/strait-io/strait/internal/agent/importer"
	"github.com/strait-io/strait/internal/agent/inventory"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
)

const ns = "demo"

var older = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

func service(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("svc-" + name)},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

func serviceExport(name string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// collector reads what m's member cluster holds now, as the agent's caches would show it.
func collector(t *testing.T, m *agenttest.Member) *inventory.Collector {
	return &inventory.Collector{Exports: m.Local.ServiceExports(t), Imports: m.Local.ServiceImports(t), Slices: m.Local.EndpointSlices(t)}
}

func expectExports(t *testing.T, c *inventory.Collector, valid, conflict, invalid, pending int) {
	t.Helper()
	want := `
# HELP strait_exports ServiceExports of this member cluster by state: valid, conflict (exported, but in conflict with another member's older export), invalid (not exported), pending (not reconciled yet).
# TYPE strait_exports gauge
strait_exports{state="conflict"} ` + strconv.Itoa(conflict) + `
strait_exports{state="invalid"} ` + strconv.Itoa(invalid) + `
strait_exports{state="pending"} ` + strconv.Itoa(pending) + `
strait_exports{state="valid"} ` + strconv.Itoa(valid) + `
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "strait_exports"); err != nil {
		t.Error(err)
	}
}

// TestExportsByState: an export that conflicts with another member's older export shows as
// conflict, one without a Service as invalid, one not reconciled yet as pending; once the
// other member withdraws, the conflict is gone from the metric too.
func TestExportsByState(t *testing.T) {
	m := agenttest.NewMember(t, agenttest.Namespace(ns), service("web"), serviceExport("web"), serviceExport("gone"), serviceExport("new"))
	// c2 exported demo/web earlier, on another port.
	rival := agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 81))
	m.Broker.Put(t, rival)
	reconcile := func(key string) {
		t.Helper()
		e := &exporter.Exporter{
			ClusterID: "c1", MemberNamespace: clusterset.MemberNamespace("c1"),
			Local: m.Local.Kube, LocalMCS: m.Local.MCS, Broker: m.Broker.Kube, BrokerMCS: m.Broker.MCS,
			Exports: m.Local.ServiceExports(t), Services: m.Local.Services(t), Slices: m.Local.EndpointSlices(t),
			Namespaces: m.Local.Namespaces(t), Nodes: m.Local.Nodes(t), Ingresses: m.Local.Ingresses(t),
			Records: m.Broker.ServiceImports(t), RecordSlices: m.Broker.EndpointSlices(t),
		}
		if err := e.Reconcile(context.Background(), key); err != nil {
			t.Fatalf("reconcile %s: %v", key, err)
		}
	}
	expectExports(t, collector(t, m), 0, 0, 0, 3)
	reconcile(ns + "/web")
	reconcile(ns + "/gone")
	expectExports(t, collector(t, m), 0, 1, 1, 1)

	m.Broker.Remove(t, rival)
	reconcile(ns + "/web")
	expectExports(t, collector(t, m), 1, 0, 1, 1)
}

// TestImportsAndEndpoints: importing demo/web from two members counts one import and every
// ready endpoint of both, also from the agent's slim cache, which holds the imported
// slices without their endpoints.
func TestImportsAndEndpoints(t *testing.T) {
	m := agenttest.NewMember(t, agenttest.Namespace(ns))
	for _, c := range []struct {
		cluster string
		ready   []string
		waiting []string
	}{{"c1", []string{"10.1.0.1", "10.1.0.2"}, nil}, {"c2", []string{"10.2.0.1"}, []string{"10.2.0.2"}}} {
		m.Broker.Put(t, agenttest.Record(c.cluster, ns, "web", older, agenttest.Port("http", 80)),
			agenttest.RecordSlice(c.cluster, ns, "web", agenttest.EndpointPort("http", 8080),
				append(agenttest.Endpoints(true, c.ready...), agenttest.Endpoints(false, c.waiting...)...)))
	}
	im := &importer.Importer{
		Local: m.Local.Kube, LocalMCS: m.Local.MCS,
		Records: m.Broker.ServiceImports(t), RecordSlices: m.Broker.EndpointSlices(t),
		Namespaces: m.Local.Namespaces(t), Imports: m.Local.ServiceImports(t),
		Services: m.Local.Services(t), Slices: m.Local.EndpointSlices(t),
		Liveness: m.Live, Recorder: m.Events,
	}
	if err := im.Reconcile(context.Background(), ns+"/web"); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP strait_imported_endpoints Ready endpoints in the EndpointSlices the agent imported into this member cluster (the ServiceImports' source clusters).
# TYPE strait_imported_endpoints gauge
strait_imported_endpoints 3
# HELP strait_imports ServiceImports the agent wrote in this member cluster from other members' exports.
# TYPE strait_imports gauge
strait_imports 1
`
	c := collector(t, m)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "strait_imports", "strait_imported_endpoints"); err != nil {
		t.Error(err)
	}
	// The agent's cache (slimMember) keeps imported slices without their endpoints.
	slices, err := m.Local.EndpointSlices(t).List(agenttest.Everything)
	if err != nil {
		t.Fatal(err)
	}
	slim := make([]runtime.Object, 0, len(slices))
	for _, s := range slices {
		s = s.DeepCopy()
		slicesync.Slim(s)
		slim = append(slim, s)
	}
	c.Slices = discoverylisters.NewEndpointSliceLister(agenttest.Indexer(slim...))
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "strait_imports", "strait_imported_endpoints"); err != nil {
		t.Errorf("from slim slices: %v", err)
	}
}
