package e2e

import (
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/plan"
)

// TestDeploymentManifestsApplyToALabCluster applies config/default with kubectl's kustomize
// to a real API server, twice (the second apply changes nothing), and checks the agent's
// Deployment and RBAC exist.
func TestDeploymentManifestsApplyToALabCluster(t *testing.T) {
	// The test installs the chart itself, on clusters whose agents run in the supervisor.
	lab, err := labtest.Try(t, labtest.Options{Names: plan.DefaultNames(1), AgentsInSupervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	config := filepath.Join(filepath.Dir(file), "..", "..", "config", "default")
	kubectl := filepath.Join(lab.Dir.BinDir(), "kubectl")
	for i := 0; i < 2; i++ {
		out, err := exec.Command(kubectl, "--kubeconfig", lab.Kubeconfig(), "--context", "cluster01", "apply", "-k", config).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply -k config/default: %v\n%s", err, out)
		}
		if i == 1 && strings.Contains(string(out), "configured") && !strings.Contains(string(out), "unchanged") {
			t.Errorf("a second apply changed objects:\n%s", out)
		}
	}
	cs := lab.Client("cluster01")
	ctx := context.Background()
	if d, err := cs.AppsV1().Deployments("strait-system").Get(ctx, "strait-agent", metav1.GetOptions{}); err != nil || *d.Spec.Replicas != 2 {
		t.Errorf("agent Deployment: %v %v", d, err)
	}
	if _, err := cs.RbacV1().ClusterRoles().Get(ctx, "strait-agent", metav1.GetOptions{}); err != nil {
		t.Errorf("agent ClusterRole: %v", err)
	}
}
