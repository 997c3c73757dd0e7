package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
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
// the membership records, the members' leases (fed to its liveness tracker) and the shard
// records. Its informers run on a controller.Manager.
type Cache struct {
	cfg Config
	// Informers, for callers that add event handlers.
	ServiceInformer, MembershipInformer, LeaseInformer, RecordInformer cache.SharedIndexInformer
	// Liveness is this reader's verdict on the members, fed from the leases it watches.
	Liveness *liveness.Tracker

	services    corelisters.ServiceLister
	memberships corelisters.ConfigMapLister
	records     discoverylisters.EndpointSliceLister
}

// stripManagedFields drops managed fields, never read and a large part of every object.
func stripManagedFields(obj any) (any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// NewCache prepares informers on the broker and has m run them, and sets up the liveness
// tracker on the leases they watch. The client needs to list and watch Services in the
// federation namespace, and ConfigMaps, Leases and EndpointSlices in the member
// namespaces: a member's broker credential, or an administrator's. ping reaches the broker
// for the tracker (nil: never probed, for fake clients).
func NewCache(m *controller.Manager, broker kubernetes.Interface, cfg Config, ping leasewatch.Ping) *Cache {
	strip := informers.WithTransform(stripManagedFields)
	fed := informers.NewSharedInformerFactoryWithOptions(broker, 0, informers.WithNamespace(cfg.Namespace), strip)
	memberships := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithNamespace(clusterset.ClustersetNamespace))
	leases := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", liveness.LeaseName).String()
	}))
	recs := informers.NewSharedInformerFactoryWithOptions(broker, 0, strip, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = FederationRecordSelector(cfg.Name).String()
	}))
	c := &Cache{cfg: cfg, Liveness: liveness.NewTracker(liveness.Config{Grace: cfg.Grace}, nil)}
	c.ServiceInformer = fed.Core().V1().Services().Informer()
	c.services = fed.Core().V1().Services().Lister()
	c.MembershipInformer = memberships.Core().V1().ConfigMaps().Informer()
	c.memberships = memberships.Core().V1().ConfigMaps().Lister()
	c.LeaseInformer = leases.Coordination().V1().Leases().Informer()
	c.RecordInformer = recs.Discovery().V1().EndpointSlices().Informer()
	c.records = recs.Discovery().V1().EndpointSlices().Lister()
	for _, f := range []informers.SharedInformerFactory{fed, memberships, leases, recs} {
		m.AddInformers(f)
	}
	leasewatch.Setup(m, c.Liveness, leasewatch.Options{
		Leases: c.LeaseInformer, Memberships: c.MembershipInformer, Ping: ping,
		Broker: []cache.SharedIndexInformer{c.ServiceInformer, c.MembershipInformer, c.LeaseInformer, c.RecordInformer},
	})
	return c
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

// Snapshot returns what the caches hold, with the tracker's verdicts. A malformed
// membership record is an error, as in clusterset.ReadMembers: a partial view must never
// drop a member's shards.
func (c *Cache) Snapshot() (*Snapshot, error) {
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
	recs, err := c.records.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	return buildSnapshot(c.cfg, svcs, cms, recs, c.Liveness.View())
}

func buildSnapshot(cfg Config, svcs []*corev1.Service, cms []*corev1.ConfigMap, recs []*discoveryv1.EndpointSlice, view liveness.View) (*Snapshot, error) {
	snap := &Snapshot{Federation: cfg.Name, Liveness: view}
	for _, s := range svcs {
		if s.Namespace == cfg.Namespace {
			snap.Services = append(snap.Services, s)
		}
	}
	var err error
	if snap.Members, err = clusterset.MembersFromRegistry(cms); err != nil {
		return nil, err
	}
	slices.SortFunc(snap.Members, func(a, b clusterset.Member) int { return strings.Compare(a.ID, b.ID) })
	snap.Shards = FromRecords(recs, cfg.Name)
	return snap, nil
}

// ReadSnapshot reads the broker once, without informers (for the CLI). A single read cannot
// observe leases being renewed, so every member is Held: shard health keeps what the
// status writer last decided about each member.
func ReadSnapshot(ctx context.Context, broker kubernetes.Interface, cfg Config) (*Snapshot, error) {
	svcs, err := broker.CoreV1().Services(cfg.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the federated Services in %s on the broker: %w", cfg.Namespace, err)
	}
	cms, err := broker.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the membership registry %s on the broker: %w", clusterset.ClustersetNamespace, err)
	}
	recs, err := broker.DiscoveryV1().EndpointSlices(metav1.NamespaceAll).List(ctx, metav1.ListOptions{LabelSelector: FederationRecordSelector(cfg.Name).String()})
	if err != nil {
		return nil, fmt.Errorf("listing shard records on the broker: %w", err)
	}
	return buildSnapshot(cfg, ptrs(svcs.Items), ptrs(cms.Items), ptrs(recs.Items), liveness.View{})
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
	rejected []error

	changes chan struct{}
	mu      sync.Mutex
}

// NewSource returns a Source for the federation cfg names, whose informers m runs; ping
// reaches the broker for the liveness tracker.
func NewSource(m *controller.Manager, broker kubernetes.Interface, cfg Config, ping leasewatch.Ping) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cache: NewCache(m, broker, cfg, ping), changes: make(chan struct{}, 1)}
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.signal() },
		UpdateFunc: func(any, any) { s.signal() },
		DeleteFunc: func(any) { s.signal() },
	}
	// Lease renewals change nothing by themselves; the tracker says when a verdict did.
	for _, i := range []cache.SharedIndexInformer{s.cache.ServiceInformer, s.cache.MembershipInformer, s.cache.RecordInformer} {
		m.Watch(i, notify)
	}
	s.cache.Liveness.OnChange(func(liveness.View, []liveness.Change) { s.signal() })
	return s, nil
}

// StartSource runs a Source on a controller manager of its own, named component, until ctx
// ends, and returns once its caches are complete (or with the error that stopped it).
func StartSource(ctx context.Context, component string, broker kubernetes.Interface, cfg Config) (*Source, error) {
	m, err := controller.NewManager(controller.Options{Name: component})
	if err != nil {
		return nil, err
	}
	src, err := NewSource(m, broker, cfg, leasewatch.Readyz(broker.Discovery().RESTClient()))
	if err != nil {
		return nil, err
	}
	stopped := make(chan error, 1)
	go func() { stopped <- m.Start(ctx) }()
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-stopped:
			if err == nil {
				err = context.Cause(ctx)
			}
			return false, err
		default:
			return src.Synced(), nil
		}
	})
	if err != nil {
		return nil, err
	}
	return src, nil
}

// Synced reports whether the source's caches are complete.
func (s *Source) Synced() bool { return s.cache.Synced() }

// Liveness is the source's view of the members.
func (s *Source) Liveness() liveness.View { return s.cache.Liveness.View() }

// Changed receives a value when what Services returns may have changed: a broker object
// changed, or a member's liveness verdict (the strait dns runner's Notifier).
func (s *Source) Changed() <-chan struct{} { return s.changes }

func (s *Source) signal() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// Statuses returns every federated Service's status.
func (s *Source) Statuses(context.Context) ([]ServiceStatus, error) {
	snap, err := s.cache.Snapshot()
	if err != nil {
		return nil, err
	}
	return AggregateAll(snap), nil
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
	snap, err := s.cache.Snapshot()
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
