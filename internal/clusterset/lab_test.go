package clusterset_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/liveness"
)

const (
	mcsGroup = "multicluster.x-k8s.io"
	broker   = "cluster01"
)

var (
	crdGVR           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	serviceImportGVR = schema.GroupVersionResource{Group: mcsGroup, Version: "v1beta1", Resource: "serviceimports"}
)

// TestMembershipOnLab runs join and leave against one lab of three real clusters, shared by
// its steps; cluster01 is the broker and a member. The steps depend on each other, so the
// first failure ends the test.
func TestMembershipOnLab(t *testing.T) {
	lab := labtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	e := &labEnv{lab: lab, ctx: ctx}
	brokerCS := lab.Client(broker)
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	// The lab may join its clusters itself when it starts; join is idempotent either way.
	step("every cluster joins, the broker included", func(t *testing.T) {
		for _, c := range lab.Names() {
			if _, err := e.join(c, nil); err != nil {
				t.Fatalf("joining %s: %v", c, err)
			}
		}
		for _, c := range lab.Names() {
			e.assertMember(t, c)
		}
	})

	step("re-running join changes nothing but the member's token", func(t *testing.T) {
		before := e.snapshot(t)
		for _, c := range lab.Names() {
			old, _ := e.credential(t, c)
			res, err := e.join(c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := actionStrings(res.Actions), []string{"updated Secret strait-system/strait-broker in " + c}; !slices.Equal(got, want) {
				t.Errorf("re-join of %s: %q, want %q", c, got, want)
			}
			cred, _ := e.credential(t, c)
			if cred.Token == old.Token {
				t.Errorf("re-join of %s kept the token; it must write a fresh one", c)
			}
			if !res.CredentialExpiry.Equal(cred.Expiry) {
				t.Errorf("result says the token expires %s, the token says %s", res.CredentialExpiry, cred.Expiry)
			}
			e.assertWorks(t, c, cred)
		}
		e.assertUnchanged(t, before, "re-running join", func(key string) bool { return strings.HasSuffix(key, " Secret strait-system/strait-broker") })
	})

	step("the broker lists every member", func(t *testing.T) {
		e.assertMembers(t, brokerCS, "cluster01", "cluster02", "cluster03")
	})

	step("the stored credential is self-contained and expires after --credential-ttl", func(t *testing.T) {
		res, err := e.join("cluster02", func(o *clusterset.JoinOptions) { o.CredentialTTL = 30 * time.Minute })
		if err != nil {
			t.Fatal(err)
		}
		cred, data := e.credential(t, "cluster02")
		if d := time.Until(cred.Expiry); d < 29*time.Minute || d > 31*time.Minute {
			t.Errorf("the token expires in %s (exp %s), want about 30m", d.Round(time.Second), cred.Expiry)
		}
		if !res.CredentialExpiry.Equal(cred.Expiry) {
			t.Errorf("result expiry %s, token %s", res.CredentialExpiry, cred.Expiry)
		}
		raw, err := clientcmd.Load(data)
		if err != nil {
			t.Fatal(err)
		}
		if len(raw.AuthInfos) != 1 || len(raw.Clusters) != 1 {
			t.Errorf("kubeconfig with %d users and %d clusters", len(raw.AuthInfos), len(raw.Clusters))
		}
		for name, u := range raw.AuthInfos {
			if u.Exec != nil || u.AuthProvider != nil || u.TokenFile != "" || len(u.ClientCertificateData) > 0 || u.ClientCertificate != "" || u.Token != cred.Token {
				t.Errorf("user %s of the stored credential: %+v", name, u)
			}
		}
		// The administrator's lab context authenticates with a client certificate; none of
		// it may reach the member.
		admin := lab.RESTConfig(broker)
		if len(admin.CertData) == 0 {
			t.Fatal("the lab's admin configuration has no client certificate; the check below proves nothing")
		}
		if bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(admin.CertData))) || bytes.Contains(data, []byte("client-certificate")) {
			t.Error("the stored credential carries the administrator's client certificate")
		}
		if string(cred.CAData) != string(admin.CAData) || cred.Server != admin.Host {
			t.Errorf("credential server %s, CA %d bytes; want %s and the broker's CA", cred.Server, len(cred.CAData), admin.Host)
		}
		if _, err := e.join("cluster02", nil); err != nil {
			t.Fatal(err)
		}
		if cred, _ := e.credential(t, "cluster02"); time.Until(cred.Expiry) < 23*time.Hour {
			t.Errorf("a join with the default TTL: the token expires %s", cred.Expiry)
		}
	})

	step("an insecure broker context is refused unless allowed", func(t *testing.T) {
		insecure := func(o *clusterset.JoinOptions) {
			o.Broker = rest.CopyConfig(o.Broker)
			o.Broker.Insecure, o.Broker.CAData = true, nil
		}
		before := e.snapshot(t)
		_, err := e.join("cluster02", insecure)
		if err == nil || !strings.Contains(err.Error(), "the broker context cluster01 skips TLS verification") || !strings.Contains(err.Error(), "--allow-insecure-broker") {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a join refused for an insecure broker", nil)

		res, err := e.join("cluster02", func(o *clusterset.JoinOptions) { insecure(o); o.AllowInsecureBroker = true })
		if err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, "skips TLS verification (--allow-insecure-broker)") {
			t.Errorf("warnings %q", res.Warnings)
		}
		data := e.credentialData(t, "cluster02")
		if _, err := clusterset.ParseBrokerCredential(data, false); !errors.Is(err, clusterset.ErrInsecureBroker) {
			t.Errorf("the insecure credential, parsed strictly: %v", err)
		}
		cred, err := clusterset.ParseBrokerCredential(data, true)
		if err != nil || !cred.Insecure {
			t.Fatalf("the insecure credential, allowed: %+v, %v", cred, err)
		}
		e.assertWorks(t, "cluster02", cred)

		if _, err := e.join("cluster02", nil); err != nil {
			t.Fatal(err)
		}
		e.assertMember(t, "cluster02")
	})

	step("a member's broker credential is least privilege", func(t *testing.T) {
		e.assertLeastPrivilege(t)
	})

	step("leave removes the member from the broker, with its records, and its credential", func(t *testing.T) {
		old, _ := e.credential(t, "cluster03")
		res, err := e.leave("cluster03")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"deleted ConfigMap strait-clusterset/member-cluster03 in cluster01",
			"deleted ServiceAccount strait-clusterset/member-cluster03 in cluster01",
			"deleted RoleBinding strait-clusterset/strait-member-token-cluster03 in cluster01",
			"deleted Role strait-clusterset/strait-member-token-cluster03 in cluster01",
			"deleted Namespace strait-member-cluster03 in cluster01",
			"deleted Secret strait-system/strait-broker in cluster03",
			"deleted ClusterProperty cluster.clusterset.k8s.io in cluster03",
			"deleted ClusterProperty clusterset.k8s.io in cluster03",
		}
		if got := actionStrings(res.Actions); !slices.Equal(got, want) {
			t.Errorf("actions\n  %q\nwant\n  %q", got, want)
		}
		if _, err := brokerCS.CoreV1().Namespaces().Get(ctx, clusterset.MemberNamespace("cluster03"), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("broker namespace of cluster03: %v, want it gone", err)
		}
		all, err := e.dyn(t, broker).Resource(serviceImportGVR).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(namespacesOf(all.Items, "rbac-test"), clusterset.MemberNamespace("cluster03")) {
			t.Error("cluster03's record is still on the broker")
		}
		// Its tokens die with its ServiceAccount.
		e.assertRevoked(t, old, "cluster03's token after leave")
		if _, err := clusterset.BrokerRESTConfig(ctx, lab.Client("cluster03"), false); err == nil {
			t.Error("cluster03 still has a broker credential")
		}
		if _, err := clusterset.LocalClusterID(ctx, e.dyn(t, "cluster03")); !errors.Is(err, clusterset.ErrNoClusterID) {
			t.Errorf("cluster03's cluster ID after leave: %v", err)
		}
		for _, name := range []string{"clusterproperties.about.k8s.io", "serviceimports.multicluster.x-k8s.io"} {
			if _, err := e.dyn(t, "cluster03").Resource(crdGVR).Get(ctx, name, metav1.GetOptions{}); err != nil {
				t.Errorf("CRD %s must stay in cluster03: %v", name, err)
			}
		}
		// What all members share stays.
		if _, err := brokerCS.RbacV1().ClusterRoles().Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); err != nil {
			t.Errorf("the shared reader ClusterRole: %v", err)
		}
		if _, err := brokerCS.RbacV1().Roles(clusterset.ClustersetNamespace).Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); err != nil {
			t.Errorf("the registry's reader Role: %v", err)
		}
		e.assertMembers(t, brokerCS, "cluster01", "cluster02")
	})

	step("leave of a non-member is a clear error", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.leave("cluster03")
		if !errors.Is(err, clusterset.ErrNotMember) || !strings.Contains(err.Error(), "cluster03 is not a member of the clusterset on cluster01") {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "leave of a non-member", nil)
	})

	step("a bad cluster ID is refused before anything is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.ClusterID = "Foo_1" })
		if err == nil || !strings.Contains(err.Error(), `cluster ID "Foo_1" is not a DNS-1123 label: a lowercase RFC 1123 label must consist of lower case alphanumeric characters`) {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a join with a bad ID", nil)
	})

	step("another cluster cannot take a member's ID, and nothing is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.ClusterID = "cluster02" })
		if !errors.Is(err, clusterset.ErrIDTaken) || !strings.Contains(err.Error(), `cluster ID "cluster02" is already used by another cluster of the clusterset`) {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a join with a taken ID", nil)
	})

	step("overlapping CIDRs are refused, and nothing is written", func(t *testing.T) {
		before := e.snapshot(t)
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) { o.PodCIDRs = []string{"10.2.0.0/16"} })
		want := "pod CIDR 10.2.0.0/16 of cluster03 overlaps 10.2.0.0/16 of cluster02; pass --allow-overlapping-cidrs if your data plane translates addresses"
		if err == nil || err.Error() != want {
			t.Fatalf("error %v\nwant %s", err, want)
		}
		e.assertUnchanged(t, before, "a join with overlapping CIDRs", nil)
	})

	step("a join that fails midway removes what it created, and only that", func(t *testing.T) {
		before := e.snapshot(t)
		injected := errors.New("injected failure")
		_, err := e.join("cluster03", func(o *clusterset.JoinOptions) {
			clusterset.SetBeforeStep(o, func(step string) error {
				if step == "broker-registry" {
					return injected
				}
				return nil
			})
		})
		if !errors.Is(err, injected) || !strings.Contains(err.Error(), "removed the") {
			t.Fatalf("error %v", err)
		}
		e.assertUnchanged(t, before, "a failed join", nil)
		e.assertMembers(t, brokerCS, "cluster01", "cluster02")
	})

	step("overlap is allowed when asked for, and joining again updates the record", func(t *testing.T) {
		res, err := e.join("cluster03", func(o *clusterset.JoinOptions) {
			o.PodCIDRs = []string{"10.2.0.0/16"}
			o.AllowOverlappingCIDRs = true
		})
		if err != nil {
			t.Fatal(err)
		}
		got := actionStrings(res.Actions)
		for _, want := range []string{
			"created ServiceAccount strait-clusterset/member-cluster03 in cluster01",
			"created Namespace strait-member-cluster03 in cluster01",
			"created Role strait-member-cluster03/strait-member in cluster01",
			"created RoleBinding strait-member-cluster03/strait-member-reader in cluster01",
			"created Role strait-clusterset/strait-member-token-cluster03 in cluster01",
			"created Secret strait-system/strait-broker in cluster03",
			"created ClusterProperty cluster.clusterset.k8s.io in cluster03",
			"created ConfigMap strait-clusterset/member-cluster03 in cluster01",
		} {
			if !slices.Contains(got, want) {
				t.Errorf("actions lack %q: %q", want, got)
			}
		}
		if got[len(got)-1] != "created ConfigMap strait-clusterset/member-cluster03 in cluster01" {
			t.Errorf("the registry record is not written last: %q", got)
		}
		res, err = e.join("cluster03", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := actionStrings(res.Actions), []string{
			"updated Secret strait-system/strait-broker in cluster03",
			"updated ConfigMap strait-clusterset/member-cluster03 in cluster01",
		}; !slices.Equal(got, want) {
			t.Errorf("joining again with the real CIDRs: %q, want %q", got, want)
		}
		e.assertMember(t, "cluster03")
		e.assertMembers(t, brokerCS, "cluster01", "cluster02", "cluster03")
	})

	step("join migrates a member of the old layout", func(t *testing.T) {
		if _, err := e.leave("cluster03"); err != nil {
			t.Fatal(err)
		}
		joinedAt := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
		oldToken := e.oldLayout(t, "cluster03", joinedAt)

		// Another member re-joining while cluster03 is still in the old layout leaves the
		// shared ClusterRole to it, and binds nothing wide to the members' group.
		res, err := e.join("cluster02", nil)
		if err != nil {
			t.Fatal(err)
		}
		if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, "ClusterRoleBindings strait-member-reader-cluster03") {
			t.Errorf("warnings %q", res.Warnings)
		}
		if _, err := brokerCS.RbacV1().ClusterRoleBindings().Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("the members' group is bound to the old layout's ClusterRole: %v", err)
		}
		asCluster02 := kubernetes.NewForConfigOrDie(e.mustCredential(t, "cluster02").RESTConfig())
		if _, err := asCluster02.CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("cluster02 listing ConfigMaps in kube-system during the migration: %v, want Forbidden", err)
		}

		res, err = e.join("cluster03", nil)
		if err != nil {
			t.Fatal(err)
		}
		got := actionStrings(res.Actions)
		for _, want := range []string{
			"updated Role strait-member-cluster03/strait-member in cluster01",
			"updated RoleBinding strait-member-cluster03/strait-member in cluster01",
			"created ConfigMap strait-clusterset/member-cluster03 in cluster01",
			"deleted ClusterRoleBinding strait-member-reader-cluster03 in cluster01",
			"deleted ConfigMap strait-member-cluster03/strait-membership in cluster01",
			"deleted Secret strait-member-cluster03/strait-agent-token in cluster01",
			"deleted ServiceAccount strait-member-cluster03/strait-agent in cluster01",
			"updated ClusterRole strait-member-reader in cluster01",
			"created ClusterRoleBinding strait-member-reader in cluster01",
		} {
			if !slices.Contains(got, want) {
				t.Errorf("actions lack %q: %q", want, got)
			}
		}
		if i, j := slices.Index(got, "created ConfigMap strait-clusterset/member-cluster03 in cluster01"), slices.Index(got, "deleted ServiceAccount strait-member-cluster03/strait-agent in cluster01"); i > j {
			t.Errorf("the old identity is removed before the new record is written: %q", got)
		}
		if len(res.Warnings) != 0 {
			t.Errorf("warnings %q", res.Warnings)
		}
		e.assertMember(t, "cluster03")
		members, err := clusterset.ReadMembers(ctx, brokerCS)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range members {
			if m.ID == "cluster03" && !m.JoinedAt.Equal(joinedAt) {
				t.Errorf("cluster03 joined at %s, want its join time of the old layout %s", m.JoinedAt, joinedAt)
			}
		}
		e.assertRevoked(t, oldToken, "the old layout's token after the migration")
		e.assertLeastPrivilege(t)
	})
}

// labEnv is the lab shared by the steps of TestMembershipOnLab.
type labEnv struct {
	lab *labtest.Lab
	ctx context.Context
}

func (e *labEnv) join(member string, mutate func(*clusterset.JoinOptions)) (*clusterset.JoinResult, error) {
	o := clusterset.JoinOptions{
		Member: e.lab.RESTConfig(member), Broker: e.lab.RESTConfig(broker),
		MemberName: member, BrokerName: broker, Timeout: time.Minute,
	}
	if mutate != nil {
		mutate(&o)
	}
	return clusterset.Join(e.ctx, o)
}

func (e *labEnv) leave(member string) (*clusterset.LeaveResult, error) {
	return clusterset.Leave(e.ctx, clusterset.LeaveOptions{
		Member: e.lab.RESTConfig(member), Broker: e.lab.RESTConfig(broker),
		MemberName: member, BrokerName: broker, Timeout: time.Minute,
	})
}

func (e *labEnv) dyn(t *testing.T, cluster string) dynamic.Interface {
	t.Helper()
	d, err := dynamic.NewForConfig(e.lab.RESTConfig(cluster))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// credentialData is the broker kubeconfig join stored in member id.
func (e *labEnv) credentialData(t *testing.T, id string) []byte {
	t.Helper()
	s, err := e.lab.Client(id).CoreV1().Secrets(clusterset.SystemNamespace).Get(e.ctx, clusterset.BrokerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("%s: broker credential: %v", id, err)
	}
	return s.Data[clusterset.BrokerSecretKey]
}

// credential parses the stored credential of member id as an agent does, strictly.
func (e *labEnv) credential(t *testing.T, id string) (clusterset.BrokerCredential, []byte) {
	t.Helper()
	data := e.credentialData(t, id)
	c, err := clusterset.ParseBrokerCredential(data, false)
	if err != nil {
		t.Fatalf("%s: the stored broker credential is refused: %v", id, err)
	}
	return c, data
}

func (e *labEnv) mustCredential(t *testing.T, id string) clusterset.BrokerCredential {
	t.Helper()
	c, _ := e.credential(t, id)
	return c
}

// assertWorks checks that a credential reaches the broker as member id's identity.
func (e *labEnv) assertWorks(t *testing.T, id string, c clusterset.BrokerCredential) {
	t.Helper()
	review, err := kubernetes.NewForConfigOrDie(c.RESTConfig()).AuthenticationV1().SelfSubjectReviews().Create(e.ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("broker credential of %s: %v", id, err)
	}
	u := review.Status.UserInfo
	if u.Username != "system:serviceaccount:"+clusterset.ClustersetNamespace+":"+clusterset.RegistryName(id) || !slices.Contains(u.Groups, clusterset.MembersGroup) {
		t.Errorf("broker credential of %s authenticates as %s, groups %v", id, u.Username, u.Groups)
	}
}

// assertRevoked waits until the broker refuses a credential: it checks tokens against its
// caches of ServiceAccounts and Secrets, which follow a deletion shortly after.
func (e *labEnv) assertRevoked(t *testing.T, c clusterset.BrokerCredential, what string) {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(c.RESTConfig())
	var err error
	_ = wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err = kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
		return apierrors.IsUnauthorized(err), nil
	})
	if !apierrors.IsUnauthorized(err) {
		t.Errorf("%s: %v, want Unauthorized", what, err)
	}
}

// assertMember checks what join must have written for a member: the CRDs and About API
// properties in the member, a working, self-contained broker credential, and on the broker
// its identity, grants and registry record, and nothing of the old layout.
func (e *labEnv) assertMember(t *testing.T, id string) {
	t.Helper()
	ctx := e.ctx
	memberDyn := e.dyn(t, id)
	for _, name := range []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io"} {
		obj, err := memberDyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("%s: CRD %s: %v", id, name, err)
			continue
		}
		if missing := clusterset.MissingVersions(obj, []string{"v1alpha1"}); len(missing) > 0 {
			t.Errorf("%s: CRD %s does not serve %v", id, name, missing)
		}
	}
	// Stock CoreDNS lists ServiceImports through v1alpha1.
	if _, err := memberDyn.Resource(schema.GroupVersionResource{Group: mcsGroup, Version: "v1alpha1", Resource: "serviceimports"}).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("%s: ServiceImports v1alpha1 are not served: %v", id, err)
	}
	if got, err := clusterset.LocalClusterID(ctx, memberDyn); err != nil || got != id {
		t.Errorf("%s: LocalClusterID = %q, %v", id, got, err)
	}
	if p, err := memberDyn.Resource(clusterset.ClusterPropertyGVR).Get(ctx, clusterset.ClusterSetProperty, metav1.GetOptions{}); err != nil {
		t.Errorf("%s: ClusterProperty %s: %v", id, clusterset.ClusterSetProperty, err)
	} else if v, _, _ := unstructured.NestedString(p.Object, "spec", "value"); v != clusterset.DefaultClusterSet {
		t.Errorf("%s: ClusterProperty %s = %q", id, clusterset.ClusterSetProperty, v)
	}

	b := e.lab.Client(broker)
	ns := clusterset.MemberNamespace(id)
	for _, name := range []string{ns, clusterset.ClustersetNamespace, clusterset.DefaultFederationNamespace} {
		nsObj, err := b.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("broker namespace %s: %v", name, err)
		}
		if nsObj.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
			t.Errorf("labels of %s: %v", name, nsObj.Labels)
		}
		if name == ns && nsObj.Labels[clusterset.ClusterIDLabel] != id {
			t.Errorf("labels of %s: %v", name, nsObj.Labels)
		}
	}
	sa, err := b.CoreV1().ServiceAccounts(clusterset.ClustersetNamespace).Get(ctx, clusterset.RegistryName(id), metav1.GetOptions{})
	if err != nil || sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
		t.Errorf("service account: %v", err)
	}
	identity := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: clusterset.RegistryName(id), Namespace: clusterset.ClustersetNamespace}
	group := rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: clusterset.MembersGroup}
	for _, rb := range []struct {
		ns, name string
		subject  rbacv1.Subject
	}{
		{ns, clusterset.MemberRole, identity},
		{ns, clusterset.MemberReaderRole, group},
		{clusterset.ClustersetNamespace, clusterset.MemberReaderRole, group},
		{clusterset.DefaultFederationNamespace, clusterset.MemberReaderRole, group},
		{clusterset.ClustersetNamespace, clusterset.MemberTokenRole(id), identity},
	} {
		if _, err := b.RbacV1().Roles(rb.ns).Get(ctx, rb.name, metav1.GetOptions{}); err != nil {
			t.Errorf("role: %v", err)
		}
		binding, err := b.RbacV1().RoleBindings(rb.ns).Get(ctx, rb.name, metav1.GetOptions{})
		if err != nil || binding.RoleRef.Name != rb.name || !slices.Equal(binding.Subjects, []rbacv1.Subject{rb.subject}) {
			t.Errorf("role binding %s/%s: %+v, %v", rb.ns, rb.name, binding, err)
		}
	}
	if _, err := b.RbacV1().ClusterRoles().Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); err != nil {
		t.Errorf("reader ClusterRole: %v", err)
	}
	if crb, err := b.RbacV1().ClusterRoleBindings().Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{}); err != nil || !slices.Equal(crb.Subjects, []rbacv1.Subject{group}) {
		t.Errorf("reader ClusterRoleBinding: %v", err)
	}
	// Nothing of the old layout.
	for what, err := range map[string]error{
		"old ServiceAccount":     get(b.CoreV1().ServiceAccounts(ns).Get(ctx, "strait-agent", metav1.GetOptions{})),
		"old token Secret":       get(b.CoreV1().Secrets(ns).Get(ctx, "strait-agent-token", metav1.GetOptions{})),
		"old membership":         get(b.CoreV1().ConfigMaps(ns).Get(ctx, "strait-membership", metav1.GetOptions{})),
		"old ClusterRoleBinding": get(b.RbacV1().ClusterRoleBindings().Get(ctx, "strait-member-reader-"+id, metav1.GetOptions{})),
	} {
		if !apierrors.IsNotFound(err) {
			t.Errorf("%s of %s: %v, want none", what, id, err)
		}
	}
	cm, err := b.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Get(ctx, clusterset.RegistryName(id), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("registry record: %v", err)
	}
	plan := e.lab.Cluster(id)
	kubeSystem, err := e.lab.Client(id).CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		clusterset.KeyClusterID: id, clusterset.KeyClusterUID: string(kubeSystem.UID), clusterset.KeyClusterSet: clusterset.DefaultClusterSet,
		clusterset.KeyRegion: plan.Region, clusterset.KeyZone: plan.Zone,
		clusterset.KeyPodCIDRs: plan.PodCIDR, clusterset.KeyServiceCIDRs: plan.ServiceCIDR,
	}
	for k, v := range want {
		if cm.Data[k] != v {
			t.Errorf("%s membership %s = %q, want %q", id, k, cm.Data[k], v)
		}
	}
	if _, err := time.Parse(time.RFC3339, cm.Data[clusterset.KeyJoinedAt]); err != nil {
		t.Errorf("%s joinedAt %q", id, cm.Data[clusterset.KeyJoinedAt])
	}

	// The stored credential passes the agent's strict check, expires, and reaches the
	// broker as the member's identity.
	cred, _ := e.credential(t, id)
	if d := time.Until(cred.Expiry); d <= 0 || d > clusterset.DefaultCredentialTTL+time.Minute {
		t.Errorf("%s: the stored token expires %s", id, cred.Expiry)
	}
	e.assertWorks(t, id, cred)
}

func get[T any](_ T, err error) error { return err }

// assertLeastPrivilege proves, with cluster02's stored credential and real requests, that a
// member writes only its own namespace and reads only what Strait keeps on the broker; then
// asks the broker the same through `kubectl auth can-i`.
func (e *labEnv) assertLeastPrivilege(t *testing.T) {
	ctx := e.ctx
	cred, data := e.credential(t, "cluster02")
	cfg := cred.RESTConfig()
	kube := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	own, other := clusterset.MemberNamespace("cluster02"), clusterset.MemberNamespace("cluster03")
	fed := clusterset.DefaultFederationNamespace
	expect := func(what string, err error, forbidden bool) {
		t.Helper()
		switch {
		case forbidden && !apierrors.IsForbidden(err):
			t.Errorf("%s: %v, want Forbidden", what, err)
		case !forbidden && err != nil:
			t.Errorf("%s: %v", what, err)
		}
	}
	list := func(resource, ns string) error {
		gvr := map[string]schema.GroupVersionResource{
			"configmaps":     {Version: "v1", Resource: "configmaps"},
			"services":       {Version: "v1", Resource: "services"},
			"secrets":        {Version: "v1", Resource: "secrets"},
			"namespaces":     {Version: "v1", Resource: "namespaces"},
			"endpointslices": {Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"},
			"leases":         {Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
			"serviceimports": serviceImportGVR,
		}[resource]
		_, err := dyn.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		return err
	}

	// Its own records: written in its own namespace only.
	_, err := dyn.Resource(serviceImportGVR).Namespace(own).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{})
	expect("creating a ServiceImport in its own namespace", err, false)
	_, err = dyn.Resource(serviceImportGVR).Namespace(other).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{})
	expect("creating a ServiceImport in another member's namespace", err, true)
	_, err = kube.DiscoveryV1().EndpointSlices(own).Create(ctx, endpointSlice("rbac-test"), metav1.CreateOptions{})
	expect("creating an EndpointSlice in its own namespace", err, false)
	_, err = kube.DiscoveryV1().EndpointSlices(other).Create(ctx, endpointSlice("rbac-test"), metav1.CreateOptions{})
	expect("creating an EndpointSlice in another member's namespace", err, true)
	_, err = kube.CoordinationV1().Leases(own).Create(ctx, lease("rbac-test"), metav1.CreateOptions{})
	expect("creating a Lease in its own namespace", err, false)
	_, err = kube.CoordinationV1().Leases(other).Create(ctx, lease("rbac-test"), metav1.CreateOptions{})
	expect("creating a Lease in another member's namespace", err, true)
	_, err = kube.CoreV1().Events(own).Create(ctx, event(own), metav1.CreateOptions{})
	expect("creating an Event in its own namespace", err, false)
	_, err = kube.CoreV1().Events(other).Create(ctx, event(other), metav1.CreateOptions{})
	expect("creating an Event in another member's namespace", err, true)
	_, err = kube.DiscoveryV1().EndpointSlices(fed).Create(ctx, endpointSlice("rbac-test"), metav1.CreateOptions{})
	expect("creating an EndpointSlice in the federation namespace", err, true)

	// A record of cluster03, written with cluster03's own credential: readable, not writable.
	asCluster03 := dynamic.NewForConfigOrDie(e.mustCredential(t, "cluster03").RESTConfig())
	if _, err := asCluster03.Resource(serviceImportGVR).Namespace(other).Create(ctx, serviceImport("rbac-test"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("cluster03 writing its own record: %v", err)
	}
	err = dyn.Resource(serviceImportGVR).Namespace(other).Delete(ctx, "rbac-test", metav1.DeleteOptions{})
	expect("deleting another member's ServiceImport", err, true)
	if _, err = dyn.Resource(serviceImportGVR).Namespace(other).Get(ctx, "rbac-test", metav1.GetOptions{}); err != nil {
		t.Errorf("reading another member's ServiceImport: %v", err)
	}
	for _, r := range []string{"endpointslices", "serviceimports", "leases"} {
		expect("listing "+r+" of another member", list(r, other), false)
		expect("listing its own "+r, list(r, own), false)
		expect("listing "+r+" in all namespaces", list(r, metav1.NamespaceAll), true)
		expect("listing "+r+" in default", list(r, "default"), true)
	}

	// ConfigMaps: the registry only, and read-only.
	expect("listing the registry", list("configmaps", clusterset.ClustersetNamespace), false)
	e.assertMembers(t, kube, "cluster01", "cluster02", "cluster03")
	for _, ns := range []string{"kube-system", "default", own, clusterset.SystemNamespace, fed, metav1.NamespaceAll} {
		expect("listing ConfigMaps in "+orAll(ns), list("configmaps", ns), true)
	}
	if cm, err := kube.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Get(ctx, clusterset.RegistryName("cluster02"), metav1.GetOptions{}); err != nil {
		t.Errorf("reading its own registry record: %v", err)
	} else {
		cm.Data[clusterset.KeyPodCIDRs] = "10.0.0.0/8"
		_, err = kube.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Update(ctx, cm, metav1.UpdateOptions{})
		expect("changing its own registry record", err, true)
	}
	_, err = kube.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName("evil")}}, metav1.CreateOptions{})
	expect("registering another member", err, true)

	// Services and EndpointSlices of the federation namespace, nowhere else.
	expect("listing Services in the federation namespace", list("services", fed), false)
	expect("listing EndpointSlices in the federation namespace", list("endpointslices", fed), false)
	for _, ns := range []string{"default", "kube-system", own, clusterset.ClustersetNamespace, metav1.NamespaceAll} {
		expect("listing Services in "+orAll(ns), list("services", ns), true)
	}

	// No namespaces, but kube-system's own object; no Secrets anywhere.
	expect("listing namespaces", list("namespaces", ""), true)
	_, err = kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	expect("reading namespace kube-system", err, false)
	_, err = kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
	expect("reading namespace default", err, true)
	_, err = kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "strait-member-evil"}}, metav1.CreateOptions{})
	expect("creating a namespace", err, true)
	for _, ns := range []string{own, other, clusterset.ClustersetNamespace, clusterset.SystemNamespace, "kube-system", "default", fed, metav1.NamespaceAll} {
		expect("listing Secrets in "+orAll(ns), list("secrets", ns), true)
	}
	_, err = kube.CoreV1().Secrets(clusterset.SystemNamespace).Get(ctx, clusterset.BrokerSecretName, metav1.GetOptions{})
	expect("reading the broker cluster's own broker Secret", err, true)

	// Tokens: for its own ServiceAccount only.
	ttl := int64(600)
	tr, err := kube.CoreV1().ServiceAccounts(clusterset.ClustersetNamespace).CreateToken(ctx, clusterset.RegistryName("cluster02"),
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	expect("renewing its own token", err, false)
	if err == nil {
		renewed := cred
		renewed.Token = tr.Status.Token
		e.assertWorks(t, "cluster02", renewed)
	}
	for _, sa := range []string{clusterset.RegistryName("cluster03"), "default"} {
		_, err = kube.CoreV1().ServiceAccounts(clusterset.ClustersetNamespace).CreateToken(ctx, sa,
			&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
		expect("creating a token for ServiceAccount "+sa, err, true)
	}
	_, err = kube.RbacV1().RoleBindings(own).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: clusterset.RegistryName("cluster02"), Namespace: clusterset.ClustersetNamespace}},
	}, metav1.CreateOptions{})
	expect("creating a RoleBinding", err, true)

	// The broker's own account of the grants, through kubectl with the stored credential.
	kc := filepath.Join(t.TempDir(), "broker-kubeconfig")
	if err := os.WriteFile(kc, data, 0o600); err != nil {
		t.Fatal(err)
	}
	rules := func(ns string) map[string]string {
		t.Helper()
		out, err := e.kubectl(kc, "auth", "can-i", "--list", "-n", ns)
		if err != nil {
			t.Fatalf("kubectl auth can-i --list -n %s: %v\n%s", ns, err, out)
		}
		return canIList(t, out)
	}
	for ns, want := range map[string]map[string]string{
		own: {
			"endpointslices.discovery.k8s.io":      "[] [create delete deletecollection get list patch update watch]",
			"serviceimports.multicluster.x-k8s.io": "[] [create delete deletecollection get list patch update watch]",
			"leases.coordination.k8s.io":           "[] [create delete deletecollection get list patch update watch]",
			"namespaces":                           "[kube-system] [get]",
			"events":                               "[] [create delete deletecollection get list patch update watch]",
			"events.events.k8s.io":                 "[] [create delete deletecollection get list patch update watch]",
			"configmaps":                           "",
			"secrets":                              "",
			"services":                             "",
			"serviceaccounts/token":                "",
		},
		other: {
			"endpointslices.discovery.k8s.io":      "[] [get list watch]",
			"serviceimports.multicluster.x-k8s.io": "[] [get list watch]",
			"leases.coordination.k8s.io":           "[] [get list watch]",
			"configmaps":                           "",
			"secrets":                              "",
		},
		clusterset.ClustersetNamespace: {
			"configmaps":                      "[] [get list watch]",
			"serviceaccounts/token":           "[member-cluster02] [create]",
			"secrets":                         "",
			"serviceaccounts":                 "",
			"endpointslices.discovery.k8s.io": "",
		},
		fed: {
			"services":                        "[] [get list watch]",
			"endpointslices.discovery.k8s.io": "[] [get list watch]",
			"configmaps":                      "",
			"secrets":                         "",
		},
		"kube-system": {
			"namespaces":                      "[kube-system] [get]",
			"configmaps":                      "",
			"secrets":                         "",
			"services":                        "",
			"endpointslices.discovery.k8s.io": "",
		},
		"default": {
			"configmaps":                           "",
			"secrets":                              "",
			"services":                             "",
			"endpointslices.discovery.k8s.io":      "",
			"serviceimports.multicluster.x-k8s.io": "",
			"leases.coordination.k8s.io":           "",
		},
	} {
		got := rules(ns)
		for resource, rule := range want {
			if got[resource] != rule {
				t.Errorf("kubectl auth can-i --list -n %s: %s is %q, want %q", ns, resource, got[resource], rule)
			}
		}
		for resource, rule := range got {
			if strings.Contains(resource, "*") || strings.Contains(rule, "*") {
				t.Errorf("kubectl auth can-i --list -n %s: wildcard %s %s", ns, resource, rule)
			}
		}
	}
	for _, q := range []struct {
		args []string
		want string
	}{
		{[]string{"list", "configmaps", "-n", "kube-system"}, "no"},
		{[]string{"list", "configmaps", "-n", "default"}, "no"},
		{[]string{"list", "configmaps", "-n", clusterset.ClustersetNamespace}, "yes"},
		{[]string{"list", "services", "-A"}, "no"},
		{[]string{"list", "services", "-n", fed}, "yes"},
		{[]string{"list", "namespaces"}, "no"},
		{[]string{"get", "secrets", "-A"}, "no"},
		{[]string{"get", "secrets", "-n", clusterset.ClustersetNamespace}, "no"},
		{[]string{"create", "endpointslices.discovery.k8s.io", "-n", own}, "yes"},
		{[]string{"create", "endpointslices.discovery.k8s.io", "-n", other}, "no"},
		{[]string{"list", "endpointslices.discovery.k8s.io", "-n", other}, "yes"},
		{[]string{"create", "serviceaccounts/member-cluster02", "--subresource=token", "-n", clusterset.ClustersetNamespace}, "yes"},
		{[]string{"create", "serviceaccounts/member-cluster03", "--subresource=token", "-n", clusterset.ClustersetNamespace}, "no"},
	} {
		out, _ := e.kubectl(kc, append([]string{"auth", "can-i"}, q.args...)...)
		if got := strings.TrimSpace(out); got != q.want {
			t.Errorf("kubectl auth can-i %s: %q, want %q", strings.Join(q.args, " "), got, q.want)
		}
	}

	// Clean up the test records, each member with its own credential.
	expect("deleting its own ServiceImport", dyn.Resource(serviceImportGVR).Namespace(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
	expect("deleting its own EndpointSlice", kube.DiscoveryV1().EndpointSlices(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
	expect("deleting its own Lease", kube.CoordinationV1().Leases(own).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
	expect("cluster03 deleting its own ServiceImport", asCluster03.Resource(serviceImportGVR).Namespace(other).Delete(ctx, "rbac-test", metav1.DeleteOptions{}), false)
}

func orAll(ns string) string {
	if ns == "" {
		return "all namespaces"
	}
	return ns
}

// kubectl runs the lab's kubectl with a kubeconfig and returns its standard output.
func (e *labEnv) kubectl(kubeconfig string, args ...string) (string, error) {
	cmd := exec.CommandContext(e.ctx, filepath.Join(e.lab.Dir.BinDir(), "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), err
}

var canIRow = regexp.MustCompile(`^(\S*)\s+\[(.*?)\]\s+\[(.*?)\]\s+\[(.*?)\]\s*$`)

// canIList reads the table of `kubectl auth can-i --list` into resource -> "[names] [verbs]"
// (verbs sorted; rows of one resource joined by "; "); rows of non-resource URLs are left
// out.
func canIList(t *testing.T, out string) map[string]string {
	t.Helper()
	rows := map[string][]string{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "Resources") {
		t.Fatalf("kubectl auth can-i --list printed:\n%s", out)
	}
	for _, line := range lines[1:] {
		m := canIRow.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("kubectl auth can-i --list row %q", line)
		}
		if m[1] == "" {
			continue
		}
		verbs := strings.Fields(m[4])
		slices.Sort(verbs)
		rows[m[1]] = append(rows[m[1]], "["+m[3]+"] ["+strings.Join(slices.Compact(verbs), " ")+"]")
	}
	rules := map[string]string{}
	for resource, r := range rows {
		slices.Sort(r)
		rules[resource] = strings.Join(r, "; ")
	}
	return rules
}

// oldLayout writes on the broker what join wrote for member id before the registry, in a
// clusterset whose other members were migrated already: the member's namespace with its
// own ServiceAccount, token Secret, membership ConfigMap and Role, a ClusterRoleBinding of
// its own to ClusterRole strait-member-reader, whose wide rules that binding keeps, and no
// binding of the members' group. It stores the old credential in the member and returns it.
func (e *labEnv) oldLayout(t *testing.T, id string, joinedAt time.Time) clusterset.BrokerCredential {
	t.Helper()
	ctx := e.ctx
	b := e.lab.Client(broker)
	ns := clusterset.MemberNamespace(id)
	lbl := map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue, clusterset.ClusterIDLabel: id}
	om := func(name, namespace string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: lbl}
	}
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("old layout: %s: %v", what, err)
		}
	}
	readVerbs := []string{"get", "list", "watch"}
	writeVerbs := []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	must("ClusterRoleBinding of the group", b.RbacV1().ClusterRoleBindings().Delete(ctx, clusterset.MemberReaderRole, metav1.DeleteOptions{}))
	role, err := b.RbacV1().ClusterRoles().Get(ctx, clusterset.MemberReaderRole, metav1.GetOptions{})
	must("ClusterRole", err)
	role.Rules = []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"namespaces", "configmaps", "services"}, Verbs: readVerbs},
		{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports"}, Verbs: readVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: readVerbs},
	}
	_, err = b.RbacV1().ClusterRoles().Update(ctx, role, metav1.UpdateOptions{})
	must("ClusterRole", err)

	_, err = b.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: om(ns, "")}, metav1.CreateOptions{})
	must("namespace", err)
	_, err = b.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: om("strait-agent", ns)}, metav1.CreateOptions{})
	must("ServiceAccount", err)
	secret := &corev1.Secret{ObjectMeta: om("strait-agent-token", ns), Type: corev1.SecretTypeServiceAccountToken}
	secret.Annotations = map[string]string{corev1.ServiceAccountNameKey: "strait-agent"}
	_, err = b.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{})
	must("token Secret", err)
	subject := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "strait-agent", Namespace: ns}
	_, err = b.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: om(clusterset.MemberRole, ns), Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports", "serviceimports/status"}, Verbs: writeVerbs},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: writeVerbs},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: writeVerbs},
		{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: readVerbs},
	}}, metav1.CreateOptions{})
	must("Role", err)
	_, err = b.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: om(clusterset.MemberRole, ns),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: clusterset.MemberRole}, Subjects: []rbacv1.Subject{subject}}, metav1.CreateOptions{})
	must("RoleBinding", err)
	_, err = b.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: om("strait-member-reader-"+id, ""),
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: clusterset.MemberReaderRole}, Subjects: []rbacv1.Subject{subject}}, metav1.CreateOptions{})
	must("ClusterRoleBinding", err)
	kubeSystem, err := e.lab.Client(id).CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	must("kube-system", err)
	plan := e.lab.Cluster(id)
	_, err = b.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: om("strait-membership", ns), Data: clusterset.MembershipData(clusterset.Member{
		ID: id, ClusterUID: string(kubeSystem.UID), ClusterSet: clusterset.DefaultClusterSet, Region: plan.Region, Zone: plan.Zone,
		PodCIDRs: []string{plan.PodCIDR}, ServiceCIDRs: []string{plan.ServiceCIDR}, JoinedAt: joinedAt,
	})}, metav1.CreateOptions{})
	must("membership", err)

	var token []byte
	must("token", wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		s, err := b.CoreV1().Secrets(ns).Get(ctx, "strait-agent-token", metav1.GetOptions{})
		if err == nil {
			token = s.Data[corev1.ServiceAccountTokenKey]
		}
		return len(token) > 0, nil
	}))
	admin := e.lab.RESTConfig(broker)
	old := clusterset.BrokerCredential{Server: admin.Host, CAData: admin.CAData, Token: string(token)}
	// The old layout's token works, with the old, wide reads.
	if _, err := kubernetes.NewForConfigOrDie(old.RESTConfig()).CoreV1().ConfigMaps("kube-system").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("old layout: the old token cannot read what it could: %v", err)
	}
	return old
}

// assertMembers checks ReadMembers through client against the lab's plan.
func (e *labEnv) assertMembers(t *testing.T, client kubernetes.Interface, ids ...string) {
	t.Helper()
	members, err := clusterset.ReadMembers(e.ctx, client)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range members {
		got = append(got, m.ID)
		plan := e.lab.Cluster(m.ID)
		if !slices.Equal(m.PodCIDRs, []string{plan.PodCIDR}) || !slices.Equal(m.ServiceCIDRs, []string{plan.ServiceCIDR}) ||
			m.Region != plan.Region || m.Zone != plan.Zone || m.Namespace != clusterset.MemberNamespace(m.ID) || m.JoinedAt.IsZero() ||
			m.ClusterSet != clusterset.DefaultClusterSet || m.ClusterUID == "" {
			t.Errorf("member %+v, plan %+v", m, plan)
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("members %v, want %v", got, ids)
	}
}

// snapshot records every object join or leave may write, with its resourceVersion, in every
// cluster of the lab: two equal snapshots mean nothing was written in between.
func (e *labEnv) snapshot(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	managed := metav1.ListOptions{LabelSelector: clusterset.ManagedByLabel + "=" + clusterset.ManagedByValue}
	for _, c := range e.lab.Names() {
		cs := e.lab.Client(c)
		dyn := e.dyn(t, c)
		lists := map[string]func() (runtime.Object, error){
			"Namespace":          func() (runtime.Object, error) { return cs.CoreV1().Namespaces().List(e.ctx, metav1.ListOptions{}) },
			"Secret":             func() (runtime.Object, error) { return cs.CoreV1().Secrets("").List(e.ctx, managed) },
			"ConfigMap":          func() (runtime.Object, error) { return cs.CoreV1().ConfigMaps("").List(e.ctx, managed) },
			"ServiceAccount":     func() (runtime.Object, error) { return cs.CoreV1().ServiceAccounts("").List(e.ctx, managed) },
			"Role":               func() (runtime.Object, error) { return cs.RbacV1().Roles("").List(e.ctx, managed) },
			"RoleBinding":        func() (runtime.Object, error) { return cs.RbacV1().RoleBindings("").List(e.ctx, managed) },
			"ClusterRole":        func() (runtime.Object, error) { return cs.RbacV1().ClusterRoles().List(e.ctx, managed) },
			"ClusterRoleBinding": func() (runtime.Object, error) { return cs.RbacV1().ClusterRoleBindings().List(e.ctx, managed) },
			"CustomResourceDefinition": func() (runtime.Object, error) {
				return dyn.Resource(crdGVR).List(e.ctx, metav1.ListOptions{})
			},
			"ClusterProperty": func() (runtime.Object, error) {
				l, err := dyn.Resource(clusterset.ClusterPropertyGVR).List(e.ctx, metav1.ListOptions{})
				if apierrors.IsNotFound(err) {
					return &unstructured.UnstructuredList{}, nil
				}
				return l, err
			},
		}
		for kind, list := range lists {
			l, err := list()
			if err != nil {
				t.Fatalf("%s: listing %s: %v", c, kind, err)
			}
			items, err := apimeta.ExtractList(l)
			if err != nil {
				t.Fatal(err)
			}
			for _, item := range items {
				o, err := apimeta.Accessor(item)
				if err != nil {
					t.Fatal(err)
				}
				if kind == "ConfigMap" && o.GetName() == liveness.ViewConfigMap {
					continue // the running agent's own view of the clusterset, not join's
				}
				version := o.GetResourceVersion()
				if kind == "Namespace" {
					// Namespaces are compared by existence: the namespace controller
					// updates their status on its own.
					version = ""
				}
				out[fmt.Sprintf("%s %s %s/%s", c, kind, o.GetNamespace(), o.GetName())] = version
			}
		}
	}
	return out
}

// assertUnchanged waits until the clusters look as in before (namespace and CRD deletions
// finish asynchronously), but for the objects ignore says, and fails with the difference
// otherwise.
func (e *labEnv) assertUnchanged(t *testing.T, before map[string]string, what string, ignore func(key string) bool) {
	t.Helper()
	var diff []string
	without := func(m map[string]string) map[string]string {
		if ignore != nil {
			maps.DeleteFunc(m, func(k, _ string) bool { return ignore(k) })
		}
		return m
	}
	before = without(maps.Clone(before))
	err := wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		diff = diffSnapshots(before, without(e.snapshot(t)))
		return len(diff) == 0, nil
	})
	if err != nil {
		t.Fatalf("%s changed the clusters:\n  %s", what, strings.Join(diff, "\n  "))
	}
}

func diffSnapshots(a, b map[string]string) []string {
	var diff []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if v, ok := b[k]; !ok {
			diff = append(diff, "removed "+k)
		} else if v != a[k] {
			diff = append(diff, fmt.Sprintf("changed %s (resourceVersion %s -> %s)", k, a[k], v))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			diff = append(diff, "added "+k)
		}
	}
	return diff
}

func actionStrings(actions []clusterset.Action) []string {
	out := make([]string, 0, len(actions))
	for _, a := range actions {
		out = append(out, a.String())
	}
	return out
}

func namespacesOf(items []unstructured.Unstructured, name string) []string {
	var out []string
	for _, it := range items {
		if it.GetName() == name {
			out = append(out, it.GetNamespace())
		}
	}
	return out
}

func serviceImport(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": mcsGroup + "/v1beta1",
		"kind":       "ServiceImport",
		"metadata":   map[string]any{"name": name},
		"spec": map[string]any{
			"type":  "ClusterSetIP",
			"ports": []any{map[string]any{"port": int64(80), "protocol": "TCP"}},
		},
	}}
}

func endpointSlice(name string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name}, AddressType: discoveryv1.AddressTypeIPv4}
}

func lease(name string) *coordinationv1.Lease {
	holder := "test"
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}
}

func event(ns string) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "rbac-test-"},
		InvolvedObject: corev1.ObjectReference{Kind: "Lease", Namespace: ns, Name: "rbac-test"},
		Reason:         "Test", Message: "a member writes an event", Type: corev1.EventTypeNormal,
	}
}
