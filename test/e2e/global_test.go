package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// replies sends n requests from a cluster to url and counts the replies per cluster; a
// missing reply is an error.
func replies(ctx context.Context, t *testing.T, lab *labtest.Lab, from, url string, n int) (map[string]int, error) {
	counts := map[string]int{}
	got := curlEach(ctx, t, lab, from, url, n)
	for _, r := range got {
		counts[r.Cluster]++
	}
	if len(got) != n {
		return counts, fmt.Errorf("%d of %d requests answered", len(got), n)
	}
	return counts, nil
}

func annotate(t *testing.T, cs kubernetes.Interface, ns, name string, annotations map[string]any) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if _, err := cs.CoreV1().Services(ns).Patch(context.Background(), name, "application/merge-patch+json", data, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func remoteSources(ctx context.Context, cs kubernetes.Interface, ns, name string) (map[string]int, error) {
	slices, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: "strait.io/global-service=" + name})
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, s := range slices.Items {
		if s.Labels[discoveryv1.LabelServiceName] != name {
			return nil, fmt.Errorf("slice %s is not attached to Service %s", s.Name, name)
		}
		out[s.Labels["multicluster.kubernetes.io/source-cluster"]] += len(s.Endpoints)
	}
	return out, nil
}

// TestGlobalServices tries global Services (as Cilium ClusterMesh has them) on two lab clusters:
// rebel-base in both, x-wing requests from cluster01 through the plain local name.
func TestGlobalServices(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	c1, c2 := lab.Client("cluster01"), lab.Client("cluster02")
	for _, cs := range []kubernetes.Interface{c1, c2} {
		createNamespace(t, cs, "demo")
		if _, err := cs.AppsV1().Deployments("demo").Create(ctx, deployment("demo", "rebel-base", 2, 80), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cs.CoreV1().Services("demo").Create(ctx, service("demo", "rebel-base", 80), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Strait's annotation in cluster01, Cilium's in cluster02: both are honoured.
	annotate(t, c1, "demo", "rebel-base", map[string]any{"service.strait.io/global": "true"})
	annotate(t, c2, "demo", "rebel-base", map[string]any{"service.cilium.io/global": "true"})
	const url = "http://rebel-base.demo/"

	poll(t, 2*time.Minute, "100 requests from cluster01 reach both clusters", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, lab, "cluster01", url, 100)
		return err == nil && counts["cluster01"] > 0 && counts["cluster02"] > 0, fmt.Errorf("replies %v, %v", counts, err)
	})

	// affinity local: only cluster01 while it has ready pods.
	annotate(t, c1, "demo", "rebel-base", map[string]any{"service.strait.io/affinity": "local"})
	poll(t, 30*time.Second, "affinity local: all replies from cluster01", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, lab, "cluster01", url, 20)
		return err == nil && counts["cluster01"] == 20, fmt.Errorf("replies %v, %v", counts, err)
	})
	if _, err := c1.AppsV1().Deployments("demo").UpdateScale(ctx, "rebel-base", scale("demo", "rebel-base", 0), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 30*time.Second, "cluster01 scaled to 0: all replies from cluster02", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, lab, "cluster01", url, 20)
		return err == nil && counts["cluster02"] == 20, fmt.Errorf("replies %v, %v", counts, err)
	})
	if _, err := c1.AppsV1().Deployments("demo").UpdateScale(ctx, "rebel-base", scale("demo", "rebel-base", 2), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, 60*time.Second, "cluster01 scaled back: local again", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, lab, "cluster01", url, 20)
		return err == nil && counts["cluster01"] == 20, fmt.Errorf("replies %v, %v", counts, err)
	})

	// shared=false in cluster02: it still reaches cluster01's pods; cluster01 never reaches its.
	annotate(t, c1, "demo", "rebel-base", map[string]any{"service.strait.io/affinity": "none"})
	annotate(t, c2, "demo", "rebel-base", map[string]any{"service.cilium.io/shared": "false"})
	poll(t, 30*time.Second, "cluster01 holds no endpoints of the unshared cluster02", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, c1, "demo", "rebel-base")
		return err == nil && len(src) == 0, fmt.Errorf("remote slices %v, %v", src, err)
	})
	counts, err := replies(ctx, t, lab, "cluster01", url, 30)
	if err != nil || counts["cluster02"] > 0 {
		t.Errorf("cluster01 reached cluster02 although it does not share: %v %v", counts, err)
	}
	poll(t, 30*time.Second, "cluster02 still reaches cluster01's pods", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, lab, "cluster02", url, 40)
		return err == nil && counts["cluster01"] > 0, fmt.Errorf("replies %v, %v", counts, err)
	})

	// Stopping cluster01's agent past its grace period withdraws its endpoints from cluster02;
	// starting it brings them back.
	lab.StopComponent("cluster01", supervisor.Agent)
	poll(t, 90*time.Second, "cluster01's endpoints withdrawn from cluster02 after its lease expired", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, c2, "demo", "rebel-base")
		return err == nil && src["cluster01"] == 0, fmt.Errorf("remote slices %v, %v", src, err)
	})
	lab.StartComponent("cluster01", supervisor.Agent)
	poll(t, 60*time.Second, "cluster01's endpoints back in cluster02", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, c2, "demo", "rebel-base")
		return err == nil && src["cluster01"] == 2, fmt.Errorf("remote slices %v, %v", src, err)
	})

	// Removing the annotation removes the remote slices.
	annotate(t, c2, "demo", "rebel-base", map[string]any{"service.cilium.io/global": nil})
	poll(t, 30*time.Second, "no remote slices once the Service is not global", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, c2, "demo", "rebel-base")
		return err == nil && len(src) == 0, fmt.Errorf("remote slices %v, %v", src, err)
	})
}
