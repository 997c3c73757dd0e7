package diagnose

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/diagnose"
)

// A namespace named strait-diagnose that diagnose did not make is never deleted: the run
// stops with an error that names it and what to do.
func TestForeignNamespaceIsLeftAlone(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: diagnose.Namespace, Labels: map[string]string{"team": "payments"}}})
	err := deleteNamespace(ctx, kube, time.Second)
	if err == nil || !strings.Contains(err.Error(), "namespace "+diagnose.Namespace) || !strings.Contains(err.Error(), "app.kubernetes.io/managed-by=strait-diagnose") {
		t.Fatalf("deleting a foreign %s: %v; want an error naming it and the missing label", diagnose.Namespace, err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, diagnose.Namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("the foreign namespace after the refusal: %v, want it kept", err)
	}
	var progress bytes.Buffer
	(&options{progress: &progress}).cleanup([]*member{{name: "cluster01", kube: kube}})
	if !strings.Contains(progress.String(), "cluster01: namespace "+diagnose.Namespace+" exists but was not made by strait diagnose") {
		t.Errorf("cleanup said %q, want the member and why its namespace was kept", progress.String())
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, diagnose.Namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("the foreign namespace after cleanup: %v, want it kept", err)
	}
}

// The namespace of an earlier run (diagnose's labels) is deleted; none at all is fine.
func TestOwnNamespaceIsDeleted(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset(diagnose.NamespaceObject())
	if err := deleteNamespace(ctx, kube, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, diagnose.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the earlier run's namespace: %v, want deleted", err)
	}
	if err := deleteNamespace(ctx, kube, time.Second); err != nil {
		t.Fatalf("with no namespace: %v", err)
	}
}

// When the namespace cannot be read (the API server errs), nothing is deleted: diagnose
// cannot tell whose it is, and says why it stopped.
func TestNamespaceThatCannotBeReadIsLeftAlone(t *testing.T) {
	ctx := context.Background()
	kube := fake.NewClientset(diagnose.NamespaceObject())
	kube.PrependReactor("get", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd is down")
	})
	deleted := false
	kube.PrependReactor("delete", "namespaces", func(k8stesting.Action) (bool, runtime.Object, error) {
		deleted = true
		return false, nil, nil
	})
	err := deleteNamespace(ctx, kube, time.Second)
	if err == nil || !strings.Contains(err.Error(), "reading namespace "+diagnose.Namespace) || !strings.Contains(err.Error(), "etcd is down") {
		t.Errorf("with namespaces unreadable: %v; want an error naming the namespace and the cause", err)
	}
	if deleted {
		t.Error("a namespace that could not be read was deleted")
	}
}
