package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/brokercache"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
	"github.com/strait-io/strait/internal/policy"
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

// Cache watches what the broker holds about one federation: the federated Services, and
// through a brokercache the membership registry, the registered members' leases (fed to
// its liveness tracker) and their shard records. Its informers run on a
// controller.Manager. It needs only what a member may read.
type Cache struct {
	cfg Config
	// ServiceInformer and Records, for callers that add event handlers.
	ServiceInformer cache.SharedIndexInformer
	Records         *brokercache.Cache
	// Liveness is this reader's verdict on the members, fed from the leases it watches.
	Liveness *liveness.Tracker

	services corelisters.ServiceLister
}

// NewCache prepares informers on the broker and has m run them, and sets up the liveness
// tracker on the leases they watch. The client needs to list and watch Services in the
// federation namespace and what a member reads (package brokercache): a member's broker
// credential, or an administrator's. ping reaches the broker for the tracker (nil: never
// probed, for fake clients).
//
// onReturn, when set, is called when the broker answers again after an outage
// (leasewatch.RestartOnReturn(m) starts the reader afresh).
func NewCache(m *controller.Manager, broker kubernetes.Interface, mcs mcsclient.Interface, cfg Config, ping leasewatch.Ping, onReturn func(time.Duration)) *Cache {
	fed := informers.NewSharedInformerFactoryWithOptions(broker, 0, informers.WithNamespace(cfg.Namespace),
		informers.WithTransform(func(obj any) (any, error) {
			if o, err := apimeta.Accessor(obj); err == nil {
				o.SetManagedFields(nil)
			}
			return obj, nil
		}))
	c := &Cache{cfg: cfg, Records: brokercache.New(broker, mcs), Liveness: liveness.NewTracker(liveness.Config{Grace: cfg.Grace}, nil)}
	c.ServiceInformer = fed.Core().V1().Services().Informer()
	c.services = fed.Core().V1().Services().Lister()
	m.AddInformers(fed)
	m.AddSyncer(c.Records)
	m.SetWatchErrorHandler(c.ServiceInformer, leasewatch.WatchErrors(c.Liveness))
	if err := c.Records.SetWatchErrorHandler(leasewatch.WatchErrors(c.Liveness)); err != nil {
		m.Fail(err)
	}
	leasewatch.Setup(m, c.Liveness, leasewatch.Options{Leases: c.Records.Leases, Memberships: c.Records.Registry, Ping: ping, OnReturn: onReturn})
	return c
}

// Synced reports whether every cache is complete.
func (c *Cache) Synced() bool { return c.ServiceInformer.HasSynced() && c.Records.HasSynced() }

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
	members, err := c.Records.Members()
	if err != nil {
		return nil, err
	}
	recs, err := c.Records.SliceLister().List(FederationRecordSelector(c.cfg.Name))
	if err != nil {
		return nil, err
	}
	p, err := c.Records.Policy()
	if err != nil {
		return nil, err
	}
	snap, err := buildSnapshot(c.cfg, svcs, members, recs, c.Liveness.View())
	if snap != nil {
		snap.Policy = p
	}
	return snap, err
}

// buildSnapshot assembles a snapshot. Only the shards of registered members count.
func buildSnapshot(cfg Config, svcs []*corev1.Service, members []clusterset.Member, recs []*discoveryv1.EndpointSlice, view liveness.View) (*Snapshot, error) {
	snap := &Snapshot{Federation: cfg.Name, Liveness: view, Members: members}
	for _, s := range svcs {
		if s.Namespace == cfg.Namespace {
			snap.Services = append(snap.Services, s)
		}
	}
	registered := map[string]bool{}
	for _, m := range members {
		registered[m.ID] = true
	}
	snap.Shards = FromRecords(recs, cfg.Name)
	for k := range snap.Shards {
		if !registered[k.Cluster] {
			delete(snap.Shards, k)
		}
	}
	return snap, nil
}

// ReadSnapshot reads the broker once, without informers (for the CLI): the registry, then
// each registered member's shard records. A single read cannot observe leases being
// renewed, so every member is Held: shard health keeps what the status writer last
// decided about each member.
func ReadSnapshot(ctx context.Context, broker kubernetes.Interface, cfg Config) (*Snapshot, error) {
	svcs, err := broker.CoreV1().Services(cfg.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the federated Services in %s on the broker: %w", cfg.Namespace, err)
	}
	members, err := clusterset.ReadMembers(ctx, broker)
	if err != nil {
		return nil, err
	}
	var recs []*discoveryv1.EndpointSlice
	for _, m := range members {
		list, err := broker.DiscoveryV1().EndpointSlices(m.Namespace).List(ctx, metav1.ListOptions{LabelSelector: FederationRecordSelector(cfg.Name).String()})
		if err != nil {
			return nil, fmt.Errorf("listing the shard records of %s on the broker: %w", m.ID, err)
		}
		recs = append(recs, ptrs(list.Items)...)
	}
	cm, err := broker.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Get(ctx, clusterset.NamespacePolicyConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the namespace policy on the broker: %w", err)
	}
	p, err := policy.ParseClusterset(cm)
	if err != nil {
		return nil, err
	}
	snap, err := buildSnapshot(cfg, ptrs(svcs.Items), members, recs, liveness.View{})
	if snap != nil {
		snap.Policy = p
	}
	return snap, err
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

	// current is the cache of the current run (see StartSource).
	current  atomic.Pointer[Cache]
	rejected []error

	changes chan struct{}
	mu      sync.Mutex
}

// NewSource returns a Source for the federation cfg names, whose informers m runs; ping
// reaches the broker for the liveness tracker.
func NewSource(m *controller.Manager, broker kubernetes.Interface, mcs mcsclient.Interface, cfg Config, ping leasewatch.Ping) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{changes: make(chan struct{}, 1)}
	s.current.Store(s.watch(m, NewCache(m, broker, mcs, cfg, ping, nil)))
	return s, nil
}

// watch has c signal the source's changes.
func (s *Source) watch(m *controller.Manager, c *Cache) *Cache {
	notify := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { s.signal() },
		UpdateFunc: func(any, any) { s.signal() },
		DeleteFunc: func(any) { s.signal() },
	}
	// Lease renewals change nothing by themselves; the tracker says when a verdict did.
	for _, i := range []controller.EventSource{c.ServiceInformer, c.Records.Registry, c.Records.Slices} {
		m.Watch(i, notify)
	}
	c.Liveness.OnChange(func(liveness.View, []liveness.Change) { s.signal() })
	return c
}

// StartSource runs a Source until ctx ends, on a controller manager of its own named
// component, and returns once its caches are complete (or with the error that stopped it
// first). When the broker answers again after an outage, the source starts a new run with
// fresh informers and keeps answering from the previous one until the new one is complete.
func StartSource(ctx context.Context, component string, broker kubernetes.Interface, mcs mcsclient.Interface, cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{changes: make(chan struct{}, 1)}
	ping := leasewatch.Readyz(broker.Discovery().RESTClient())
	first := make(chan error, 1)
	go func() {
		logger := klog.FromContext(ctx)
		for run := 0; ; run++ {
			err := s.run(ctx, component, broker, mcs, cfg, ping, first)
			switch {
			case ctx.Err() != nil:
				return
			case run == 0 && s.current.Load() == nil:
				first <- err
				return
			case errors.Is(err, leasewatch.ErrBrokerReturned):
				logger.Info("Reading the broker afresh", "reason", err)
			default:
				logger.Error(err, "Broker source stopped; starting again")
				select {
				case <-ctx.Done():
					return
				case <-time.After(2 * time.Second):
				}
			}
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			return nil, err
		}
		return s, nil
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// run is one run of the source: a manager and its cache, which becomes current once
// synced (the first time, first is told). It returns when the manager stops.
func (s *Source) run(ctx context.Context, component string, broker kubernetes.Interface, mcs mcsclient.Interface, cfg Config, ping leasewatch.Ping, first chan<- error) error {
	m, err := controller.NewManager(controller.Options{Name: component})
	if err != nil {
		return err
	}
	c := s.watch(m, NewCache(m, broker, mcs, cfg, ping, leasewatch.RestartOnReturn(m)))
	stopped := make(chan error, 1)
	go func() { stopped <- m.Start(ctx) }()
	err = wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(context.Context) (bool, error) {
		select {
		case err := <-stopped:
			if err == nil {
				err = context.Cause(ctx)
			}
			stopped <- err
			return false, err
		default:
			return c.Synced(), nil
		}
	})
	if err == nil {
		wasFirst := s.current.Swap(c) == nil
		s.signal()
		if wasFirst {
			first <- nil
		}
	}
	return <-stopped
}

// Synced reports whether the source's caches are complete.
func (s *Source) Synced() bool {
	c := s.current.Load()
	return c != nil && c.Synced()
}

// Liveness is the source's view of the members.
func (s *Source) Liveness() liveness.View { return s.current.Load().Liveness.View() }

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
	snap, err := s.current.Load().Snapshot()
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
	snap, err := s.current.Load().Snapshot()
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
