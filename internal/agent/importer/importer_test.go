package importer

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

const (
	ns      = "demo"
	key     = ns + "/web"
	derived = "derived-web"
)

// c1's records are older than c2's, so c1 wins conflicts.
var (
	t1 = time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)
	t2 = t1.Add(time.Minute)
)

// world is a member cluster that imports demo/web, and the broker it reads records from.
type world struct {
	t *testing.T
	*agenttest.Member
}

func newWorld(t *testing.T, local ...runtime.Object) *world {
	return &world{t, agenttest.NewMember(t, append([]runtime.Object{agenttest.Namespace(ns)}, local...)...)}
}

// export publishes cluster's records of service name: the record and a slice with ready
// endpoints at addrs.
func (w *world) export(cluster, name string, created time.Time, addrs []string, ports ...mcsv1beta1.ServicePort) {
	w.Broker.Put(w.t, agenttest.Record(cluster, ns, name, created, ports...),
		agenttest.RecordSlice(cluster, ns, name, agenttest.EndpointPort("http", 8080), agenttest.Endpoints(true, addrs...)))
}

// unexport deletes cluster's records of service name from the broker.
func (w *world) unexport(cluster, name string) {
	w.Broker.Remove(w.t, agenttest.Record(cluster, ns, name, t1), agenttest.RecordSlice(cluster, ns, name, agenttest.EndpointPort("http", 8080), nil))
}

// twoMembers: c1 exports demo/web on port http, c2 on ports http and metrics.
func (w *world) twoMembers() {
	w.export("c1", "web", t1, []string{"10.1.0.1"}, agenttest.Port("http", 80))
	w.export("c2", "web", t2, []string{"10.2.0.1"}, agenttest.Port("http", 80), agenttest.Port("metrics", 9090))
}

// importer is a fresh Importer whose caches hold what the clusters hold now.
func (w *world) importer() *Importer {
	return &Importer{
		Local: w.Local.Kube, LocalMCS: w.Local.MCS,
		Records: w.Broker.ServiceImports(w.t), RecordSlices: w.Broker.EndpointSlices(w.t),
		Namespaces: w.Local.Namespaces(w.t), Imports: w.Local.ServiceImports(w.t),
		Services: w.Local.Services(w.t), Slices: w.Local.EndpointSlices(w.t),
		Liveness: w.Live, Recorder: w.Events,
	}
}

func (w *world) reconcileKey(k string, change func(*Importer)) error {
	return agenttest.Reconcile(w.Member, w.importer(), change, k)
}

func (w *world) mustReconcile() {
	w.t.Helper()
	if err := w.reconcileKey(key, nil); err != nil {
		w.t.Fatalf("reconcile: %v", err)
	}
}

// steady imports demo/web from two members and forgets the events of the first import.
func (w *world) steady() {
	w.t.Helper()
	w.twoMembers()
	w.mustReconcile()
	agenttest.Events(w.Events)
}

func (w *world) serviceImport(name string) *mcsv1beta1.ServiceImport {
	return agenttest.OrNil(w.Local.ServiceImports(w.t).ServiceImports(ns).Get(name))
}

func (w *world) service(name string) *corev1.Service {
	return agenttest.OrNil(w.Local.Services(w.t).Services(ns).Get(name))
}

// imported returns the slices kube-proxy serves for the derived Service, by source cluster.
func (w *world) imported() map[string]*discoveryv1.EndpointSlice {
	w.t.Helper()
	list, err := w.Local.EndpointSlices(w.t).EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: derived}))
	if err != nil {
		w.t.Fatal(err)
	}
	out := map[string]*discoveryv1.EndpointSlice{}
	for _, s := range list {
		c := s.Labels[mcsv1beta1.LabelSourceCluster]
		if out[c] != nil {
			w.t.Fatalf("two slices of cluster %s", c)
		}
		out[c] = s
	}
	return out
}

// objects lists every Service, EndpointSlice and ServiceImport in the namespace.
func (w *world) objects() []string {
	var out []string
	add := func(kind string, names []string) {
		for _, n := range names {
			out = append(out, kind+" "+n)
		}
	}
	add("Service", agenttest.Names(w.Local.Services(w.t).Services(ns).List(agenttest.Everything)))
	add("EndpointSlice", agenttest.Names(w.Local.EndpointSlices(w.t).EndpointSlices(ns).List(agenttest.Everything)))
	add("ServiceImport", agenttest.Names(w.Local.ServiceImports(w.t).ServiceImports(ns).List(agenttest.Everything)))
	sort.Strings(out)
	return out
}

func clusters(si *mcsv1beta1.ServiceImport) []string {
	var out []string
	for _, c := range si.Status.Clusters {
		out = append(out, c.Cluster)
	}
	return out
}

func addresses(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.Addresses...)
	}
	return out
}

func recordsValid(t *testing.T, si *mcsv1beta1.ServiceImport) *metav1.Condition {
	t.Helper()
	c := apimeta.FindStatusCondition(si.Status.Conditions, ConditionRecordsValid)
	if c == nil {
		t.Fatalf("no %s condition in %+v", ConditionRecordsValid, si.Status)
	}
	return c
}

// eventsLike returns the events with the given reason.
func eventsLike(events []string, reason string) []string {
	var out []string
	for _, e := range events {
		if strings.Contains(e, " "+reason+" ") {
			out = append(out, e)
		}
	}
	return out
}

func TestImportOfTwoMembers(t *testing.T) {
	w := newWorld(t)
	w.twoMembers()
	w.mustReconcile()

	svc := w.service(derived)
	if svc == nil {
		t.Fatalf("no derived Service; objects %v", w.objects())
	}
	if svc.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue || svc.Labels[mcsv1beta1.LabelServiceName] != "web" {
		t.Errorf("derived Service labels %v", svc.Labels)
	}
	var svcPorts []string
	for _, p := range svc.Spec.Ports {
		svcPorts = append(svcPorts, p.Name+":"+string(p.Protocol)+":"+p.TargetPort.String())
	}
	if want := []string{"http:TCP:80", "metrics:TCP:9090"}; !slices.Equal(svcPorts, want) {
		t.Errorf("derived Service ports %v, want %v", svcPorts, want)
	}

	si := w.serviceImport("web")
	if si == nil {
		t.Fatal("no ServiceImport")
	}
	wantPorts := []mcsv1beta1.ServicePort{agenttest.Port("http", 80), agenttest.Port("metrics", 9090)}
	if si.Spec.Type != mcsv1beta1.ClusterSetIP || !reflect.DeepEqual(si.Spec.Ports, wantPorts) {
		t.Errorf("ServiceImport spec %+v, want type ClusterSetIP and ports %v", si.Spec, wantPorts)
	}
	if !slices.Equal(si.Spec.IPs, svc.Spec.ClusterIPs) || len(si.Spec.IPs) == 0 {
		t.Errorf("ServiceImport IPs %v, derived Service cluster IPs %v", si.Spec.IPs, svc.Spec.ClusterIPs)
	}
	if got := clusters(si); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Errorf("status.clusters %v", got)
	}
	if c := recordsValid(t, si); c.Status != metav1.ConditionTrue || c.Reason != ReasonAllValid {
		t.Errorf("RecordsValid %+v", c)
	}

	imported := w.imported()
	if len(imported) != 2 {
		t.Fatalf("imported slices %v", w.objects())
	}
	for cluster, addr := range map[string]string{"c1": "10.1.0.1", "c2": "10.2.0.1"} {
		s := imported[cluster]
		if s == nil {
			t.Errorf("no slice of %s", cluster)
			continue
		}
		if s.Labels[mcsv1beta1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelServiceName] != derived ||
			s.Labels[discoveryv1.LabelManagedBy] != records.EndpointSliceManagedBy || s.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
			t.Errorf("slice of %s: labels %v", cluster, s.Labels)
		}
		if got := addresses(s); !slices.Equal(got, []string{addr}) || *s.Endpoints[0].Conditions.Ready != true {
			t.Errorf("slice of %s: endpoints %+v", cluster, s.Endpoints)
		}
		if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 {
			t.Errorf("slice of %s: ports %+v", cluster, s.Ports)
		}
	}
	for _, e := range agenttest.Events(w.Events) {
		if strings.HasPrefix(e, corev1.EventTypeWarning) {
			t.Errorf("warning on a clean import: %s", e)
		}
	}
}

func TestReconcilingAgainWritesNothing(t *testing.T) {
	w := newWorld(t)
	w.twoMembers()
	w.mustReconcile()
	if len(w.Local.Writes()) == 0 {
		t.Fatal("the first reconcile wrote nothing")
	}
	// A fresh Importer on the updated caches: the next event, or an agent restart.
	w.mustReconcile()
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("second reconcile wrote %v", wr)
	}
	// A change on the broker is written, and only it.
	w.export("c2", "web", t2, []string{"10.2.0.1", "10.2.0.2"}, agenttest.Port("http", 80), agenttest.Port("metrics", 9090))
	w.mustReconcile()
	if wr := w.Local.Writes(); len(wr) != 1 || !strings.HasPrefix(wr[0], "patch endpointslices ") {
		t.Errorf("after c2 added an endpoint: writes %v", wr)
	}
	if got := addresses(w.imported()["c2"]); !slices.Equal(got, []string{"10.2.0.1", "10.2.0.2"}) {
		t.Errorf("c2 endpoints %v", got)
	}
	w.mustReconcile()
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("fourth reconcile wrote %v", wr)
	}
	if ev := agenttest.Events(w.Events); len(ev) != 0 {
		t.Errorf("events %v", ev)
	}
}

func TestLiveness(t *testing.T) {
	w := newWorld(t)
	w.steady()

	w.Live["c2"] = liveness.Withdrawn
	w.mustReconcile()
	if got := w.imported(); got["c2"] != nil || got["c1"] == nil {
		t.Errorf("withdrawn c2: slices %v", w.objects())
	}
	si := w.serviceImport("web")
	if got := clusters(si); !slices.Equal(got, []string{"c1"}) {
		t.Errorf("withdrawn c2: status.clusters %v", got)
	}
	if len(si.Spec.Ports) != 2 || w.service(derived) == nil {
		t.Errorf("withdrawn c2: the import itself changed: %+v", si.Spec)
	}
	ev := eventsLike(agenttest.Events(w.Events), EventMemberWithdrawn)
	if len(ev) != 1 || !strings.HasPrefix(ev[0], corev1.EventTypeWarning) || !strings.Contains(ev[0], "c2") || !strings.Contains(ev[0], "lease") {
		t.Errorf("withdrawn c2: events %v", ev)
	}

	// Held: no verdict, so what is not served stays unserved.
	w.Live["c2"] = liveness.Held
	w.mustReconcile()
	if w.imported()["c2"] != nil {
		t.Error("held c2 was added back")
	}
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("held c2, not served: writes %v", wr)
	}

	w.Live["c2"] = liveness.Alive
	w.mustReconcile()
	if s := w.imported()["c2"]; s == nil || !slices.Equal(addresses(s), []string{"10.2.0.1"}) {
		t.Errorf("alive c2: slices %v", w.objects())
	}
	if got := clusters(w.serviceImport("web")); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Errorf("alive c2: status.clusters %v", got)
	}
	if ev := eventsLike(agenttest.Events(w.Events), EventMemberServed); len(ev) != 1 || !strings.Contains(ev[0], "c2") {
		t.Errorf("alive c2: events %v", ev)
	}

	// Held: no verdict, so what is served stays served.
	w.Live["c2"] = liveness.Held
	w.mustReconcile()
	if w.imported()["c2"] == nil {
		t.Error("held c2 was withdrawn")
	}
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("held c2, served: writes %v", wr)
	}
}

// badRecords are the ways a member's records of demo/web can be unusable.
var badRecords = map[string]func(w *world, cluster string){
	"malformed exported labels": func(w *world, cluster string) {
		r := agenttest.Record(cluster, ns, "web", t2, agenttest.Port("http", 80))
		r.Annotations = map[string]string{records.AnnotationExportedLabels: "{not json"}
		w.Broker.Put(w.t, r)
	},
	"two records in one member namespace": func(w *world, cluster string) {
		r := agenttest.Record(cluster, ns, "web", t2, agenttest.Port("http", 80))
		r.Name += "-copy"
		w.Broker.Put(w.t, r)
	},
}

func TestABadRecordIsDroppedAndTheOthersFlow(t *testing.T) {
	for name, spoil := range badRecords {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.steady()
			spoil(w, "c2")
			w.export("c1", "web", t1, []string{"10.1.0.9"}, agenttest.Port("http", 80))
			w.mustReconcile()

			if got := addresses(w.imported()["c1"]); !slices.Equal(got, []string{"10.1.0.9"}) {
				t.Errorf("c1's slice did not update: %v", got)
			}
			si := w.serviceImport("web")
			c := recordsValid(t, si)
			if c.Status != metav1.ConditionFalse || c.Reason != ReasonRecordsDropped || !strings.Contains(c.Message, "cluster c2") {
				t.Errorf("RecordsValid %+v", c)
			}
			// Dropped means aggregated as if it did not exist: c2 is no longer served.
			if got := clusters(si); !slices.Equal(got, []string{"c1"}) {
				t.Errorf("status.clusters %v", got)
			}
			ev := eventsLike(agenttest.Events(w.Events), EventRecordDropped)
			if len(ev) != 1 || !strings.HasPrefix(ev[0], corev1.EventTypeWarning) || !strings.Contains(ev[0], "cluster c2") {
				t.Errorf("events %v", ev)
			}

			// Nothing new: no write, no repeated event.
			w.mustReconcile()
			if wr := w.Local.Writes(); len(wr) != 0 {
				t.Errorf("again: writes %v", wr)
			}
			if ev := agenttest.Events(w.Events); len(ev) != 0 {
				t.Errorf("again: events %v", ev)
			}

			// Repaired: c2 is served again and the condition says so.
			w.Broker.Remove(t, &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: clusterset.MemberNamespace("c2"), Name: records.Name(ns, "web") + "-copy"}})
			w.export("c2", "web", t2, []string{"10.2.0.1"}, agenttest.Port("http", 80))
			w.mustReconcile()
			si = w.serviceImport("web")
			if c := recordsValid(t, si); c.Status != metav1.ConditionTrue {
				t.Errorf("repaired: RecordsValid %+v", c)
			}
			if got := clusters(si); !slices.Equal(got, []string{"c1", "c2"}) || w.imported()["c2"] == nil {
				t.Errorf("repaired: status.clusters %v, objects %v", got, w.objects())
			}
			if ev := eventsLike(agenttest.Events(w.Events), EventRecordsValidated); len(ev) != 1 {
				t.Errorf("repaired: events %v", ev)
			}
		})
	}
}

func TestWhenEveryRecordIsBadNothingIsDeleted(t *testing.T) {
	for name, spoil := range badRecords {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.steady()
			before := w.objects()
			spoil(w, "c1")
			spoil(w, "c2")
			w.mustReconcile()
			if got := w.objects(); !slices.Equal(got, before) {
				t.Errorf("objects %v, had %v", got, before)
			}
			if got := len(w.imported()); got != 2 {
				t.Errorf("%d imported slices left", got)
			}
			si := w.serviceImport("web")
			c := recordsValid(t, si)
			if c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "cluster c1") || !strings.Contains(c.Message, "cluster c2") {
				t.Errorf("RecordsValid %+v", c)
			}
			if got := clusters(si); !slices.Equal(got, []string{"c1", "c2"}) {
				t.Errorf("status.clusters %v", got)
			}
			ev := eventsLike(agenttest.Events(w.Events), EventRecordDropped)
			if len(ev) != 2 {
				t.Errorf("events %v", ev)
			}
		})
	}
	// With nothing imported yet, bad records import nothing.
	w := newWorld(t)
	badRecords["malformed exported labels"](w, "c1")
	w.mustReconcile()
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("bad records only: writes %v", wr)
	}
}

// TestAPIErrorsDeleteNothing: with changes pending (c2's endpoints changed, c3 joined with
// a new port), a failing request fails the reconcile (so the loop retries) and nothing
// that was imported goes.
func TestAPIErrorsDeleteNothing(t *testing.T) {
	for _, tc := range []struct {
		verb, resource string
		err            error
	}{
		{"patch", "services", agenttest.ErrInjected},
		{"create", "endpointslices", agenttest.ErrInjected},
		{"patch", "endpointslices", apierrors.NewServerTimeout(discoveryv1.Resource("endpointslices"), "patch", 1)},
		{"patch", "serviceimports", agenttest.ErrInjected},
		{"patch", "serviceimports/status", context.DeadlineExceeded},
		{"*", "*", apierrors.NewServiceUnavailable("the API server is down")},
	} {
		t.Run(tc.verb+" "+tc.resource, func(t *testing.T) {
			w := newWorld(t)
			w.steady()
			before := w.objects()
			w.export("c2", "web", t2, []string{"10.2.0.7"}, agenttest.Port("http", 80), agenttest.Port("metrics", 9090))
			w.export("c3", "web", t2, []string{"10.3.0.1"}, agenttest.Port("http", 80), agenttest.Port("grpc", 9000))
			w.Local.Fail(tc.verb, tc.resource, tc.err)
			err := w.reconcileKey(key, nil)
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			if d := w.Local.Deletes(); len(d) != 0 {
				t.Errorf("wrote %v", d)
			}
			got := w.objects()
			for _, o := range before {
				if !slices.Contains(got, o) {
					t.Errorf("%s is gone", o)
				}
			}
		})
	}
}

func TestFailedWritesAreReturned(t *testing.T) {
	// First import.
	for _, tc := range []struct{ verb, resource string }{
		{"create", "services"},
		{"create", "endpointslices"},
		{"create", "serviceimports"},
		{"patch", "serviceimports/status"},
	} {
		w := newWorld(t)
		w.twoMembers()
		w.Local.Fail(tc.verb, tc.resource, agenttest.ErrInjected)
		if err := w.reconcileKey(key, nil); !errors.Is(err, agenttest.ErrInjected) {
			t.Errorf("%s %s: error %v", tc.verb, tc.resource, err)
		}
	}
	// A ServiceImport created meanwhile by someone else: retried, not overwritten.
	w := newWorld(t)
	w.twoMembers()
	w.Local.Fail("create", "serviceimports", apierrors.NewAlreadyExists(mcsv1beta1.Resource("serviceimports"), "web"))
	if err := w.reconcileKey(key, nil); err == nil {
		t.Error("AlreadyExists on create: no error")
	}
	// Removal stops at the first failure, so what is left is found and removed on retry.
	for _, tc := range []struct {
		resource string
		left     []string
	}{
		{"serviceimports", []string{"Service demo/" + derived, "ServiceImport demo/web"}},
		{"services", []string{"Service demo/" + derived}},
		{"endpointslices", nil},
	} {
		w := newWorld(t)
		w.steady()
		w.unexport("c1", "web")
		w.unexport("c2", "web")
		w.Local.Fail("delete", tc.resource, agenttest.ErrInjected)
		if err := w.reconcileKey(key, nil); !errors.Is(err, agenttest.ErrInjected) {
			t.Errorf("delete %s: error %v", tc.resource, err)
		}
		got := w.objects()
		for _, o := range tc.left {
			if !slices.Contains(got, o) {
				t.Errorf("delete %s failing: %s is gone; left %v", tc.resource, o, got)
			}
		}
		if len(w.imported()) != 2 {
			t.Errorf("delete %s failing: imported slices went before the rest; left %v", tc.resource, got)
		}
	}
}

// TestCacheErrorsDeleteNothing: c2 stopped exporting, but the caches cannot say so.
func TestCacheErrorsDeleteNothing(t *testing.T) {
	for name, tc := range map[string]struct {
		spoil   func(*Importer)
		wantErr error
	}{
		"records":        {func(im *Importer) { im.Records = agenttest.FailingServiceImports }, agenttest.ErrInjected},
		"record slices":  {func(im *Importer) { im.RecordSlices = agenttest.FailingEndpointSlices }, agenttest.ErrInjected},
		"local slices":   {func(im *Importer) { im.Slices = agenttest.FailingEndpointSlices }, agenttest.ErrInjected},
		"local services": {func(im *Importer) { im.Services = agenttest.FailingServices }, agenttest.ErrInjected},
		"namespaces":     {func(im *Importer) { im.Namespaces = agenttest.FailingNamespaces }, agenttest.ErrInjected},
		// Not (yet) in the cache: nothing is imported there, and nothing withdrawn.
		"namespace not in cache": {func(im *Importer) { im.Namespaces = corelisters.NewNamespaceLister(agenttest.Indexer()) }, nil},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t)
			w.steady()
			before := w.objects()
			w.unexport("c2", "web")
			if err := w.reconcileKey(key, tc.spoil); !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v, want %v", err, tc.wantErr)
			}
			if d := w.Local.Deletes(); len(d) != 0 {
				t.Errorf("wrote %v", d)
			}
			if got := w.objects(); !slices.Equal(got, before) {
				t.Errorf("objects %v, had %v", got, before)
			}
		})
	}
}

func TestOthersObjectsAreNeverTouched(t *testing.T) {
	t.Run("a Service of the derived name", func(t *testing.T) {
		user := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: derived, Labels: map[string]string{"app": "mine"}},
			Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.9.9", Ports: []corev1.ServicePort{{Name: "x", Port: 1}}}}
		w := newWorld(t, user)
		w.twoMembers()
		w.mustReconcile()
		for _, wr := range w.Local.Writes() {
			if strings.Contains(wr, " services ") {
				t.Errorf("wrote %s", wr)
			}
		}
		if got := w.service(derived); !reflect.DeepEqual(got.Spec, user.Spec) || !reflect.DeepEqual(got.Labels, user.Labels) {
			t.Errorf("user's Service changed: %+v", got)
		}
		// The exports go: the user's Service stays.
		w.unexport("c1", "web")
		w.unexport("c2", "web")
		w.mustReconcile()
		if w.service(derived) == nil {
			t.Error("user's Service deleted")
		}
	})
	t.Run("a ServiceImport of the same name", func(t *testing.T) {
		user := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec:   mcsv1beta1.ServiceImportSpec{Type: mcsv1beta1.Headless, Ports: []mcsv1beta1.ServicePort{agenttest.Port("mine", 1)}},
			Status: mcsv1beta1.ServiceImportStatus{Clusters: []mcsv1beta1.ClusterStatus{{Cluster: "elsewhere"}}}}
		w := newWorld(t, user)
		w.twoMembers()
		w.mustReconcile()
		for _, wr := range w.Local.Writes() {
			if strings.Contains(wr, " serviceimports") {
				t.Errorf("wrote %s", wr)
			}
		}
		if got := w.serviceImport("web"); !reflect.DeepEqual(got.Spec, user.Spec) || !reflect.DeepEqual(got.Status, user.Status) {
			t.Errorf("user's ServiceImport changed: %+v", got)
		}
		w.unexport("c1", "web")
		w.unexport("c2", "web")
		w.mustReconcile()
		if w.serviceImport("web") == nil {
			t.Error("user's ServiceImport deleted")
		}
	})
}

// TestMissedEvents: the records of demo/web went while the agent was not watching (a
// restart, a dropped watch). Reconciling the current state removes Strait's imported
// objects of demo/web, and nothing else: not the user's own Service web and its slice,
// not the import of demo/api.
func TestMissedEvents(t *testing.T) {
	userSvc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.1.1", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	userSlice := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-x7k2p", Labels: map[string]string{
		discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4, Endpoints: agenttest.Endpoints(true, "10.1.0.1")}
	w := newWorld(t, userSvc, userSlice)
	w.steady()
	w.export("c1", "api", t1, []string{"10.1.0.5"}, agenttest.Port("grpc", 9000))
	if err := w.reconcileKey(ns+"/api", nil); err != nil {
		t.Fatal(err)
	}
	all := w.objects()

	w.unexport("c1", "web")
	w.unexport("c2", "web")
	w.mustReconcile()
	var want []string
	for _, o := range all {
		if o == "ServiceImport demo/web" || o == "Service demo/"+derived {
			continue
		}
		if strings.HasPrefix(o, "EndpointSlice demo/web-c") { // the imported slices of web
			continue
		}
		want = append(want, o)
	}
	if len(want) != len(all)-4 {
		t.Fatalf("setup: objects %v", all)
	}
	if got := w.objects(); !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	if w.service("web") == nil || w.serviceImport("api") == nil {
		t.Error("removed what was not Strait's import of web")
	}
}

// labelled is cluster's record of demo/web with exported labels and annotations.
func labelled(cluster string, created time.Time, labels, annotations map[string]string) *mcsv1beta1.ServiceImport {
	r := records.ToServiceImport(clusterset.MemberNamespace(cluster), mcs.Export{
		Cluster: cluster, Namespace: ns, Name: "web", Type: mcsv1beta1.ClusterSetIP,
		Ports: []mcsv1beta1.ServicePort{agenttest.Port("http", 80)}, Labels: labels, Annotations: annotations,
	})
	r.UID = types.UID("record-" + cluster)
	r.CreationTimestamp = metav1.NewTime(created)
	return r
}

// The ServiceImport carries the exportedLabels and exportedAnnotations of the oldest export
// (KEP-1645's conflict resolution), never another export's, and follows when the winner
// leaves: keys no longer exported go.
func TestExportedLabelsAndAnnotations(t *testing.T) {
	w := newWorld(t)
	slice := func(cluster, addr string) *discoveryv1.EndpointSlice {
		return agenttest.RecordSlice(cluster, ns, "web", agenttest.EndpointPort("http", 8080), agenttest.Endpoints(true, addr))
	}
	w.Broker.Put(t,
		labelled("c1", t1, map[string]string{"tier": "web", clusterset.ManagedByLabel: "someone-else"}, map[string]string{"owner": "team-a"}), slice("c1", "10.1.0.1"),
		labelled("c2", t2, map[string]string{"tier2": "web"}, map[string]string{"owner2": "team-b"}), slice("c2", "10.2.0.1"))
	w.mustReconcile()

	si := w.serviceImport("web")
	if si == nil {
		t.Fatalf("no ServiceImport; objects %v", w.objects())
	}
	if want := map[string]string{"tier": "web", clusterset.ManagedByLabel: clusterset.ManagedByValue}; !maps.Equal(si.Labels, want) {
		t.Errorf("ServiceImport labels %v, want the oldest export's with Strait's own label kept: %v", si.Labels, want)
	}
	if want := map[string]string{"owner": "team-a"}; !maps.Equal(si.Annotations, want) {
		t.Errorf("ServiceImport annotations %v, want the oldest export's %v", si.Annotations, want)
	}

	w.Broker.Remove(t, labelled("c1", t1, nil, nil), slice("c1", "10.1.0.1"))
	w.mustReconcile()
	si = w.serviceImport("web")
	if want := map[string]string{"tier2": "web", clusterset.ManagedByLabel: clusterset.ManagedByValue}; !maps.Equal(si.Labels, want) {
		t.Errorf("after the oldest export left: labels %v, want %v", si.Labels, want)
	}
	if want := map[string]string{"owner2": "team-b"}; !maps.Equal(si.Annotations, want) {
		t.Errorf("after the oldest export left: annotations %v, want %v", si.Annotations, want)
	}

	w.Broker.Put(t, labelled("c2", t2, nil, nil))
	w.mustReconcile()
	si = w.serviceImport("web")
	if want := map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}; !maps.Equal(si.Labels, want) || len(si.Annotations) != 0 {
		t.Errorf("nothing exported any more: labels %v annotations %v, want only %v", si.Labels, si.Annotations, want)
	}
}

// state renders what users and kube-proxy see of the import of demo/web: the ServiceImport's
// spec, labels and status, the derived Service's spec and the imported slices.
func (w *world) state() string {
	w.t.Helper()
	var b strings.Builder
	enc := json.NewEncoder(&b)
	if si := w.serviceImport("web"); si != nil {
		// A reconcile on a cache that has not seen the condition yet sets it again, with
		// a later lastTransitionTime: the one thing it may change.
		for i := range si.Status.Conditions {
			si.Status.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		_ = enc.Encode([]any{si.Labels, si.Annotations, si.Spec, si.Status})
	}
	if svc := w.service(derived); svc != nil {
		_ = enc.Encode([]any{svc.Labels, svc.Spec})
	}
	for _, c := range slices.Sorted(maps.Keys(w.imported())) {
		s := w.imported()[c]
		_ = enc.Encode([]any{s.Name, s.Labels, s.AddressType, s.Endpoints, s.Ports})
	}
	return b.String()
}

// TestLaggingCachesCauseNoConflicts: the reconcile that the importer's own writes trigger
// often runs before the informers have seen all of them. It must neither fail nor hit a
// write conflict, and must leave what users see as it was.
func TestLaggingCachesCauseNoConflicts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		before func(w *world)
		change func(w *world)
		writes int // of the reconcile on up-to-date caches
	}{
		{"first import", nil, (*world).twoMembers, 5},
		{"a member adds a port and an endpoint", (*world).twoMembers, func(w *world) {
			w.export("c2", "web", t2, []string{"10.2.0.1", "10.2.0.2"}, agenttest.Port("http", 80), agenttest.Port("metrics", 9090), agenttest.Port("admin", 9091))
		}, 3},
		{"a member is withdrawn", (*world).twoMembers, func(w *world) { w.Live["c2"] = liveness.Withdrawn }, 2},
		{"a record goes bad", (*world).twoMembers, func(w *world) {
			bad := agenttest.Record("c2", ns, "web", t2, agenttest.Port("http", 80))
			bad.Spec.Type = "Bogus"
			w.Broker.Put(w.t, bad)
		}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.before != nil {
				tc.before(w)
				w.mustReconcile()
			}
			tc.change(w)
			states := w.Lagging(t, w.mustReconcile)
			if len(states) != tc.writes {
				t.Errorf("%d writes, want %d", len(states), tc.writes)
			}
			want := w.state()
			wasted := 0
			for i, c := range states {
				err := w.reconcileKey(key, func(im *Importer) {
					im.Namespaces, im.Imports, im.Services, im.Slices = c.Local.Namespaces(t), c.Local.ServiceImports(t), c.Local.Services(t), c.Local.EndpointSlices(t)
				})
				if err != nil {
					t.Errorf("on the caches before write %d: %v", i+1, err)
				}
				wasted += len(w.Local.Writes())
			}
			t.Logf("%d writes, %d lagging reconciles wrote %d times more", len(states), len(states), wasted)
			if n := w.Conflicts(); n != 0 {
				t.Errorf("%d write conflicts", n)
			}
			if got := w.state(); got != want {
				t.Errorf("lagging reconciles changed what users see:\n%s\nwant\n%s", got, want)
			}
			w.mustReconcile()
			if wr := w.Local.Writes(); len(wr) != 0 {
				t.Errorf("on up-to-date caches: writes %v", wr)
			}
		})
	}
}

// slim is the member's slices as the agent's informers hold them: those it wrote from the
// broker's records without their endpoints (slicesync.Slim).
func (w *world) slim(im *Importer) {
	all, err := w.Local.EndpointSlices(w.t).List(labels.Everything())
	if err != nil {
		w.t.Fatal(err)
	}
	var objs []runtime.Object
	for _, s := range all {
		s = s.DeepCopy()
		if s.Labels[discoveryv1.LabelManagedBy] == records.EndpointSliceManagedBy {
			slicesync.Slim(s)
		}
		objs = append(objs, s)
	}
	im.Slices = discoverylisters.NewEndpointSliceLister(agenttest.Indexer(objs...))
}

func TestSlimCachesWriteOnlyChanges(t *testing.T) {
	w := newWorld(t)
	w.steady()
	if err := w.reconcileKey(key, w.slim); err != nil {
		t.Fatal(err)
	}
	if wr := w.Local.Writes(); len(wr) != 0 {
		t.Errorf("steady import on slim caches: writes %v", wr)
	}
	w.export("c2", "web", t2, []string{"10.2.0.1", "10.2.0.9"}, agenttest.Port("http", 80), agenttest.Port("metrics", 9090))
	if err := w.reconcileKey(key, w.slim); err != nil {
		t.Fatal(err)
	}
	if wr := w.Local.Writes(); len(wr) != 1 || !strings.HasPrefix(wr[0], "patch endpointslices ") {
		t.Errorf("after c2 added an endpoint: writes %v", wr)
	}
	if got := addresses(w.imported()["c2"]); !slices.Equal(got, []string{"10.2.0.1", "10.2.0.9"}) {
		t.Errorf("c2 endpoints %v", got)
	}
	if got := addresses(w.imported()["c1"]); !slices.Equal(got, []string{"10.1.0.1"}) {
		t.Errorf("c1 endpoints %v", got)
	}
}
