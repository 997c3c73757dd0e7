package supervisor

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/install"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// agentDeployment is the agent's Deployment in the chart.
const agentDeployment = "strait-agent"

// agentValues are the chart values of a lab cluster's agent: as `strait join --install`
// sets them (brokerHost on the broker's cluster), one replica, and in pods mode the lab's
// strait image, which every node has loaded.
func agentValues(brokerHost, pods bool) map[string]any {
	agent := map[string]any{"brokerHost": brokerHost}
	if !pods {
		return map[string]any{"agent": agent}
	}
	agent["replicas"] = 1
	agent["podDisruptionBudget"] = map[string]any{"enabled": false}
	return map[string]any{"agent": agent, "image": map[string]any{"repository": images.Strait, "tag": images.LabTag}}
}

// installAgent puts a cluster's agent in place once it has joined. With agents in pods, it
// installs the chart's agent as `strait join --install` does, and waits until its pod is
// ready. Else it gives the cluster the agent's ServiceAccount, roles and bindings exactly as
// the chart renders them: the supervisor's in-process agent authenticates as that
// ServiceAccount. Either way every lab test runs the agent under the chart's RBAC, and a
// right the chart lacks fails the lab as it would fail an installed agent.
func (s *Supervisor) installAgent(ctx context.Context, c plan.Cluster, brokerHost bool) error {
	values := agentValues(brokerHost, s.agentPods)
	var objs []*unstructured.Unstructured
	var err error
	if s.agentPods {
		objs, err = chart.Render(values, chart.Namespace)
	} else {
		objs, err = chart.RBAC(values, chart.AgentServiceAccount)
	}
	if err != nil {
		return err
	}
	if _, err := install.Install(ctx, install.Options{
		Config:  state.RESTConfig(s.dir.Cluster(c.Name), c, state.Admin),
		Cluster: c.Name,
		Objects: objs,
		Timeout: startTimeout,
	}); err != nil {
		return fmt.Errorf("installing the strait agent of cluster %s from the chart: %w", c.Name, err)
	}
	return nil
}

// agentPodsTask is the agent component of a cluster whose agent runs as the chart's
// Deployment: started, it scales the Deployment to one replica; stopped (StopComponent),
// to none, and it returns once no agent pod is left, so a test that stopped the agent
// knows nothing of it still writes; an error then is the stop's failure. When the whole
// cluster stops (labStopping), the pods stop with the node, and nothing is scaled.
func agentPodsTask(kube kubernetes.Interface, labStopping func() bool) taskSpec {
	return taskSpec{run: agentPodsRunner(kube, labStopping), stopTime: stopGrace + agentPodsStopTimeout}
}

func agentPodsRunner(kube kubernetes.Interface, labStopping func() bool) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := scaleAgent(ctx, kube, 1); err != nil {
			return err
		}
		<-ctx.Done()
		if labStopping() {
			return nil
		}
		sctx, cancel := context.WithTimeout(context.Background(), agentPodsStopTimeout)
		defer cancel()
		if err := scaleAgent(sctx, kube, 0); err != nil {
			return err
		}
		return waitNoAgentPods(sctx, kube)
	}
}

// agentPodsStopTimeout bounds how long stopping the agent's pods may take: the agent
// leaves at SIGTERM, but the kubelet's work and the pod's deletion take some seconds.
const agentPodsStopTimeout = 45 * time.Second

func scaleAgent(ctx context.Context, kube kubernetes.Interface, replicas int) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas)
	if _, err := kube.AppsV1().Deployments(chart.Namespace).Patch(ctx, agentDeployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scaling Deployment %s/%s to %d: %w", chart.Namespace, agentDeployment, replicas, err)
	}
	return nil
}

// waitNoAgentPods waits until the agent's Deployment has no pod left, terminating or not.
func waitNoAgentPods(ctx context.Context, kube kubernetes.Interface) error {
	d, err := kube.AppsV1().Deployments(chart.Namespace).Get(ctx, agentDeployment, metav1.GetOptions{})
	if err != nil {
		return err
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return err
	}
	left, listErr := -1, error(nil)
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := kube.CoreV1().Pods(chart.Namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			listErr = err
			return false, nil
		}
		left = len(pods.Items)
		return left == 0, nil
	})
	switch {
	case err == nil:
		return nil
	case left < 0:
		return fmt.Errorf("the pods of Deployment %s/%s could not be listed after it was scaled to 0, so they may still run: %w", chart.Namespace, agentDeployment, listErr)
	}
	return fmt.Errorf("%d pods of Deployment %s/%s are still there after it was scaled to 0", left, chart.Namespace, agentDeployment)
}

// agentDeploymentReady says whether the agent's Deployment has all its replicas updated
// and available (each pod ready: its /readyz, synced caches and the broker reachable).
func agentDeploymentReady(d *appsv1.Deployment) error {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	switch {
	case want == 0:
		return errors.New("the agent's Deployment is scaled to 0")
	case d.Status.ObservedGeneration < d.Generation:
		return errors.New("the agent's Deployment is being rolled out")
	case d.Status.UpdatedReplicas < want || d.Status.AvailableReplicas < want:
		return fmt.Errorf("the agent's Deployment has %d of %d replicas updated, %d available", d.Status.UpdatedReplicas, want, d.Status.AvailableReplicas)
	}
	return nil
}
