// Package controller is the small work loop every reconciler of the agent runs on: a
// rate-limited queue of "namespace/name" keys, workers that call the reconciler, retries
// with backoff on error, and Prometheus metrics per reconciler.
package controller

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// Metrics are the reconcilers' metrics of one agent.
type Metrics struct {
	reconciles       *prometheus.CounterVec
	reconcileSeconds *prometheus.HistogramVec
	queueDepth       *prometheus.GaugeVec
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		reconciles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "strait_reconcile_total",
			Help: "Reconciliations by reconciler and result (success, error).",
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
	}
	for _, c := range []prometheus.Collector{m.reconciles, m.reconcileSeconds, m.queueDepth} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
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
		l.metrics.reconciles.WithLabelValues(l.name, "error").Inc()
		klog.FromContext(ctx).Error(err, "Reconcile failed; will retry", "key", key)
		l.queue.AddRateLimited(key)
		return true
	}
	l.metrics.reconciles.WithLabelValues(l.name, "success").Inc()
	l.queue.Forget(key)
	return true
}
