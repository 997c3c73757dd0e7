package install

import (
	"context"
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/chart"
)

// installedObjects is a cluster holding everything the chart installs (CRDs aside: the
// fake serves them as any other kind), with a mapper that serves every kind but
// ServiceMonitor, as on a cluster without the Prometheus operator.
func installedObjects(t *testing.T) ([]*unstructured.Unstructured, *dynamicfake.FakeDynamicClient, meta.RESTMapper) {
	t.Helper()
	objs, err := chart.Render(map[string]any{"federation": map[string]any{"enabled": true}}, chart.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	mapper := meta.NewDefaultRESTMapper(nil)
	listKinds := map[schema.GroupVersionResource]string{}
	var held []runtime.Object
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		if gvk.Kind == "ServiceMonitor" {
			continue
		}
		scope := meta.RESTScopeRoot
		if o.GetNamespace() != "" {
			scope = meta.RESTScopeNamespace
		}
		mapper.Add(gvk, scope)
		gvr, _ := meta.UnsafeGuessKindToResource(gvk)
		listKinds[gvr] = gvk.Kind + "List"
		held = append(held, o.DeepCopy())
	}
	return objs, dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds, held...), mapper
}

// remaining lists the kinds and names the fake still holds, of the objects uninstall deletes.
func remaining(t *testing.T, dyn *dynamicfake.FakeDynamicClient, mapper meta.RESTMapper, objs []*unstructured.Unstructured) []string {
	t.Helper()
	var left []string
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil || gvk.Kind == "CustomResourceDefinition" || gvk.Kind == "Namespace" {
			continue
		}
		if _, err := dyn.Resource(m.Resource).Namespace(o.GetNamespace()).Get(context.Background(), o.GetName(), metav1.GetOptions{}); err == nil {
			left = append(left, describe(o))
		}
	}
	return left
}

// An uninstall that cannot delete an object midway stops there: the Deployments deleted
// before it are gone, the ServiceAccounts and RBAC they ran with are kept with it, the
// error names the object and the cause; a second run, the cause gone, deletes the rest.
func TestUninstallStopsAtAFailedDeletionAndResumes(t *testing.T) {
	ctx := context.Background()
	objs, dyn, mapper := installedObjects(t)
	failing := true
	dyn.PrependReactor("delete", "clusterrolebindings", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if failing && a.(k8stesting.DeleteAction).GetName() == "strait-agent" {
			return true, nil, apierrors.NewServiceUnavailable("etcdserver: request timed out")
		}
		return false, nil, nil
	})
	in := &installer{o: Options{Cluster: "cluster02", Objects: objs}, kube: fake.NewClientset(), dyn: dyn, mapper: mapper}
	_, err := in.uninstall(ctx)
	if err == nil || !strings.Contains(err.Error(), "ClusterRoleBinding strait-agent from cluster02") || !strings.Contains(err.Error(), "request timed out") ||
		!strings.Contains(err.Error(), "run the uninstall again") {
		t.Fatalf("uninstall with the agent's ClusterRoleBinding undeletable: %v; want an error naming it, the cause and what to do", err)
	}
	left := strings.Join(remaining(t, dyn, mapper, objs), ", ")
	for _, gone := range []string{"Deployment strait-system/strait-agent", "Deployment strait-system/strait-federation-controller"} {
		if strings.Contains(left, gone) {
			t.Errorf("%s is left after the failed uninstall; the Deployments go first", gone)
		}
	}
	for _, kept := range []string{"ClusterRoleBinding strait-agent", "ClusterRole strait-agent", "ServiceAccount strait-system/strait-agent"} {
		if !strings.Contains(left, kept) {
			t.Errorf("%s was deleted although the uninstall stopped before it; left: %s", kept, left)
		}
	}

	failing = false
	in = &installer{o: Options{Cluster: "cluster02", Objects: objs}, kube: fake.NewClientset(), dyn: dyn, mapper: mapper}
	res, err := in.uninstall(ctx)
	if err != nil {
		t.Fatalf("the second uninstall: %v", err)
	}
	if left := remaining(t, dyn, mapper, objs); len(left) != 0 {
		t.Errorf("after the second uninstall %v are left", left)
	}
	if len(res.Actions) == 0 || res.Actions[0].Name != "strait-agent" || res.Actions[0].Kind != "ClusterRoleBinding" {
		t.Errorf("the second uninstall's first deletion is %+v, want the ClusterRoleBinding it stopped at", res.Actions)
	}
}

// An uninstall whose deletions are all refused deletes nothing and says so.
func TestUninstallRefusedDeletesNothing(t *testing.T) {
	objs, dyn, mapper := installedObjects(t)
	dyn.PrependReactor("delete", "*", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "apps", Resource: "deployments"}, "strait-agent", errors.New("user cannot delete"))
	})
	in := &installer{o: Options{Cluster: "cluster02", Objects: objs}, kube: fake.NewClientset(), dyn: dyn, mapper: mapper}
	res, err := in.uninstall(context.Background())
	if err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("uninstall with every deletion forbidden: %v", err)
	}
	if len(res.Actions) != 0 {
		t.Errorf("uninstall reports %+v although nothing could be deleted", res.Actions)
	}
	_, fresh, _ := installedObjects(t)
	if got, want := len(remaining(t, dyn, mapper, objs)), len(remaining(t, fresh, mapper, objs)); got != want || want == 0 {
		t.Errorf("%d objects left, want all %d", got, want)
	}
}
