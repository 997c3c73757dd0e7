// Package leasewatch feeds a liveness.Tracker from the broker: the members' heartbeat
// Leases and membership records seen by informers, and the broker's reachability seen by a
// prober and by the informers' watch errors. It is the client-go side of package liveness.
package leasewatch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/liveness"
)

// Leases returns informer handlers that record every member heartbeat Lease in t.
func Leases(t *liveness.Tracker) cache.ResourceEventHandler {
	observe := func(obj any, fresh bool) {
		l, ok := obj.(*coordinationv1.Lease)
		if !ok || l.Name != liveness.LeaseName {
			return
		}
		id, ok := clusterset.ClusterIDFromNamespace(l.Namespace)
		if !ok {
			return
		}
		var d time.Duration
		if l.Spec.LeaseDurationSeconds != nil {
			d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
		}
		t.ObserveLease(id, Token(l), d, fresh)
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { observe(obj, !initial) },
		UpdateFunc: func(_, obj any) { observe(obj, true) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if l, ok := obj.(*coordinationv1.Lease); ok && l.Name == liveness.LeaseName {
				if id, ok := clusterset.ClusterIDFromNamespace(l.Namespace); ok {
					t.ForgetLease(id)
				}
			}
		},
	}
}

// Token is what identifies one renewal of a lease. Every write of a member's lease is the
// member's (only it may write its namespace), so the resourceVersion serves; the member's
// renewTime is only a fallback and is never read as a time.
func Token(l *coordinationv1.Lease) string {
	if l.ResourceVersion != "" {
		return l.ResourceVersion
	}
	if l.Spec.RenewTime != nil {
		return l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
	}
	return ""
}

// Memberships returns informer handlers that keep t's membership registry in line with the
// membership records (ConfigMaps of the clusterset namespace) the informer holds. Records
// that do not parse are left out of the registry.
func Memberships(t *liveness.Tracker, informer cache.SharedIndexInformer) cache.ResourceEventHandler {
	sync := func(any) {
		var ids []string
		for _, obj := range informer.GetStore().List() {
			cm, ok := obj.(*corev1.ConfigMap)
			if !ok || !clusterset.IsRegistryRecord(cm) {
				continue
			}
			if m, err := clusterset.MemberFromRegistry(cm); err == nil {
				ids = append(ids, m.ID)
			}
		}
		t.SetMembers(ids)
	}
	return cache.ResourceEventHandlerFuncs{AddFunc: sync, UpdateFunc: func(_, o any) { sync(o) }, DeleteFunc: sync}
}

// WatchErrors returns a watch error handler that records the broker as unreachable.
func WatchErrors(t *liveness.Tracker) cache.WatchErrorHandlerWithContext {
	return func(ctx context.Context, r *cache.Reflector, err error) {
		// An expired resource version or a closed stream is the normal end of a watch, not
		// the broker going away.
		if !errors.Is(err, context.Canceled) && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) &&
			!apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.BrokerUnreachable(fmt.Errorf("watch: %w", err))
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}
}

// Ping is one request to the broker that succeeds only when it answers.
type Ping func(ctx context.Context) error

// Readyz asks the API server's /readyz, which every authenticated client may read. It is
// nil (no probing) for a client without a REST transport, as fake clientsets have.
//
// The probe has a rate limiter of its own: behind the client's shared one, it would wait
// in the queue of the lists that hundreds of informers send when a term starts, time out,
// and report an outage that is only the agent's own throttling.
func Readyz(c rest.Interface) Ping {
	if c == nil || reflect.ValueOf(c).IsNil() {
		return nil
	}
	limiter := flowcontrol.NewTokenBucketRateLimiter(ProbeQPS, ProbeBurst)
	return func(ctx context.Context) error {
		return c.Get().AbsPath("/readyz").Throttle(limiter).Do(ctx).Error()
	}
}

// ProbeQPS and ProbeBurst limit the requests that tell whether the broker answers (the
// readyz probe, the heartbeat): a few a second at most, on a limiter no other request uses.
const (
	ProbeQPS   = 5
	ProbeBurst = 10
)

// ControlConfig returns a copy of cfg with a rate limiter of its own, for the clients of
// the heartbeat and the probe (see Readyz).
func ControlConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = ProbeQPS, ProbeBurst
	c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(ProbeQPS, ProbeBurst)
	return c
}

// Probe pings the broker every interval until ctx ends, and records the answer in t. A
// watch that fails with "connection refused" is retried by client-go without a word, so
// only a request of our own tells that the broker went away and came back.
func Probe(ctx context.Context, t *liveness.Tracker, ping Ping, interval time.Duration, onReturn func(down time.Duration)) {
	logger := klog.FromContext(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	wasUp := true
	var downSince time.Time
	for {
		pctx, cancel := context.WithTimeout(ctx, max(interval, time.Second))
		err := ping(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if wasUp {
				logger.Info("Broker unreachable; withdrawals are frozen", "err", err)
				downSince = time.Now()
			}
			t.BrokerUnreachable(err)
			wasUp = false
		default:
			t.BrokerReachable()
			if !wasUp {
				down := time.Since(downSince)
				logger.Info("Broker reachable again; withdrawals resume after a full lease period", "unreachableFor", down.Round(time.Second))
				if onReturn != nil {
					onReturn(down)
				}
			}
			wasUp = true
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// ErrBrokerReturned ends a manager run (controller.Manager.Stop) when the broker answers
// again after an outage of at least ResyncAfter: the next run watches it with fresh
// informers instead of waiting out client-go's watch backoff, which reaches a minute.
var ErrBrokerReturned = errors.New("the broker answers again after an outage: starting afresh")

// ResyncAfter is the outage length from which a reader starts afresh when the broker
// returns (ErrBrokerReturned).
const ResyncAfter = 5 * time.Second

// RestartOnReturn is an OnReturn that stops m with ErrBrokerReturned after an outage of at
// least ResyncAfter.
func RestartOnReturn(m *controller.Manager) func(time.Duration) {
	return func(down time.Duration) {
		if down >= ResyncAfter {
			m.Stop(fmt.Errorf("%w (unreachable for %s)", ErrBrokerReturned, down.Round(time.Second)))
		}
	}
}

// Options of Setup.
type Options struct {
	// Leases and Memberships are broker informers of the members' heartbeat Leases and of
	// the membership registry (other objects are ignored); Memberships may be nil.
	Leases      controller.EventSource
	Memberships cache.SharedIndexInformer
	// Broker lists every broker informer of the component, whose watch errors mark the
	// broker unreachable.
	Broker []cache.SharedIndexInformer
	// Ping reaches the broker; nil never probes (tests with fake clients).
	Ping Ping
	// Interval of the probe and of the tracker's evaluation; 0 means 2 s and 1 s.
	ProbeInterval, EvaluateInterval time.Duration
	// OnReturn is called when the broker answers again after an outage. client-go retries
	// a refused watch with a backoff that reaches a minute, so a reader that wants updates
	// at once afterwards starts fresh informers (the agent starts a new term).
	OnReturn func(down time.Duration)
}

// Setup feeds t from the broker within m: lease and membership handlers, watch errors,
// the prober (started before the caches are waited for, so a broker that is down at start
// is seen as such) and the tracker's evaluation loop.
func Setup(m *controller.Manager, t *liveness.Tracker, o Options) {
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 2 * time.Second
	}
	if o.EvaluateInterval <= 0 {
		o.EvaluateInterval = time.Second
	}
	m.Watch(o.Leases, Leases(t))
	if o.Memberships != nil {
		m.Watch(o.Memberships, Memberships(t, o.Memberships))
	}
	for _, i := range o.Broker {
		m.SetWatchErrorHandler(i, WatchErrors(t))
	}
	if o.Ping != nil {
		m.GoFirst("broker probe", func(ctx context.Context) error {
			Probe(ctx, t, o.Ping, o.ProbeInterval, o.OnReturn)
			return nil
		})
	}
	m.Go("liveness", func(ctx context.Context) error {
		t.Run(ctx.Done(), o.EvaluateInterval)
		return nil
	})
}

// ReadView reads the view an agent publishes in its member cluster (nil when it published
// none), for `strait status` and `strait diagnose`.
func ReadView(ctx context.Context, member kubernetes.Interface) (*liveness.Published, error) {
	cm, err := member.CoreV1().ConfigMaps(clusterset.SystemNamespace).Get(ctx, liveness.ViewConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p liveness.Published
	if err := json.Unmarshal([]byte(cm.Data[liveness.ViewKey]), &p); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return &p, nil
}
