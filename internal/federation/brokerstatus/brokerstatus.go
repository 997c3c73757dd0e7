// Package brokerstatus writes the status of federated Services on the broker: the union of
// the shards' ingress as status.loadBalancer.ingress, and conditions saying whether the
// selection is valid and, per placed cluster, whether its shard exists and is healthy.
//
// Members cannot write the federation namespace (RBAC keeps each member to its own broker
// namespace); they report shards as records there, and this controller, which needs update
// rights on services/status in the federation namespace, aggregates them. It runs in the
// agent of the member cluster that hosts the broker (the usual setup, and the lab's), or as
// `strait federation controller` against a dedicated broker. Writers elect a leader through
// a Lease in the federation namespace, so running both is safe.
package brokerstatus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
)

// LeaseName is the leader lease of status writers, in the federation namespace.
const LeaseName = "strait-federation-status"

// Options configure the status writer.
type Options struct {
	Config federation.Config
	// Broker and BrokerMCS are clients of the broker allowed to read what federation.Cache
	// reads, to update services/status in the federation namespace, to create events
	// there, to create the federation namespace and, with Identity, to hold LeaseName.
	Broker    kubernetes.Interface
	BrokerMCS mcsclient.Interface
	// Ping reaches the broker for the liveness tracker; nil never probes.
	Ping leasewatch.Ping
	// Identity, when set, makes the writer run only while it holds LeaseName.
	Identity string
	// Component names the writer in events and logs.
	Component string
	// Registry takes the writer's metrics (the agent passes its own); nil makes one, with
	// the Go runtime's and the process's metrics.
	Registry *prometheus.Registry
	// MetricsAddress and HealthAddress serve the writer's metrics (/metrics) and health
	// (/healthz, /readyz); "" or "0" serves nothing.
	MetricsAddress, HealthAddress string
	Workers                       int
}

// Reconciler writes the status of one federated Service.
type Reconciler struct {
	Namespace string
	Cache     interface {
		Service(name string) (*corev1.Service, error)
		Snapshot() (*federation.Snapshot, error)
	}
	Client   kubernetes.Interface
	Recorder record.EventRecorder
	Now      func() time.Time
}

// Reconcile aggregates the shards of one federated Service into its status.
func (r *Reconciler) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || ns != r.Namespace {
		return nil
	}
	svc, err := r.Cache.Service(name)
	if err != nil || svc == nil || svc.DeletionTimestamp != nil {
		return err
	}
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	snap, err := r.Cache.Snapshot()
	if err != nil {
		return err
	}
	st := federation.Aggregate(snap, svc)
	update := svc.DeepCopy()
	before := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ConditionFederated)
	if !federation.ApplyStatus(update, st, now()) {
		return nil
	}
	if _, err := r.Client.CoreV1().Services(ns).UpdateStatus(ctx, update, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			// The cache is behind; the newer version's event queues the key again.
			return nil
		}
		return fmt.Errorf("updating the status of federated Service %s: %w", key, err)
	}
	after := apimeta.FindStatusCondition(update.Status.Conditions, federation.ConditionFederated)
	if r.Recorder != nil && after != nil && after.Status == metav1.ConditionFalse &&
		(before == nil || before.Status != after.Status || before.Reason != after.Reason || before.Message != after.Message) {
		r.Recorder.Event(svc, corev1.EventTypeWarning, after.Reason, after.Message)
	}
	return nil
}

// Run ensures the federation namespace exists on the broker, then writes status until ctx
// ends (while holding the leader lease, with an Identity). Metrics and health are served
// for the whole run, across the managers of successive broker outages.
func Run(ctx context.Context, o Options) error {
	if err := o.Config.Validate(); err != nil {
		return err
	}
	if o.Component == "" {
		o.Component = "strait-federation-status"
	}
	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	mo := controller.Options{Name: o.Component, Registry: reg, Workers: o.Workers}
	if o.Identity != "" {
		mo.LeaderElection = &controller.LeaderElection{
			Client: o.Broker.CoordinationV1(), Namespace: o.Config.Namespace, Name: LeaseName, Identity: o.Identity,
		}
	}
	var current atomic.Pointer[controller.Manager]
	servers, err := controller.Serve(o.HealthAddress, o.MetricsAddress, reg, func() error {
		if m := current.Load(); m != nil {
			return m.Ready()
		}
		return errors.New("not started")
	})
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			_ = s.Close()
		}
	}()
	logger := klog.FromContext(ctx).WithValues("federationNamespace", o.Config.Namespace)
	ctx = klog.NewContext(ctx, logger)
	if err := ensureNamespace(ctx, o.Broker, o.Config.Namespace); err != nil {
		return err
	}
	// A run ends when the broker answers again after an outage: the next one watches it
	// with fresh informers (leasewatch.ErrBrokerReturned).
	for {
		m, err := controller.NewManager(mo)
		if err != nil {
			return err
		}
		Setup(m, o.Broker, o.BrokerMCS, o.Config, o.Ping)
		current.Store(m)
		err = m.Start(ctx)
		if ctx.Err() != nil || !errors.Is(err, leasewatch.ErrBrokerReturned) {
			return err
		}
		logger.Info("Reading the broker afresh", "reason", err)
	}
}

// Setup declares the status writer's informers and loop on m.
func Setup(m *controller.Manager, broker kubernetes.Interface, mcs mcsclient.Interface, cfg federation.Config, ping leasewatch.Ping) {
	c := federation.NewCache(m, broker, mcs, cfg, ping, leasewatch.RestartOnReturn(m))
	r := &Reconciler{Namespace: cfg.Namespace, Cache: c, Client: broker, Recorder: m.EventRecorder(broker)}
	loop := m.NewLoop("federation-status", r)
	recordKey := func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			if k, ok := federation.RecordKey(o, cfg.Name); ok {
				return []string{k}
			}
		}
		return nil
	}
	// A member joining or leaving, or a liveness verdict changing, can change every Service.
	all := func(any) []string {
		var keys []string
		for _, n := range c.ServiceNames() {
			keys = append(keys, cfg.Namespace+"/"+n)
		}
		return keys
	}
	m.Collect(federation.Collector{Snapshot: c.Snapshot})
	loop.Watch(c.ServiceInformer, controller.ObjectKey)
	loop.Watch(c.Records.Slices, recordKey)
	loop.Watch(c.Records.Registry, all)
	c.Liveness.OnChange(func(liveness.View, []liveness.Change) {
		for _, k := range all(nil) {
			loop.Enqueue(k)
		}
	})
}

// ensureNamespace creates the federation namespace on the broker, so users can apply
// federated Services right away. It is never deleted by Strait.
func ensureNamespace(ctx context.Context, broker kubernetes.Interface, name string) error {
	_, err := broker.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading the federation namespace %s on the broker: %w", name, err)
	}
	_, err = broker.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: name, Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating the federation namespace %s on the broker: %w", name, err)
	}
	return nil
}
