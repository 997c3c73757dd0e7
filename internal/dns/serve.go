package dns

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/livenessmetrics"
)

// ServeConfig is one strait dns: the authoritative server, the source it answers from and
// the publishers that copy its records elsewhere. `strait dns serve` and the lab's
// in-process DNS server both run one with Serve.
type ServeConfig struct {
	Server     server.Config
	Source     Source
	Publishers []Publisher
	// Interval between reads of a source that does not notify changes; 0 means
	// DefaultInterval.
	Interval time.Duration
	// AllowEmpty: an empty list from the source is real and empties the zone.
	AllowEmpty bool
	// MetricsAddress, when set and not "0", serves the server's metrics (and the Go
	// runtime's) on /metrics there.
	MetricsAddress string
	// HealthAddress, when set and not "0", serves /healthz there, and /readyz, which
	// answers once the services were read (Runner.Ready).
	HealthAddress string
	// Collectors are served with the server's metrics: the broker source's liveness view
	// (BrokerSource's second result).
	Collectors []prometheus.Collector
	// Bind calls start, which opens every socket of the server before it returns, and
	// returns its error; nil calls start directly. The lab passes a function that runs start
	// inside its router's network namespace, so the sockets live there.
	Bind func(start func() error) error
}

// Serve starts the server, keeps it in line with the source (and the publishers with it)
// and returns when ctx ends, or earlier with the error that stopped the server. A failing
// source never stops it: the runner logs the error and serves the last good records.
func Serve(ctx context.Context, cfg ServeConfig) error {
	srv, err := server.New(cfg.Server)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := func() error { return srv.Start(ctx) }
	if cfg.Bind != nil {
		err = cfg.Bind(start)
	} else {
		err = start()
	}
	if err != nil {
		return err
	}
	logger := klog.FromContext(ctx)
	metrics, err := NewRunnerMetrics(srv.Metrics())
	if err != nil {
		return err
	}
	for _, c := range cfg.Collectors {
		if err := srv.Metrics().Register(c); err != nil {
			return err
		}
	}
	r := &Runner{Source: cfg.Source, Server: srv, Publishers: cfg.Publishers, Interval: cfg.Interval, AllowEmpty: cfg.AllowEmpty, Metrics: metrics}
	runtime := prometheus.NewRegistry()
	runtime.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	servers, err := controller.Serve(cfg.HealthAddress, cfg.MetricsAddress, prometheus.Gatherers{srv.Metrics(), runtime}, r.Ready)
	if err != nil {
		return fmt.Errorf("metrics and health: %w", err)
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	if cfg.MetricsAddress != "" && cfg.MetricsAddress != "0" {
		logger.Info("Serving metrics", "address", cfg.MetricsAddress, "path", "/metrics")
	}
	for i, a := range srv.Addrs() {
		logger.Info("Serving DNS", "domain", cfg.Server.Zone.Domain, "address", a.String(), "cluster", cfg.Server.Listeners[i].Cluster)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- r.Run(ctx) }()
	waitErr := make(chan error, 1)
	go func() { waitErr <- srv.Wait() }()
	// Whichever ends first stops the other, so neither outlives Serve.
	select {
	case err = <-waitErr:
		cancel()
		<-runErr
	case err = <-runErr:
		cancel()
		<-waitErr
	}
	return err
}

// BrokerSource returns the broker-backed source of federation fed, its caches synced (it
// fails if ctx ends first), and completes cfg for it: the members' locations, so a member
// without a shard still gets the CNAME to its own zone or region for a short name, and the
// federation's short-name zone, so member clusters forwarding <fed>. get NXDOMAIN rather than
// REFUSED before the federation has services. A service the zone would reject is left out of
// what the source lists, so one bad name never blocks the others. The source's informers run
// on a controller manager of their own until ctx ends. The collector reports the source's
// view of the broker and the members (package livenessmetrics), for ServeConfig.Collectors.
func BrokerSource(ctx context.Context, broker kubernetes.Interface, brokerMCS mcsclient.Interface, fed federation.Config, cfg *server.Config) (*federation.Source, prometheus.Collector, error) {
	src, err := federation.StartSource(ctx, "strait-dns", broker, brokerMCS, fed)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the broker: %w", err)
	}
	src.Validate = cfg.Zone.ValidateService
	locations, err := src.Locations()
	if err != nil {
		return nil, nil, err
	}
	cfg.Clusters = append(cfg.Clusters, locations...)
	cfg.Zone.Federations = append(cfg.Zone.Federations, fed.Name)
	return src, livenessmetrics.Collector(func() (liveness.View, bool) { return src.Liveness(), true }), nil
}
