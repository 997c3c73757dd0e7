package supervisor

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/lab/state"
)

// Every lab pod may get Pods and Nodes, and nothing more, so rebel-base can read its own.
func TestApplyResponderRBAC(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	for range 2 { // applying twice is the same as once
		if err := ApplyResponderRBAC(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	role, err := cs.RbacV1().ClusterRoles().Get(ctx, ResponderRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(role.Rules) != 1 {
		t.Fatalf("rules %+v, want one", role.Rules)
	}
	r := role.Rules[0]
	if !slices.Equal(r.APIGroups, []string{""}) || !slices.Equal(r.Resources, []string{"pods", "nodes"}) || !slices.Equal(r.Verbs, []string{"get"}) {
		t.Errorf("rule %+v, want get on core pods and nodes only", r)
	}
	b, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, ResponderRole, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantSubject := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: "system:serviceaccounts"}
	if len(b.Subjects) != 1 || b.Subjects[0] != wantSubject {
		t.Errorf("subjects %+v, want %+v", b.Subjects, wantSubject)
	}
	if b.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ResponderRole}) {
		t.Errorf("role ref %+v", b.RoleRef)
	}
	if role.Labels["app.kubernetes.io/managed-by"] != ManagedBy || b.Labels["app.kubernetes.io/managed-by"] != ManagedBy {
		t.Errorf("labels %v / %v, want managed-by %s", role.Labels, b.Labels, ManagedBy)
	}
}

func TestApplyResponderRBACNamesWhatFailed(t *testing.T) {
	cs := fake.NewClientset()
	cs.PrependReactor("patch", "clusterrolebindings", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("etcd is down")
	})
	err := ApplyResponderRBAC(context.Background(), cs)
	if err == nil || !strings.Contains(err.Error(), "ClusterRoleBinding "+ResponderRole) || !strings.Contains(err.Error(), "etcd is down") {
		t.Errorf("err = %v, want one naming the ClusterRoleBinding and the cause", err)
	}
}

// The lab's agents authenticate as the user a pod of the chart's agent ServiceAccount is,
// or the chart's bindings would not apply to them.
func TestLabAgentIsTheChartsServiceAccount(t *testing.T) {
	if want := chart.ServiceAccountUser(chart.AgentServiceAccount); state.AgentUser != want {
		t.Errorf("the lab's agent certificate is for %q; the chart binds its rights to %q", state.AgentUser, want)
	}
}
