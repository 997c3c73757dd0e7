// Package controller is what every Strait controller runs on: the Manager (shared informers,
// cache sync, leader election, events, metrics and health endpoints) and the work Loop (a
// rate-limited queue of "namespace/name" keys, workers that call the reconciler, retries
// with backoff, Prometheus metrics per reconciler). Strait keeps this small layer on
// client-go rather than controller-runtime; docs/architecture.md says why.
package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Metrics are the reconcilers' metrics of one agent.
type Metrics struct {
	reconciles       *prometheus.CounterVec
	reconcileSeconds *prometheus.HistogramVec
	queueDepth       *prometheus.GaugeVec
	errors           *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_reconcile_total",
			Help: "Reconciliations by reconciler and result (success, conflict, error).",
		}, []string{"reconciler", "result"}),
		reconcileSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "strait_reconcile_duration_seconds",
			Help:    "Time spent in one reconciliation.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"reconciler"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "strait_queue_depth",
			Help: "Keys waiting in a reconciler's queue.",
		}, []string{"reconciler"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_reconcile_errors_total",
			Help: "Failed reconciliations by reconciler and the kind of API error (conflict, not_found, forbidden, timeout, unavailable, invalid, other).",
		}, []string{"reconciler", "reason"}),
	}
	// Managers that share a registry (the federation status writer inside the agent) share
	// the collectors too.
	var err error
	if m.reconciles, err = register(reg, m.reconciles); err != nil {
		return nil, err
	}
	if m.reconcileSeconds, err = register(reg, m.reconcileSeconds); err != nil {
		return nil, err
	}
	if m.queueDepth, err = register(reg, m.queueDepth); err != nil {
		return nil, err
	}
	if m.errors, err = register(reg, m.errors); err != nil {
		return nil, err
	}
	return m, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// Reconciler brings the world in line for one key.
type Reconciler interface {
	Reconcile(ctx context.Context, key string) error
}

// maxRetryDelay caps the backoff of a failing key. It is short because the usual failure
// is an API server that is briefly away (a broker restart); once it is back, changes should
// flow within seconds.
const maxRetryDelay = 5 * time.Second

// Loop is a queue of keys and the workers that reconcile them.
type Loop struct {
	name    string
	metrics *Metrics
	queue   workqueue.TypedRateLimitingInterface[string]
	manager *Manager
}

// New returns a loop named for its reconciler.
func New(name string, m *Metrics) *Loop {
	return &Loop{
		name:    name,
		metrics: m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, maxRetryDelay),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: name}),
	}
}

// Enqueue adds a key.
func (l *Loop) Enqueue(key string) { l.queue.Add(key) }

// EnqueueAfter adds a key after a delay, for state that changes with time (a lease that
// will expire).
func (l *Loop) EnqueueAfter(key string, after time.Duration) { l.queue.AddAfter(key, after) }

// Handler returns informer event handlers that enqueue the keys keysOf returns for an object.
func (l *Loop) Handler(keysOf func(obj any) []string) cache.ResourceEventHandler {
	add := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		for _, k := range keysOf(obj) {
			l.Enqueue(k)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    add,
		UpdateFunc: func(_, obj any) { add(obj) },
		DeleteFunc: add,
	}
}

// EventSource is what a loop watches: an informer, or anything that takes handlers like one
// (the broker cache's kinds).
type EventSource interface {
	AddEventHandler(handler cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error)
}

// Watch enqueues, for every event of informer, the keys keysOf returns for the object. The
// informer must be one the manager starts (Manager.AddInformers, AddSyncer).
func (l *Loop) Watch(informer EventSource, keysOf func(obj any) []string) {
	if _, err := informer.AddEventHandler(l.Handler(keysOf)); err != nil && l.manager != nil {
		l.manager.fail(fmt.Errorf("loop %s: watching: %w", l.name, err))
	}
}

// Name is the loop's name.
func (l *Loop) Name() string { return l.name }

// Run works the queue with n workers until ctx ends.
func (l *Loop) Run(ctx context.Context, n int, r Reconciler) {
	logger := klog.FromContext(ctx).WithValues("reconciler", l.name)
	ctx = klog.NewContext(ctx, logger)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l.next(ctx, r) {
			}
		}()
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

func (l *Loop) next(ctx context.Context, r Reconciler) bool {
	key, shutdown := l.queue.Get()
	if shutdown {
		return false
	}
	defer l.queue.Done(key)
	l.metrics.queueDepth.WithLabelValues(l.name).Set(float64(l.queue.Len()))
	start := time.Now()
	err := r.Reconcile(ctx, key)
	l.metrics.reconcileSeconds.WithLabelValues(l.name).Observe(time.Since(start).Seconds())
	if err != nil {
		l.metrics.errors.WithLabelValues(l.name, ErrorReason(err)).Inc()
		if apierrors.IsConflict(err) {
			// Another writer (or our own earlier write, not yet in the cache) changed the
			// object: not a failure, the retry reads the newer version.
			l.metrics.reconciles.WithLabelValues(l.name, "conflict").Inc()
			klog.FromContext(ctx).V(2).Info("Reconcile hit a write conflict; retrying", "key", key, "err", err)
			l.queue.AddRateLimited(key)
			return true
		}
		l.metrics.reconciles.WithLabelValues(l.name, "error").Inc()
		klog.FromContext(ctx).Error(err, "Reconcile failed; will retry", "key", key)
		l.queue.AddRateLimited(key)
		return true
	}
	l.metrics.reconciles.WithLabelValues(l.name, "success").Inc()
	l.queue.Forget(key)
	return true
}

// ObjectKey is the keysOf of a loop whose keys are its objects' own "namespace/name".
func ObjectKey(obj any) []string {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return []string{d.Key}
	}
	k, err := cache.MetaNamespaceKeyFunc(obj)
	if err != nil {
		return nil
	}
	return []string{k}
}

// LabelKey is the keysOf of a loop keyed by a Service that objects name in a label (as
// kubernetes.io/service-name on EndpointSlices): "namespace/<label value>".
func LabelKey(label string) func(obj any) []string {
	return func(obj any) []string {
		m, ok := obj.(metav1.Object)
		if !ok || m.GetLabels()[label] == "" {
			return nil
		}
		return []string{m.GetNamespace() + "/" + m.GetLabels()[label]}
	}
}
