// Package brokercache watches what Strait keeps on the broker with a member's
// least-privilege credential, namespace by namespace: the membership registry (ConfigMaps
// of the clusterset namespace, written only by `strait join`), and, in the namespace of each
// registered member, its records (EndpointSlices and ServiceImports labelled as Strait's)
// and its heartbeat Lease. A namespace that is not in the registry is never watched, so a
// record there counts for nothing.
//
// Its listers merge the namespaces and have the shape of client-go's, so reconcilers use
// them like any lister; its Kinds take event handlers, which reach the informers of members
// that join later too. When a member leaves the registry, its informers stop and every
// handler gets a deletion for each object it had, so readers let its share go.
package brokercache

import (
	"context"
	"fmt"
	"sort"
	"sync"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/policy"
	"github.com/strait-io/strait/internal/records"
)

// Cache is the broker as one member (or strait dns) sees it.
type Cache struct {
	kube kubernetes.Interface
	mcs  mcsclient.Interface

	registry       informers.SharedInformerFactory
	registryLister corelisters.ConfigMapLister
	// Registry is the informer of the clusterset namespace's ConfigMaps (the membership
	// registry and the namespace policy).
	Registry cache.SharedIndexInformer

	// Slices, Imports and Leases are the members' records and heartbeats.
	Slices, Imports, Leases *Kind

	watchErrors cache.WatchErrorHandlerWithContext

	mu      sync.Mutex
	ctx     context.Context
	members map[string]*member
}

type member struct {
	cancel  context.CancelFunc
	kube    informers.SharedInformerFactory
	mcs     mcsinformers.SharedInformerFactory
	started bool
}

// New prepares a cache; Start runs it. Only objects labelled as Strait's are watched in
// member namespaces.
func New(kube kubernetes.Interface, mcs mcsclient.Interface) *Cache {
	c := &Cache{kube: kube, mcs: mcs, members: map[string]*member{}}
	c.registry = informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(clusterset.ClustersetNamespace),
		informers.WithTransform(stripManagedFields))
	c.Registry = c.registry.Core().V1().ConfigMaps().Informer()
	c.registryLister = c.registry.Core().V1().ConfigMaps().Lister()
	c.Slices = newKind(c, discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), func(m *member) cache.SharedIndexInformer {
		return m.kube.Discovery().V1().EndpointSlices().Informer()
	})
	c.Imports = newKind(c, mcsv1beta1.SchemeGroupVersion.WithResource("serviceimports"), func(m *member) cache.SharedIndexInformer {
		return m.mcs.Multicluster().V1beta1().ServiceImports().Informer()
	})
	c.Leases = newKind(c, coordinationv1.SchemeGroupVersion.WithResource("leases"), func(m *member) cache.SharedIndexInformer {
		return m.kube.Coordination().V1().Leases().Informer()
	})
	return c
}

func stripManagedFields(obj any) (any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// SetWatchErrorHandler sets the watch error handler of every informer of the cache, present
// and future; call it before Start.
func (c *Cache) SetWatchErrorHandler(h cache.WatchErrorHandlerWithContext) error {
	c.watchErrors = h
	return c.Registry.SetWatchErrorHandlerWithContext(h)
}

// Start runs the registry informer and, as it learns the members, theirs, until ctx ends.
func (c *Cache) Start(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	// The member set follows the registry; registration happens before the informer
	// starts, so its initial list is seen.
	_, _ = c.Registry.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.sync() },
		UpdateFunc: func(any, any) { c.sync() },
		DeleteFunc: func(any) { c.sync() },
	})
	c.registry.Start(ctx.Done())
}

// HasSynced reports whether the registry and the informers of every registered member
// have their initial lists.
func (c *Cache) HasSynced() bool {
	if !c.Registry.HasSynced() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.registered() {
		m := c.members[id]
		if m == nil || !m.started {
			return false
		}
		for _, k := range []*Kind{c.Slices, c.Imports, c.Leases} {
			if !k.informerOf(m).HasSynced() {
				return false
			}
		}
	}
	return true
}

// Members returns the registered members (see clusterset.MembersFromRegistry): an error when
// a record is malformed, so a partial view never drops a member.
func (c *Cache) Members() ([]clusterset.Member, error) {
	cms, err := c.registryLister.ConfigMaps(clusterset.ClustersetNamespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return clusterset.MembersFromRegistry(cms)
}

// Registered reports whether id is in the registry (readable or not).
func (c *Cache) Registered(id string) bool {
	_, err := c.registryLister.ConfigMaps(clusterset.ClustersetNamespace).Get(clusterset.RegistryName(id))
	return err == nil
}

// ConfigMap returns a ConfigMap of the clusterset namespace, nil when it does not exist.
func (c *Cache) ConfigMap(name string) (*corev1.ConfigMap, error) {
	cm, err := c.registryLister.ConfigMaps(clusterset.ClustersetNamespace).Get(name)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	return cm, err
}

// registered lists the IDs of the registry's records, well-formed or not: a member whose
// record is malformed keeps its informers (its records stay as they were).
func (c *Cache) registered() []string {
	var ids []string
	for _, obj := range c.Registry.GetStore().List() {
		cm, ok := obj.(*corev1.ConfigMap)
		if !ok || !clusterset.IsRegistryRecord(cm) {
			continue
		}
		if id, _ := clusterset.ClusterIDFromRegistryName(cm.Name); clusterset.ValidateClusterID(id) == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

// sync starts the informers of members that appeared in the registry and stops those of
// members that left it.
func (c *Cache) sync() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil || !c.Registry.HasSynced() && len(c.members) > 0 {
		return
	}
	want := map[string]bool{}
	for _, id := range c.registered() {
		want[id] = true
		if _, ok := c.members[id]; !ok {
			c.members[id] = c.startMember(id)
		}
	}
	for id, m := range c.members {
		if !want[id] {
			c.stopMember(id, m)
		}
	}
}

func (c *Cache) startMember(id string) *member {
	ctx, cancel := context.WithCancel(c.ctx)
	strait := func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue}).String()
	}
	ns := clusterset.MemberNamespace(id)
	m := &member{
		cancel: cancel,
		kube: informers.NewSharedInformerFactoryWithOptions(c.kube, 0, informers.WithNamespace(ns),
			informers.WithTweakListOptions(strait), informers.WithTransform(stripManagedFields)),
		mcs: mcsinformers.NewSharedInformerFactoryWithOptions(c.mcs, 0, mcsinformers.WithNamespace(ns),
			mcsinformers.WithTweakListOptions(strait), mcsinformers.WithTransform(stripManagedFields)),
	}
	for _, k := range []*Kind{c.Slices, c.Imports, c.Leases} {
		inf := k.informerOf(m)
		// Readers list the records of one Service at a time: an index, not a scan of
		// every record of the member, or a resync costs the square of the Services.
		if k != c.Leases {
			_ = inf.AddIndexers(cache.Indexers{recordIndex: recordKey})
		}
		if c.watchErrors != nil {
			_ = inf.SetWatchErrorHandlerWithContext(c.watchErrors)
		}
		k.attach(inf)
	}
	m.kube.Start(ctx.Done())
	m.mcs.Start(ctx.Done())
	m.started = true
	klog.FromContext(ctx).V(2).Info("Watching a member's broker namespace", "member", id, "namespace", ns)
	return m
}

// stopMember stops a member's informers and tells every handler that its objects are gone.
func (c *Cache) stopMember(id string, m *member) {
	m.cancel()
	delete(c.members, id)
	for _, k := range []*Kind{c.Slices, c.Imports, c.Leases} {
		inf := k.informerOf(m)
		k.detach(inf)
		for _, obj := range inf.GetStore().List() {
			k.deleted(obj)
		}
	}
	klog.FromContext(c.ctx).Info("Member left the registry: its records no longer count", "member", id)
}

// snapshot returns the started members, sorted by ID.
func (c *Cache) snapshot() []*member {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.members))
	for id := range c.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]*member, 0, len(ids))
	for _, id := range ids {
		out = append(out, c.members[id])
	}
	return out
}

func (c *Cache) member(ns string) *member {
	id, ok := clusterset.ClusterIDFromNamespace(ns)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[id]
}

// Kind is one kind of object across the member namespaces: it takes event handlers for all
// of them, present and future.
type Kind struct {
	c          *Cache
	resource   schema.GroupVersionResource
	informerOf func(*member) cache.SharedIndexInformer

	mu       sync.Mutex
	handlers []cache.ResourceEventHandler
	// regs holds, per member informer, the registration of its one fan-out handler.
	regs map[cache.SharedIndexInformer]cache.ResourceEventHandlerRegistration
}

func newKind(c *Cache, r schema.GroupVersionResource, informerOf func(*member) cache.SharedIndexInformer) *Kind {
	return &Kind{c: c, resource: r, informerOf: informerOf, regs: map[cache.SharedIndexInformer]cache.ResourceEventHandlerRegistration{}}
}

// AddEventHandler adds a handler to the kind's informers in every member namespace, now and
// when members join. Each member informer has one registration that hands every event to
// all of the kind's handlers in turn (they only enqueue keys): a registration costs a
// goroutine pair and an event buffer per informer, and there are three informers per
// member. Objects the running informers hold already reach a handler added late as adds,
// as a shared informer replays its store to a late handler.
func (k *Kind) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	k.mu.Lock()
	k.handlers = append(k.handlers, h)
	k.mu.Unlock()
	for _, m := range k.c.snapshot() {
		for _, obj := range k.informerOf(m).GetStore().List() {
			h.OnAdd(obj, true)
		}
	}
	return nil, nil
}

// current returns the kind's handlers. Appending never changes the elements a returned
// slice holds, so it is read without copying.
func (k *Kind) current() []cache.ResourceEventHandler {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.handlers
}

// fanout is the one handler of a member informer: it passes each event to every handler of
// the kind.
type fanout struct{ k *Kind }

func (f fanout) OnAdd(obj any, initial bool) {
	for _, h := range f.k.current() {
		h.OnAdd(obj, initial)
	}
}

func (f fanout) OnUpdate(old, obj any) {
	for _, h := range f.k.current() {
		h.OnUpdate(old, obj)
	}
}

func (f fanout) OnDelete(obj any) {
	for _, h := range f.k.current() {
		h.OnDelete(obj)
	}
}

func (k *Kind) attach(inf cache.SharedIndexInformer) {
	reg, err := inf.AddEventHandler(fanout{k: k})
	if err != nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.regs[inf] = reg
}

func (k *Kind) detach(inf cache.SharedIndexInformer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if reg, ok := k.regs[inf]; ok {
		_ = inf.RemoveEventHandler(reg)
	}
	delete(k.regs, inf)
}

func (k *Kind) deleted(obj any) { fanout{k: k}.OnDelete(obj) }

// recordIndex indexes the objects of a member namespace by the Service whose records they
// are ("namespace/name", records.Key).
const recordIndex = "record"

func recordKey(obj any) ([]string, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		if k, ok := records.Key(m); ok {
			return []string{k}, nil
		}
	}
	return nil, nil
}

// selectsRecords returns the Service key when sel selects the records of one Service
// (records.Selector): every object the cache holds carries Strait's managed-by label, so
// the index holds all that sel can match.
func selectsRecords(sel labels.Selector) (string, bool) {
	ns, ok := sel.RequiresExactMatch(records.LabelServiceNamespace)
	if !ok {
		return "", false
	}
	name, ok := sel.RequiresExactMatch(mcsv1beta1.LabelServiceName)
	if !ok {
		return "", false
	}
	return ns + "/" + name, true
}

// listFrom lists the objects of idx in ns ("" for all) that sel matches, through the
// record index when sel selects the records of one Service.
func listFrom(idx cache.Indexer, ns string, sel labels.Selector, add func(any)) error {
	key, ok := selectsRecords(sel)
	if _, indexed := idx.GetIndexers()[recordIndex]; !ok || !indexed {
		if ns == "" {
			return cache.ListAll(idx, sel, add)
		}
		return cache.ListAllByNamespace(idx, ns, sel, add)
	}
	objs, err := idx.ByIndex(recordIndex, key)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		m, err := apimeta.Accessor(obj)
		if err != nil || (ns != "" && m.GetNamespace() != ns) || !sel.Matches(labels.Set(m.GetLabels())) {
			continue
		}
		add(obj)
	}
	return nil
}

// list returns the kind's objects in every member namespace that match sel.
func (k *Kind) list(sel labels.Selector) ([]any, error) {
	var out []any
	for _, m := range k.c.snapshot() {
		if err := listFrom(k.informerOf(m).GetIndexer(), "", sel, func(obj any) { out = append(out, obj) }); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// listIn returns the kind's objects of one namespace; none for a namespace not watched.
func (k *Kind) listIn(ns string, sel labels.Selector) ([]any, error) {
	m := k.c.member(ns)
	if m == nil {
		return nil, nil
	}
	var out []any
	err := listFrom(k.informerOf(m).GetIndexer(), ns, sel, func(obj any) { out = append(out, obj) })
	return out, err
}

// get returns one object; NotFound for a namespace not watched.
func (k *Kind) get(ns, name string) (any, error) {
	m := k.c.member(ns)
	if m == nil {
		return nil, apierrors.NewNotFound(k.resource.GroupResource(), name)
	}
	obj, exists, err := k.informerOf(m).GetIndexer().GetByKey(ns + "/" + name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, apierrors.NewNotFound(k.resource.GroupResource(), name)
	}
	return obj, nil
}

// typed converts lister output.
func typed[T any](objs []any, err error) ([]*T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]*T, 0, len(objs))
	for _, o := range objs {
		t, ok := o.(*T)
		if !ok {
			return nil, fmt.Errorf("broker cache holds a %T, not a %T", o, t)
		}
		out = append(out, t)
	}
	return out, nil
}

func typedOne[T any](obj any, err error) (*T, error) {
	if err != nil {
		return nil, err
	}
	t, ok := obj.(*T)
	if !ok {
		return nil, fmt.Errorf("broker cache holds a %T, not a %T", obj, t)
	}
	return t, nil
}

// SliceLister is the members' EndpointSlices as a client-go lister.
func (c *Cache) SliceLister() discoverylisters.EndpointSliceLister { return sliceLister{c.Slices} }

// ImportLister is the members' ServiceImport records as an mcs-api lister.
func (c *Cache) ImportLister() mcslisters.ServiceImportLister { return importLister{c.Imports} }

// LeaseLister is the members' Leases as a client-go lister.
func (c *Cache) LeaseLister() coordinationlisters.LeaseLister { return leaseLister{c.Leases} }

// nsLister is one namespace of a kind, as client-go's namespace listers are.
type nsLister[T any] struct {
	k  *Kind
	ns string
}

func (l nsLister[T]) List(sel labels.Selector) ([]*T, error) { return typed[T](l.k.listIn(l.ns, sel)) }

func (l nsLister[T]) Get(name string) (*T, error) { return typedOne[T](l.k.get(l.ns, name)) }

type sliceLister struct{ k *Kind }

func (l sliceLister) List(sel labels.Selector) ([]*discoveryv1.EndpointSlice, error) {
	return typed[discoveryv1.EndpointSlice](l.k.list(sel))
}

func (l sliceLister) EndpointSlices(ns string) discoverylisters.EndpointSliceNamespaceLister {
	return nsLister[discoveryv1.EndpointSlice]{l.k, ns}
}

type importLister struct{ k *Kind }

func (l importLister) List(sel labels.Selector) ([]*mcsv1beta1.ServiceImport, error) {
	return typed[mcsv1beta1.ServiceImport](l.k.list(sel))
}

func (l importLister) ServiceImports(ns string) mcslisters.ServiceImportNamespaceLister {
	return nsLister[mcsv1beta1.ServiceImport]{l.k, ns}
}

type leaseLister struct{ k *Kind }

func (l leaseLister) List(sel labels.Selector) ([]*coordinationv1.Lease, error) {
	return typed[coordinationv1.Lease](l.k.list(sel))
}

func (l leaseLister) Leases(ns string) coordinationlisters.LeaseNamespaceLister {
	return nsLister[coordinationv1.Lease]{l.k, ns}
}

// Policy is the clusterset's namespace policy (package policy); an error when it is
// malformed, so callers change nothing rather than guess.
func (c *Cache) Policy() (policy.Clusterset, error) {
	cm, err := c.ConfigMap(clusterset.NamespacePolicyConfigMap)
	if err != nil {
		return policy.Clusterset{}, err
	}
	return policy.ParseClusterset(cm)
}
