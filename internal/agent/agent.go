// Package agent wires the Strait agent that runs once per member cluster: it finds its
// cluster ID and broker credentials, takes the leader lease so two replicas are safe, starts
// the informers on its cluster and on the broker, runs the export and import reconcilers and
// the broker heartbeat, and serves health and Prometheus metrics.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/strait-io/strait/internal/agent/controller"
	"github.com/strait-io/strait/internal/agent/exporter"
	"github.com/strait-io/strait/internal/agent/externalservice"
	agentfederation "github.com/strait-io/strait/internal/agent/federation"
	"github.com/strait-io/strait/internal/agent/global"
	"github.com/strait-io/strait/internal/agent/heartbeat"
	"github.com/strait-io/strait/internal/agent/importer"
	"github.com/strait-io/strait/internal/agent/records"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/externalservice/esclient"
	"github.com/strait-io/strait/internal/kubeconfig"
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
	// GracePeriod: a member whose lease expired this long ago has its global Service
	// endpoints withdrawn.
	GracePeriod time.Duration
	Workers     int
	// Prober runs the health checks of ExternalService targets; nil dials directly. The lab
	// sets one that dials inside the cluster's network namespace.
	Prober externalservice.Prober
	// Federation configures federated Services (namespace and name of the federation).
	Federation agentfederation.Config
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MetricsAddress:    ":9090",
		HealthAddress:     ":8081",
		LeaderElect:       true,
		HeartbeatInterval: 5 * time.Second,
		GracePeriod:       global.DefaultGracePeriod,
		Workers:           4,
		Federation:        agentfederation.DefaultConfig(),
	}
}

// AddFlags registers the agent's flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", c.Kubeconfig, "kubeconfig of the member cluster (default: in-cluster, or $KUBECONFIG)")
	fs.StringVar(&c.Context, "context", c.Context, "kubeconfig context of the member cluster")
	fs.StringVar(&c.ClusterID, "cluster-id", c.ClusterID, "cluster ID (default: the ClusterProperty cluster.clusterset.k8s.io that `strait join` wrote)")
	fs.StringVar(&c.MetricsAddress, "metrics-bind-address", c.MetricsAddress, "address of the Prometheus /metrics endpoint; 0 disables it")
	fs.StringVar(&c.HealthAddress, "health-probe-bind-address", c.HealthAddress, "address of /healthz and /readyz; 0 disables them")
	fs.BoolVar(&c.LeaderElect, "leader-elect", c.LeaderElect, "elect a leader among replicas through a Lease in "+clusterset.SystemNamespace)
	fs.StringVar(&c.Identity, "identity", c.Identity, "this replica's identity in the leader lease (default: hostname_pid)")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", c.HeartbeatInterval, "how often the member lease on the broker is renewed")
	fs.DurationVar(&c.GracePeriod, "member-grace-period", c.GracePeriod, "how long after a member's lease expired its global Service endpoints are withdrawn")
	fs.IntVar(&c.Workers, "workers", c.Workers, "reconcile workers per reconciler")
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

// Agent is a configured agent.
type Agent struct {
	cfg       Config
	ClusterID string

	local     kubernetes.Interface
	localMCS  mcsclient.Interface
	broker    kubernetes.Interface
	brokerMCS mcsclient.Interface
	registry  *prometheus.Registry
	synced    atomic.Bool
	// restConfig is the member's client configuration, for clients of Strait's own API.
	restConfig *rest.Config
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
	a := &Agent{cfg: cfg, registry: prometheus.NewRegistry(), restConfig: rc}
	if a.local, err = kubernetes.NewForConfig(rc); err != nil {
		return nil, err
	}
	if a.localMCS, err = mcsclient.NewForConfig(rc); err != nil {
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
	bc, err := clusterset.BrokerRESTConfig(ctx, a.local)
	if err != nil {
		return nil, fmt.Errorf("reading the broker credentials (has this cluster joined? run `strait join`): %w", err)
	}
	if a.broker, err = kubernetes.NewForConfig(bc); err != nil {
		return nil, err
	}
	if a.brokerMCS, err = mcsclient.NewForConfig(bc); err != nil {
		return nil, err
	}
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return a, nil
}

// Run serves health and metrics, and reconciles while it holds the leader lease. It returns
// when ctx ends, or with an error when leadership is lost (the process should restart).
func (a *Agent) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx).WithValues("cluster", a.ClusterID)
	ctx = klog.NewContext(ctx, logger)
	servers, err := a.serve(ctx)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	if !a.cfg.LeaderElect {
		return a.reconcile(ctx)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: "strait-agent", Namespace: clusterset.SystemNamespace},
		Client:     a.local.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: a.cfg.Identity},
	}
	var runErr error
	lost := errors.New("lost the leader lease")
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leaderelection.RunOrDie(lctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            "strait-agent",
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Leading", "identity", a.cfg.Identity)
				runErr = a.reconcile(ctx)
				cancel()
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil && runErr == nil {
					runErr = lost
				}
			},
		},
	})
	if ctx.Err() != nil {
		return nil
	}
	return runErr
}

// reconcile runs informers, reconcilers and the heartbeat until ctx ends.
func (a *Agent) reconcile(ctx context.Context) error {
	metrics, err := controller.NewMetrics(a.registry)
	if err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return err
		}
	}
	memberNS := clusterset.MemberNamespace(a.ClusterID)
	strait := func(o *metav1.ListOptions) {
		o.LabelSelector = labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue}).String()
	}
	// Managed fields are never read and are a large part of every cached object.
	strip := func(obj any) (any, error) {
		if m, err := apimeta.Accessor(obj); err == nil {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}
	local := informers.NewSharedInformerFactoryWithOptions(a.local, 0, informers.WithTransform(strip))
	localMCS := mcsinformers.NewSharedInformerFactoryWithOptions(a.localMCS, 0, mcsinformers.WithTransform(strip))
	broker := informers.NewSharedInformerFactoryWithOptions(a.broker, 0, informers.WithTweakListOptions(strait), informers.WithTransform(strip))
	brokerMCS := mcsinformers.NewSharedInformerFactoryWithOptions(a.brokerMCS, 0, mcsinformers.WithTweakListOptions(strait), mcsinformers.WithTransform(strip))

	services := local.Core().V1().Services()
	slices := local.Discovery().V1().EndpointSlices()
	namespaces := local.Core().V1().Namespaces()
	nodes := local.Core().V1().Nodes()
	ingresses := local.Networking().V1().Ingresses()
	exports := localMCS.Multicluster().V1beta1().ServiceExports()
	imports := localMCS.Multicluster().V1beta1().ServiceImports()
	recordSIs := brokerMCS.Multicluster().V1beta1().ServiceImports()
	recordSlices := broker.Discovery().V1().EndpointSlices()
	leases := broker.Coordination().V1().Leases()

	exp := &exporter.Exporter{
		ClusterID: a.ClusterID, MemberNamespace: memberNS,
		Local: a.local, LocalMCS: a.localMCS, Broker: a.broker, BrokerMCS: a.brokerMCS,
		Exports: exports.Lister(), Services: services.Lister(), Slices: slices.Lister(), Namespaces: namespaces.Lister(),
		Nodes: nodes.Lister(), Ingresses: ingresses.Lister(),
		Records: recordSIs.Lister(), RecordSlices: recordSlices.Lister(),
	}
	imp := &importer.Importer{
		Local: a.local, LocalMCS: a.localMCS,
		Records: recordSIs.Lister(), RecordSlices: recordSlices.Lister(),
		Namespaces: namespaces.Lister(), Imports: imports.Lister(), Services: services.Lister(), Slices: slices.Lister(),
	}
	exportLoop := controller.New("export", metrics)
	importLoop := controller.New("import", metrics)

	key := func(obj any) []string {
		k, err := cache.MetaNamespaceKeyFunc(obj)
		if err != nil {
			return nil
		}
		return []string{k}
	}
	recordKey := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			if k, ok := records.Key(m); ok {
				return []string{k}
			}
		}
		return nil
	}
	// Local objects name their Service by a label: kubernetes.io/service-name on the
	// slices of local Services, multicluster.kubernetes.io/service-name on imported objects.
	labelKey := func(label string) func(obj any) []string {
		return func(obj any) []string {
			m, ok := obj.(metav1.Object)
			if !ok || m.GetLabels()[label] == "" {
				return nil
			}
			return []string{m.GetNamespace() + "/" + m.GetLabels()[label]}
		}
	}
	namespaceKeys := func(obj any) []string {
		m, ok := obj.(metav1.Object)
		if !ok {
			return nil
		}
		var keys []string
		recs, _ := recordSIs.Lister().List(labels.SelectorFromSet(labels.Set{records.LabelServiceNamespace: m.GetName()}))
		for _, r := range recs {
			keys = append(keys, recordKey(r)...)
		}
		return keys
	}
	// exportsOf lists the exports of a namespace ("" for all) that want to be reached a
	// given way (any way if via is nil).
	exportsOf := func(ns string, via *string) []string {
		var keys []string
		list, _ := exports.Lister().ServiceExports(ns).List(labels.Everything())
		for _, e := range list {
			if via == nil || e.Annotations[exporter.AnnotationExportVia] == *via {
				keys = append(keys, e.Namespace+"/"+e.Name)
			}
		}
		return keys
	}
	// Node changes (addresses, readiness) matter to exports through node ports.
	allExports := func(any) []string { return exportsOf(metav1.NamespaceAll, ptr.To(exporter.ViaNodePort)) }
	// Ingress changes matter to the exports through an Ingress host in their namespace.
	ingressExports := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			return exportsOf(m.GetNamespace(), ptr.To(exporter.ViaIngress))
		}
		return nil
	}
	exportNamespaceKeys := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			return exportsOf(m.GetName(), nil)
		}
		return nil
	}

	// Global Services (ClusterMesh style).
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.local.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	publishLoop := controller.New("global-publish", metrics)
	globalLoop := controller.New("global-import", metrics)
	publisher := &global.Publisher{
		ClusterID: a.ClusterID, MemberNamespace: memberNS, Broker: a.broker,
		Services: services.Lister(), Slices: slices.Lister(), RecordSlices: recordSlices.Lister(),
	}
	globalImporter := &global.Importer{
		ClusterID: a.ClusterID, Local: a.local,
		Services: services.Lister(), Slices: slices.Lister(), RecordSlices: recordSlices.Lister(),
		Liveness: global.LeaseLiveness{Leases: leases.Lister(), Grace: a.cfg.GracePeriod},
		Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "strait-agent"}),
		Requeue:  globalLoop.EnqueueAfter,
	}
	globalRecordKey := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			if k, ok := global.RecordKey(m); ok {
				return []string{k}
			}
		}
		return nil
	}
	// A lease renewed or expired changes what every global Service serves.
	allGlobal := func(any) []string {
		var keys []string
		list, _ := services.Lister().List(labels.Everything())
		for _, svc := range list {
			if global.OptionsOf(svc).Global {
				keys = append(keys, svc.Namespace+"/"+svc.Name)
			}
		}
		return keys
	}

	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{services.Informer(), publishLoop.Handler(key)},
		{slices.Informer(), publishLoop.Handler(labelKey(discoveryv1.LabelServiceName))},
		{recordSlices.Informer(), publishLoop.Handler(globalRecordKey)},
		{services.Informer(), globalLoop.Handler(key)},
		{slices.Informer(), globalLoop.Handler(labelKey(discoveryv1.LabelServiceName))},
		{recordSlices.Informer(), globalLoop.Handler(globalRecordKey)},
		{leases.Informer(), globalLoop.Handler(allGlobal)},
		{exports.Informer(), exportLoop.Handler(key)},
		{services.Informer(), exportLoop.Handler(key)},
		{slices.Informer(), exportLoop.Handler(labelKey(discoveryv1.LabelServiceName))},
		{recordSIs.Informer(), exportLoop.Handler(recordKey)},
		{namespaces.Informer(), exportLoop.Handler(exportNamespaceKeys)},
		{nodes.Informer(), exportLoop.Handler(allExports)},
		{ingresses.Informer(), exportLoop.Handler(ingressExports)},
		{recordSIs.Informer(), importLoop.Handler(recordKey)},
		{recordSlices.Informer(), importLoop.Handler(recordKey)},
		{namespaces.Informer(), importLoop.Handler(namespaceKeys)},
		{imports.Informer(), importLoop.Handler(key)},
		{services.Informer(), importLoop.Handler(labelKey(mcsv1beta1.LabelServiceName))},
		// A Service of the same name appearing or going decides where an import through an
		// Ingress host may write its ExternalName Service.
		{services.Informer(), importLoop.Handler(key)},
		{slices.Informer(), importLoop.Handler(labelKey(mcsv1beta1.LabelServiceName))},
	} {
		if _, err := reg.informer.AddEventHandler(reg.handler); err != nil {
			return err
		}
	}
	for _, f := range []interface {
		Start(<-chan struct{})
	}{local, localMCS, broker, brokerMCS} {
		f.Start(ctx.Done())
	}
	// Nothing is reconciled before every cache is complete: a partial list must never look
	// like deletions.
	for name, ok := range map[string]bool{
		"member cluster": allSynced(local.WaitForCacheSync(ctx.Done())),
		"member MCS":     allSynced(localMCS.WaitForCacheSync(ctx.Done())),
		"broker":         allSynced(broker.WaitForCacheSync(ctx.Done())),
		"broker MCS":     allSynced(brokerMCS.WaitForCacheSync(ctx.Done())),
	} {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("caches of the %s did not sync", name)
		}
	}
	a.synced.Store(true)
	klog.FromContext(ctx).Info("Agent running", "memberNamespace", memberNS)

	// --- ExternalServices (strait.io/v1alpha1): outside services under local names. ---
	// Its loop starts once the CRD is served, so a cluster without it runs the rest.
	esLoop := controller.New("externalservice", metrics)
	esClient, err := esclient.New(a.restConfig)
	if err != nil {
		return err
	}
	esInformer := esclient.NewInformer(esClient, metav1.NamespaceAll, 0)
	esReconciler := &externalservice.Reconciler{
		Local: a.local, Status: externalservice.StatusWriterFor(esClient),
		ExternalServices: esclient.NewLister(esInformer.GetIndexer()),
		Services:         services.Lister(), Slices: slices.Lister(),
		Health: externalservice.NewChecker(ctx, a.cfg.Prober, esLoop.Enqueue),
	}
	if esReconciler.Recorder, err = externalservice.NewRecorder(ctx, a.local); err != nil {
		return err
	}
	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		keys     func(obj any) []string
	}{
		{esInformer, key}, {services.Informer(), key}, {slices.Informer(), externalservice.SliceKeys},
	} {
		if _, err := reg.informer.AddEventHandler(esLoop.Handler(reg.keys)); err != nil {
			return err
		}
	}
	go func() {
		if !externalservice.WaitServed(ctx, a.local.Discovery(), 30*time.Second) {
			return
		}
		go esInformer.RunWithContext(ctx)
		if cache.WaitForCacheSync(ctx.Done(), esInformer.HasSynced) {
			esLoop.Run(ctx, a.cfg.Workers, esReconciler)
		}
	}()
	// --- end ExternalServices ---

	// --- Federated Services (member side, and the broker status when this cluster hosts
	// the broker): see internal/agent/federation. ---
	fedCfg := a.cfg.Federation
	fedCfg.Grace = a.cfg.GracePeriod
	go func() {
		err := agentfederation.Run(ctx, agentfederation.Options{
			Config: fedCfg, ClusterID: a.ClusterID, Local: a.local, Broker: a.broker,
			LocalFactory: local, RecordSlices: recordSlices, Metrics: metrics, Workers: a.cfg.Workers,
			Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "strait-agent"}),
			Identity: a.cfg.Identity,
		})
		if err != nil {
			klog.FromContext(ctx).Error(err, "Federated Services stopped")
		}
	}()
	// --- end Federated Services ---

	go heartbeat.Run(ctx, a.broker, a.ClusterID, a.cfg.HeartbeatInterval)
	go exportLoop.Run(ctx, a.cfg.Workers, exp)
	go publishLoop.Run(ctx, a.cfg.Workers, publisher)
	go globalLoop.Run(ctx, a.cfg.Workers, globalImporter)
	importLoop.Run(ctx, a.cfg.Workers, imp)
	return nil
}

func allSynced[K comparable](m map[K]bool) bool {
	for _, ok := range m {
		if !ok {
			return false
		}
	}
	return true
}

// serve starts the health and metrics endpoints.
func (a *Agent) serve(ctx context.Context) ([]*http.Server, error) {
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
		// A standby replica is ready too: it is healthy and waiting for the lease.
		if a.cfg.LeaderElect || a.synced.Load() {
			_, _ = w.Write([]byte("ok"))
			return
		}
		http.Error(w, "caches not synced", http.StatusServiceUnavailable)
	})
	if err := start(a.cfg.HealthAddress, health); err != nil {
		return nil, err
	}
	metrics := http.NewServeMux()
	metrics.Handle("/metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	if err := start(a.cfg.MetricsAddress, metrics); err != nil {
		for _, s := range servers {
			_ = s.Close()
		}
		return nil, err
	}
	return servers, nil
}
