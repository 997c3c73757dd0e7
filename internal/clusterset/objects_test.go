package clusterset

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/clientcmd"
)

// allows reports whether rules grant verb on group/resource.
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) {
			return true
		}
	}
	return false
}

func TestMemberRBACIsLeastPrivilege(t *testing.T) {
	own := memberRole("cluster02").Rules
	for _, gr := range [][2]string{
		{mcsGroup, "serviceimports"}, {discoveryGroup, "endpointslices"}, {coordinationGroup, "leases"}, {"", "events"}, {eventsGroup, "events"},
	} {
		for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
			if !allows(own, gr[0], gr[1], verb) {
				t.Errorf("member role does not allow %s on %s.%s", verb, gr[1], gr[0])
			}
		}
	}
	if !allows(own, "", "configmaps", "get") || allows(own, "", "configmaps", "update") || allows(own, "", "configmaps", "create") {
		t.Error("a member must read but never write configmaps (its membership record)")
	}
	for _, res := range []string{"secrets", "serviceaccounts", "roles", "rolebindings", "namespaces"} {
		for _, r := range own {
			if slices.Contains(r.Resources, res) || slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") {
				t.Errorf("member role grants %v on %v", r.Verbs, r.Resources)
			}
		}
	}
	reader := readerClusterRole().Rules
	for _, r := range reader {
		if !slices.Equal(r.Verbs, readVerbs) {
			t.Errorf("reader role grants %v on %v; only %v is allowed", r.Verbs, r.Resources, readVerbs)
		}
	}
	for _, gr := range [][2]string{{"", "namespaces"}, {"", "configmaps"}, {mcsGroup, "serviceimports"}, {discoveryGroup, "endpointslices"}, {coordinationGroup, "leases"}} {
		if !allows(reader, gr[0], gr[1], "watch") {
			t.Errorf("reader role does not allow watching %s.%s", gr[1], gr[0])
		}
	}
	for _, b := range []rbacv1.Subject{memberRoleBinding("cluster02").Subjects[0], readerBinding("cluster02").Subjects[0]} {
		if b.Name != AgentServiceAccount || b.Namespace != "strait-member-cluster02" {
			t.Errorf("binding subject %+v", b)
		}
	}
	if readerBinding("cluster02").Name != "strait-member-reader-cluster02" {
		t.Errorf("reader binding name %s", readerBinding("cluster02").Name)
	}
	for _, l := range []map[string]string{memberRole("x").Labels, readerBinding("x").Labels, agentTokenSecret("x").Labels, membershipConfigMap(Member{ID: "x"}).Labels} {
		if l[ManagedByLabel] != ManagedByValue || l[ClusterIDLabel] != "x" {
			t.Errorf("labels %v", l)
		}
	}
}

func TestBrokerKubeconfig(t *testing.T) {
	data, err := BrokerKubeconfig(BrokerEndpoint{Server: "https://broker:6443", CAData: []byte("CA"), ServerName: "api"}, "cluster02", []byte("tok"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(data)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://broker:6443" || string(cfg.CAData) != "CA" || cfg.BearerToken != "tok" || cfg.ServerName != "api" {
		t.Errorf("config %+v", cfg)
	}
	raw, _ := clientcmd.Load(data)
	if ns := raw.Contexts[raw.CurrentContext].Namespace; ns != "strait-member-cluster02" {
		t.Errorf("default namespace %q", ns)
	}
}

func TestBrokerRESTConfig(t *testing.T) {
	ctx := context.Background()
	cs := fake.NewClientset()
	if _, err := BrokerRESTConfig(ctx, cs); err == nil || !strings.Contains(err.Error(), "run strait join") || !apierrors.IsNotFound(errors.Unwrap(err)) {
		t.Errorf("no secret: %v", err)
	}
	data, _ := BrokerKubeconfig(BrokerEndpoint{Server: "https://b"}, "c", []byte("t"))
	if _, err := cs.CoreV1().Secrets(SystemNamespace).Create(ctx, brokerSecret("c", data), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := BrokerRESTConfig(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://b" || cfg.QPS != ClientQPS || cfg.Burst != ClientBurst {
		t.Errorf("config host %s qps %v burst %d", cfg.Host, cfg.QPS, cfg.Burst)
	}
}

func TestEnsureIsIdempotentAndRollbackRemovesOnlyCreated(t *testing.T) {
	ctx := context.Background()
	existing := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: SystemNamespace, Labels: map[string]string{"team": "net"}}}
	cs := fake.NewClientset(existing)
	j := &journal{}
	nss := cs.CoreV1().Namespaces()
	if _, err := ensure(ctx, j, "c", "Namespace", nss, namespace(SystemNamespace, ""), noSpec[*corev1.Namespace]); err != nil {
		t.Fatal(err)
	}
	if _, err := ensure(ctx, j, "c", "Namespace", nss, namespace(MemberNamespace("a"), "a"), noSpec[*corev1.Namespace]); err != nil {
		t.Fatal(err)
	}
	cms := cs.CoreV1().ConfigMaps(MemberNamespace("a"))
	m := Member{ID: "a", PodCIDRs: []string{"10.1.0.0/16"}}
	if _, err := ensure(ctx, j, "c", "ConfigMap", cms, membershipConfigMap(m), reconcileConfigMap); err != nil {
		t.Fatal(err)
	}
	want := []string{"updated Namespace strait-system in c", "created Namespace strait-member-a in c", "created ConfigMap strait-member-a/strait-membership in c"}
	if got := actionStrings(j.actions); !slices.Equal(got, want) {
		t.Errorf("actions %q, want %q", got, want)
	}
	ns, _ := nss.Get(ctx, SystemNamespace, metav1.GetOptions{})
	if ns.Labels["team"] != "net" || ns.Labels[ManagedByLabel] != ManagedByValue {
		t.Errorf("labels of the existing namespace: %v (others' labels must stay)", ns.Labels)
	}

	// A second run changes nothing; a changed record is updated.
	again := &journal{}
	ensure(ctx, again, "c", "Namespace", nss, namespace(SystemNamespace, ""), noSpec[*corev1.Namespace])
	ensure(ctx, again, "c", "ConfigMap", cms, membershipConfigMap(m), reconcileConfigMap)
	if len(again.actions) != 0 {
		t.Errorf("second run: %q", actionStrings(again.actions))
	}
	m.Zone = "z"
	ensure(ctx, again, "c", "ConfigMap", cms, membershipConfigMap(m), reconcileConfigMap)
	if got := actionStrings(again.actions); !slices.Equal(got, []string{"updated ConfigMap strait-member-a/strait-membership in c"}) {
		t.Errorf("changed record: %q", got)
	}

	if err := j.rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := nss.Get(ctx, SystemNamespace, metav1.GetOptions{}); err != nil {
		t.Errorf("rollback removed the namespace that existed before: %v", err)
	}
	if _, err := nss.Get(ctx, MemberNamespace("a"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("rollback left the namespace it created: %v", err)
	}
	if _, err := cms.Get(ctx, MembershipConfigMap, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("rollback left the ConfigMap it created: %v", err)
	}
}

func TestEnsureRefusesImmutableChanges(t *testing.T) {
	ctx := context.Background()
	b := readerBinding("a")
	b.RoleRef.Name = "cluster-admin"
	cs := fake.NewClientset(b)
	_, err := ensure(ctx, &journal{}, "broker", "ClusterRoleBinding", cs.RbacV1().ClusterRoleBindings(), readerBinding("a"), reconcileClusterRoleBinding)
	if err == nil || !strings.Contains(err.Error(), "ClusterRoleBinding strait-member-reader-a in broker: it refers to ClusterRole cluster-admin") {
		t.Errorf("error %v", err)
	}
}

func TestReconcileCRD(t *testing.T) {
	desired, err := desiredCRD(mcsDefinitions[1])
	if err != nil {
		t.Fatal(err)
	}
	if desired.GetName() != "serviceimports.multicluster.x-k8s.io" {
		t.Fatalf("name %s", desired.GetName())
	}
	versions := []string{"v1alpha1", "v1beta1"}
	foreign := func(served ...string) *unstructured.Unstructured {
		var vs []any
		for _, v := range served {
			vs = append(vs, map[string]any{"name": v, "served": true})
		}
		vs = append(vs, map[string]any{"name": "v0", "served": false})
		return &unstructured.Unstructured{Object: map[string]any{"metadata": map[string]any{"name": desired.GetName()}, "spec": map[string]any{"versions": vs}}}
	}
	if _, err := reconcileCRD(versions)(foreign("v1alpha1", "v1beta1"), desired); !errors.Is(err, errKeep) {
		t.Errorf("someone else's definition serving both versions: %v, want it kept as it is", err)
	}
	if _, err := reconcileCRD(versions)(foreign("v1alpha1"), desired); err == nil || !strings.Contains(err.Error(), "was not installed by strait and does not serve v1beta1") {
		t.Errorf("someone else's definition without v1beta1: %v", err)
	}
	ours := desired.DeepCopy()
	if changed, err := reconcileCRD(versions)(ours, desired); changed || err != nil {
		t.Errorf("same manifest: changed %v, %v", changed, err)
	}
	ours.SetAnnotations(map[string]string{manifestDigestAnnotation: "old"})
	ours.Object["spec"] = map[string]any{}
	if changed, err := reconcileCRD(versions)(ours, desired); !changed || err != nil || ours.Object["spec"] == nil || len(ours.Object["spec"].(map[string]any)) == 0 {
		t.Errorf("older manifest: changed %v, %v", changed, err)
	}
}

func actionStrings(actions []Action) []string {
	var out []string
	for _, a := range actions {
		out = append(out, a.String())
	}
	return out
}

func TestMembershipRecordIsNotTakenOver(t *testing.T) {
	ctx := context.Background()
	theirs := membershipConfigMap(Member{ID: "a", ClusterUID: "uid-1"})
	cs := fake.NewClientset(theirs)
	mine := membershipConfigMap(Member{ID: "a", ClusterUID: "uid-2"})
	_, err := ensure(ctx, &journal{}, "broker", "ConfigMap", cs.CoreV1().ConfigMaps(MemberNamespace("a")), mine, reconcileConfigMap)
	if !errors.Is(err, ErrIDTaken) || !strings.Contains(err.Error(), "ConfigMap strait-member-a/strait-membership in broker: it belongs to another cluster (kube-system namespace uid uid-1)") {
		t.Errorf("error %v", err)
	}
}
