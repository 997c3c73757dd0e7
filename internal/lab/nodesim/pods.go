package nodesim

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// syncPod brings one pod to what a kubelet on this node would make of it: bound, addressed,
// running with responders, or finalized. It reads only the cache and the simulator's own
// bookkeeping, never the event that queued it, so it may run any number of times.
func (s *Simulator) syncPod(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return fmt.Errorf("split pod key %q: %w", key, err)
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		s.forget(ctx, key)
		return nil
	}
	if err != nil {
		return fmt.Errorf("get cached pod %s: %w", key, err)
	}
	// A pod recreated under the same name is a new pod: drop what the old one held.
	if al, ok := s.ips.lookup(key); ok && al.uid != pod.UID {
		s.ips.release(key)
	}
	s.resp.stopStale(ctx, key, pod.UID)

	switch {
	case pod.Spec.NodeName == "":
		return s.bind(ctx, pod)
	case pod.Spec.NodeName != s.cfg.NodeName:
		s.forget(ctx, key)
		return nil
	case pod.DeletionTimestamp != nil:
		return s.finalize(ctx, key, pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		// Nothing runs in a finished pod; its address stays held while its status shows it.
		s.resp.stop(ctx, key)
		return nil
	}

	podIP, err := s.podAddress(key, pod)
	if err != nil {
		return err
	}
	var errs []error
	if !pod.Spec.HostNetwork {
		// Serve before reporting Ready, so whoever sees the endpoint can reach it.
		if err := s.resp.ensure(ctx, key, pod, podIP); err != nil {
			errs = append(errs, err)
		}
	}
	want := desiredStatus(pod, podIP, s.cfg.nodeAddr.String(), metav1.Now())
	if !podStatusEqual(pod.Status, want) {
		upd := pod.DeepCopy()
		upd.Status = want
		_, err := s.client.CoreV1().Pods(ns).UpdateStatus(ctx, upd, metav1.UpdateOptions{})
		switch {
		case apierrors.IsNotFound(err):
			s.forget(ctx, key)
		case err != nil:
			errs = append(errs, fmt.Errorf("update status of pod %s: %w", key, err))
		default:
			klog.FromContext(ctx).V(2).Info("Updated pod status", "pod", klog.KObj(pod), "podIP", podIP, "ready", podReady(want))
		}
	}
	return errors.Join(errs...)
}

// podAddress is the pod's IP: the node's for hostNetwork pods, else the one it holds or a
// newly allocated one.
func (s *Simulator) podAddress(key string, pod *corev1.Pod) (string, error) {
	if pod.Spec.HostNetwork {
		s.ips.release(key)
		return s.cfg.nodeAddr.String(), nil
	}
	if _, ok := s.ips.lookup(key); !ok && pod.Status.PodIP != "" {
		// Keep an address reported earlier (an event missed at start) if it is still free.
		if addr, err := parseAddr(pod.Status.PodIP); err == nil {
			_ = s.ips.reserve(key, pod.UID, addr)
		}
	}
	addr, err := s.ips.allocate(key, pod.UID)
	if err != nil {
		return "", fmt.Errorf("allocate address for pod %s: %w", key, err)
	}
	return addr.String(), nil
}

// schedulable reports whether this node, standing in for the default scheduler, should bind
// pod.
func schedulable(pod *corev1.Pod) bool {
	return pod.Spec.NodeName == "" &&
		pod.DeletionTimestamp == nil &&
		(pod.Spec.SchedulerName == "" || pod.Spec.SchedulerName == corev1.DefaultSchedulerName) &&
		len(pod.Spec.SchedulingGates) == 0 &&
		pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed
}

// bind assigns an unscheduled pod to this node through the binding subresource, as the
// scheduler would; the resulting update queues the pod again.
func (s *Simulator) bind(ctx context.Context, pod *corev1.Pod) error {
	if !schedulable(pod) {
		return nil
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: s.cfg.NodeName},
	}
	err := s.client.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		// Gone, or bound meanwhile; the next event tells which.
		return nil
	case err != nil:
		return fmt.Errorf("bind pod %s/%s to node %s: %w", pod.Namespace, pod.Name, s.cfg.NodeName, err)
	}
	klog.FromContext(ctx).V(2).Info("Bound pod", "pod", klog.KObj(pod))
	return nil
}

// finalize does the kubelet's part of a pod deletion: stop what runs, free the address and
// delete the object for good, guarded by its UID so a successor of the same name survives.
func (s *Simulator) finalize(ctx context.Context, key string, pod *corev1.Pod) error {
	s.forget(ctx, key)
	err := s.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: ptr.To[int64](0),
		Preconditions:      metav1.NewUIDPreconditions(string(pod.UID)),
	})
	switch {
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		return nil
	case err != nil:
		return fmt.Errorf("delete pod %s: %w", key, err)
	}
	klog.FromContext(ctx).V(2).Info("Finalized pod deletion", "pod", klog.KObj(pod))
	return nil
}

// forget stops the responders of key and frees its address.
func (s *Simulator) forget(ctx context.Context, key string) {
	s.resp.stop(ctx, key)
	s.ips.release(key)
}

func podReady(st corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
