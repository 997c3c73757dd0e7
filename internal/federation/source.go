package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-io/strait/internal/agent/heartbeat"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/zone"
)

// ZoneService is the DNS view of a federated Service: every placed shard, with its ingress
// IPs as the addresses answered from outside and its cluster IPs for the short name asked
// from inside its own cluster. Hostname ingress (a load balancer known by name) has no place
// in A/AAAA answers and is left out.
func ZoneService(st ServiceStatus) zone.Service {
	out := zone.Service{Namespace: st.Namespace, Name: st.Name, Federation: st.Federation, TTL: st.TTL}
	for _, sh := range st.Shards {
		out.Shards = append(out.Shards, zone.Shard{
			Cluster: sh.Cluster, Region: sh.Region, Zone: sh.Zone, Healthy: sh.Healthy,
			Addresses:      slices.Clone(sh.Ingress.IPs),
			LocalAddresses: slices.Clone(sh.ClusterIPs),
		})
	}
	return out
}

// ZoneServices converts statuses for strait dns.
func ZoneServices(sts []ServiceStatus) []zone.Service {
	out := make([]zone.Service, 0, len(sts))
	for _, st := range sts {
		out = append(out, ZoneService(st))
	}
	return out
}

// Cache watches what the broker holds about one federation: the federated Services,
// the membership records, the members' leases and the shard records.
type Cache struct {
	cfg       Config
	factories []informers.SharedInformerFactory
	// Informers, for callers that add event handlers.
	ServiceInformer, MembershipInformer, LeaseInformer, RecordInformer cache.SharedIndexInformer

	services    corelisters.ServiceLister
	memberships corelisters.ConfigMapLister
	leases      coordinationlisters.LeaseLister
	records     discoverylisters.EndpointSliceLister
}

// stripManagedFields drops managed fields, never read and a large part of every object.
func stripManagedFields(obj any) (any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// NewCache prepares informers on the broker; Start runs them. The client needs to list and
// watch Services in the federation namespace, and ConfigMaps, Leases and EndpointSlices in
// the member namespaces: a member's broker credential, or an administrator's.
func NewCache(broker kubernetes.Interface, cfg Config) *Cache {
	strip := informers.WithTransform(stripManagedFields)
	fed := informers.NewSharedInformerFactoryWithOptions(broker, 0, informers.WithNamespace(cfg.Namespace), strip)
	memberships := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", clusterset.MembershipConfigMap).String()
	}))
	leases := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", heartbeat.LeaseName).String()
	}))
	recs := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = FederationRecordSelector(cfg.Name).String()
	}))
	c := &Cache{cfg: cfg, factories: []informers.SharedInformerFactory{fed, memberships, leases, recs}}
	c.ServiceInformer = fed.Core().V1().Services().Informer()
	c.services = fed.Core().V1().Services().Lister()
	c.MembershipInformer = memberships.Core().V1().ConfigMaps().Informer()
	c.memberships = memberships.Core().V1().ConfigMaps().Lister()
	c.LeaseInformer = leases.Coordination().V1().Leases().Informer()
	c.leases = leases.Coordination().V1().Leases().Lister()
	c.RecordInformer = recs.Discovery().V1().EndpointSlices().Informer()
	c.records = recs.Discovery().V1().EndpointSlices().Lister()
	return c
}

// Start runs the informers until ctx ends and waits for their caches; it fails if ctx ends
// first.
func (c *Cache) Start(ctx context.Context) error {
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	for _, f := range c.factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("the broker's %v cache did not sync: %w", typ, context.Cause(ctx))
			}
		}
	}
	return nil
}

// Synced reports whether every cache is complete.
func (c *Cache) Synced() bool {
	for _, i := range []cache.SharedIndexInformer{c.ServiceInformer, c.MembershipInformer, c.LeaseInformer, c.RecordInformer} {
		if !i.HasSynced() {
			return false
		}
	}
	return true
}

// Service returns one federated Service, nil when it does not exist.
func (c *Cache) Service(name string) (*corev1.Service, error) {
	svc, err := c.services.Services(c.cfg.Namespace).Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return svc, nil
}

// ServiceNames lists the federated Services' names.
func (c *Cache) ServiceNames() []string {
	list, _ := c.services.Services(c.cfg.Namespace).List(labels.Everything())
	out := make([]string, 0, len(list))
	for _, s := range list {
		out = append(out, s.Name)
	}
	return out
}

// Snapshot returns what the caches hold. A malformed membership record is an error, as in
// clusterset.ReadMembers: a partial view must never drop a member's shards.
func (c *Cache) Snapshot(now time.Time) (*Snapshot, error) {
	if !c.Synced() {
		return nil, errors.New("the broker caches have not synced yet")
	}
	svcs, err := c.services.Services(c.cfg.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	cms, err := c.memberships.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	leases, err := c.leases.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	recs, err := c.records.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return buildSnapshot(c.cfg, svcs, cms, leases, recs, now)
}

func buildSnapshot(cfg Config, svcs []*corev1.Service, cms []*corev1.ConfigMap, leases []*coordinationv1.Lease, recs []*discoveryv1.EndpointSlice, now time.Time) (*Snapshot, error) {
	snap := &Snapshot{Federation: cfg.Name, Now: now, Grace: cfg.Grace, Leases: map[string]*coordinationv1.Lease{}}
	for _, s := range svcs {
		if s.Namespace == cfg.Namespace {
			snap.Services = append(snap.Services, s)
		}
	}
	var errs []error
	for _, cm := range cms {
		if cm.Name != clusterset.MembershipConfigMap || !strings.HasPrefix(cm.Namespace, clusterset.MemberNamespacePrefix) {
			continue
		}
		m, err := clusterset.MemberFromConfigMap(cm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.Members = append(snap.Members, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(snap.Members, func(a, b clusterset.Member) int { return strings.Compare(a.ID, b.ID) })
	for _, l := range leases {
		if id, ok := clusterset.ClusterIDFromNamespace(l.Namespace); ok && l.Name == heartbeat.LeaseName {
			snap.Leases[id] = l
		}
	}
	snap.Shards = FromRecords(recs, cfg.Name)
	return snap, nil
}

// ReadSnapshot reads the broker once, without informers (for the CLI).
func ReadSnapshot(ctx context.Context, broker kubernetes.Interface, cfg Config, now time.Time) (*Snapshot, error) {
	svcs, err := broker.CoreV1().Services(cfg.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the federated Services in %s on the broker: %w", cfg.Namespace, err)
	}
	cms, err := broker.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", clusterset.MembershipConfigMap).String()})
	if err != nil {
		return nil, fmt.Errorf("listing membership ConfigMaps on the broker: %w", err)
	}
	leases, err := broker.CoordinationV1().Leases(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", heartbeat.LeaseName).String()})
	if err != nil {
		return nil, fmt.Errorf("listing member leases on the broker: %w", err)
	}
	recs, err := broker.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: FederationRecordSelector(cfg.Name).String()})
	if err != nil {
		return nil, fmt.Errorf("listing shard records on the broker: %w", err)
	}
	return buildSnapshot(cfg, ptrs(svcs.Items), ptrs(cms.Items), ptrs(leases.Items), ptrs(recs.Items), now)
}

func ptrs[T any](items []T) []*T {
	out := make([]*T, len(items))
	for i := range items {
		out[i] = &items[i]
	}
	return out
}

// Source is the broker-backed source of strait dns: the federated Services with their
// shards' health and ingress addresses, from informers on the broker. It implements the
// server's Source interface (Services). Before its caches are complete, and whenever the
// broker's records cannot be read whole, Services returns an error, never an empty list:
// an error must not withdraw published records.
type Source struct {
	// Validate, when set, checks each service (strait dns passes its zone configuration's
	// ValidateService); a service it rejects is left out, so one bad name never blocks the
	// others, and Rejected reports it.
	Validate func(zone.Service) error

	cache    *Cache
	now      func() time.Time
	rejected []error

	changes chan struct{}
	mu      sync.Mutex
	timer   *time.Timer
}

// NewSource returns a Source for the federation cfg names; Start runs it.
func NewSource(broker kubernetes.Interface, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cache: NewCache(broker, cfg), now: time.Now, changes: make(chan struct{}, 1)}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.signal() },
		UpdateFunc: func(any, any) { s.signal() },
		DeleteFunc: func(any) { s.signal() },
	}
	for _, i := range []cache.SharedIndexInformer{s.cache.ServiceInformer, s.cache.MembershipInformer, s.cache.LeaseInformer, s.cache.RecordInformer} {
		if _, err := i.AddEventHandler(notify); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Start runs the informers until ctx ends and waits for the caches.
func (s *Source) Start(ctx context.Context) error { return s.cache.Start(ctx) }

// Changed receives a value when what Services returns may have changed: a broker object
// changed, or a member's lease is about to expire (the strait dns runner's Notifier).
func (s *Source) Changed() <-chan struct{} { return s.changes }

func (s *Source) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Statuses returns every federated Service's status.
func (s *Source) Statuses(context.Context) ([]ServiceStatus, error) {
	snap, err := s.cache.Snapshot(s.now())
	if err != nil {
		return nil, err
	}
	sts := AggregateAll(snap)
	var recheck time.Duration
	for _, st := range sts {
		if st.Recheck > 0 && (recheck == 0 || st.Recheck < recheck) {
			recheck = st.Recheck
		}
	}
	if recheck > 0 {
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.timer = time.AfterFunc(recheck, s.signal)
		s.mu.Unlock()
	}
	return sts, nil
}

// Services implements the strait dns Source.
func (s *Source) Services(ctx context.Context) ([]zone.Service, error) {
	sts, err := s.Statuses(ctx)
	if err != nil {
		return nil, err
	}
	all := ZoneServices(sts)
	if s.Validate == nil {
		return all, nil
	}
	var out []zone.Service
	var rejected []error
	for _, svc := range all {
		if err := s.Validate(svc); err != nil {
			rejected = append(rejected, fmt.Errorf("federated Service %s/%s: %w", svc.Namespace, svc.Name, err))
			continue
		}
		out = append(out, svc)
	}
	s.mu.Lock()
	s.rejected = rejected
	s.mu.Unlock()
	return out, nil
}

// Locations returns where the members are (membership region and zone), for the clusters
// strait dns answers short names to (server.Config.Clusters).
func (s *Source) Locations() ([]zone.Location, error) {
	snap, err := s.cache.Snapshot(s.now())
	if err != nil {
		return nil, err
	}
	out := make([]zone.Location, 0, len(snap.Members))
	for _, m := range snap.Members {
		l := zone.Location{Cluster: m.ID, Region: m.Region, Zone: m.Zone}
		if l.Region == "" {
			l.Zone = ""
		}
		out = append(out, l)
	}
	return out, nil
}

// Rejected returns the services Validate left out of the last Services call, and why.
func (s *Source) Rejected() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejected)
}
