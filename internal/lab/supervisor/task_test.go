package supervisor

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/process"
)

func testCluster(components ...string) *cluster {
	return &cluster{plan: plan.Cluster{Name: "c1"}, components: components, procs: map[string]*process.Process{},
		inproc: map[string]*task{}, event: func(string, string, ...any) {}}
}

// StopComponent of an in-process component: the error its run returns once stopped is the
// stop's failure, its own stop time is waited for, and one that overruns it is named.
func TestStopTask(t *testing.T) {
	c := testCluster("ok", "fails", "slow", "stuck")
	c.startTask("ok", runs(func(ctx context.Context) error { <-ctx.Done(); return nil }))
	c.startTask("fails", runs(func(ctx context.Context) error {
		<-ctx.Done()
		return errors.New("scaling Deployment strait-system/strait-agent to 0: forbidden")
	}))
	c.startTask("slow", taskSpec{stopTime: time.Second, run: func(ctx context.Context) error {
		<-ctx.Done()
		time.Sleep(300 * time.Millisecond)
		return nil
	}})
	release := make(chan struct{})
	defer close(release)
	c.startTask("stuck", taskSpec{stopTime: 200 * time.Millisecond, run: func(ctx context.Context) error { <-release; return nil }})

	if err := c.stopComponent("ok"); err != nil {
		t.Errorf("stopping a task that stops cleanly: %v", err)
	}
	if err := c.stopComponent("fails"); err == nil || !strings.Contains(err.Error(), "stopping fails of cluster c1: scaling Deployment") {
		t.Errorf("stopping a task whose stop fails: %v; want its error, naming the component and cluster", err)
	}
	if err := c.stopComponent("slow"); err != nil {
		t.Errorf("stopping a task within its own stop time (longer than it takes): %v", err)
	}
	if err := c.stopComponent("stuck"); err == nil || !strings.Contains(err.Error(), "stuck of cluster c1 did not stop in 200ms") {
		t.Errorf("stopping a task that overruns its stop time: %v", err)
	}

	// Started again, a task runs its own spec again.
	if err := c.startComponent(context.Background(), "ok"); err != nil {
		t.Fatal(err)
	}
	if !c.inproc["ok"].running() {
		t.Error("started again, the task is not running")
	}
	if err := c.stopComponent("ok"); err != nil {
		t.Error(err)
	}
	// Stopping one that already stopped is done, not an error.
	if err := c.stopComponent("ok"); err != nil {
		t.Errorf("stopping a stopped task: %v", err)
	}
}

// Scaled to 0, the agent's pods cannot be listed: the stop fails and says why, not that
// some number of pods stayed.
func TestWaitNoAgentPodsListFails(t *testing.T) {
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: agentDeployment, Namespace: chart.Namespace},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "strait-agent"}}}}
	kube := fake.NewClientset(deploy)
	kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := waitNoAgentPods(ctx, kube)
	if err == nil || !strings.Contains(err.Error(), "could not be listed") || !strings.Contains(err.Error(), "etcd is down") {
		t.Errorf("pods cannot be listed: %v; want an error that says so, with the cause", err)
	}
}
