package nodesim

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

const (
	// ReadyAnnotation set to "false" on a pod makes the simulator report it not ready, the
	// lab's stand-in for a failing readiness probe.
	ReadyAnnotation = "lab.strait.io/ready"
	// ReasonNotReady is the reason of the Ready and ContainersReady conditions of a pod
	// made unready with ReadyAnnotation.
	ReasonNotReady = "LabNotReady"

	reasonReadinessGates = "ReadinessGatesNotReady"
	containerIDScheme    = "strait-lab://"
)

// ownedPodConditions are the pod conditions the simulator sets, in the order it adds them.
var ownedPodConditions = []corev1.PodConditionType{
	corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
}

// desiredStatus is the status the simulator reports for a pod bound to its node and not
// being deleted. It starts from the pod's current status so fields owned by others (QoS
// class, conditions of readiness gates, resource claims) survive, and keeps the timestamps
// of everything that did not change, so applying it twice changes nothing.
func desiredStatus(pod *corev1.Pod, podIP, nodeIP string, now metav1.Time) corev1.PodStatus {
	cur := &pod.Status
	st := *cur.DeepCopy()
	st.Phase = corev1.PodRunning
	st.Reason, st.Message = "", ""
	st.HostIP = nodeIP
	st.HostIPs = []corev1.HostIP{{IP: nodeIP}}
	st.PodIP = podIP
	st.PodIPs = []corev1.PodIP{{IP: podIP}}
	if st.StartTime == nil {
		st.StartTime = ptr.To(now)
	}

	containersReady := pod.Annotations[ReadyAnnotation] != "false"

	st.InitContainerStatuses = make([]corev1.ContainerStatus, 0, len(pod.Spec.InitContainers))
	for _, c := range pod.Spec.InitContainers {
		prev := findContainerStatus(cur.InitContainerStatuses, c.Name)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			st.InitContainerStatuses = append(st.InitContainerStatuses, runningStatus(pod, c, prev, containersReady, now))
			continue
		}
		st.InitContainerStatuses = append(st.InitContainerStatuses, completedStatus(pod, c, prev, now))
	}
	st.ContainerStatuses = make([]corev1.ContainerStatus, 0, len(pod.Spec.Containers))
	for _, c := range pod.Spec.Containers {
		prev := findContainerStatus(cur.ContainerStatuses, c.Name)
		st.ContainerStatuses = append(st.ContainerStatuses, runningStatus(pod, c, prev, containersReady, now))
	}

	want := map[corev1.PodConditionType]corev1.PodCondition{
		corev1.PodScheduled:   {Status: corev1.ConditionTrue},
		corev1.PodInitialized: {Status: corev1.ConditionTrue},
	}
	if containersReady {
		want[corev1.ContainersReady] = corev1.PodCondition{Status: corev1.ConditionTrue}
		if gates := unmetReadinessGates(pod); len(gates) > 0 {
			want[corev1.PodReady] = corev1.PodCondition{
				Status:  corev1.ConditionFalse,
				Reason:  reasonReadinessGates,
				Message: fmt.Sprintf("the status of pod readiness gates are not true: %s", strings.Join(gates, ", ")),
			}
		} else {
			want[corev1.PodReady] = corev1.PodCondition{Status: corev1.ConditionTrue}
		}
	} else {
		notReady := corev1.PodCondition{
			Status:  corev1.ConditionFalse,
			Reason:  ReasonNotReady,
			Message: fmt.Sprintf("annotation %s is %q", ReadyAnnotation, "false"),
		}
		want[corev1.ContainersReady] = notReady
		want[corev1.PodReady] = notReady
	}
	st.Conditions = mergePodConditions(cur.Conditions, want, now)
	return st
}

// mergePodConditions replaces the owned conditions in place, keeps every other condition, and
// appends owned conditions that were missing.
func mergePodConditions(cur []corev1.PodCondition, want map[corev1.PodConditionType]corev1.PodCondition, now metav1.Time) []corev1.PodCondition {
	set := func(prev *corev1.PodCondition, typ corev1.PodConditionType) corev1.PodCondition {
		c := want[typ]
		c.Type = typ
		if prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
			c.LastProbeTime = prev.LastProbeTime
		} else {
			c.LastTransitionTime = now
		}
		return c
	}
	out := make([]corev1.PodCondition, 0, len(cur)+len(want))
	seen := map[corev1.PodConditionType]bool{}
	for i := range cur {
		if _, owned := want[cur[i].Type]; owned {
			if seen[cur[i].Type] {
				continue
			}
			seen[cur[i].Type] = true
			out = append(out, set(&cur[i], cur[i].Type))
			continue
		}
		out = append(out, *cur[i].DeepCopy())
	}
	for _, typ := range ownedPodConditions {
		if !seen[typ] {
			out = append(out, set(nil, typ))
		}
	}
	return out
}

// unmetReadinessGates lists the readiness gates whose condition is not True.
func unmetReadinessGates(pod *corev1.Pod) []string {
	var unmet []string
	for _, g := range pod.Spec.ReadinessGates {
		i := slices.IndexFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == g.ConditionType })
		if i < 0 || pod.Status.Conditions[i].Status != corev1.ConditionTrue {
			unmet = append(unmet, string(g.ConditionType))
		}
	}
	return unmet
}

func findContainerStatus(statuses []corev1.ContainerStatus, name string) *corev1.ContainerStatus {
	for i := range statuses {
		if statuses[i].Name == name {
			return &statuses[i]
		}
	}
	return nil
}

// baseContainerStatus holds the fields every reported container shares.
func baseContainerStatus(pod *corev1.Pod, c corev1.Container) corev1.ContainerStatus {
	sum := sha256.Sum256([]byte(c.Image))
	return corev1.ContainerStatus{
		Name:         c.Name,
		Image:        c.Image,
		ImageID:      c.Image + "@sha256:" + hex.EncodeToString(sum[:]),
		ContainerID:  containerIDScheme + string(pod.UID) + "/" + c.Name,
		RestartCount: 0,
	}
}

func runningStatus(pod *corev1.Pod, c corev1.Container, prev *corev1.ContainerStatus, ready bool, now metav1.Time) corev1.ContainerStatus {
	s := baseContainerStatus(pod, c)
	s.Ready = ready
	s.Started = ptr.To(true)
	startedAt := now
	if prev != nil && prev.State.Running != nil {
		startedAt = prev.State.Running.StartedAt
	}
	s.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: startedAt}}
	return s
}

func completedStatus(pod *corev1.Pod, c corev1.Container, prev *corev1.ContainerStatus, now metav1.Time) corev1.ContainerStatus {
	s := baseContainerStatus(pod, c)
	s.Ready = true
	s.Started = ptr.To(false)
	term := corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now, ContainerID: s.ContainerID}
	if prev != nil && prev.State.Terminated != nil {
		term.StartedAt = prev.State.Terminated.StartedAt
		term.FinishedAt = prev.State.Terminated.FinishedAt
	}
	s.State = corev1.ContainerState{Terminated: &term}
	return s
}

// podStatusEqual reports whether two statuses differ only in timestamps, which the API
// server rounds to seconds and which alone are never worth a write.
func podStatusEqual(a, b corev1.PodStatus) bool {
	return apiequality.Semantic.DeepEqual(withoutPodTimestamps(a), withoutPodTimestamps(b))
}

func withoutPodTimestamps(s corev1.PodStatus) corev1.PodStatus {
	s = *s.DeepCopy()
	s.StartTime = nil
	for i := range s.Conditions {
		s.Conditions[i].LastProbeTime = metav1.Time{}
		s.Conditions[i].LastTransitionTime = metav1.Time{}
	}
	for _, list := range [][]corev1.ContainerStatus{s.InitContainerStatuses, s.ContainerStatuses, s.EphemeralContainerStatuses} {
		for i := range list {
			clearStateTimes(&list[i].State)
			clearStateTimes(&list[i].LastTerminationState)
		}
	}
	return s
}

func clearStateTimes(st *corev1.ContainerState) {
	if st.Running != nil {
		st.Running.StartedAt = metav1.Time{}
	}
	if st.Terminated != nil {
		st.Terminated.StartedAt = metav1.Time{}
		st.Terminated.FinishedAt = metav1.Time{}
	}
}
