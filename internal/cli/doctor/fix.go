package doctor

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

	"github.com/strait-io/strait/api/v1alpha1"
	findings "github.com/strait-io/strait/internal/doctor"
	es "github.com/strait-io/strait/internal/externalservice"
)

// convert applies one conversion. The order is what keeps the name working: the
// ExternalService is created first, the existing Service is handed over to it (never
// deleted) so the agent converts it in place, writing the new endpoints before the Service
// uses them, and the hand-written endpoints are deleted only once the ExternalService is
// Ready with ready endpoints. If the agent never takes the Service over, the hand-over is
// undone and a created ExternalService deleted again.
func (c *clients) convert(ctx context.Context, conv *findings.Conversion, timeout time.Duration) FixResult {
	want := conv.ExternalService
	ns, name := want.Namespace, want.Name
	res := FixResult{Service: ns + "/" + name, After: conv.After}
	step := func(format string, args ...any) { res.Steps = append(res.Steps, fmt.Sprintf(format, args...)) }
	fail := func(err error) FixResult {
		res.Error = err.Error()
		return res
	}
	services := c.kube.CoreV1().Services(ns)
	svc, err := services.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fail(fmt.Errorf("reading the Service: %w", err))
	}
	if svc.UID != conv.Service.UID {
		return fail(errors.New("the Service was replaced since it was examined; run doctor again"))
	}
	if ref := metav1.GetControllerOfNoCopy(svc); ref != nil && (ref.Kind != es.Kind || ref.Name != name) {
		return fail(fmt.Errorf("the Service is controlled by %s %s; it is left alone", ref.Kind, ref.Name))
	}
	original := svc.DeepCopy()

	client := c.es.ExternalServices(ns)
	ext, err := client.Get(ctx, name, metav1.GetOptions{})
	created := false
	switch {
	case apierrors.IsNotFound(err):
		if ext, err = client.Create(ctx, want, metav1.CreateOptions{}); err != nil {
			return fail(fmt.Errorf("creating ExternalService %s/%s: %w", ns, name, err))
		}
		created = true
		step("created ExternalService %s/%s", ns, name)
	case err != nil:
		return fail(fmt.Errorf("reading ExternalService %s/%s: %w", ns, name, err))
	case !equality.Semantic.DeepEqual(es.WithDefaults(ext.Spec), es.WithDefaults(want.Spec)):
		return fail(fmt.Errorf("ExternalService %s/%s exists with another spec; compare it with the one shown and reconcile them by hand", ns, name))
	default:
		step("ExternalService %s/%s exists already", ns, name)
	}

	if !es.IsControlledBy(svc, ext) {
		update := svc.DeepCopy()
		if update.Labels == nil {
			update.Labels = map[string]string{}
		}
		update.Labels[es.ManagedByLabel] = es.ManagedByValue
		update.Labels[es.LabelName] = name
		var refs []metav1.OwnerReference
		for _, r := range update.OwnerReferences {
			if r.Controller == nil || !*r.Controller {
				refs = append(refs, r)
			}
		}
		update.OwnerReferences = append(refs, es.OwnerReference(ext))
		if _, err := services.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
			res.Steps = append(res.Steps, c.rollback(ctx, original, ext, created, false)...)
			return fail(fmt.Errorf("handing Service %s/%s over (it may have changed meanwhile; run doctor again): %w", ns, name, err))
		}
		step("handed Service %s/%s over to the ExternalService", ns, name)
	}

	ready, err := c.waitConverted(ctx, ext, timeout)
	if err != nil {
		res.Steps = append(res.Steps, c.rollback(ctx, original, ext, created, true)...)
		return fail(err)
	}
	step("ExternalService is Ready: %s", ready)

	if r := conv.Endpoints; r != nil {
		err := c.kube.CoreV1().Endpoints(ns).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &r.UID}}) //nolint:staticcheck // the hand-written object being replaced
		if err != nil && !apierrors.IsNotFound(err) {
			return fail(fmt.Errorf("the ExternalService works, but deleting the hand-written Endpoints %s/%s failed (delete it by hand): %w", ns, r.Name, err))
		}
		step("deleted the hand-written Endpoints %s/%s", ns, r.Name)
	}
	for _, r := range conv.Slices {
		err := c.kube.DiscoveryV1().EndpointSlices(ns).Delete(ctx, r.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &r.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fail(fmt.Errorf("the ExternalService works, but deleting the hand-written EndpointSlice %s/%s failed (delete it by hand): %w", ns, r.Name, err))
		}
		step("deleted the hand-written EndpointSlice %s/%s", ns, r.Name)
	}
	res.Converted = true
	return res
}

// waitConverted waits until the agent converted the Service and reports the
// ExternalService Ready with ready endpoints; it returns the Ready message.
func (c *clients) waitConverted(ctx context.Context, ext *v1alpha1.ExternalService, timeout time.Duration) (string, error) {
	ns, name := ext.Namespace, ext.Name
	why := "no status yet: is the strait agent running in this cluster?"
	var message string
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		cur, err := c.es.ExternalServices(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			why = err.Error()
			return false, nil
		}
		cond := meta.FindStatusCondition(cur.Status.Conditions, v1alpha1.ConditionReady)
		if cond == nil || cond.ObservedGeneration != cur.Generation {
			return false, nil
		}
		why = cond.Reason + ": " + cond.Message
		if cond.Status != metav1.ConditionTrue {
			return false, nil
		}
		svc, err := c.kube.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || !es.IsControlledBy(svc, cur) {
			why = "the agent has not taken the Service over yet"
			return false, nil
		}
		wantType := corev1.ServiceTypeClusterIP
		if cur.Status.Mode == v1alpha1.ModeExternalName {
			wantType = corev1.ServiceTypeExternalName
		}
		if svc.Spec.Type != wantType {
			why = "the Service is not converted yet"
			return false, nil
		}
		if wantType == corev1.ServiceTypeClusterIP {
			sel := labels.SelectorFromSet(labels.Set{es.LabelName: name, discoveryv1.LabelManagedBy: es.EndpointSliceManagedBy}).String()
			list, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
			if err != nil || !anyReady(list.Items) {
				why = "the new EndpointSlices have no ready endpoint yet"
				return false, nil
			}
		}
		message = cond.Message
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("ExternalService %s/%s did not become Ready within %s (%s); the hand-made objects were kept", ns, name, timeout, why)
	}
	return message, nil
}

func anyReady(slices []discoveryv1.EndpointSlice) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				return true
			}
		}
	}
	return false
}

// rollback undoes a hand-over the agent did not act on: the Service gets its own labels
// and owners back, and then (never before: the garbage collector would delete the Service
// with it) a created ExternalService is deleted. A Service the agent already converted is
// left converted.
func (c *clients) rollback(ctx context.Context, original *corev1.Service, ext *v1alpha1.ExternalService, created, handedOver bool) []string {
	var steps []string
	services := c.kube.CoreV1().Services(original.Namespace)
	if handedOver {
		cur, err := services.Get(ctx, original.Name, metav1.GetOptions{})
		if err != nil {
			return append(steps, fmt.Sprintf("could not read the Service to undo the hand-over (%v); the ExternalService is kept", err))
		}
		if !equality.Semantic.DeepEqual(cur.Spec.Type, original.Spec.Type) || cur.Spec.ExternalName != original.Spec.ExternalName ||
			!equality.Semantic.DeepEqual(cur.Spec.Ports, original.Spec.Ports) {
			return append(steps, "the agent already converted the Service; it stays with the ExternalService")
		}
		undo := cur.DeepCopy()
		undo.Labels, undo.OwnerReferences = original.Labels, original.OwnerReferences
		if _, err := services.Update(ctx, undo, metav1.UpdateOptions{}); err != nil {
			return append(steps, fmt.Sprintf("could not undo the hand-over (%v); the ExternalService is kept so the Service is not garbage-collected", err))
		}
		steps = append(steps, "gave the Service its own labels and owners back")
	}
	if created {
		uid := ext.UID
		if err := c.es.ExternalServices(ext.Namespace).Delete(ctx, ext.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err != nil && !apierrors.IsNotFound(err) {
			return append(steps, fmt.Sprintf("could not delete the ExternalService created for the conversion: %v", err))
		}
		steps = append(steps, "deleted the ExternalService created for the conversion")
	}
	return steps
}
