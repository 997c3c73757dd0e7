package global

import (
	"errors"
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/clusterset"
	gs "github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/records"
)

const (
	ns  = "demo"
	key = ns + "/web"
)

// globalService is demo/web, global, with annotations kv (key, value, ...) on top.
func globalService(kv ...string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", UID: "svc-uid", Annotations: map[string]string{gs.AnnotationGlobal: "true"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
	for i := 0; i+1 < len(kv); i += 2 {
		svc.Annotations[kv[i]] = kv[i+1]
	}
	return svc
}

// localSlice is the endpointslice controller's slice of demo/web.
func localSlice(ready bool, addrs ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-x7k2p", Labels: map[string]string{
			discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   agenttest.Endpoints(ready, addrs...),
		Ports:       []discoveryv1.EndpointPort{agenttest.EndpointPort("http", 8080)},
	}
}

// brokerRecord is member cluster's broker record of the endpoints of demo/web.
func brokerRecord(cluster string, ports []discoveryv1.EndpointPort, addrs ...string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: clusterset.MemberNamespace(cluster), Name: gs.ImportedSliceName("web", ns, discoveryv1.AddressTypeIPv4),
			Labels: gs.RecordLabels(cluster, ns, "web")},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   agenttest.Endpoints(true, addrs...),
		Ports:       ports,
	}
}

var httpPort = []discoveryv1.EndpointPort{agenttest.EndpointPort("http", 8080)}

// world is member c1 and the broker.
type world struct {
	t *testing.T
	*agenttest.Member
}

func newWorld(t *testing.T, local ...runtime.Object) *world {
	return &world{t, agenttest.NewMember(t, local...)}
}

func (w *world) publish(change func(*Publisher)) error {
	return agenttest.Reconcile(w.Member, &Publisher{ClusterID: "c1", MemberNamespace: clusterset.MemberNamespace("c1"), Broker: w.Broker.Kube,
		Services: w.Local.Services(w.t), Slices: w.Local.EndpointSlices(w.t), RecordSlices: w.Broker.EndpointSlices(w.t)}, change, key)
}

func (w *world) importRemote(change func(*Importer)) error {
	return agenttest.Reconcile(w.Member, &Importer{ClusterID: "c1", Local: w.Local.Kube,
		Services: w.Local.Services(w.t), Slices: w.Local.EndpointSlices(w.t), RecordSlices: w.Broker.EndpointSlices(w.t),
		Liveness: w.Live, Recorder: w.Events}, change, key)
}

func (w *world) mustImport() {
	w.t.Helper()
	if err := w.importRemote(nil); err != nil {
		w.t.Fatalf("import: %v", err)
	}
}

// published returns c1's broker records of demo/web.
func (w *world) published() []*discoveryv1.EndpointSlice {
	list, _ := w.Broker.EndpointSlices(w.t).EndpointSlices(clusterset.MemberNamespace("c1")).List(gs.RecordSelector(ns, "web"))
	return list
}

// remote returns the remote slices of demo/web by source cluster, each as its addresses
// and port names.
func (w *world) remote() map[string]string {
	list, _ := w.Local.EndpointSlices(w.t).EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{gs.LabelGlobalService: "web"}))
	out := map[string]string{}
	for _, s := range list {
		var parts []string
		for _, e := range s.Endpoints {
			parts = append(parts, e.Addresses...)
		}
		for _, p := range s.Ports {
			parts = append(parts, *p.Name)
		}
		out[s.Labels[mcsv1beta1.LabelSourceCluster]] = strings.Join(parts, ",")
	}
	return out
}

func (w *world) localSlices() []string {
	out := agenttest.Names(w.Local.EndpointSlices(w.t).EndpointSlices(ns).List(agenttest.Everything))
	sort.Strings(out)
	return out
}

func TestPublisherMirrorsLocalEndpoints(t *testing.T) {
	ready := localSlice(true, "10.1.0.1")
	ready.Endpoints = append(ready.Endpoints, agenttest.Endpoints(false, "10.1.0.2")...)
	// A remote member's endpoints, imported here: never published back.
	imported := brokerRecord("c2", httpPort, "10.2.0.1")
	imported.Namespace, imported.Name = ns, "global-web-c2"
	imported.Labels = map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: records.EndpointSliceManagedBy}
	w := newWorld(t, globalService(), ready, imported)
	if err := w.publish(nil); err != nil {
		t.Fatal(err)
	}
	pub := w.published()
	if len(pub) != 1 {
		t.Fatalf("published %v", agenttest.Names(pub, nil))
	}
	s := pub[0]
	for k, v := range gs.RecordLabels("c1", ns, "web") {
		if s.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, s.Labels[k], v)
		}
	}
	got := map[string]bool{}
	for _, e := range s.Endpoints {
		got[e.Addresses[0]] = e.Conditions.Ready == nil || *e.Conditions.Ready
	}
	if !got["10.1.0.1"] || got["10.1.0.2"] {
		t.Errorf("published endpoints %+v: want 10.1.0.1 ready, 10.1.0.2 not ready", s.Endpoints)
	}
	if _, ok := got["10.2.0.1"]; ok {
		t.Error("published the endpoints imported from c2")
	}
	if err := w.publish(nil); err != nil {
		t.Fatal(err)
	}
	if wr := w.Broker.Writes(); len(wr) != 0 {
		t.Errorf("second reconcile wrote %v", wr)
	}
}

func TestPublisherWithdraws(t *testing.T) {
	for name, change := range map[string]func(w *world){
		"Service deleted":    func(w *world) { w.Local.Remove(w.t, globalService()) },
		"no longer global":   func(w *world) { w.Local.Put(w.t, globalService(gs.AnnotationGlobal, "false")) },
		"no longer shared":   func(w *world) { w.Local.Put(w.t, globalService(gs.AnnotationShared, "false")) },
		"Cilium not shared":  func(w *world) { w.Local.Put(w.t, globalService(gs.CiliumShared, "false")) },
		"no local endpoints": func(w *world) { w.Local.Remove(w.t, localSlice(true)) },
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, globalService(), localSlice(true, "10.1.0.1"))
			other := brokerRecord("c2", httpPort, "10.2.0.1")
			w.Broker.Put(t, other)
			if err := w.publish(nil); err != nil || len(w.published()) != 1 {
				t.Fatalf("not published: %v", err)
			}
			change(w)
			if err := w.publish(nil); err != nil {
				t.Fatal(err)
			}
			if pub := w.published(); len(pub) != 0 {
				t.Errorf("still published: %v", agenttest.Names(pub, nil))
			}
			if all := agenttest.Names(w.Broker.EndpointSlices(t).List(agenttest.Everything)); !slices.Equal(all, []string{other.Namespace + "/" + other.Name}) {
				t.Errorf("broker holds %v", all)
			}
		})
	}
}

func TestPublisherErrorsWithdrawNothing(t *testing.T) {
	for name, fault := range map[string]func(w *world) func(*Publisher){
		"broker create fails": func(w *world) func(*Publisher) {
			w.Broker.Remove(w.t, w.published()[0])
			w.Broker.Fail("create", "endpointslices", agenttest.ErrInjected)
			return nil
		},
		"broker update fails": func(w *world) func(*Publisher) {
			w.Local.Put(w.t, localSlice(true, "10.1.0.9"))
			w.Broker.Fail("patch", "endpointslices", agenttest.ErrInjected)
			return nil
		},
		"broker down": func(w *world) func(*Publisher) {
			w.Local.Put(w.t, localSlice(true, "10.1.0.9"))
			w.Broker.Fail("*", "*", agenttest.ErrInjected)
			return nil
		},
		"record cache fails": func(*world) func(*Publisher) {
			return func(p *Publisher) { p.RecordSlices = agenttest.FailingEndpointSlices }
		},
		"service cache fails": func(*world) func(*Publisher) {
			return func(p *Publisher) { p.Services = agenttest.FailingServices }
		},
		"slice cache fails": func(*world) func(*Publisher) {
			return func(p *Publisher) { p.Slices = agenttest.FailingEndpointSlices }
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, globalService(), localSlice(true, "10.1.0.1"))
			if err := w.publish(nil); err != nil {
				t.Fatal(err)
			}
			spoil := fault(w)
			if err := w.publish(spoil); !errors.Is(err, agenttest.ErrInjected) {
				t.Errorf("error %v", err)
			}
			if d := w.Broker.Deletes(); len(d) != 0 {
				t.Errorf("wrote %v", d)
			}
			if spoil != nil && len(w.published()) != 1 {
				t.Error("the record went")
			}
		})
	}
}

func TestImporterAddsRemoteSlicesByPortName(t *testing.T) {
	w := newWorld(t, globalService(), localSlice(true, "10.1.0.1"))
	w.Broker.Put(t,
		brokerRecord("c1", httpPort, "10.1.0.1"), // this member's own record
		brokerRecord("c2", []discoveryv1.EndpointPort{agenttest.EndpointPort("http", 8080), agenttest.EndpointPort("metrics", 9090)}, "10.2.0.1"),
		brokerRecord("c3", []discoveryv1.EndpointPort{agenttest.EndpointPort("grpc", 9000)}, "10.3.0.1"),
		brokerRecord("c4", []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolUDP), Port: ptr.To[int32](8080)}}, "10.4.0.1"),
	)
	w.mustImport()
	// c2 without the port this Service lacks; c3 has no port of this Service; c4's http is UDP.
	if got, want := w.remote(), map[string]string{"c2": "10.2.0.1,http"}; !maps.Equal(got, want) {
		t.Errorf("remote slices %v, want %v", got, want)
	}
	list, _ := w.Local.EndpointSlices(t).EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{gs.LabelGlobalService: "web"}))
	for _, s := range list {
		if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelManagedBy] != records.EndpointSliceManagedBy ||
			s.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
			t.Errorf("slice %s labels %v", s.Name, s.Labels)
		}
	}
	ev := agenttest.Events(w.Events)
	if len(ev) != 1 || !strings.Contains(ev[0], "GlobalServicePortConflict") || !strings.Contains(ev[0], "c4") {
		t.Errorf("events %v", ev)
	}
	if w.mustImport(); len(w.Local.Writes()) != 0 {
		t.Errorf("second reconcile wrote %v", w.Local.Writes())
	}
	// No longer global: the remote slices go, the local one stays.
	w.Local.Put(t, globalService(gs.AnnotationGlobal, "false"))
	w.mustImport()
	if got := w.localSlices(); !slices.Equal(got, []string{ns + "/web-x7k2p"}) {
		t.Errorf("not global: slices %v", got)
	}
}

func TestImporterAffinityLocal(t *testing.T) {
	w := newWorld(t, globalService(gs.AnnotationAffinity, "local"), localSlice(false, "10.1.0.1"))
	w.Broker.Put(t, brokerRecord("c2", httpPort, "10.2.0.1"))
	w.mustImport()
	if got := w.remote(); got["c2"] == "" {
		t.Errorf("no local endpoint ready: remote slices %v", got)
	}
	w.Local.Put(t, localSlice(true, "10.1.0.1"))
	w.mustImport()
	if got := w.remote(); len(got) != 0 {
		t.Errorf("a local endpoint ready: remote slices %v", got)
	}
	if got := w.localSlices(); !slices.Equal(got, []string{ns + "/web-x7k2p"}) {
		t.Errorf("slices %v", got)
	}
	// Cilium's annotation says the same.
	w.Local.Put(t, globalService(gs.CiliumAffinity, "local"), localSlice(false, "10.1.0.1"))
	w.mustImport()
	if got := w.remote(); got["c2"] == "" {
		t.Errorf("Cilium affinity, no local endpoint ready: remote slices %v", got)
	}
}

func TestImporterLiveness(t *testing.T) {
	w := newWorld(t, globalService(), localSlice(true, "10.1.0.1"))
	w.Broker.Put(t, brokerRecord("c2", httpPort, "10.2.0.1"), brokerRecord("c3", httpPort, "10.3.0.1"))
	w.mustImport()
	if got := w.remote(); len(got) != 2 {
		t.Fatalf("remote slices %v", got)
	}
	for _, step := range []struct {
		c2   liveness.State
		want []string
	}{
		{liveness.Withdrawn, []string{"c3"}},
		{liveness.Held, []string{"c3"}}, // not served: stays unserved
		{liveness.Alive, []string{"c2", "c3"}},
		{liveness.Held, []string{"c2", "c3"}}, // served: stays served
	} {
		w.Live["c2"] = step.c2
		w.mustImport()
		var got []string
		for c := range w.remote() {
			got = append(got, c)
		}
		sort.Strings(got)
		if !slices.Equal(got, step.want) {
			t.Errorf("c2 %s: remote slices of %v, want %v", step.c2, got, step.want)
		}
	}
}

// TestImporterErrorsDeleteNothing: a failing write fails the reconcile and takes nothing
// away; a cache that cannot answer withdraws nothing, here c3 which stopped publishing.
func TestImporterErrorsDeleteNothing(t *testing.T) {
	c3Gone := func(w *world, spoil func(*Importer)) func(*Importer) {
		w.Broker.Remove(w.t, brokerRecord("c3", nil))
		return spoil
	}
	for name, fault := range map[string]func(w *world) func(*Importer){
		"local create fails": func(w *world) func(*Importer) {
			w.Broker.Put(w.t, brokerRecord("c4", httpPort, "10.4.0.1"))
			w.Local.Fail("create", "endpointslices", agenttest.ErrInjected)
			return nil
		},
		"local update fails": func(w *world) func(*Importer) {
			w.Broker.Put(w.t, brokerRecord("c2", httpPort, "10.2.0.9"))
			w.Local.Fail("patch", "endpointslices", agenttest.ErrInjected)
			return nil
		},
		"local API down": func(w *world) func(*Importer) {
			w.Broker.Put(w.t, brokerRecord("c2", httpPort, "10.2.0.9"))
			w.Local.Fail("*", "*", agenttest.ErrInjected)
			return nil
		},
		"broker cache fails": func(w *world) func(*Importer) {
			return c3Gone(w, func(im *Importer) { im.RecordSlices = agenttest.FailingEndpointSlices })
		},
		"local slice cache fails": func(w *world) func(*Importer) {
			return c3Gone(w, func(im *Importer) { im.Slices = agenttest.FailingEndpointSlices })
		},
		"service cache fails": func(w *world) func(*Importer) {
			return c3Gone(w, func(im *Importer) { im.Services = agenttest.FailingServices })
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorld(t, globalService(), localSlice(true, "10.1.0.1"))
			w.Broker.Put(t, brokerRecord("c2", httpPort, "10.2.0.1"), brokerRecord("c3", httpPort, "10.3.0.1"))
			w.mustImport()
			before := w.localSlices()
			if err := w.importRemote(fault(w)); !errors.Is(err, agenttest.ErrInjected) {
				t.Errorf("error %v", err)
			}
			if d := w.Local.Deletes(); len(d) != 0 {
				t.Errorf("wrote %v", d)
			}
			if got := w.localSlices(); !slices.Equal(got, before) {
				t.Errorf("slices %v, had %v", got, before)
			}
		})
	}
}
