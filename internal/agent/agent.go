// Package agent assembles the Strait agent that runs once per member cluster: it finds its
// cluster ID and broker credentials, builds the clients and shared informers of its cluster
// and of the broker, and hands them to the reconcilers' Setup functions (setups); a
// controller.Manager runs them while this replica holds the leader lease. Which reconcilers
// make up the agent is the list below and nothing else.
//
// Every replica renews the member's heartbeat lease on the broker, leader or not, and a
// replica that loses the leader lease goes back to standby instead of exiting: a member
// whose own API server is down (so no leader can be elected) still serves traffic, and the
// other members must not withdraw it.
package agent

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/strait-io/strait/internal/agent/clusterview"
	"github.com/strait-io/strait/internal/agent/credential"
	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/exporter"
	"github.com/strait-io/strait/internal/agent/externalservice"
	agentfederation "github.com/strait-io/strait/internal/agent/federation"
	"github.com/strait-io/strait/internal/agent/global"
	"github.com/strait-io/strait/internal/agent/heartbeat"
	"github.com/strait-io/strait/internal/agent/importer"
	"github.com/strait-io/strait/internal/agent/inventory"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/brokercache"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/externalservice/probe"
	"github.com/strait-io/strait/internal/kubeconfig"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
	"github.com/strait-io/strait/internal/records"
)

// Config configures one agent.
type Config struct {
	// Kubeconfig and Context select the member cluster; both empty means in-cluster config.
	Kubeconfig string
	Context    string
	// ClusterID overrides the ClusterProperty cluster.clusterset.k8s.io written by join.
	ClusterID string
	// MetricsAddress and HealthAddress are where /metrics and /healthz, /readyz are served;
	// "0" disables.
	MetricsAddress string
	HealthAddress  string
	// LeaderElect makes replicas share one lease; only the leader reconciles.
	LeaderElect bool
	// Identity is this replica's name in the leader lease; default hostname_pid.
	Identity          string
	HeartbeatInterval time.Duration
	// GracePeriod: a member of which no lease renewal was observed for its lease duration
	// plus this long is withdrawn from imports, global Services and federation.
	GracePeriod time.Duration
	Workers     int
	// Prober runs the health checks of ExternalService targets; the zero value dials
	// directly. The lab sets one that dials inside the cluster's network namespace.
	// Prober.AllowCIDRs (--allow-health-check-cidrs) lets checks reach loopback,
	// link-local and metadata addresses, which they refuse otherwise.
	Prober probe.Prober
	// Federation configures federated Services (namespace and name of the federation).
	Federation agentfederation.Config
	// AllowInsecureBroker accepts a stored broker credential that skips TLS verification
	// (labs only; strait join stores one only with --allow-insecure-broker).
	AllowInsecureBroker bool
	// BrokerServer, when set, is the broker URL the agent uses instead of the stored
	// credential's (same token and CA).
	BrokerServer string
	// WrapTransport, when set, wraps the transport of every client the agent makes (member
	// and broker), as rest.Config.WrapTransport does: for tracing, or for the fault tests
	// that inject API errors. Not a flag.
	WrapTransport func(http.RoundTripper) http.RoundTripper
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MetricsAddress:    ":9090",
		HealthAddress:     ":8081",
		LeaderElect:       true,
		HeartbeatInterval: liveness.DefaultHeartbeatInterval,
		GracePeriod:       liveness.DefaultGracePeriod,
		Workers:           4,
		Federation:        agentfederation.DefaultConfig(),
	}
}

// AddFlags registers the agent's flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig of the member cluster (default: in-cluster, or $KUBECONFIG)")
	fs.StringVar(&c.Context, "context", c.Context, "kubeconfig context of the member cluster")
	fs.StringVar(&c.ClusterID, "cluster-id", c.ClusterID, "cluster ID (default: the ClusterProperty cluster.clusterset.k8s.io that strait join wrote)")
	fs.StringVar(&c.MetricsAddress, "metrics-bind-address", c.MetricsAddress, "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&c.HealthAddress, "health-probe-bind-address", c.HealthAddress, "address of /healthz and /readyz; 0 disables them")
	fs.BoolVar(&c.LeaderElect, "leader-elect", c.LeaderElect, "elect a leader among replicas through a Lease in "+clusterset.SystemNamespace)
	fs.StringVar(&c.Identity, "identity", c.Identity, "this replica's identity in the leader lease (default: hostname_pid)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "how often the member lease on the broker is renewed")
	fs.DurationVar(&c.GracePeriod, "member-grace-period", c.GracePeriod, "how long after its lease duration (3 heartbeats) a member whose lease renewals stopped is withdrawn from imports, global Services and federation")
	fs.IntVar(&c.Workers, "workers", c.Workers, "reconcile workers per reconciler")
	fs.BoolVar(&c.AllowInsecureBroker, "allow-insecure-broker", c.AllowInsecureBroker, "accept a stored broker credential that skips TLS verification (labs only)")
	fs.StringVar(&c.BrokerServer, "broker-server", c.BrokerServer, "reach the broker at this URL instead of the one strait join stored (same credential), e.g. when this cluster reaches the broker by another address than the others")
	fs.Var(probe.CIDRs{P: &c.Prober.AllowCIDRs}, "allow-health-check-cidrs", "ranges ExternalService health checks may reach although they are loopback, link-local or cloud metadata addresses (refused otherwise), comma-separated, e.g. 127.0.0.0/8")
	c.Federation.AddFlags(fs)
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.HeartbeatInterval < time.Second {
		return fmt.Errorf("--heartbeat-interval %s is too short; use at least 1s", c.HeartbeatInterval)
	}
	if c.GracePeriod < 0 {
		return fmt.Errorf("--member-grace-period %s must not be negative", c.GracePeriod)
	}
	if c.Workers < 1 {
		return fmt.Errorf("--workers %d: at least 1", c.Workers)
	}
	if c.BrokerServer != "" {
		if err := clusterset.ValidateBrokerServer(c.BrokerServer); err != nil {
			return fmt.Errorf("--broker-server: %w", err)
		}
	}
	if err := c.Federation.Validate(); err != nil {
		return err
	}
	return nil
}

// restConfig loads the member's client configuration (in-cluster when no kubeconfig or
// context is given inside a pod), with the clusterset's raised rate limits.
func (c *Config) restConfig() (*rest.Config, error) {
	if c.Kubeconfig == "" && c.Context == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("member cluster client configuration: %w", err)
		}
		return clusterset.WithRateLimits(cfg), nil
	}
	cfg, _, err := kubeconfig.RESTConfig(kubeconfig.Rules(c.Kubeconfig), c.Context)
	return cfg, err
}

// setups are the agent's reconcilers, in the order they are set up. Adding a reconciler is
// one package with a Setup function and one line here.
var setups = []struct {
	name  string
	setup func(*env.Env) error
}{
	{"export", exporter.Setup},
	{"import", importer.Setup},
	{"global services", global.Setup},
	{"external services", externalservice.Setup},
	{"federation", agentfederation.Setup},
	{"cluster view", clusterview.Setup},
	{"inventory metrics", inventory.Setup},
}

// Agent is a configured agent.
type Agent struct {
	cfg       Config
	ClusterID string

	member, broker *env.Cluster
	credential     *credential.Holder
	registry       *prometheus.Registry
	// term is the manager of the current leadership term, nil on standby; tracker its
	// liveness tracker.
	term    atomic.Pointer[controller.Manager]
	tracker atomic.Pointer[liveness.Tracker]
}

// New connects to the member cluster, finds its cluster ID and broker credentials.
func New(ctx context.Context, cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Identity == "" {
		host, _ := os.Hostname()
		cfg.Identity = fmt.Sprintf("%s_%d", host, os.Getpid())
	}
	rc, err := cfg.restConfig()
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, registry: prometheus.NewRegistry()}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		clusterview.Collector(a.tracker.Load))
	if a.member, err = newCluster(rc, cfg.WrapTransport); err != nil {
		return nil, err
	}
	a.ClusterID = cfg.ClusterID
	if a.ClusterID == "" {
		dyn, err := dynamic.NewForConfig(rc)
		if err != nil {
			return nil, err
		}
		if a.ClusterID, err = clusterset.LocalClusterID(ctx, dyn); err != nil {
			return nil, fmt.Errorf("finding this cluster's ID (has it joined? run `strait join`): %w", err)
		}
	}
	if a.credential, err = credential.Load(ctx, a.member.Kube, a.ClusterID, cfg.AllowInsecureBroker); err != nil {
		recordRefusal(ctx, a.member.Kube, err)
		return nil, err
	}
	brc := a.credential.RESTConfig()
	if cfg.BrokerServer != "" {
		brc.Host = cfg.BrokerServer
	}
	if a.broker, err = newCluster(brc, cfg.WrapTransport); err != nil {
		return nil, err
	}
	return a, nil
}

// recordRefusal records an Event on the broker Secret when the stored credential is
// refused, so `kubectl describe` shows why the agent does not start.
func recordRefusal(ctx context.Context, member kubernetes.Interface, err error) {
	recordEvent(ctx, member, corev1.EventTypeWarning, credential.EventRefused, err.Error())
}

// recordEvent records an Event on the broker Secret strait-system/strait-broker.
func recordEvent(ctx context.Context, member kubernetes.Interface, typ, reason, msg string) {
	now := metav1.Now()
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: clusterset.BrokerSecretName + ".", Namespace: clusterset.SystemNamespace},
		InvolvedObject: corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: clusterset.SystemNamespace, Name: clusterset.BrokerSecretName},
		Reason:         reason, Message: msg, Type: typ,
		Source: corev1.EventSource{Component: "strait-agent"}, FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}
	if _, cerr := member.CoreV1().Events(clusterset.SystemNamespace).Create(ctx, ev, metav1.CreateOptions{}); cerr != nil {
		klog.FromContext(ctx).V(2).Info("Recording the credential refusal", "err", cerr)
	}
}

func newCluster(rc *rest.Config, wrap func(http.RoundTripper) http.RoundTripper) (*env.Cluster, error) {
	rc = rest.CopyConfig(rc)
	// The field manager of everything the agent writes.
	rc.UserAgent = "strait-agent"
	if wrap != nil {
		rc.Wrap(wrap)
	}
	c := &env.Cluster{Config: rc}
	var err error
	if c.Kube, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if c.MCS, err = mcsclient.NewForConfig(rc); err != nil {
		return nil, err
	}
	if c.Control, err = kubernetes.NewForConfig(leasewatch.ControlConfig(rc)); err != nil {
		return nil, err
	}
	return c, nil
}

// stripManagedFields drops managed fields from cached objects: they are never read and are
// a large part of every object.
func stripManagedFields(obj any) (any, error) {
	if m, err := apimeta.Accessor(obj); err == nil {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// slimMember is the transform of the member's informers: managed fields dropped, and the
// endpoints of slices the agent wrote from the broker's records replaced by their digest
// (slicesync.Slim): the broker cache holds those endpoints already.
func slimMember(obj any) (any, error) {
	obj, _ = stripManagedFields(obj)
	if s, ok := obj.(*discoveryv1.EndpointSlice); ok && fromRecords(s) {
		slicesync.Slim(s)
	}
	return obj, nil
}

// fromRecords reports whether the agent wrote a slice from the broker's records: an
// imported or global slice, or, where the member is also the broker, a record itself.
// The exporter, the federation reporter and the global publisher skip these slices; the
// importers compare them with slicesync.Same and read only their labels otherwise.
func fromRecords(s *discoveryv1.EndpointSlice) bool {
	if s.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
		return false
	}
	if _, isMember := clusterset.ClusterIDFromNamespace(s.Namespace); isMember {
		return true
	}
	return s.Labels[discoveryv1.LabelManagedBy] == records.EndpointSliceManagedBy
}

// Run serves health and metrics, renews the member's heartbeat, and reconciles while it
// holds the leader lease, until ctx ends. Losing the lease, or a term that fails, returns
// the replica to standby; it campaigns again after a pause.
func (a *Agent) Run(ctx context.Context) error {
	ctx = klog.NewContext(ctx, klog.FromContext(ctx).WithValues("cluster", a.ClusterID))
	logger := klog.FromContext(ctx)
	servers, err := controller.Serve(a.cfg.HealthAddress, a.cfg.MetricsAddress, a.registry, a.ready)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	go heartbeat.Run(ctx, a.broker.Control, a.ClusterID, a.cfg.HeartbeatInterval, a)
	renewer := &credential.Renewer{Holder: a.credential, Member: a.member.Kube, Broker: a.broker.Kube,
		Event: func(typ, reason, msg string) { recordEvent(ctx, a.member.Kube, typ, reason, msg) }}
	go renewer.Run(ctx, time.Minute)
	for {
		err := a.lead(ctx)
		if ctx.Err() != nil {
			return nil
		}
		logger.Error(err, "Leadership term ended; standing by", "retryIn", termRetry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(termRetry):
		}
	}
}

// termRetry is the pause between leadership terms.
const termRetry = 2 * time.Second

// lead campaigns for the leader lease and reconciles while holding it: one term, with
// informers, tracker and loops of its own, so a new term starts from a full list and
// withdraws no one before it has watched a full lease period.
func (a *Agent) lead(ctx context.Context) error {
	mo := controller.Options{Name: "strait-agent", Registry: a.registry, Workers: a.cfg.Workers}
	if a.cfg.LeaderElect {
		mo.LeaderElection = &controller.LeaderElection{
			Client: a.member.Kube.CoordinationV1(), Namespace: clusterset.SystemNamespace, Name: "strait-agent", Identity: a.cfg.Identity,
		}
	}
	m, err := controller.NewManager(mo)
	if err != nil {
		return err
	}
	e, err := a.env(m)
	if err != nil {
		return err
	}
	for _, s := range setups {
		if err := s.setup(e); err != nil {
			return fmt.Errorf("setting up %s: %w", s.name, err)
		}
	}
	a.term.Store(m)
	a.tracker.Store(e.Liveness)
	defer func() {
		a.term.Store(nil)
		a.tracker.Store(nil)
	}()
	return m.Start(ctx)
}

// ready answers /readyz: the current term's readiness; a standby replica is ready.
func (a *Agent) ready() error {
	if m := a.term.Load(); m != nil {
		return m.Ready()
	}
	return nil
}

// BrokerReachable and BrokerUnreachable take the heartbeat's outcome to the current term's
// tracker.
func (a *Agent) BrokerReachable() {
	if t := a.tracker.Load(); t != nil {
		t.BrokerReachable()
	}
}

// BrokerUnreachable: see BrokerReachable.
func (a *Agent) BrokerUnreachable(err error) {
	if t := a.tracker.Load(); t != nil {
		t.BrokerUnreachable(err)
	}
}

// env builds what every reconciler is set up with: fresh informer factories (a new leader
// starts from a full list), the liveness tracker fed from the broker, the event recorder.
func (a *Agent) env(m *controller.Manager) (*env.Env, error) {
	member, broker := *a.member, *a.broker
	member.Informers = informers.NewSharedInformerFactoryWithOptions(member.Kube, 0, informers.WithTransform(slimMember))
	member.MCSInformers = mcsinformers.NewSharedInformerFactoryWithOptions(member.MCS, 0, mcsinformers.WithTransform(stripManagedFields))
	m.AddInformers(member.Informers)
	m.AddInformers(member.MCSInformers)
	var err error
	member.Slices, err = env.IndexedSlices(member.Informers.Discovery().V1().EndpointSlices().Informer(), discoveryv1.LabelServiceName)
	if err != nil {
		return nil, err
	}
	records := brokercache.New(broker.Kube, broker.MCS)
	m.AddSyncer(records)
	e := &env.Env{
		Manager: m, ClusterID: a.ClusterID, MemberNamespace: clusterset.MemberNamespace(a.ClusterID),
		Member: &member, Broker: &broker, Records: records,
		Liveness: liveness.NewTracker(liveness.Config{Grace: a.cfg.GracePeriod}, nil),
		Recorder: m.EventRecorder(member.Kube),
		Settings: env.Settings{
			HeartbeatInterval:      a.cfg.HeartbeatInterval,
			Federation:             a.cfg.Federation.Config,
			FederationBrokerStatus: a.cfg.Federation.BrokerStatus,
			Prober:                 a.cfg.Prober,
			Identity:               a.cfg.Identity,
		},
	}
	e.Settings.Federation.Grace = a.cfg.GracePeriod
	// Ready means caches synced (the manager checks that) and the broker answering: a
	// rollout waits for an agent that can see the clusterset.
	m.AddReadyCheck("broker", func() error {
		if b := e.Liveness.View().Broker; !b.Reachable {
			return fmt.Errorf("the broker is unreachable since %s: %s", b.Since.UTC().Format(time.RFC3339), b.Error)
		}
		return nil
	})
	if err := records.SetWatchErrorHandler(leasewatch.WatchErrors(e.Liveness)); err != nil {
		return nil, err
	}
	leasewatch.Setup(m, e.Liveness, leasewatch.Options{
		Leases: records.Leases, Memberships: records.Registry,
		Ping:     leasewatch.Readyz(broker.Kube.Discovery().RESTClient()),
		OnReturn: leasewatch.RestartOnReturn(m),
	})
	return e, nil
}
