package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/records"
)

const (
	ns  = "demo"
	key = ns + "/web"
)

var memberNS = clusterset.MemberNamespace("c1")

func service() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", UID: "svc-uid"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

func serviceExport() *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Generation: 3}}
}

// localSlice is the endpointslice controller's slice of demo/web: a ready pod and one
// that is starting.
func localSlice() *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-x7k2p", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   append(agenttest.Endpoints(true, "10.1.0.1"), agenttest.Endpoints(false, "10.1.0.2")...),
		Ports:       []discoveryv1.EndpointPort{agenttest.EndpointPort("http", 8080)},
	}
	s.Endpoints[0].NodeName = ptr.To("node-1")
	s.Endpoints[0].TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: "web-1"}
	return s
}

// world is member c1, exporting demo/web, and the broker.
type world struct {
	t *testing.T
	*agenttest.Member
}

func newWorld(t *testing.T, local ...runtime.Object) *world {
	if local == nil {
		local = []runtime.Object{service(), serviceExport(), localSlice()}
	}
	return &world{t, agenttest.NewMember(t, append([]runtime.Object{agenttest.Namespace(ns)}, local...)...)}
}

func (w *world) exporter() *Exporter {
	return &Exporter{
		ClusterID: "c1", MemberNamespace: memberNS,
		Local: w.Local.Kube, LocalMCS: w.Local.MCS, Broker: w.Broker.Kube, BrokerMCS: w.Broker.MCS,
		Exports: w.Local.ServiceExports(w.t), Services: w.Local.Services(w.t), Slices: w.Local.EndpointSlices(w.t),
		Namespaces: w.Local.Namespaces(w.t), Nodes: w.Local.Nodes(w.t), Ingresses: w.Local.Ingresses(w.t),
		Records: w.Broker.ServiceImports(w.t), RecordSlices: w.Broker.EndpointSlices(w.t),
	}
}

func (w *world) reconcileWith(change func(*Exporter)) error {
	return agenttest.Reconcile(w.Member, w.exporter(), change, key)
}

func (w *world) mustReconcile() {
	w.t.Helper()
	if err := w.reconcileWith(nil); err != nil {
		w.t.Fatalf("reconcile: %v", err)
	}
}

// record is c1's ServiceImport record of demo/web on the broker; nil if there is none.
func (w *world) record() *mcsv1beta1.ServiceImport {
	return agenttest.OrNil(w.Broker.ServiceImports(w.t).ServiceImports(memberNS).Get(records.Name(ns, "web")))
}

// brokerObjects lists every record on the broker, of every member.
func (w *world) brokerObjects() []string {
	out := agenttest.Names(w.Broker.ServiceImports(w.t).List(agenttest.Everything))
	return append(out, agenttest.Names(w.Broker.EndpointSlices(w.t).List(agenttest.Everything))...)
}

func (w *world) recordSlices() []*discoveryv1.EndpointSlice {
	w.t.Helper()
	list, err := w.Broker.EndpointSlices(w.t).EndpointSlices(memberNS).List(records.Selector(ns, "web"))
	if err != nil {
		w.t.Fatal(err)
	}
	return list
}

func (w *world) status() mcsv1beta1.ServiceExportStatus {
	w.t.Helper()
	exp, err := w.Local.ServiceExports(w.t).ServiceExports(ns).Get("web")
	if err != nil {
		w.t.Fatal(err)
	}
	return exp.Status
}

// conditions renders the ServiceExport's conditions as "Type=Status/Reason", in a fixed order.
func (w *world) conditions() []string {
	var out []string
	st := w.status()
	for _, t := range []mcsv1beta1.ServiceExportConditionType{mcsv1beta1.ServiceExportConditionValid, mcsv1beta1.ServiceExportConditionReady, mcsv1beta1.ServiceExportConditionConflict} {
		if c := meta.FindStatusCondition(st.Conditions, string(t)); c != nil {
			out = append(out, c.Type+"="+string(c.Status)+"/"+c.Reason)
		}
	}
	return out
}

var exported = []string{"Valid=True/Valid", "Ready=True/Exported", "Conflict=False/NoConflicts"}

func TestExportIsPublished(t *testing.T) {
	w := newWorld(t)
	w.mustReconcile()

	r := w.record()
	if r == nil {
		t.Fatalf("no record; broker holds %v", w.brokerObjects())
	}
	for k, v := range records.Labels("c1", ns, "web") {
		if r.Labels[k] != v {
			t.Errorf("record label %s=%q, want %q", k, r.Labels[k], v)
		}
	}
	if r.Spec.Type != mcsv1beta1.ClusterSetIP || len(r.Spec.Ports) != 1 || r.Spec.Ports[0] != agenttest.Port("http", 80) {
		t.Errorf("record spec %+v", r.Spec)
	}
	sl := w.recordSlices()
	if len(sl) != 1 {
		t.Fatalf("record slices: broker holds %v", w.brokerObjects())
	}
	s := sl[0]
	if s.Labels[mcsv1beta1.LabelSourceCluster] != "c1" || s.Labels[clusterset.ServiceProxyNameLabel] != clusterset.RecordsProxyName {
		t.Errorf("record slice labels %v", s.Labels)
	}
	ready := map[string]bool{}
	for _, ep := range s.Endpoints {
		ready[ep.Addresses[0]] = ep.Conditions.Ready == nil || *ep.Conditions.Ready
		if ep.NodeName != nil || ep.TargetRef != nil {
			t.Errorf("published the cluster-local node and pod of %v", ep.Addresses)
		}
	}
	if !ready["10.1.0.1"] || ready["10.1.0.2"] {
		t.Errorf("published endpoints %+v: want 10.1.0.1 ready and 10.1.0.2 not ready", s.Endpoints)
	}
	if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "http" {
		t.Errorf("record slice ports %+v", s.Ports)
	}

	if got := w.conditions(); !slices.Equal(got, exported) {
		t.Errorf("conditions %v, want %v", got, exported)
	}
	for _, c := range w.status().Conditions {
		if c.ObservedGeneration != 3 {
			t.Errorf("condition %s observedGeneration %d, want 3", c.Type, c.ObservedGeneration)
		}
	}

	// Again, on updated caches: nothing to write anywhere.
	w.mustReconcile()
	if wr := append(w.Local.Writes(), w.Broker.Writes()...); len(wr) != 0 {
		t.Errorf("second reconcile wrote %v", wr)
	}
	// A pod becomes ready: only the endpoints are written.
	ls := localSlice()
	ls.Endpoints[1].Conditions.Ready = ptr.To(true)
	w.Local.Put(t, ls)
	w.mustReconcile()
	if wr := append(w.Local.Writes(), w.Broker.Writes()...); len(wr) != 1 || !strings.HasPrefix(wr[0], "patch endpointslices "+memberNS+"/") {
		t.Errorf("after a pod became ready: writes %v", wr)
	}
}

func TestConflictConditions(t *testing.T) {
	older := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		record func() *mcsv1beta1.ServiceImport
		reason mcsv1beta1.ServiceExportConditionReason
	}{
		"port": {func() *mcsv1beta1.ServiceImport {
			return agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 81))
		}, mcsv1beta1.ServiceExportReasonPortConflict},
		"type": {func() *mcsv1beta1.ServiceImport {
			r := agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 80))
			r.Spec.Type = mcsv1beta1.Headless
			return r
		}, mcsv1beta1.ServiceExportReasonTypeConflict},
		"session affinity": {func() *mcsv1beta1.ServiceImport {
			r := agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 80))
			r.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			return r
		}, mcsv1beta1.ServiceExportReasonSessionAffinityConflict},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.Broker.Put(t, tc.record())
			w.mustReconcile()
			c := meta.FindStatusCondition(w.status().Conditions, string(mcsv1beta1.ServiceExportConditionConflict))
			if c == nil || c.Status != metav1.ConditionTrue || c.Reason != string(tc.reason) {
				t.Fatalf("Conflict %+v, want True/%s", c, tc.reason)
			}
			if got := w.conditions()[:2]; !slices.Equal(got, exported[:2]) {
				t.Errorf("a conflict is still an export: conditions %v", got)
			}
			// c2 withdraws: the conflict is gone.
			w.Broker.Remove(t, tc.record())
			w.mustReconcile()
			if got := w.conditions(); !slices.Equal(got, exported) {
				t.Errorf("after c2 withdrew: conditions %v", got)
			}
		})
	}
}

func TestAnotherMembersBadRecordDoesNotBlock(t *testing.T) {
	older := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	bad := agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 81)) // would conflict, were it valid
	bad.Annotations = map[string]string{records.AnnotationExportedLabels: "[1,2"}
	dup1 := agenttest.Record("c3", ns, "web", older, agenttest.Port("http", 82))
	dup2 := dup1.DeepCopy()
	dup2.Name += "-copy"
	w := newWorld(t)
	w.Broker.Put(t, bad, dup1, dup2)
	w.mustReconcile()
	if got := w.conditions(); !slices.Equal(got, exported) {
		t.Errorf("conditions %v, want %v", got, exported)
	}
	if w.record() == nil {
		t.Error("not published")
	}
}

func TestWithdrawal(t *testing.T) {
	c2 := agenttest.Record("c2", ns, "web", time.Now(), agenttest.Port("http", 80))
	for name, tc := range map[string]struct {
		change     func(w *world)
		conditions []string
	}{
		"ServiceExport deleted": {func(w *world) { w.Local.Remove(w.t, serviceExport()) }, nil},
		"Service deleted": {func(w *world) { w.Local.Remove(w.t, service()) },
			[]string{"Valid=False/NoService", "Ready=False/Pending"}},
		"Service becomes ExternalName": {func(w *world) {
			svc := service()
			svc.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
			w.Local.Put(w.t, svc)
		}, []string{"Valid=False/InvalidServiceType", "Ready=False/Pending"}},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.Broker.Put(t, c2)
			w.mustReconcile()
			if w.record() == nil || len(w.recordSlices()) != 1 {
				t.Fatalf("not published: %v", w.brokerObjects())
			}
			tc.change(w)
			w.mustReconcile()
			want := []string{c2.Namespace + "/" + c2.Name} // only the other member's record
			if got := w.brokerObjects(); !slices.Equal(got, want) {
				t.Errorf("broker holds %v, want %v", got, want)
			}
			if tc.conditions != nil {
				if got := w.conditions(); !slices.Equal(got, tc.conditions) {
					t.Errorf("conditions %v, want %v", got, tc.conditions)
				}
			}
			// Withdrawn already: nothing more to do.
			w.mustReconcile()
			if wr := append(w.Local.Writes(), w.Broker.Writes()...); len(wr) != 0 {
				t.Errorf("again: writes %v", wr)
			}
		})
	}
}

// TestBrokerErrors: a failing broker fails the reconcile (the loop retries) and the
// ServiceExport never claims more than is true: no Ready=True before the records are
// written, and what it said before stays until the broker answers.
func TestBrokerErrors(t *testing.T) {
	for _, f := range []struct{ verb, resource string }{
		{"create", "serviceimports"},
		{"create", "endpointslices"},
		{"*", "*"},
	} {
		t.Run("first export/"+f.verb+" "+f.resource, func(t *testing.T) {
			w := newWorld(t)
			w.Broker.Fail(f.verb, f.resource, agenttest.ErrInjected)
			if err := w.reconcileWith(nil); !errors.Is(err, agenttest.ErrInjected) {
				t.Errorf("error %v", err)
			}
			if st := w.status(); len(st.Conditions) != 0 {
				t.Errorf("conditions %v before the export is published", w.conditions())
			}
		})
	}
	serviceDeleted := func(w *world) { w.Local.Remove(w.t, service()) }
	for _, tc := range []struct {
		change         string
		do             func(w *world)
		verb, resource string
	}{
		{"Service ports changed", func(w *world) {
			svc := service()
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9090})
			w.Local.Put(w.t, svc)
		}, "patch", "serviceimports"},
		{"endpoints changed", func(w *world) {
			ls := localSlice()
			ls.Endpoints = agenttest.Endpoints(true, "10.1.0.7")
			w.Local.Put(w.t, ls)
		}, "patch", "endpointslices"},
		{"Service deleted", serviceDeleted, "delete", "serviceimports"},
		{"Service deleted", serviceDeleted, "delete", "endpointslices"},
		{"Service deleted", serviceDeleted, "*", "*"},
	} {
		t.Run(tc.change+"/"+tc.verb+" "+tc.resource, func(t *testing.T) {
			w := newWorld(t)
			w.mustReconcile()
			before, slices := w.status(), w.recordSlices()
			tc.do(w)
			w.Broker.Fail(tc.verb, tc.resource, agenttest.ErrInjected)
			if err := w.reconcileWith(nil); !errors.Is(err, agenttest.ErrInjected) {
				t.Errorf("error %v", err)
			}
			if wr := w.Local.Writes(); len(wr) != 0 {
				t.Errorf("wrote %v locally", wr)
			}
			if got := w.status(); !equalStatus(got, before) {
				t.Errorf("conditions changed to %v", w.conditions())
			}
			if got := w.recordSlices(); len(got) != len(slices) {
				t.Errorf("record slices %v, had %v", agenttest.Names(got, nil), agenttest.Names(slices, nil))
			}
		})
	}
}

func equalStatus(a, b mcsv1beta1.ServiceExportStatus) bool {
	if len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message {
			return false
		}
	}
	return true
}

func TestStatusConflictIsReturned(t *testing.T) {
	w := newWorld(t)
	w.Local.Fail("patch", "serviceexports/status", apierrors.NewConflict(mcsv1beta1.Resource("serviceexports"), "web", errors.New("the object has been modified")))
	err := w.reconcileWith(nil)
	if !apierrors.IsConflict(err) {
		t.Fatalf("error %v, want a conflict", err)
	}
	if w.record() == nil {
		t.Error("the records were not published before the status write")
	}
}

// TestCacheErrorsWithdrawNothing: while a cache cannot answer, the export stays published.
func TestCacheErrorsWithdrawNothing(t *testing.T) {
	for name, spoil := range map[string]func(*Exporter){
		"exports":       func(e *Exporter) { e.Exports = agenttest.FailingServiceExports },
		"services":      func(e *Exporter) { e.Services = agenttest.FailingServices },
		"local slices":  func(e *Exporter) { e.Slices = agenttest.FailingEndpointSlices },
		"records":       func(e *Exporter) { e.Records = agenttest.FailingServiceImports },
		"record slices": func(e *Exporter) { e.RecordSlices = agenttest.FailingEndpointSlices },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.mustReconcile()
			before := w.brokerObjects()
			if err := w.reconcileWith(spoil); !errors.Is(err, agenttest.ErrInjected) {
				t.Errorf("error %v", err)
			}
			if wr := append(w.Local.Writes(), w.Broker.Writes()...); len(wr) != 0 {
				t.Errorf("wrote %v", wr)
			}
			if got := w.brokerObjects(); !slices.Equal(got, before) {
				t.Errorf("broker holds %v, had %v", got, before)
			}
		})
	}
}

// state renders what importers and users see of the export: the record, its slices and
// the ServiceExport's conditions.
func (w *world) state() string {
	w.t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	if r := w.record(); r != nil {
		_ = enc.Encode([]any{r.Labels, r.Annotations, r.Spec})
	}
	for _, s := range w.recordSlices() {
		_ = enc.Encode([]any{s.Name, s.Labels, s.AddressType, s.Endpoints, s.Ports})
	}
	// A reconcile on a cache that has not seen the conditions yet sets them again, with
	// a later lastTransitionTime: the one thing it may change.
	st := w.status()
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	_ = enc.Encode(st)
	return b.String()
}

// TestLaggingCachesCauseNoConflicts: the reconcile that the exporter's own writes trigger
// often runs before the informers (of the member and of the broker) have seen all of them.
// It must neither fail nor hit a write conflict, and must leave what others see as it was.
func TestLaggingCachesCauseNoConflicts(t *testing.T) {
	older := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		before bool // exported already
		change func(w *world)
		writes int // of the reconcile on up-to-date caches
	}{
		{"first export", false, func(*world) {}, 3},
		{"ports and endpoints change", true, func(w *world) {
			svc := service()
			svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: "metrics", Protocol: corev1.ProtocolTCP, Port: 9090})
			ls := localSlice()
			ls.Endpoints = agenttest.Endpoints(true, "10.1.0.7")
			w.Local.Put(w.t, svc, ls)
		}, 2},
		{"an older conflicting record appears", true, func(w *world) {
			w.Broker.Put(w.t, agenttest.Record("c2", ns, "web", older, agenttest.Port("http", 81)))
		}, 1},
		{"the Service goes", true, func(w *world) { w.Local.Remove(w.t, service()) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.before {
				w.mustReconcile()
			}
			tc.change(w)
			states := w.Lagging(t, w.mustReconcile)
			if len(states) != tc.writes {
				t.Errorf("%d writes, want %d", len(states), tc.writes)
			}
			want := w.state()
			for i, c := range states {
				err := w.reconcileWith(func(e *Exporter) {
					e.Exports, e.Services, e.Slices, e.Namespaces = c.Local.ServiceExports(t), c.Local.Services(t), c.Local.EndpointSlices(t), c.Local.Namespaces(t)
					e.Records, e.RecordSlices = c.Broker.ServiceImports(t), c.Broker.EndpointSlices(t)
				})
				if err != nil {
					t.Errorf("on the caches before write %d: %v", i+1, err)
				}
			}
			if n := w.Conflicts(); n != 0 {
				t.Errorf("%d write conflicts", n)
			}
			if got := w.state(); got != want {
				t.Errorf("lagging reconciles changed what others see:\n%s\nwant\n%s", got, want)
			}
			w.mustReconcile()
			if wr := append(w.Local.Writes(), w.Broker.Writes()...); len(wr) != 0 {
				t.Errorf("on up-to-date caches: writes %v", wr)
			}
		})
	}
}

// TestRefusedWritesAreCountedByReason: when the broker refuses the member's records (its
// RBAC was changed), the operator sees forbidden errors of the exporter in
// strait_reconcile_errors_total, and the export is retried.
func TestRefusedWritesAreCountedByReason(t *testing.T) {
	w := newWorld(t)
	w.Broker.Fail("*", "*", apierrors.NewForbidden(mcsv1beta1.Resource("serviceimports"), "web", errors.New("RBAC: access denied")))
	reg := prometheus.NewRegistry()
	metrics, err := controller.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loop := controller.New("export", metrics)
	loop.Enqueue(key)
	go loop.Run(ctx, 1, w.exporter())
	errorsOf := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "strait_reconcile_errors_total" && labelsOf(m) == "reason=forbidden,reconciler=export" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return 0
	}
	deadline := time.Now().Add(10 * time.Second)
	for errorsOf() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := errorsOf(); n < 2 {
		t.Errorf(`strait_reconcile_errors_total{reconciler="export",reason="forbidden"} = %v, want the failure counted and retried`, n)
	}
	if n, _ := testutil.GatherAndCount(reg, "strait_reconcile_errors_total"); n != 1 {
		t.Errorf("%d series of strait_reconcile_errors_total, want only forbidden", n)
	}
}

func labelsOf(m *dto.Metric) string {
	var out []string
	for _, l := range m.GetLabel() {
		out = append(out, l.GetName()+"="+l.GetValue())
	}
	return strings.Join(out, ",")
}
