// Package agenttest helps test the agent's reconcilers without an API server, the way
// Submariner Lighthouse's tests do: each cluster is a pair of client-go fake clientsets
// (core and MCS) that assign what a real API server would on create, and the reconciler's
// listers are rebuilt from what the fakes hold before each reconcile, as synced informers
// would show it. Faults come from reactors (Cluster.Fail) and listers that fail; outcomes
// are read back from the fakes, the writes a reconcile made (Cluster.Writes) and the events
// it recorded (Events).
package agenttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"
	mcsscheme "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/scheme"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// ErrInjected is the error the tests' reactors and failing listers return.
var ErrInjected = errors.New("injected fault")

// Indexer is an informer's store holding objs, indexed by namespace as informers are.
func Indexer(objs ...runtime.Object) cache.Indexer {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		if err := idx.Add(o); err != nil {
			panic(err)
		}
	}
	return idx
}

// Cluster is one fake API server: the core and the MCS clientsets.
type Cluster struct {
	Kube *kubefake.Clientset
	MCS  *mcsfake.Clientset

	mu      sync.Mutex
	created int
	// version is the last resourceVersion given out; conflicts counts the writes refused
	// because they carried an older one.
	version   int
	conflicts int
	onWrite   func()
}

// Created is the creationTimestamp the fake API servers give what is created through them.
var Created = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// NewCluster returns a fake API server holding objs (MCS objects go to the MCS clientset).
// Like a real one it gives what is created a UID and a creationTimestamp (Created), and a
// Service of type ClusterIP that is not headless a cluster IP.
func NewCluster(t testing.TB, objs ...runtime.Object) *Cluster {
	t.Helper()
	c := &Cluster{Kube: kubefake.NewClientset(), MCS: mcsfake.NewSimpleClientset()}
	c.Put(t, objs...)
	assign := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		if m, err := meta.Accessor(a.(k8stesting.CreateAction).GetObject()); err == nil {
			m.SetResourceVersion(c.nextVersion())
		}
		// Reactors share one copy of the action, so what is set here is what the
		// tracker's reactor, later in the chain, stores.
		obj := a.(k8stesting.CreateAction).GetObject()
		m, err := meta.Accessor(obj)
		if err != nil {
			return false, nil, nil
		}
		c.mu.Lock()
		c.created++
		n := c.created
		c.mu.Unlock()
		if m.GetUID() == "" {
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", n)))
		}
		if ts := m.GetCreationTimestamp(); ts.IsZero() {
			m.SetCreationTimestamp(metav1.NewTime(Created))
		}
		if svc, ok := obj.(*corev1.Service); ok && svc.Spec.ClusterIP == "" &&
			(svc.Spec.Type == "" || svc.Spec.Type == corev1.ServiceTypeClusterIP) {
			svc.Spec.ClusterIP = fmt.Sprintf("10.96.0.%d", n%250+1)
			svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		}
		return false, nil, nil
	}
	c.Kube.PrependReactor("create", "*", assign)
	c.MCS.PrependReactor("create", "*", assign)
	for _, f := range []*k8stesting.Fake{&c.Kube.Fake, &c.MCS.Fake} {
		tracker := c.Kube.Tracker()
		if f == &c.MCS.Fake {
			tracker = c.MCS.Tracker()
		}
		f.PrependReactor("update", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return c.update(tracker, a.(k8stesting.UpdateAction))
		})
		f.PrependReactor("patch", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			return c.patch(tracker, a.(k8stesting.PatchActionImpl))
		})
		// Runs first: what a lagging informer would show is the state before this write.
		f.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			switch a.GetVerb() {
			case "create", "update", "patch", "delete":
				c.mu.Lock()
				fn := c.onWrite
				c.mu.Unlock()
				if fn != nil {
					fn()
				}
			}
			return false, nil, nil
		})
	}
	return c
}

func (c *Cluster) nextVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.version++
	return fmt.Sprint(c.version)
}

// conflict counts and returns the error an API server answers a write based on a stale
// resourceVersion with.
func (c *Cluster) conflict(gvr schema.GroupVersionResource, name string) error {
	c.mu.Lock()
	c.conflicts++
	c.mu.Unlock()
	return apierrors.NewConflict(gvr.GroupResource(), name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}

// update refuses, as an API server does, an update whose resourceVersion is not the
// stored object's (an empty one is unconditional), and gives the stored object a new one.
func (c *Cluster) update(tracker k8stesting.ObjectTracker, a k8stesting.UpdateAction) (bool, runtime.Object, error) {
	m, err := meta.Accessor(a.GetObject())
	if err != nil {
		return false, nil, nil
	}
	current, err := tracker.Get(a.GetResource(), a.GetNamespace(), m.GetName())
	if err != nil {
		return false, nil, nil // the tracker answers NotFound
	}
	cm, _ := meta.Accessor(current)
	if rv := m.GetResourceVersion(); rv != "" && rv != cm.GetResourceVersion() {
		return true, nil, c.conflict(a.GetResource(), m.GetName())
	}
	m.SetResourceVersion(c.nextVersion())
	return false, nil, nil
}

// patch applies a patch as the tracker does, refusing it when it names a resourceVersion
// that is not the stored object's, and gives the result a new resourceVersion.
func (c *Cluster) patch(tracker k8stesting.ObjectTracker, a k8stesting.PatchActionImpl) (bool, runtime.Object, error) {
	if a.GetPatchType() == types.ApplyPatchType {
		return false, nil, nil
	}
	current, err := tracker.Get(a.GetResource(), a.GetNamespace(), a.GetName())
	if err != nil {
		return true, nil, err
	}
	var p struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
	}
	cm, _ := meta.Accessor(current)
	if a.GetPatchType() != types.JSONPatchType && json.Unmarshal(a.GetPatch(), &p) == nil &&
		p.Metadata.ResourceVersion != "" && p.Metadata.ResourceVersion != cm.GetResourceVersion() {
		return true, nil, c.conflict(a.GetResource(), a.GetName())
	}
	handled, obj, err := k8stesting.ObjectReaction(tracker)(a)
	if !handled || err != nil {
		return handled, obj, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return true, obj, nil
	}
	m.SetResourceVersion(c.nextVersion())
	return true, obj, tracker.Update(a.GetResource(), obj, a.GetNamespace())
}

// Conflicts is the number of writes refused so far because they were based on a stale
// resourceVersion (the cache was behind).
func (c *Cluster) Conflicts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conflicts
}

// OnWrite has fn called before every write request is served (nil: none). Tests use it to
// keep what an informer that lags behind the reconciler's own writes would show.
func (c *Cluster) OnWrite(fn func()) {
	c.mu.Lock()
	c.onWrite = fn
	c.mu.Unlock()
}

// Freeze returns a cluster that holds a copy of what c holds now, of the kinds the
// listers below show: a cache that stops there.
func (c *Cluster) Freeze(t testing.TB) *Cluster {
	t.Helper()
	f := &Cluster{Kube: kubefake.NewClientset(), MCS: mcsfake.NewSimpleClientset()}
	for _, r := range frozenKinds {
		tr := c.Kube.Tracker()
		if r.gv.Group == mcsv1beta1.GroupName {
			tr = c.MCS.Tracker()
		}
		for _, obj := range index(t, tr, r.gv, r.resource, r.kind).List() {
			f.Put(t, obj.(runtime.Object))
		}
	}
	return f
}

var frozenKinds = []struct {
	gv             schema.GroupVersion
	resource, kind string
}{
	{corev1.SchemeGroupVersion, "namespaces", "Namespace"},
	{corev1.SchemeGroupVersion, "services", "Service"},
	{corev1.SchemeGroupVersion, "nodes", "Node"},
	{discoveryv1.SchemeGroupVersion, "endpointslices", "EndpointSlice"},
	{networkingv1.SchemeGroupVersion, "ingresses", "Ingress"},
	{mcsv1beta1.SchemeGroupVersion, "serviceimports", "ServiceImport"},
	{mcsv1beta1.SchemeGroupVersion, "serviceexports", "ServiceExport"},
}

// Fail makes every request with verb ("*" for any) on resource fail with err. resource is
// a plural resource ("services"), a subresource ("serviceimports/status") or "*" for every
// resource and subresource; "services" does not match "services/status". Later calls take
// precedence.
func (c *Cluster) Fail(verb, resource string, err error) {
	res, sub, _ := strings.Cut(resource, "/")
	react := func(a k8stesting.Action) (bool, runtime.Object, error) {
		if resource != "*" && a.GetSubresource() != sub {
			return false, nil, nil
		}
		return true, nil, err
	}
	c.Kube.PrependReactor(verb, res, react)
	c.MCS.PrependReactor(verb, res, react)
}

// ClearActions forgets the requests made so far.
func (c *Cluster) ClearActions() {
	c.Kube.ClearActions()
	c.MCS.ClearActions()
}

// Writes lists the write requests made since ClearActions as "verb resource[/subresource]
// namespace/name", core API first.
func (c *Cluster) Writes() []string {
	var out []string
	for _, a := range append(c.Kube.Actions(), c.MCS.Actions()...) {
		res := a.GetResource().Resource
		if sub := a.GetSubresource(); sub != "" {
			res += "/" + sub
		}
		var name string
		switch a := a.(type) {
		case k8stesting.CreateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case k8stesting.UpdateAction:
			if m, err := meta.Accessor(a.GetObject()); err == nil {
				name = m.GetName()
			}
		case k8stesting.DeleteAction:
			name = a.GetName()
		case k8stesting.PatchAction:
			name = a.GetName()
		default:
			continue
		}
		out = append(out, a.GetVerb()+" "+res+" "+a.GetNamespace()+"/"+name)
	}
	return out
}

// Deletes lists the delete requests among Writes.
func (c *Cluster) Deletes() []string {
	var out []string
	for _, w := range c.Writes() {
		if strings.HasPrefix(w, "delete ") {
			out = append(out, w)
		}
	}
	return out
}

// tracker returns the store that holds obj's kind, and the resource of the kind.
func (c *Cluster) tracker(obj runtime.Object) (k8stesting.ObjectTracker, schema.GroupVersionResource, error) {
	if gvks, _, err := mcsscheme.Scheme.ObjectKinds(obj); err == nil {
		gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
		return c.MCS.Tracker(), gvr, nil
	}
	gvks, _, err := kubescheme.Scheme.ObjectKinds(obj)
	if err != nil {
		return nil, schema.GroupVersionResource{}, err
	}
	gvr, _ := meta.UnsafeGuessKindToResource(gvks[0])
	return c.Kube.Tracker(), gvr, nil
}

// Put stores objs as they are, creating or replacing them, without a request: how the
// world changes behind a reconciler's back (another component, another member).
func (c *Cluster) Put(t testing.TB, objs ...runtime.Object) {
	t.Helper()
	for _, obj := range objs {
		obj = obj.DeepCopyObject()
		tr, gvr, err := c.tracker(obj)
		if err != nil {
			t.Fatal(err)
		}
		m, err := meta.Accessor(obj)
		if err != nil {
			t.Fatal(err)
		}
		if m.GetResourceVersion() == "" {
			m.SetResourceVersion(c.nextVersion())
		}
		if _, err := tr.Get(gvr, m.GetNamespace(), m.GetName()); err == nil {
			err = tr.Update(gvr, obj, m.GetNamespace())
		} else {
			err = tr.Add(obj)
		}
		if err != nil {
			t.Fatalf("storing %s %s/%s: %v", gvr.Resource, m.GetNamespace(), m.GetName(), err)
		}
	}
}

// Remove deletes objs without a request; absent objects are ignored.
func (c *Cluster) Remove(t testing.TB, objs ...runtime.Object) {
	t.Helper()
	for _, obj := range objs {
		tr, gvr, err := c.tracker(obj)
		if err != nil {
			t.Fatal(err)
		}
		m, _ := meta.Accessor(obj)
		_ = tr.Delete(gvr, m.GetNamespace(), m.GetName())
	}
}

// index is the informer store of one resource, filled with what the fake holds now. It
// reads the store directly, so it records no request and no reactor can fail it.
func index(t testing.TB, tr k8stesting.ObjectTracker, gv schema.GroupVersion, resource, kind string) cache.Indexer {
	t.Helper()
	list, err := tr.List(gv.WithResource(resource), gv.WithKind(kind), metav1.NamespaceAll)
	if err != nil {
		t.Fatalf("listing %s: %v", resource, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	return Indexer(items...)
}

// The listers below show what the cluster holds now, as synced informers would. They also
// serve to read outcomes back without a request.

// Namespaces lists the cluster's Namespaces.
func (c *Cluster) Namespaces(t testing.TB) corelisters.NamespaceLister {
	return corelisters.NewNamespaceLister(index(t, c.Kube.Tracker(), corev1.SchemeGroupVersion, "namespaces", "Namespace"))
}

// Services lists the cluster's Services.
func (c *Cluster) Services(t testing.TB) corelisters.ServiceLister {
	return corelisters.NewServiceLister(index(t, c.Kube.Tracker(), corev1.SchemeGroupVersion, "services", "Service"))
}

// Nodes lists the cluster's Nodes.
func (c *Cluster) Nodes(t testing.TB) corelisters.NodeLister {
	return corelisters.NewNodeLister(index(t, c.Kube.Tracker(), corev1.SchemeGroupVersion, "nodes", "Node"))
}

// EndpointSlices lists the cluster's EndpointSlices.
func (c *Cluster) EndpointSlices(t testing.TB) discoverylisters.EndpointSliceLister {
	return discoverylisters.NewEndpointSliceLister(index(t, c.Kube.Tracker(), discoveryv1.SchemeGroupVersion, "endpointslices", "EndpointSlice"))
}

// Ingresses lists the cluster's Ingresses.
func (c *Cluster) Ingresses(t testing.TB) networkinglisters.IngressLister {
	return networkinglisters.NewIngressLister(index(t, c.Kube.Tracker(), networkingv1.SchemeGroupVersion, "ingresses", "Ingress"))
}

// ServiceImports lists the cluster's ServiceImports.
func (c *Cluster) ServiceImports(t testing.TB) mcslisters.ServiceImportLister {
	return mcslisters.NewServiceImportLister(index(t, c.MCS.Tracker(), mcsv1beta1.SchemeGroupVersion, "serviceimports", "ServiceImport"))
}

// ServiceExports lists the cluster's ServiceExports.
func (c *Cluster) ServiceExports(t testing.TB) mcslisters.ServiceExportLister {
	return mcslisters.NewServiceExportLister(index(t, c.MCS.Tracker(), mcsv1beta1.SchemeGroupVersion, "serviceexports", "ServiceExport"))
}

// Names lists "namespace/name" of the objects a lister's List returned; a failed List
// shows as its error, so that a comparison with the expected names fails.
func Names[T metav1.Object](list []T, err error) []string {
	if err != nil {
		return []string{"error: " + err.Error()}
	}
	out := make([]string, 0, len(list))
	for _, o := range list {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

// OrNil returns what a lister's Get found, or nil when it found nothing.
func OrNil[T any](obj T, err error) T {
	if err != nil {
		var zero T
		return zero
	}
	return obj
}

// Everything selects every object.
var Everything = labels.Everything()

// failing is a lister, or one namespace's lister, whose every call fails: a cache that
// cannot answer. Its method set fits every typed lister's List and Get.
type failing[T any] struct{ err error }

func (f failing[T]) List(labels.Selector) ([]T, error) { return nil, f.err }
func (f failing[T]) Get(string) (T, error) {
	var zero T
	return zero, f.err
}

type failingSlices struct {
	failing[*discoveryv1.EndpointSlice]
}

func (f failingSlices) EndpointSlices(string) discoverylisters.EndpointSliceNamespaceLister {
	return f.failing
}

type failingServices struct{ failing[*corev1.Service] }

func (f failingServices) Services(string) corelisters.ServiceNamespaceLister { return f.failing }

type failingImports struct {
	failing[*mcsv1beta1.ServiceImport]
}

func (f failingImports) ServiceImports(string) mcslisters.ServiceImportNamespaceLister {
	return f.failing
}

type failingExports struct {
	failing[*mcsv1beta1.ServiceExport]
}

func (f failingExports) ServiceExports(string) mcslisters.ServiceExportNamespaceLister {
	return f.failing
}

// Failing listers return ErrInjected from every call.
var (
	FailingEndpointSlices discoverylisters.EndpointSliceLister = failingSlices{failing[*discoveryv1.EndpointSlice]{ErrInjected}}
	FailingServices       corelisters.ServiceLister            = failingServices{failing[*corev1.Service]{ErrInjected}}
	FailingNamespaces     corelisters.NamespaceLister          = failing[*corev1.Namespace]{ErrInjected}
	FailingServiceImports mcslisters.ServiceImportLister       = failingImports{failing[*mcsv1beta1.ServiceImport]{ErrInjected}}
	FailingServiceExports mcslisters.ServiceExportLister       = failingExports{failing[*mcsv1beta1.ServiceExport]{ErrInjected}}
)

// Member is a member cluster and the broker, with the member's verdicts on the others and
// the events its reconcilers record.
type Member struct {
	Local, Broker *Cluster
	Live          Liveness
	Events        *record.FakeRecorder
}

// NewMember returns a member holding local, an empty broker, every other member Alive.
func NewMember(t testing.TB, local ...runtime.Object) *Member {
	t.Helper()
	return &Member{Local: NewCluster(t, local...), Broker: NewCluster(t), Live: Liveness{}, Events: record.NewFakeRecorder(100)}
}

// Reconcile runs a reconciler on key, with the member's recorded requests cleared first so
// that Writes shows what this reconcile did. change, if not nil, alters r first (a failing
// lister, say).
func Reconcile[R interface {
	Reconcile(ctx context.Context, key string) error
}](m *Member, r R, change func(R), key string) error {
	if change != nil {
		change(r)
	}
	m.Local.ClearActions()
	m.Broker.ClearActions()
	return r.Reconcile(context.Background(), key)
}

// Liveness gives fixed verdicts on members; a member it does not name is Alive.
type Liveness map[string]liveness.State

// State implements the reconcilers' Liveness.
func (l Liveness) State(cluster string) liveness.State {
	if s, ok := l[cluster]; ok {
		return s
	}
	return liveness.Alive
}

// Events drains the events recorded so far, each as "Type Reason Message".
func Events(r *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-r.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

// Namespace is a namespace of a member cluster.
func Namespace(name string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("ns-" + name)}}
}

// Port is a Service's port as a ServiceImport lists it.
func Port(name string, port int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port}
}

// EndpointPort is an EndpointSlice's TCP port.
func EndpointPort(name string, port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(port)}
}

// Endpoints are endpoints at addrs, ready or not.
func Endpoints(ready bool, addrs ...string) []discoveryv1.Endpoint {
	var out []discoveryv1.Endpoint
	for _, a := range addrs {
		out = append(out, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}})
	}
	return out
}

// Record is member cluster's broker record of an export of ns/name through its addresses,
// as the member's agent writes it; created is the broker's creationTimestamp, which decides
// conflicts (the oldest record wins).
func Record(cluster, ns, name string, created time.Time, ports ...mcsv1beta1.ServicePort) *mcsv1beta1.ServiceImport {
	r := records.ToServiceImport(clusterset.MemberNamespace(cluster), mcs.Export{
		Cluster: cluster, Namespace: ns, Name: name, Type: mcsv1beta1.ClusterSetIP, Ports: ports,
	})
	r.UID = types.UID("record-" + cluster + "-" + ns + "-" + name)
	r.CreationTimestamp = metav1.NewTime(created)
	return r
}

// RecordSlice is member cluster's broker record of the IPv4 endpoints of ns/name.
func RecordSlice(cluster, ns, name string, port discoveryv1.EndpointPort, endpoints []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Name:      records.SliceName(ns, name, discoveryv1.AddressTypeIPv4),
			Namespace: clusterset.MemberNamespace(cluster),
			Labels:    records.Labels(cluster, ns, name),
			UID:       types.UID("record-slice-" + cluster + "-" + ns + "-" + name),
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   endpoints,
		Ports:       []discoveryv1.EndpointPort{port},
	}
}

// Caches are what a member's informers show at one moment: of the member cluster and of
// the broker.
type Caches struct{ Local, Broker *Cluster }

// Lagging runs fn (a reconcile on up-to-date caches) and returns what the caches held just
// before each write it made: an informer that has not yet seen the reconciler's own
// latest writes, as the next reconcile, triggered by the first of them, often finds it.
func (m *Member) Lagging(t testing.TB, fn func()) []Caches {
	t.Helper()
	var out []Caches
	freeze := func() { out = append(out, Caches{m.Local.Freeze(t), m.Broker.Freeze(t)}) }
	m.Local.OnWrite(freeze)
	m.Broker.OnWrite(freeze)
	defer m.Local.OnWrite(nil)
	defer m.Broker.OnWrite(nil)
	fn()
	return out
}

// Conflicts is the number of writes of the member's agent that the member cluster or the
// broker refused for a stale resourceVersion.
func (m *Member) Conflicts() int { return m.Local.Conflicts() + m.Broker.Conflicts() }
