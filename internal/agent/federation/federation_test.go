package federation

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/clusterset"
	fedpkg "github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/records"
)

const (
	ns  = fedpkg.DefaultNamespace
	fed = fedpkg.DefaultName
	key = ns + "/web"
)

func brokerService(annotations ...string) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", Annotations: map[string]string{}},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30001}},
		},
	}
	for i := 0; i+1 < len(annotations); i += 2 {
		svc.Annotations[annotations[i]] = annotations[i+1]
	}
	return svc
}

func userService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web", UID: "user"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.200.0.9", ClusterIPs: []string{"10.200.0.9"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}},
	}
}

func ownNamespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, UID: "ns-uid",
		Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue, fedpkg.LabelFederation: fed}}}
}

type world struct {
	broker, local []runtime.Object // broker Services; local Services and Namespaces
	objects       []runtime.Object // what the member's API server holds
}

func propagator(w world) (*Propagator, *fake.Clientset) {
	cs := fake.NewClientset(w.objects...)
	var services, namespaces []runtime.Object
	for _, o := range w.local {
		if _, ok := o.(*corev1.Namespace); ok {
			namespaces = append(namespaces, o)
		} else {
			services = append(services, o)
		}
	}
	return &Propagator{
		Federation: fed, Namespace: ns, ClusterID: "c2", Local: cs,
		BrokerServices: corelisters.NewServiceLister(agenttest.Indexer(w.broker...)),
		Services:       corelisters.NewServiceLister(agenttest.Indexer(services...)),
		Namespaces:     corelisters.NewNamespaceLister(agenttest.Indexer(namespaces...)),
	}, cs
}

func writes(cs *fake.Clientset) []string {
	var out []string
	for _, a := range cs.Actions() {
		if v := a.GetVerb(); v != "get" && v != "list" && v != "watch" {
			out = append(out, v+" "+a.GetResource().Resource)
		}
	}
	return out
}

func TestPropagatorCreatesNamespaceAndService(t *testing.T) {
	p, cs := propagator(world{broker: []runtime.Object{brokerService()}})
	ctx := context.Background()
	if err := p.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(writes(cs), ","); got != "create namespaces,create services" {
		t.Fatalf("writes %s", got)
	}
	nsObj, _ := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if nsObj.Labels[fedpkg.LabelFederation] != fed || nsObj.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
		t.Errorf("namespace labels %v", nsObj.Labels)
	}
	svc, _ := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	// The broker's node port, so the port handed out for every shard reaches this one.
	if svc.Labels[fedpkg.LabelFederation] != fed || svc.Labels[fedpkg.LabelAdopted] != "" || svc.Spec.Ports[0].NodePort != 30001 {
		t.Errorf("created %+v", svc)
	}
}

// portTaken makes creates and updates of Services fail as a member's API server does when
// the requested node port is allocated there, unless the request leaves it to the server.
func portTaken(cs *fake.Clientset, taken int32) {
	refuse := func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(interface{ GetObject() runtime.Object }).GetObject().(*corev1.Service)
		for i, p := range svc.Spec.Ports {
			if p.NodePort == taken {
				return true, nil, apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, svc.Name, field.ErrorList{
					field.Invalid(field.NewPath("spec", "ports").Index(i).Child("nodePort"), taken, "provided port is already allocated")})
			}
		}
		return false, nil, nil
	}
	cs.PrependReactor("create", "services", refuse)
	cs.PrependReactor("update", "services", refuse)
}

func TestPropagatorFallsBackWhenTheBrokersNodePortIsTaken(t *testing.T) {
	ctx := context.Background()
	for name, w := range map[string]world{
		"create": {broker: []runtime.Object{brokerService()}},
		"adopt":  {broker: []runtime.Object{brokerService()}, local: []runtime.Object{userService()}, objects: []runtime.Object{userService()}},
	} {
		t.Run(name, func(t *testing.T) {
			p, cs := propagator(w)
			portTaken(cs, 30001)
			rec := record.NewFakeRecorder(10)
			p.Recorder = rec
			if err := p.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if svc.Spec.Ports[0].NodePort == 30001 || svc.Annotations[fedpkg.AnnotationRefusedNodePorts] != "30001" {
				t.Errorf("node port %d, annotation %q; want the member's own and the refusal recorded", svc.Spec.Ports[0].NodePort, svc.Annotations[fedpkg.AnnotationRefusedNodePorts])
			}
			select {
			case e := <-rec.Events:
				if !strings.Contains(e, EventNodePortTaken) || !strings.Contains(e, "30001") {
					t.Errorf("event %q", e)
				}
			default:
				t.Error("no event for the refused node port")
			}
		})
	}
}

// An adopted Service is the user's: when it is no longer federated here it is released,
// never deleted, and keeps its cluster IP.
func TestPropagatorReleasesWhatItAdopted(t *testing.T) {
	ctx := context.Background()
	adopted := fedpkg.MemberService(brokerService(), userService(), fed)
	for name, broker := range map[string][]runtime.Object{
		"broker Service deleted": nil,
		"deselected":             {brokerService(fedpkg.AnnotationClusters, "other")},
	} {
		t.Run(name, func(t *testing.T) {
			p, cs := propagator(world{broker: broker, local: []runtime.Object{adopted}, objects: []runtime.Object{adopted}})
			if err := p.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(writes(cs), ","); got != "update services" {
				t.Fatalf("writes %s, want only the release", got)
			}
			svc, err := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
			if err != nil {
				t.Fatalf("the adopted Service is gone: %v", err)
			}
			if svc.Labels[clusterset.ManagedByLabel] != "" || svc.Labels[fedpkg.LabelFederation] != "" || svc.Labels[fedpkg.LabelAdopted] != "" {
				t.Errorf("released Service keeps Strait's labels: %v", svc.Labels)
			}
			if svc.Spec.ClusterIP != "10.200.0.9" || svc.Spec.Selector["app"] != "web" {
				t.Errorf("released Service changed: %+v", svc)
			}
		})
	}
}

// An annotation emptied by mistake selects no cluster: a condition on the broker, and no
// member deletes or releases anything.
func TestPropagatorEmptySelectionRemovesNothing(t *testing.T) {
	ctx := context.Background()
	created := fedpkg.MemberService(brokerService(), nil, fed)
	created.UID = "svc-uid"
	adopted := fedpkg.MemberService(brokerService(), userService(), fed)
	for name, local := range map[string]*corev1.Service{"created": created, "adopted": adopted} {
		t.Run(name, func(t *testing.T) {
			p, cs := propagator(world{broker: []runtime.Object{brokerService(fedpkg.AnnotationClusters, "")}, local: []runtime.Object{local, ownNamespace()}, objects: []runtime.Object{local, ownNamespace()}})
			if err := p.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			if w := writes(cs); len(w) != 0 {
				t.Errorf("an empty selection wrote %v", w)
			}
		})
	}
}

func TestPropagatorAdoptsKeepingTheClusterIP(t *testing.T) {
	user := userService()
	p, cs := propagator(world{broker: []runtime.Object{brokerService()}, local: []runtime.Object{user}, objects: []runtime.Object{user}})
	ctx := context.Background()
	if err := p.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	svc, _ := cs.CoreV1().Services(ns).Get(ctx, "web", metav1.GetOptions{})
	if svc.Labels[fedpkg.LabelAdopted] != "true" || svc.Spec.ClusterIP != "10.200.0.9" || svc.Spec.Type != corev1.ServiceTypeNodePort {
		t.Errorf("adopted %+v", svc)
	}
	// What the update stored, seen again: nothing to do.
	p2, cs2 := propagator(world{broker: []runtime.Object{brokerService()}, local: []runtime.Object{svc}, objects: []runtime.Object{svc}})
	if err := p2.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w := writes(cs2); len(w) != 0 {
		t.Errorf("second round wrote %v", w)
	}
}

func TestPropagatorRemovesWhatItCreatedAndItsNamespace(t *testing.T) {
	created := fedpkg.MemberService(brokerService(), nil, fed)
	created.UID = "svc-uid"
	ctx := context.Background()
	// Broker Service deleted: the member Service goes.
	p, cs := propagator(world{local: []runtime.Object{created, ownNamespace()}, objects: []runtime.Object{created, ownNamespace()}})
	if err := p.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(writes(cs), ","); got != "delete services" {
		t.Fatalf("writes %s", got)
	}
	// Once it is gone from the cache, the namespace Strait created goes too.
	p, cs = propagator(world{local: []runtime.Object{ownNamespace()}, objects: []runtime.Object{ownNamespace()}})
	if err := p.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(writes(cs), ","); got != "delete namespaces" {
		t.Fatalf("writes %s", got)
	}
}

func TestPropagatorKeepsNamespacesThatHoldSomethingOrAreNotItsOwn(t *testing.T) {
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "user-pod"}}
	userNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	for name, w := range map[string]world{
		"pods in it":                {local: []runtime.Object{ownNamespace()}, objects: []runtime.Object{ownNamespace(), pod}},
		"another Service in it":     {local: []runtime.Object{ownNamespace(), userService()}, objects: []runtime.Object{ownNamespace()}},
		"not created by Strait":     {local: []runtime.Object{userNS}, objects: []runtime.Object{userNS}},
		"another federated Service": {broker: []runtime.Object{func() *corev1.Service { s := brokerService(); s.Name = "api"; return s }()}, local: []runtime.Object{ownNamespace()}, objects: []runtime.Object{ownNamespace()}},
		"invalid selection elsewhere": {broker: []runtime.Object{func() *corev1.Service {
			s := brokerService(fedpkg.AnnotationClusters, "BAD!")
			s.Name = "api"
			return s
		}()}, local: []runtime.Object{ownNamespace()}, objects: []runtime.Object{ownNamespace()}},
	} {
		t.Run(name, func(t *testing.T) {
			p, cs := propagator(w)
			if err := p.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			for _, wr := range writes(cs) {
				if strings.HasSuffix(wr, "namespaces") || strings.HasPrefix(wr, "delete") {
					t.Errorf("wrote %s", wr)
				}
			}
		})
	}
}

func TestPropagatorLeavesOthersAlone(t *testing.T) {
	ctx := context.Background()
	deselected := brokerService(fedpkg.AnnotationClusters, "c1")
	derived := userService()
	derived.Labels = map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}
	for name, w := range map[string]world{
		"deselected user's Service":     {broker: []runtime.Object{deselected}, local: []runtime.Object{userService()}, objects: []runtime.Object{userService()}},
		"another component's Service":   {broker: []runtime.Object{brokerService()}, local: []runtime.Object{derived}, objects: []runtime.Object{derived}},
		"invalid selection, ours":       {broker: []runtime.Object{brokerService(fedpkg.AnnotationClusters, "x,Y_")}, local: []runtime.Object{fedpkg.MemberService(brokerService(), nil, fed)}},
		"broker gone, a user's Service": {local: []runtime.Object{userService()}, objects: []runtime.Object{userService()}},
	} {
		t.Run(name, func(t *testing.T) {
			p, cs := propagator(w)
			if err := p.Reconcile(ctx, key); err != nil {
				t.Fatal(err)
			}
			if wr := writes(cs); len(wr) != 0 {
				t.Errorf("wrote %v", wr)
			}
		})
	}
	// The broker cluster's own Service is the federated Service itself.
	p, cs := propagator(world{broker: []runtime.Object{brokerService()}, local: []runtime.Object{brokerService()}, objects: []runtime.Object{brokerService()}})
	p.Host = FixedHost(true)
	if err := p.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if wr := writes(cs); len(wr) != 0 {
		t.Errorf("broker cluster: wrote %v", wr)
	}
}

func TestPropagatorReturnsWriteErrors(t *testing.T) {
	p, cs := propagator(world{broker: []runtime.Object{brokerService()}})
	cs.PrependReactor("create", "services", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("injected")
	})
	if err := p.Reconcile(context.Background(), key); err == nil || !strings.Contains(err.Error(), "injected") {
		t.Errorf("error %v", err)
	}
}

func node(ip string) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n-" + ip, Labels: map[string]string{corev1.LabelTopologyRegion: "r1", corev1.LabelTopologyZone: "r1b"}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}},
		},
	}
}

func localSlice(ready ...bool) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4}
	for i, r := range ready {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.1.0." + string(rune('1'+i))}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(r)}})
	}
	return s
}

func reporter(broker []runtime.Object, local []runtime.Object, records []runtime.Object) (*Reporter, *fake.Clientset) {
	cs := fake.NewClientset(records...)
	var services, slices []runtime.Object
	for _, o := range local {
		switch o.(type) {
		case *corev1.Service:
			services = append(services, o)
		case *discoveryv1.EndpointSlice:
			slices = append(slices, o)
		}
	}
	return &Reporter{
		Federation: fed, Namespace: ns, ClusterID: "c2", MemberNamespace: clusterset.MemberNamespace("c2"), Broker: cs,
		BrokerServices: corelisters.NewServiceLister(agenttest.Indexer(broker...)),
		Services:       corelisters.NewServiceLister(agenttest.Indexer(services...)),
		Slices:         discoverylisters.NewEndpointSliceLister(agenttest.Indexer(slices...)),
		Nodes:          corelisters.NewNodeLister(agenttest.Indexer(node("192.168.2.2"), node("192.168.2.3"))),
		Records:        discoverylisters.NewEndpointSliceLister(agenttest.Indexer(records...)),
	}, cs
}

func storedShard(t *testing.T, cs *fake.Clientset) (fedpkg.Shard, bool) {
	t.Helper()
	list, err := cs.DiscoveryV1().EndpointSlices(clusterset.MemberNamespace("c2")).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []*discoveryv1.EndpointSlice
	for i := range list.Items {
		recs = append(recs, &list.Items[i])
	}
	s, ok := fedpkg.FromRecords(recs, fed)[fedpkg.ShardKey{Cluster: "c2", Namespace: ns, Name: "web"}]
	return s, ok
}

func TestReporterWritesTheShard(t *testing.T) {
	ctx := context.Background()
	created := fedpkg.MemberService(brokerService(), nil, fed)
	created.Spec.ClusterIP, created.Spec.ClusterIPs = "10.200.0.7", []string{"10.200.0.7"}
	created.Spec.Ports[0].NodePort = 31000
	r, cs := reporter([]runtime.Object{brokerService()}, []runtime.Object{created, localSlice(true, false, true)}, nil)
	if err := r.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	s, ok := storedShard(t, cs)
	if !ok {
		t.Fatal("no record")
	}
	if s.State != fedpkg.ShardCreated || s.ReadyEndpoints != 2 || s.Ingress.Source != fedpkg.IngressNodes ||
		len(s.Ingress.IPs) != 2 || s.Ingress.Ports[0].Port != 31000 || s.ClusterIPs[0].String() != "10.200.0.7" || s.Region != "r1" || s.Zone != "r1b" {
		t.Errorf("shard %+v", s)
	}
	// Same world again: nothing written.
	list, _ := cs.DiscoveryV1().EndpointSlices(clusterset.MemberNamespace("c2")).List(ctx, metav1.ListOptions{})
	var have []runtime.Object
	for i := range list.Items {
		have = append(have, &list.Items[i])
	}
	r2, cs2 := reporter([]runtime.Object{brokerService()}, []runtime.Object{created, localSlice(true, false, true)}, have)
	if err := r2.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w := writes(cs2); len(w) != 0 {
		t.Errorf("second round wrote %v", w)
	}
	// The broker Service is deleted: the record goes.
	r3, cs3 := reporter(nil, []runtime.Object{created}, have)
	if err := r3.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, ok := storedShard(t, cs3); ok {
		t.Error("record kept after the broker Service went")
	}
	// An invalid selection changes nothing, even though the shard is gone locally.
	r4, cs4 := reporter([]runtime.Object{brokerService(fedpkg.AnnotationClusters, "??")}, nil, have)
	if err := r4.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if w := writes(cs4); len(w) != 0 {
		t.Errorf("invalid selection: wrote %v", w)
	}
}

func TestReporterStates(t *testing.T) {
	derived := userService()
	derived.Labels = map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}
	for _, tc := range []struct {
		name  string
		local []runtime.Object
		state fedpkg.ShardState
	}{
		{name: "not created yet", state: fedpkg.ShardPending},
		{name: "a user's Service about to be adopted", local: []runtime.Object{userService()}, state: fedpkg.ShardPending},
		{name: "another component's Service", local: []runtime.Object{derived}, state: fedpkg.ShardConflict},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, cs := reporter([]runtime.Object{brokerService()}, tc.local, nil)
			if err := r.Reconcile(context.Background(), key); err != nil {
				t.Fatal(err)
			}
			s, ok := storedShard(t, cs)
			if !ok || s.State != tc.state || s.ReadyEndpoints != 0 || len(s.Ingress.IPs) != 0 {
				t.Errorf("shard %+v (recorded %v)", s, ok)
			}
			if tc.state == fedpkg.ShardConflict && s.Problem == "" {
				t.Error("a conflict without its problem")
			}
		})
	}
	// Not selected: no record.
	r, cs := reporter([]runtime.Object{brokerService(fedpkg.AnnotationClusters, "c1")}, nil, nil)
	if err := r.Reconcile(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	if _, ok := storedShard(t, cs); ok {
		t.Error("a deselected cluster recorded a shard")
	}
}

func TestReadyEndpointsIgnoreStraitSlices(t *testing.T) {
	remote := localSlice(true, true)
	remote.Labels[discoveryv1.LabelManagedBy] = records.EndpointSliceManagedBy
	// The EndpointSlice controller copies the Service's labels, Strait's managed-by included.
	own := localSlice(true, false)
	own.Labels[discoveryv1.LabelManagedBy] = "endpointslice-controller.k8s.io"
	own.Labels[clusterset.ManagedByLabel] = clusterset.ManagedByValue
	if n := records.ReadyEndpoints(ownSlices([]*discoveryv1.EndpointSlice{own, remote})); n != 1 {
		t.Errorf("ready %d, want 1 (remote endpoints of a global Service do not count, the Service's own do)", n)
	}
}
