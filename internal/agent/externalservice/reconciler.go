// Package externalservice is the agent's ExternalService reconciler: for each
// ExternalService it writes the standard objects the pure rules of
// internal/externalservice compute (an ExternalName Service, or a selector-less Service and
// EndpointSlices), runs the targets' health checks and marks failing targets not ready,
// and reports what it did in the status. It never takes over a Service it did not create,
// and it deletes only objects that carry its labels and an ExternalService as controller.
package externalservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/api/v1alpha1"
	agentenv "github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/controller"
	es "github.com/strait-io/strait/internal/externalservice"
	"github.com/strait-io/strait/internal/externalservice/esclient"
)

// ExternalServiceLister reads ExternalServices from a cache.
type ExternalServiceLister interface {
	Get(namespace, name string) (*v1alpha1.ExternalService, error)
}

// StatusWriter writes an ExternalService's status.
type StatusWriter interface {
	UpdateStatus(ctx context.Context, obj *v1alpha1.ExternalService, opts metav1.UpdateOptions) (*v1alpha1.ExternalService, error)
}

// Reconciler reconciles one ExternalService ("namespace/name").
type Reconciler struct {
	Local kubernetes.Interface
	// Status returns the status writer of a namespace.
	Status           func(namespace string) StatusWriter
	ExternalServices ExternalServiceLister
	Services         corelisters.ServiceLister
	Slices           discoverylisters.EndpointSliceLister
	Health           *Checker
	// Recorder, if set, gets an Event when the Ready reason or a target's health changes.
	Recorder record.EventRecorder
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// StatusWriterFor adapts the typed client to Reconciler.Status.
func StatusWriterFor(c *esclient.Client) func(namespace string) StatusWriter {
	return func(ns string) StatusWriter { return c.ExternalServices(ns) }
}

// SliceKeys maps an EndpointSlice written for an ExternalService to its key.
func SliceKeys(obj any) []string {
	m, ok := obj.(metav1.Object)
	if !ok || m.GetLabels()[es.LabelName] == "" {
		return nil
	}
	return []string{m.GetNamespace() + "/" + m.GetLabels()[es.LabelName]}
}

// WaitServed waits until the API server serves ExternalServices, checking every interval;
// false when ctx ended first. A cluster whose CRD is missing runs every other reconciler
// meanwhile.
func WaitServed(ctx context.Context, d discovery.DiscoveryInterface, interval time.Duration) bool {
	logged := false
	err := wait.PollUntilContextCancel(ctx, interval, true, func(ctx context.Context) (bool, error) {
		ok, err := esclient.Served(d)
		if err != nil || !ok {
			if !logged {
				klog.FromContext(ctx).Info("ExternalServices are not served yet; install the CRD (config/crd) to use them", "err", err)
				logged = true
			}
			return false, nil
		}
		return true, nil
	})
	return err == nil
}

func (r *Reconciler) now() metav1.Time {
	if r.Now != nil {
		return metav1.NewTime(r.Now())
	}
	return metav1.Now()
}

// Reconcile brings the objects and status of one ExternalService in line with its spec.
func (r *Reconciler) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	obj, err := r.ExternalServices.Get(ns, name)
	if apierrors.IsNotFound(err) {
		r.Health.Stop(key)
		return r.removeOrphans(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	if obj.DeletionTimestamp != nil {
		r.Health.Stop(key)
		return nil // the garbage collector removes what it owns
	}
	ext := obj.DeepCopy()
	ext.Spec = es.WithDefaults(ext.Spec)
	logger := klog.FromContext(ctx).WithValues("externalService", key)

	if _, refusal := es.Plan(ext, nil); refusal != nil {
		// Objects of an earlier, accepted spec are kept: a bad edit must not cut traffic.
		r.Health.Stop(key)
		logger.V(2).Info("Refusing ExternalService", "reason", refusal.Reason, "message", refusal.Message)
		return r.writeStatus(ctx, obj, obj.Status.Mode, es.TargetStatuses(ext.Spec, nil, obj.Status.Targets, r.now()),
			es.NotReadyCondition(ext, refusal.Reason, refusal.Message+"; nothing was written"))
	}

	var states map[string]es.State
	if ext.Spec.HealthCheck != nil {
		states = r.Health.Ensure(key, ext.Spec)
	} else {
		r.Health.Stop(key)
	}
	statuses := es.TargetStatuses(ext.Spec, states, obj.Status.Targets, r.now())
	desired, _ := es.Plan(ext, es.HealthOf(statuses))

	svc, err := r.Services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		svc = nil
	case err != nil:
		return err
	case es.IsControlledBy(svc, ext):
	case es.IsOurs(svc, name):
		// Written for a deleted ExternalService of the same name: ours to replace.
		if err := r.deleteService(ctx, svc); err != nil {
			return err
		}
		svc = nil
	default:
		r.Health.Stop(key)
		// Endpoints of ours must not feed someone else's Service of that name.
		if err := r.syncSlices(ctx, ext, nil); err != nil {
			return err
		}
		return r.writeStatus(ctx, obj, "", statuses, es.NotReadyCondition(ext, v1alpha1.ReasonServiceNotOwned, fmt.Sprintf(
			"Service %s/%s exists and was not created for this ExternalService; it is left alone. Delete it, rename the ExternalService, or let `strait doctor --fix` convert it", ns, name)))
	}

	if err := r.apply(ctx, ext, desired, svc); err != nil {
		msg := err.Error()
		if werr := r.writeStatus(ctx, obj, obj.Status.Mode, statuses, es.NotReadyCondition(ext, v1alpha1.ReasonApplyFailed, msg)); werr != nil {
			logger.Error(werr, "Writing status failed")
		}
		return err
	}
	return r.writeStatus(ctx, obj, desired.Mode, statuses, es.ReadyCondition(ext, desired.Mode, statuses))
}

// apply writes the Service and slices. Endpoints appear before the Service points at them
// and disappear only after it stopped, so a change of mode never leaves the name empty.
func (r *Reconciler) apply(ctx context.Context, ext *v1alpha1.ExternalService, d *es.Desired, have *corev1.Service) error {
	if len(d.Slices) > 0 {
		if err := r.syncSlices(ctx, ext, d.Slices); err != nil {
			return err
		}
	}
	if err := r.ensureService(ctx, ext, d.Service, have); err != nil {
		return err
	}
	if len(d.Slices) == 0 {
		return r.syncSlices(ctx, ext, nil)
	}
	return nil
}

func sliceSelector(name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{es.LabelName: name, discoveryv1.LabelManagedBy: es.EndpointSliceManagedBy})
}

func (r *Reconciler) syncSlices(ctx context.Context, ext *v1alpha1.ExternalService, want []*discoveryv1.EndpointSlice) error {
	list, err := r.Slices.EndpointSlices(ext.Namespace).List(sliceSelector(ext.Name))
	if err != nil {
		return err
	}
	client := r.Local.DiscoveryV1().EndpointSlices(ext.Namespace)
	var have []*discoveryv1.EndpointSlice
	for _, s := range list {
		switch {
		case es.IsControlledBy(s, ext):
			have = append(have, s)
		case es.IsOurs(s, ext.Name):
			if err := client.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("deleting EndpointSlice %s/%s of a deleted ExternalService: %w", s.Namespace, s.Name, err)
			}
		}
	}
	if err := slicesync.Sync(ctx, client, have, want); err != nil {
		return fmt.Errorf("writing the EndpointSlices of %s/%s: %w", ext.Namespace, ext.Name, err)
	}
	return nil
}

func headless(s *corev1.Service) bool { return s.Spec.ClusterIP == corev1.ClusterIPNone }

// sameService reports whether have already is want in everything the reconciler sets.
func sameService(have, want *corev1.Service) bool {
	if have.Spec.Type != want.Spec.Type || have.Spec.ExternalName != want.Spec.ExternalName || len(have.Spec.Selector) > 0 {
		return false
	}
	if want.Spec.Type != corev1.ServiceTypeExternalName && headless(have) != headless(want) {
		return false
	}
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	if len(have.Spec.Ports) != len(want.Spec.Ports) {
		return false
	}
	for i, w := range want.Spec.Ports {
		h := have.Spec.Ports[i]
		if h.Name != w.Name || h.Protocol != w.Protocol || h.Port != w.Port || h.TargetPort != w.TargetPort ||
			!equality.Semantic.DeepEqual(h.AppProtocol, w.AppProtocol) || h.NodePort != 0 {
			return false
		}
	}
	return true
}

func (r *Reconciler) ensureService(ctx context.Context, ext *v1alpha1.ExternalService, want, have *corev1.Service) error {
	client := r.Local.CoreV1().Services(ext.Namespace)
	if have == nil {
		if _, err := client.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating Service %s/%s: %w", want.Namespace, want.Name, err)
		}
		return nil
	}
	if sameService(have, want) {
		return nil
	}
	if have.Spec.Type != corev1.ServiceTypeExternalName && want.Spec.Type != corev1.ServiceTypeExternalName && headless(have) != headless(want) {
		// A cluster IP cannot be added or removed in place.
		if err := r.deleteService(ctx, have); err != nil {
			return err
		}
		return errors.New("the Service changes between headless and ClusterIP; it is recreated")
	}
	update := have.DeepCopy()
	if update.Labels == nil {
		update.Labels = map[string]string{}
	}
	for k, v := range want.Labels {
		update.Labels[k] = v
	}
	if metav1.GetControllerOfNoCopy(update) == nil {
		update.OwnerReferences = append(update.OwnerReferences, es.OwnerReference(ext))
	}
	spec := &update.Spec
	wasExternalName := spec.Type == corev1.ServiceTypeExternalName
	spec.Type, spec.ExternalName, spec.Selector, spec.Ports = want.Spec.Type, want.Spec.ExternalName, nil, want.Spec.Ports
	spec.ExternalTrafficPolicy, spec.HealthCheckNodePort, spec.AllocateLoadBalancerNodePorts = "", 0, nil
	spec.LoadBalancerClass, spec.LoadBalancerIP, spec.LoadBalancerSourceRanges = nil, "", nil
	switch {
	case want.Spec.Type == corev1.ServiceTypeExternalName:
		spec.ClusterIP, spec.ClusterIPs, spec.IPFamilies, spec.IPFamilyPolicy, spec.InternalTrafficPolicy = "", nil, nil, nil, nil
	case wasExternalName:
		spec.ClusterIP, spec.ClusterIPs = want.Spec.ClusterIP, nil
	}
	if _, err := client.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating Service %s/%s: %w", have.Namespace, have.Name, err)
	}
	return nil
}

func (r *Reconciler) deleteService(ctx context.Context, svc *corev1.Service) error {
	err := r.Local.CoreV1().Services(svc.Namespace).Delete(ctx, svc.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	return nil
}

// removeOrphans deletes what was written for a deleted ExternalService. The garbage
// collector would too; doing it here does not depend on it running.
func (r *Reconciler) removeOrphans(ctx context.Context, ns, name string) error {
	if svc, err := r.Services.Services(ns).Get(name); err == nil && es.IsOurs(svc, name) {
		if err := r.deleteService(ctx, svc); err != nil {
			return err
		}
	}
	list, err := r.Slices.EndpointSlices(ns).List(sliceSelector(name))
	if err != nil {
		return err
	}
	for _, s := range list {
		if !es.IsOurs(s, name) {
			continue
		}
		err := r.Local.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &s.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting EndpointSlice %s/%s: %w", ns, s.Name, err)
		}
	}
	return nil
}

// writeStatus updates the status when it changed.
func (r *Reconciler) writeStatus(ctx context.Context, obj *v1alpha1.ExternalService, mode v1alpha1.ServiceMode, targets []v1alpha1.TargetStatus, cond metav1.Condition) error {
	st := obj.Status.DeepCopy()
	st.ObservedGeneration = obj.Generation
	st.Mode = mode
	st.Targets = targets
	st.TotalTargets, st.ReadyTargets = int32(len(targets)), 0
	for _, t := range targets {
		if es.Used(t.Health) {
			st.ReadyTargets++
		}
	}
	if mode == "" {
		st.ReadyTargets = 0
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if equality.Semantic.DeepEqual(&obj.Status, st) {
		return nil
	}
	update := obj.DeepCopy()
	update.Status = *st
	if _, err := r.Status(obj.Namespace).UpdateStatus(ctx, update, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsConflict(err) {
			// The cache lags behind a newer version; its update event queues the key again.
			klog.FromContext(ctx).V(2).Info("Status write conflicted; waiting for the newer version", "externalService", obj.Namespace+"/"+obj.Name)
			return nil
		}
		return fmt.Errorf("writing the status of ExternalService %s/%s: %w", obj.Namespace, obj.Name, err)
	}
	r.events(obj, st)
	return nil
}

// events records what changed between the status read and the one written.
func (r *Reconciler) events(obj *v1alpha1.ExternalService, st *v1alpha1.ExternalServiceStatus) {
	if r.Recorder == nil {
		return
	}
	old := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
	cur := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if cur != nil && (old == nil || old.Reason != cur.Reason) {
		kind := corev1.EventTypeNormal
		if cur.Status == metav1.ConditionFalse {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Event(obj, kind, cur.Reason, cur.Message)
	}
	before := map[string]v1alpha1.TargetHealth{}
	for _, t := range obj.Status.Targets {
		before[t.Address] = t.Health
	}
	for _, t := range st.Targets {
		h, seen := before[t.Address]
		switch {
		case t.Health == v1alpha1.HealthUnhealthy && h != t.Health:
			r.Recorder.Eventf(obj, corev1.EventTypeWarning, "TargetUnhealthy", "Target %s failed its health check and is out of use: %s", t.Address, t.Message)
		case t.Health == v1alpha1.HealthHealthy && seen && h == v1alpha1.HealthUnhealthy:
			r.Recorder.Eventf(obj, corev1.EventTypeNormal, "TargetHealthy", "Target %s passes its health check again and is back in use", t.Address)
		}
	}
}

// Setup declares the ExternalService loop. It starts once the API server serves
// ExternalServices and their cache is complete, so a cluster without the CRD runs the
// other reconcilers meanwhile, and a missing cache never looks like deleted objects.
func Setup(e *agentenv.Env) error {
	client, err := esclient.New(e.Member.Config)
	if err != nil {
		return err
	}
	services, slices := e.Member.Informers.Core().V1().Services(), e.Member.Informers.Discovery().V1().EndpointSlices()
	informer := esclient.NewInformer(client, metav1.NamespaceAll, 0)
	// Not a manager loop: it must not run before its own informer, started late, synced.
	loop := controller.New("externalservice", e.Manager.Metrics())
	r := &Reconciler{
		Local: e.Member.Kube, Status: StatusWriterFor(client),
		ExternalServices: esclient.NewLister(informer.GetIndexer()),
		Services:         services.Lister(), Slices: e.Member.Slices,
		Recorder: e.Recorder,
	}
	for _, w := range []struct {
		informer cache.SharedIndexInformer
		keys     func(any) []string
	}{{informer, controller.ObjectKey}, {services.Informer(), controller.ObjectKey}, {slices.Informer(), SliceKeys}} {
		e.Manager.Watch(w.informer, loop.Handler(w.keys))
	}
	e.Manager.Go("externalservice", func(ctx context.Context) error {
		if !WaitServed(ctx, e.Member.Kube.Discovery(), 30*time.Second) {
			return nil
		}
		r.Health = NewChecker(ctx, e.Settings.Prober, loop.Enqueue)
		go informer.RunWithContext(ctx)
		if cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
			loop.Run(ctx, e.Manager.Workers(), r)
		}
		return nil
	})
	return nil
}
