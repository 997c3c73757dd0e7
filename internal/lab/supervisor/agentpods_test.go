package supervisor

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/lab/images"
)

// The lab's agent in pods is the chart's, from the lab's strait image, one replica, with
// brokerHost on the broker's cluster only.
func TestAgentValues(t *testing.T) {
	for _, brokerHost := range []bool{true, false} {
		objs, err := chart.Render(agentValues(brokerHost, true), chart.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		var d *appsv1.Deployment
		hostRole := false
		for _, o := range objs {
			switch {
			case o.GetKind() == "Deployment" && o.GetName() == agentDeployment:
				d = &appsv1.Deployment{}
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, d); err != nil {
					t.Fatal(err)
				}
			case o.GetKind() == "Role" && o.GetName() == "strait-agent-broker-host":
				hostRole = true
			case o.GetKind() == "PodDisruptionBudget":
				t.Errorf("the lab's single agent replica gets a PodDisruptionBudget, which would block draining its node")
			}
		}
		if d == nil {
			t.Fatalf("brokerHost=%v: the chart rendered no Deployment %s", brokerHost, agentDeployment)
		}
		if got, want := d.Spec.Template.Spec.Containers[0].Image, images.Strait+":"+images.LabTag; got != want || *d.Spec.Replicas != 1 {
			t.Errorf("brokerHost=%v: agent image %s, %d replicas; want %s, 1", brokerHost, got, *d.Spec.Replicas, want)
		}
		if hostRole != brokerHost {
			t.Errorf("brokerHost=%v: the broker host's Role rendered: %v", brokerHost, hostRole)
		}
	}
}

func TestAgentDeploymentReady(t *testing.T) {
	d := func(replicas, updated, available int32, observed int64) *appsv1.Deployment {
		return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 2}, Spec: appsv1.DeploymentSpec{Replicas: ptr.To(replicas)},
			Status: appsv1.DeploymentStatus{ObservedGeneration: observed, UpdatedReplicas: updated, AvailableReplicas: available}}
	}
	for _, c := range []struct {
		d    *appsv1.Deployment
		want string // "" for ready
	}{
		{d(1, 1, 1, 2), ""},
		{d(0, 0, 0, 2), "scaled to 0"},
		{d(1, 1, 1, 1), "being rolled out"},
		{d(1, 1, 0, 2), "1 of 1 replicas updated, 0 available"},
		{d(2, 1, 2, 2), "1 of 2 replicas updated"}, // a pod of the old template is available, not updated
	} {
		err := agentDeploymentReady(c.d)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%+v: %v, want ready", c.d.Status, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%+v: %v, want an error saying %q", c.d.Status, err, c.want)
		}
	}
}

// Stopping the agent component scales its Deployment to 0 and returns once its pods are
// gone; stopping the whole lab scales nothing.
func TestAgentPodsRunner(t *testing.T) {
	labels := map[string]string{"app.kubernetes.io/component": "agent"}
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: agentDeployment, Namespace: chart.Namespace},
		Spec: appsv1.DeploymentSpec{Replicas: ptr.To(int32(0)), Selector: &metav1.LabelSelector{MatchLabels: labels}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "strait-agent-1", Namespace: chart.Namespace, Labels: labels}}
	kube := fake.NewClientset(deploy, pod)
	replicas := func() int32 {
		d, err := kube.AppsV1().Deployments(chart.Namespace).Get(context.Background(), agentDeployment, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}
	var stopping atomic.Bool
	run := agentPodsRunner(kube, stopping.Load)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for replicas() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r := replicas(); r != 1 {
		t.Fatalf("started: %d replicas, want 1", r)
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("stopped with its pod still there, the runner returned (%v); want it to wait for the pod", err)
	case <-time.After(500 * time.Millisecond):
	}
	if r := replicas(); r != 0 {
		t.Errorf("stopped: %d replicas, want 0", r)
	}
	if err := kube.CoreV1().Pods(chart.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("stopped, its pod gone: %v", err)
	}

	// The lab stopping: nothing is scaled.
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- run(ctx) }()
	deadline = time.Now().Add(5 * time.Second)
	for replicas() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopping.Store(true)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if r := replicas(); r != 1 {
		t.Errorf("after the lab stopped: %d replicas; want them left to stop with the node", r)
	}
}
