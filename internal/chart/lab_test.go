package chart

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"

	"github.com/strait-io/strait/internal/lab/labtest"
)

// A real API server accepts every object the chart renders, with every component on
// (server-side apply, dry run: its validation, RBAC escalation checks and defaulting run,
// nothing is stored), and invalid values never reach it.
func TestRenderedChartIsAcceptedByAnAPIServer(t *testing.T) {
	lab := labtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := lab.RESTConfig("cluster01")
	kube := lab.Client("cluster01")
	// strait join creates the namespace; the chart does not.
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))

	objs, err := Render(map[string]any{
		"dns":        map[string]any{"enabled": true, "domain": "example.com"},
		"federation": map[string]any{"enabled": true},
	}, Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Errorf("%s %s: the API server does not serve it: %v", gvk.Kind, o.GetName(), err)
			continue
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if o.GetNamespace() != "" {
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "strait-chart-test", Force: true, DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("server-side dry-run apply of %s %s refused: %v", gvk.Kind, o.GetName(), err)
		}
	}
	for _, name := range []string{"strait-dns", "strait-federation-controller"} {
		if _, err := kube.AppsV1().Deployments(Namespace).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment %s after a dry run: %v, want not found", name, err)
		}
	}

	// An invalid value is refused before anything is sent: no objects at all.
	bad, err := Render(map[string]any{"agent": map[string]any{"replicas": -1}, "dns": map[string]any{"enabled": true, "domain": "example.com"}}, Namespace)
	if err == nil || len(bad) != 0 || !strings.Contains(err.Error(), "/agent/replicas") {
		t.Fatalf("Render with agent.replicas=-1: %d objects, %v", len(bad), err)
	}
	if _, err := kube.AppsV1().Deployments(Namespace).Get(ctx, "strait-dns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment strait-dns after refused values: %v, want not found", err)
	}
}
