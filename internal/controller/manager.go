package controller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/api/v1alpha1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
)

// Scheme knows every kind Strait records events on: Kubernetes' own, the Multi-Cluster
// Services API's and Strait's.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(mcsv1beta1.Install(s))
	utilruntime.Must(v1alpha1.AddToScheme(s))
	return s
}()

// InformerFactory is a shared informer factory of any client set (client-go's, mcs-api's):
// the manager starts it and waits for its caches.
type InformerFactory interface {
	Start(stopCh <-chan struct{})
	WaitForCacheSync(stopCh <-chan struct{}) map[reflect.Type]bool
}

// LeaderElection makes a manager run its controllers only while it holds a Lease.
type LeaderElection struct {
	Client    coordinationv1client.LeasesGetter
	Namespace string
	Name      string
	Identity  string
	// Durations; zero values take the usual 15 s / 10 s / 2 s.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

// Options configure a manager.
type Options struct {
	// Name names the component in logs, events and errors ("strait-agent").
	Name string
	// MetricsAddress and HealthAddress are where /metrics and /healthz, /readyz are served;
	// "" or "0" serves nothing.
	MetricsAddress, HealthAddress string
	// Registry is where metrics go; nil makes a registry of the manager's own, with the Go
	// and process collectors.
	Registry *prometheus.Registry
	// LeaderElection, when set, runs the controllers only while leading.
	LeaderElection *LeaderElection
	// Workers per loop; at least 1.
	Workers int
}

type runnable struct {
	name string
	fn   func(context.Context) error
}

// Manager runs the controllers of one Strait component: it starts the informers they
// share, waits until every cache is complete, then runs their work loops and background
// tasks; it holds the leader lease when asked, records events, and serves metrics and
// health. Reconciler packages declare what they watch (Loop.Watch) in a Setup function;
// the component only assembles the list.
type Manager struct {
	opts     Options
	registry *prometheus.Registry
	metrics  *Metrics

	mu        sync.Mutex
	factories []InformerFactory
	informers []cache.SharedIndexInformer
	syncers   []Syncer
	loops     []*loopRun
	early     []runnable
	late      []runnable
	checks    map[string]func() error
	recorders map[string]record.EventRecorder
	casts     []record.EventBroadcaster
	errs      []error

	synced  atomic.Bool
	leading atomic.Bool
	// stop ends the current run (see Stop).
	stop atomic.Pointer[context.CancelCauseFunc]
}

// Stop ends the manager's current run with err: Start returns it. For a component that
// wants a fresh start (new informers) rather than to go on.
func (m *Manager) Stop(err error) {
	if stop := m.stop.Load(); stop != nil {
		(*stop)(err)
	}
}

type loopRun struct {
	loop *Loop
	r    Reconciler
}

// NewManager returns a manager; its metrics are registered right away.
func NewManager(o Options) (*Manager, error) {
	if o.Name == "" {
		return nil, errors.New("controller manager: a name is required")
	}
	if o.Workers < 1 {
		o.Workers = 1
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	metrics, err := NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &Manager{opts: o, registry: reg, metrics: metrics, checks: map[string]func() error{}, recorders: map[string]record.EventRecorder{}}, nil
}

// Registry is the manager's metrics registry, for domain metrics of its controllers.
func (m *Manager) Registry() *prometheus.Registry { return m.registry }

// Metrics are the work loops' metrics.
func (m *Manager) Metrics() *Metrics { return m.metrics }

// Workers is the number of workers each loop runs.
func (m *Manager) Workers() int { return m.opts.Workers }

// AddInformers has the manager start a shared informer factory and wait for the caches of
// every informer requested from it before Setup returned.
func (m *Manager) AddInformers(f InformerFactory) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, have := range m.factories {
		if have == f {
			return
		}
	}
	m.factories = append(m.factories, f)
}

// AddInformer has the manager run a single informer and wait for its cache.
func (m *Manager) AddInformer(i cache.SharedIndexInformer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.informers = append(m.informers, i)
}

// Watch adds event handlers to an informer (for handlers that are not a loop's).
func (m *Manager) Watch(i EventSource, h cache.ResourceEventHandler) {
	if _, err := i.AddEventHandler(h); err != nil {
		m.fail(fmt.Errorf("%s: adding an event handler: %w", m.opts.Name, err))
	}
}

// SetWatchErrorHandler sets an informer's watch error handler; it fails setup if the
// informer was already started.
func (m *Manager) SetWatchErrorHandler(i cache.SharedIndexInformer, h cache.WatchErrorHandlerWithContext) {
	if err := i.SetWatchErrorHandlerWithContext(h); err != nil {
		m.fail(fmt.Errorf("%s: setting a watch error handler: %w", m.opts.Name, err))
	}
}

// Syncer is a cache of its own making (the broker cache): the manager starts it and waits
// until it has synced.
type Syncer interface {
	Start(ctx context.Context)
	HasSynced() bool
}

// AddSyncer has the manager start a Syncer and wait for it.
func (m *Manager) AddSyncer(s Syncer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.syncers = append(m.syncers, s)
}

// NewLoop returns a work loop for r that the manager runs once the caches are complete.
func (m *Manager) NewLoop(name string, r Reconciler) *Loop {
	l := New(name, m.metrics)
	l.manager = m
	m.mu.Lock()
	m.loops = append(m.loops, &loopRun{loop: l, r: r})
	m.mu.Unlock()
	return l
}

// Go runs fn once the caches are complete (and while leading). An error from fn stops the
// manager: the process should restart, as for a lost lease.
func (m *Manager) Go(name string, fn func(context.Context) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.late = append(m.late, runnable{name, fn})
}

// GoFirst runs fn as soon as the manager leads, before the caches are waited for: for work
// that must not wait for them, such as renewing the member's heartbeat.
func (m *Manager) GoFirst(name string, fn func(context.Context) error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.early = append(m.early, runnable{name, fn})
}

// Collect registers c, a collector that reads the manager's caches, on the manager's
// registry while its controllers run (caches complete, the lease held), and unregisters it
// when the run ends: a scrape then never reports what a partial cache or a standby
// replica's empty one holds, and a new run (a new leadership term, fresh informers)
// registers its own.
func (m *Manager) Collect(c prometheus.Collector) {
	m.Go("metrics", func(ctx context.Context) error {
		if err := m.registry.Register(c); err != nil {
			return fmt.Errorf("registering metrics: %w", err)
		}
		<-ctx.Done()
		m.registry.Unregister(c)
		return nil
	})
}

// AddReadyCheck adds a check to /readyz of the leading replica.
func (m *Manager) AddReadyCheck(name string, check func() error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.checks[name] = check
}

// EventRecorder returns a recorder whose events go to the cluster of client, from the
// manager's component. Recorders are shared per client and stop with the manager.
func (m *Manager) EventRecorder(client kubernetes.Interface) record.EventRecorder {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := fmt.Sprintf("%p", client)
	if r, ok := m.recorders[key]; ok {
		return r
	}
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r := b.NewRecorder(Scheme, corev1.EventSource{Component: m.opts.Name})
	m.casts = append(m.casts, b)
	m.recorders[key] = r
	return r
}

// Fail records a setup error: Start returns it.
func (m *Manager) Fail(err error) { m.fail(err) }

func (m *Manager) fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.errs = append(m.errs, err)
}

// Start serves health and metrics and runs the controllers until ctx ends. It returns an
// error when a setup step failed, a cache did not sync, a task failed, or the leader lease
// was lost (the process should restart).
func (m *Manager) Start(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("component", m.opts.Name)
	ctx = klog.NewContext(ctx, logger)
	m.mu.Lock()
	setupErr := errors.Join(m.errs...)
	m.mu.Unlock()
	if setupErr != nil {
		return setupErr
	}
	defer func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, b := range m.casts {
			b.Shutdown()
		}
	}()
	servers, err := m.serve()
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	le := m.opts.LeaderElection
	if le == nil {
		m.leading.Store(true)
		return m.run(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: le.Name, Namespace: le.Namespace},
		Client:     le.Client,
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	dur := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	var runErr error
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   dur(le.LeaseDuration, 15*time.Second),
		RenewDeadline:   dur(le.RenewDeadline, 10*time.Second),
		RetryPeriod:     dur(le.RetryPeriod, 2*time.Second),
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Leading", "lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
				m.leading.Store(true)
				runErr = m.run(ctx)
				cancel()
			},
			OnStoppedLeading: func() {
				m.leading.Store(false)
				if ctx.Err() == nil && runErr == nil {
					runErr = fmt.Errorf("%s lost the leader lease %s/%s", m.opts.Name, le.Namespace, le.Name)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("%s leader election: %w", m.opts.Name, err)
	}
	elector.Run(lctx)
	if ctx.Err() != nil {
		return nil
	}
	return runErr
}

// run starts the early tasks, the informers, waits for every cache, then runs the loops
// and the other tasks until ctx ends or one of them fails.
func (m *Manager) run(ctx context.Context) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	m.stop.Store(&cancel)
	defer m.stop.Store(nil)
	m.mu.Lock()
	early, late, loops := m.early, m.late, m.loops
	factories, infs, syncers := m.factories, m.informers, m.syncers
	m.mu.Unlock()

	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(r runnable) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.fn(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", r.name, err))
			}
		}()
	}
	for _, r := range early {
		start(r)
	}
	for _, f := range factories {
		f.Start(ctx.Done())
	}
	for _, i := range infs {
		go i.RunWithContext(ctx)
	}
	for _, s := range syncers {
		s.Start(ctx)
	}
	// Nothing is reconciled before every cache is complete: a partial list must never look
	// like deletions.
	var unsynced []string
	for _, f := range factories {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				unsynced = append(unsynced, typ.String())
			}
		}
	}
	for _, i := range infs {
		if !cache.WaitForCacheSync(ctx.Done(), i.HasSynced) {
			unsynced = append(unsynced, "informer")
		}
	}
	for _, s := range syncers {
		if !cache.WaitForCacheSync(ctx.Done(), s.HasSynced) {
			unsynced = append(unsynced, fmt.Sprintf("%T", s))
		}
	}
	if len(unsynced) > 0 {
		if err := context.Cause(ctx); err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		sort.Strings(unsynced)
		return fmt.Errorf("%s: caches did not sync: %s", m.opts.Name, strings.Join(unsynced, ", "))
	}
	m.synced.Store(true)
	defer m.synced.Store(false)
	klog.FromContext(ctx).Info("Caches synced; controllers running", "loops", len(loops))
	for _, l := range loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.loop.Run(ctx, m.opts.Workers, l.r)
		}()
	}
	for _, r := range late {
		start(r)
	}
	<-ctx.Done()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// Ready reports whether the manager is ready: a standby replica is (it is healthy and
// waits for the lease); the leader once its caches are complete and every check passes.
func (m *Manager) Ready() error {
	if m.opts.LeaderElection != nil && !m.leading.Load() {
		return nil
	}
	if !m.synced.Load() {
		return errors.New("caches not synced")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.checks))
	for n := range m.checks {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		if err := m.checks[n](); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// serve starts the manager's health and metrics endpoints.
func (m *Manager) serve() ([]*http.Server, error) {
	return Serve(m.opts.HealthAddress, m.opts.MetricsAddress, m.registry, m.Ready)
}

// Serve starts /healthz and /readyz (ready answers the latter) on healthAddr and /metrics of
// reg on metricsAddr; "" or "0" serves nothing. For components that outlive one manager
// (the agent runs a manager per leadership term), so the endpoints never go away, and for
// strait dns, whose server keeps metrics of its own.
func Serve(healthAddr, metricsAddr string, reg prometheus.Gatherer, ready func() error) ([]*http.Server, error) {
	var servers []*http.Server
	start := func(addr string, mux *http.ServeMux) error {
		if addr == "" || addr == "0" {
			return nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", addr, err)
		}
		s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, s)
		go func() { _ = s.Serve(l) }()
		return nil
	}
	health := http.NewServeMux()
	health.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	health.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})
	if err := start(healthAddr, health); err != nil {
		return nil, err
	}
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if err := start(metricsAddr, metrics); err != nil {
		for _, s := range servers {
			_ = s.Close()
		}
		return nil, err
	}
	return servers, nil
}
