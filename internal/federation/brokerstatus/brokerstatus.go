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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent/controller"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/federation"
)

// LeaseName is the leader lease of status writers, in the federation namespace.
const LeaseName = "strait-federation-status"

// Options configure the status writer.
type Options struct {
	Config federation.Config
	// Broker is a client of the broker allowed to read what federation.Cache reads, to
	// update services/status in the federation namespace, to create events there, to
	// create the federation namespace and, with Identity, to hold LeaseName.
	Broker  kubernetes.Interface
	Metrics *controller.Metrics
	Workers int
	// Identity, when set, makes the writer run only while it holds LeaseName.
	Identity string
	// Component names the writer in events.
	Component string
}

// Reconciler writes the status of one federated Service.
type Reconciler struct {
	Namespace string
	Cache     interface {
		Service(name string) (*corev1.Service, error)
		Snapshot(now time.Time) (*federation.Snapshot, error)
	}
	Client   kubernetes.Interface
	Recorder record.EventRecorder
	Now      func() time.Time
	// Requeue asks for the key again after a delay (a lease about to expire).
	Requeue func(key string, after time.Duration)
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
	snap, err := r.Cache.Snapshot(now())
	if err != nil {
		return err
	}
	st := federation.Aggregate(snap, svc)
	if st.Recheck > 0 && r.Requeue != nil {
		r.Requeue(key, st.Recheck)
	}
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
// ends (while holding the leader lease, with an Identity).
func Run(ctx context.Context, o Options) error {
	if err := o.Config.Validate(); err != nil {
		return err
	}
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Component == "" {
		o.Component = "strait-federation-status"
	}
	if o.Metrics == nil {
		m, err := controller.NewMetrics(prometheus.NewRegistry())
		if err != nil {
			return err
		}
		o.Metrics = m
	}
	logger := klog.FromContext(ctx).WithValues("federationNamespace", o.Config.Namespace)
	ctx = klog.NewContext(ctx, logger)
	if err := ensureNamespace(ctx, o.Broker, o.Config.Namespace); err != nil {
		return err
	}
	if o.Identity == "" {
		return run(ctx, o)
	}
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: LeaseName, Namespace: o.Config.Namespace},
		Client:     o.Broker.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: o.Identity},
	}
	var runErr error
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	leaderelection.RunOrDie(lctx, leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		ReleaseOnCancel: true, Name: LeaseName,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				logger.Info("Writing federated Service status", "identity", o.Identity)
				runErr = run(ctx, o)
				cancel()
			},
			OnStoppedLeading: func() {
				if ctx.Err() == nil && runErr == nil {
					runErr = errors.New("lost the federation status lease")
				}
			},
		},
	})
	if ctx.Err() != nil {
		return nil
	}
	return runErr
}

func run(ctx context.Context, o Options) error {
	c := federation.NewCache(o.Broker, o.Config)
	loop := controller.New("federation-status", o.Metrics)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: o.Broker.CoreV1().Events(o.Config.Namespace)})
	defer broadcaster.Shutdown()
	r := &Reconciler{
		Namespace: o.Config.Namespace, Cache: c, Client: o.Broker,
		Recorder: broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: o.Component}),
		Requeue:  loop.EnqueueAfter,
	}
	key := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			return []string{m.GetNamespace() + "/" + m.GetName()}
		}
		return nil
	}
	recordKey := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			if k, ok := federation.RecordKey(m, o.Config.Name); ok {
				return []string{k}
			}
		}
		return nil
	}
	// A member joining, leaving or renewing its lease can change every Service.
	all := func(any) []string {
		var keys []string
		for _, n := range c.ServiceNames() {
			keys = append(keys, o.Config.Namespace+"/"+n)
		}
		return keys
	}
	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		keys     func(any) []string
	}{
		{c.ServiceInformer, key}, {c.RecordInformer, recordKey}, {c.MembershipInformer, all}, {c.LeaseInformer, all},
	} {
		if _, err := reg.informer.AddEventHandler(loop.Handler(reg.keys)); err != nil {
			return err
		}
	}
	if err := c.Start(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	loop.Run(ctx, o.Workers, r)
	return nil
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
