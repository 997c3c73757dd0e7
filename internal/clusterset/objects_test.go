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

// grants are the RBAC objects join writes on a broker for members a and b, federation
// namespace fed.
func grants() ([]*rbacv1.Role, []*rbacv1.RoleBinding, []*rbacv1.ClusterRole, []*rbacv1.ClusterRoleBinding) {
	var roles []*rbacv1.Role
	var bindings []*rbacv1.RoleBinding
	for _, id := range []string{"a", "b"} {
		roles = append(roles, memberRole(id), readerRole(MemberNamespace(id), id, readMemberRecords), memberTokenRole(id))
		bindings = append(bindings, memberRoleBinding(id), readerRoleBinding(MemberNamespace(id), id), memberTokenRoleBinding(id))
	}
	roles = append(roles, readerRole(ClustersetNamespace, "", readRegistry), readerRole("fed", "", readFederation))
	bindings = append(bindings, readerRoleBinding(ClustersetNamespace, ""), readerRoleBinding("fed", ""))
	return roles, bindings, []*rbacv1.ClusterRole{readerClusterRole()}, []*rbacv1.ClusterRoleBinding{readerClusterRoleBinding()}
}

// can evaluates the grants for the ServiceAccount of member id, as the RBAC authorizer
// would: a request on resource (group/resource[/subresource]) named name in namespace ns
// (empty: cluster-wide, or a cluster-scoped object).
func can(id, verb, group, resource, ns, name string) bool {
	user := "system:serviceaccount:" + ClustersetNamespace + ":" + RegistryName(id)
	groups := []string{"system:serviceaccounts", MembersGroup, "system:authenticated"}
	matches := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			switch s.Kind {
			case rbacv1.ServiceAccountKind:
				if "system:serviceaccount:"+s.Namespace+":"+s.Name == user {
					return true
				}
			case rbacv1.GroupKind:
				if slices.Contains(groups, s.Name) {
					return true
				}
			}
		}
		return false
	}
	allows := func(rules []rbacv1.PolicyRule) bool {
		for _, r := range rules {
			if slices.Contains(r.APIGroups, group) && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
				(len(r.ResourceNames) == 0 || (name != "" && slices.Contains(r.ResourceNames, name))) {
				return true
			}
		}
		return false
	}
	roles, bindings, clusterRoles, clusterBindings := grants()
	for _, b := range clusterBindings {
		for _, r := range clusterRoles {
			if b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == r.Name && matches(b.Subjects) && allows(r.Rules) {
				return true
			}
		}
	}
	if ns == "" {
		return false
	}
	for _, b := range bindings {
		for _, r := range roles {
			if b.Namespace == ns && r.Namespace == ns && b.RoleRef.Kind == "Role" && b.RoleRef.Name == r.Name && matches(b.Subjects) && allows(r.Rules) {
				return true
			}
		}
	}
	return false
}

func TestMemberGrantsAreLeastPrivilege(t *testing.T) {
	own, other := MemberNamespace("a"), MemberNamespace("b")
	records := [][2]string{{mcsGroup, "serviceimports"}, {discoveryGroup, "endpointslices"}, {coordinationGroup, "leases"}}
	for _, gr := range records {
		for _, verb := range []string{"get", "list", "watch"} {
			for _, ns := range []string{own, other} {
				if !can("a", verb, gr[0], gr[1], ns, "") {
					t.Errorf("member a cannot %s %s.%s in %s", verb, gr[1], gr[0], ns)
				}
			}
			if can("a", verb, gr[0], gr[1], "", "") || can("a", verb, gr[0], gr[1], "default", "") {
				t.Errorf("member a can %s %s.%s outside member namespaces", verb, gr[1], gr[0])
			}
		}
		for _, verb := range []string{"create", "update", "patch", "delete"} {
			if !can("a", verb, gr[0], gr[1], own, "") {
				t.Errorf("member a cannot %s %s.%s in its own namespace", verb, gr[1], gr[0])
			}
			if can("a", verb, gr[0], gr[1], other, "") || can("a", verb, gr[0], gr[1], ClustersetNamespace, "") {
				t.Errorf("member a can %s %s.%s outside its own namespace", verb, gr[1], gr[0])
			}
		}
	}
	for _, g := range []string{"", eventsGroup} {
		if !can("a", "create", g, "events", own, "") || can("a", "create", g, "events", other, "") {
			t.Errorf("events.%s: a member writes events in its own namespace only", g)
		}
	}
	if !can("a", "update", mcsGroup, "serviceimports/status", own, "") || can("a", "update", mcsGroup, "serviceimports/status", other, "") {
		t.Error("serviceimports/status: a member writes the status of its own records only")
	}
	for _, ns := range []string{ClustersetNamespace, own, other, "fed", "kube-system", "default", ""} {
		want := ns == ClustersetNamespace
		if got := can("a", "list", "", "configmaps", ns, ""); got != want {
			t.Errorf("list configmaps in %q: %v, want %v", ns, got, want)
		}
		if can("a", "update", "", "configmaps", ns, RegistryName("a")) || can("a", "create", "", "configmaps", ns, "") {
			t.Errorf("a member writes configmaps in %q (its registry record is the administrator's)", ns)
		}
		want = ns == "fed"
		if got := can("a", "list", "", "services", ns, ""); got != want {
			t.Errorf("list services in %q: %v, want %v", ns, got, want)
		}
		if got := can("a", "watch", discoveryGroup, "endpointslices", ns, ""); got != (ns == "fed" || ns == own || ns == other) {
			t.Errorf("watch endpointslices in %q: %v", ns, got)
		}
		for _, verb := range []string{"get", "list"} {
			if can("a", verb, "", "secrets", ns, "") || can("a", verb, "", "secrets", ns, "strait-broker") {
				t.Errorf("%s secrets in %q", verb, ns)
			}
		}
		for _, res := range []string{"serviceaccounts", "roles", "rolebindings", "pods"} {
			if can("a", "list", "", res, ns, "") || can("a", "list", rbacv1.GroupName, res, ns, "") {
				t.Errorf("list %s in %q", res, ns)
			}
		}
	}
	if !can("a", "get", "", "namespaces", "", metav1.NamespaceSystem) {
		t.Error("a member cannot read the kube-system namespace object (is its cluster the broker?)")
	}
	for _, tc := range [][2]string{{"list", ""}, {"watch", ""}, {"get", "default"}, {"get", own}, {"create", ""}, {"delete", own}} {
		if can("a", tc[0], "", "namespaces", "", tc[1]) {
			t.Errorf("%s namespaces %q", tc[0], tc[1])
		}
	}
	if !can("a", "create", "", "serviceaccounts/token", ClustersetNamespace, RegistryName("a")) {
		t.Error("a member cannot renew its own token")
	}
	for _, name := range []string{RegistryName("b"), "", "default"} {
		if can("a", "create", "", "serviceaccounts/token", ClustersetNamespace, name) {
			t.Errorf("a member can create a token for ServiceAccount %q", name)
		}
	}
	for _, r := range append(readerRole(own, "a", readMemberRecords).Rules, append(readerRole(ClustersetNamespace, "", readRegistry).Rules, readerRole("fed", "", readFederation).Rules...)...) {
		if !slices.Equal(r.Verbs, readVerbs) {
			t.Errorf("a reader role grants %v on %v; only %v is allowed", r.Verbs, r.Resources, readVerbs)
		}
	}
	for _, r := range append(memberRole("a").Rules, readerClusterRole().Rules...) {
		if slices.Contains(r.Resources, "*") || slices.Contains(r.Verbs, "*") || slices.Contains(r.APIGroups, "*") {
			t.Errorf("wildcard rule %+v", r)
		}
	}
	if s := memberRoleBinding("cluster02").Subjects; len(s) != 1 || s[0].Name != "member-cluster02" || s[0].Namespace != ClustersetNamespace {
		t.Errorf("member role binding subjects %+v", s)
	}
	if sa := memberServiceAccount("cluster02"); sa.Name != "member-cluster02" || sa.Namespace != ClustersetNamespace || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("service account %+v", sa.ObjectMeta)
	}
	for _, l := range []map[string]string{memberRole("x").Labels, memberTokenRole("x").Labels, memberServiceAccount("x").Labels, registryConfigMap(Member{ID: "x"}).Labels, readerRole(MemberNamespace("x"), "x", readMemberRecords).Labels} {
		if l[ManagedByLabel] != ManagedByValue || l[ClusterIDLabel] != "x" {
			t.Errorf("labels %v", l)
		}
	}
	for _, l := range []map[string]string{readerClusterRole().Labels, readerClusterRoleBinding().Labels, readerRole(ClustersetNamespace, "", readRegistry).Labels} {
		if l[ManagedByLabel] != ManagedByValue || l[ClusterIDLabel] != "" {
			t.Errorf("labels of a shared object %v", l)
		}
	}
}

func TestBrokerKubeconfig(t *testing.T) {
	data, err := BrokerKubeconfig(BrokerEndpoint{Server: "https://broker:6443", CAData: []byte("CA"), ServerName: "api"}, "cluster02", []byte("tok"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseBrokerCredential(data, false)
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "https://broker:6443" || string(c.CAData) != "CA" || c.Token != "tok" || c.ServerName != "api" || c.Insecure {
		t.Errorf("credential %+v", c)
	}
	raw, _ := clientcmd.Load(data)
	kctx := raw.Contexts[raw.CurrentContext]
	if kctx.Namespace != "strait-member-cluster02" || kctx.AuthInfo != "member-cluster02@strait-clusterset" {
		t.Errorf("context %+v", kctx)
	}

	insecure := BrokerEndpoint{Server: "https://broker:6443", CAData: []byte("CA"), Insecure: true}.Credential("tok")
	if insecure.CAData != nil || !insecure.Insecure {
		t.Errorf("insecure credential %+v: the CA must be dropped (client-go refuses both)", insecure)
	}
	data, _ = insecure.Kubeconfig("c")
	if _, err := ParseBrokerCredential(data, false); !errors.Is(err, ErrInsecureBroker) {
		t.Errorf("insecure credential parsed strictly: %v", err)
	}
	if _, err := ParseBrokerCredential(data, true); err != nil {
		t.Errorf("insecure credential, allowed: %v", err)
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
	cms := cs.CoreV1().ConfigMaps(ClustersetNamespace)
	m := Member{ID: "a", PodCIDRs: []string{"10.1.0.0/16"}}
	if _, err := ensure(ctx, j, "c", "ConfigMap", cms, registryConfigMap(m), reconcileConfigMap); err != nil {
		t.Fatal(err)
	}
	want := []string{"updated Namespace strait-system in c", "created Namespace strait-member-a in c", "created ConfigMap strait-clusterset/member-a in c"}
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
	ensure(ctx, again, "c", "ConfigMap", cms, registryConfigMap(m), reconcileConfigMap)
	if len(again.actions) != 0 {
		t.Errorf("second run: %q", actionStrings(again.actions))
	}
	m.Zone = "z"
	ensure(ctx, again, "c", "ConfigMap", cms, registryConfigMap(m), reconcileConfigMap)
	if got := actionStrings(again.actions); !slices.Equal(got, []string{"updated ConfigMap strait-clusterset/member-a in c"}) {
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
	if _, err := cms.Get(ctx, RegistryName("a"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("rollback left the ConfigMap it created: %v", err)
	}
}

func TestEnsureRefusesImmutableChanges(t *testing.T) {
	ctx := context.Background()
	b := readerClusterRoleBinding()
	b.RoleRef.Name = "cluster-admin"
	cs := fake.NewClientset(b)
	_, err := ensure(ctx, &journal{}, "broker", "ClusterRoleBinding", cs.RbacV1().ClusterRoleBindings(), readerClusterRoleBinding(), reconcileClusterRoleBinding)
	if err == nil || !strings.Contains(err.Error(), "ClusterRoleBinding strait-member-reader in broker: it refers to ClusterRole cluster-admin") {
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
	theirs := registryConfigMap(Member{ID: "a", ClusterUID: "uid-1"})
	cs := fake.NewClientset(theirs)
	mine := registryConfigMap(Member{ID: "a", ClusterUID: "uid-2"})
	_, err := ensure(ctx, &journal{}, "broker", "ConfigMap", cs.CoreV1().ConfigMaps(ClustersetNamespace), mine, reconcileConfigMap)
	if !errors.Is(err, ErrIDTaken) || !strings.Contains(err.Error(), "ConfigMap strait-clusterset/member-a in broker: it belongs to another cluster (kube-system namespace uid uid-1)") {
		t.Errorf("error %v", err)
	}
}
