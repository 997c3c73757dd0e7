package clusterset

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func TestValidateCredentialTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl  time.Duration
		want string
	}{
		{DefaultCredentialTTL, ""},
		{MinCredentialTTL, ""},
		{MaxCredentialTTL, ""},
		{5 * time.Minute, "credential TTL 5m0s is too short: the TokenRequest API issues tokens for at least 10m0s"},
		{0, "credential TTL 0s is too short"},
		{-time.Hour, "credential TTL -1h0m0s is too short"},
		{MaxCredentialTTL + time.Hour, "credential TTL 8761h0m0s is too long: at most 8760h0m0s (one year) is allowed"},
	} {
		err := ValidateCredentialTTL(tc.ttl)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateCredentialTTL(%s) = %v, want %q", tc.ttl, err, tc.want)
		}
	}
}

func TestValidateFederationNamespace(t *testing.T) {
	for _, tc := range []struct {
		ns, want string
	}{
		{DefaultFederationNamespace, ""},
		{"federation", ""},
		{"Fed", `federation namespace "Fed" is not a DNS-1123 label`},
		{"", `federation namespace "" is not a DNS-1123 label`},
		{ClustersetNamespace, `federation namespace "strait-clusterset" is reserved`},
		{MemberNamespace("a"), `federation namespace "strait-member-a" is reserved`},
	} {
		err := ValidateFederationNamespace(tc.ns)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ValidateFederationNamespace(%q) = %v, want %q", tc.ns, err, tc.want)
		}
	}
}

// TestMemberEndpoint: whatever the administrator's configuration of the broker uses to
// authenticate, the member gets only the server, the CA inline, the TLS server name and its
// token, or a clear refusal before anything is written.
func TestMemberEndpoint(t *testing.T) {
	dir := t.TempDir()
	caFile, certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "client.crt"), filepath.Join(dir, "client.key")
	for _, f := range []string{caFile, certFile, keyFile} {
		if err := os.WriteFile(f, []byte("CA FROM FILE"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// An EKS-like context: an exec plugin, a CA file, a client certificate file and a token
	// file; none of them may reach the member.
	admin := clientcmdapi.NewConfig()
	admin.Clusters["eks"] = &clientcmdapi.Cluster{Server: "https://broker.example:443", CertificateAuthority: caFile, TLSServerName: "api.broker"}
	admin.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		Exec:              &clientcmdapi.ExecConfig{Command: "aws", Args: []string{"eks", "get-token"}, APIVersion: "client.authentication.k8s.io/v1beta1", InteractiveMode: clientcmdapi.NeverExecInteractiveMode},
		ClientCertificate: certFile, ClientKey: keyFile,
	}
	admin.Contexts["broker"] = &clientcmdapi.Context{Cluster: "eks", AuthInfo: "admin"}
	adminCfg, err := clientcmd.NewNonInteractiveClientConfig(*admin, "broker", &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if adminCfg.ExecProvider == nil {
		t.Fatal("the admin configuration lost its exec plugin; the test proves nothing")
	}
	ep, warnings, err := memberEndpoint(JoinOptions{Broker: adminCfg, BrokerName: "broker", MemberName: "m"})
	if err != nil || len(warnings) > 0 {
		t.Fatalf("memberEndpoint: %v, warnings %q", err, warnings)
	}
	data, err := ep.Credential("tok").Kubeconfig("m")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseBrokerCredential(data, false)
	if err != nil {
		t.Fatalf("the stored credential is refused: %v\n%s", err, data)
	}
	if c.Server != "https://broker.example:443" || string(c.CAData) != "CA FROM FILE" || c.ServerName != "api.broker" || c.Token != "tok" {
		t.Errorf("credential %+v", c)
	}
	for _, leak := range []string{"aws", "exec", "client.crt", "client.key", caFile, "client-certificate"} {
		if strings.Contains(string(data), leak) {
			t.Errorf("the stored credential contains %q:\n%s", leak, data)
		}
	}

	withCA := &rest.Config{Host: "https://broker:6443", TLSClientConfig: rest.TLSClientConfig{CAData: []byte("CA")}}
	insecure := &rest.Config{Host: "https://broker:6443", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	for _, tc := range []struct {
		name    string
		o       JoinOptions
		want    string // error substring; empty means accepted
		warning string
		server  string
	}{
		{"a CA given inline", JoinOptions{Broker: withCA}, "", "", "https://broker:6443"},
		{"another server for the members", JoinOptions{Broker: withCA, BrokerServer: "https://broker.public:6443"}, "", "", "https://broker.public:6443"},
		{"insecure refused", JoinOptions{Broker: insecure},
			"the broker context b skips TLS verification (insecure-skip-tls-verify), and a member's agent would then accept any server as its broker; give the context the broker's CA, or pass --allow-insecure-broker", "", ""},
		{"insecure allowed", JoinOptions{Broker: insecure, AllowInsecureBroker: true}, "",
			"the broker credential stored in m skips TLS verification (--allow-insecure-broker)", "https://broker:6443"},
		{"no CA", JoinOptions{Broker: &rest.Config{Host: "https://broker:6443"}},
			"the broker context b names no CA (certificate-authority or certificate-authority-data)", "", ""},
		{"a missing CA file", JoinOptions{Broker: &rest.Config{Host: "https://broker:6443", TLSClientConfig: rest.TLSClientConfig{CAFile: "/nonexistent/ca.crt"}}},
			"b: reading the broker's CA file", "", ""},
		{"not https", JoinOptions{Broker: withCA, BrokerServer: "http://broker:8080"},
			`the broker credential a member would get from the context b: refused: clusters["broker"].server "http://broker:8080" is not an https:// URL`, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.o.BrokerName, tc.o.MemberName = "b", "m"
			ep, warnings, err := memberEndpoint(tc.o)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ep.Server != tc.server {
				t.Errorf("server %s, want %s", ep.Server, tc.server)
			}
			if got := strings.Join(warnings, "\n"); (tc.warning == "") != (got == "") || !strings.Contains(got, tc.warning) {
				t.Errorf("warnings %q, want %q", warnings, tc.warning)
			}
		})
	}
}

// legacyObjects are what the old layout kept on the broker for member id.
func legacyObjects(id string) []runtime.Object {
	ns := MemberNamespace(id)
	return []runtime.Object{
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: meta(legacyReaderBinding(id), "", id),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: legacyReaderClusterRole},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: legacyAgentServiceAccount, Namespace: ns}},
		},
		&corev1.ConfigMap{ObjectMeta: meta(legacyMembershipConfigMap, ns, id), Data: map[string]string{KeyClusterID: id}},
		&corev1.Secret{ObjectMeta: meta(legacyAgentTokenSecret, ns, id), Type: corev1.SecretTypeServiceAccountToken},
		&corev1.ServiceAccount{ObjectMeta: meta(legacyAgentServiceAccount, ns, id)},
	}
}

// legacyClusterRole is the old layout's ClusterRole strait-member-reader.
func legacyClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: meta(legacyReaderClusterRole, "", ""),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "configmaps", "services"}, Verbs: readVerbs},
		},
	}
}

func TestRemoveLegacy(t *testing.T) {
	ctx := context.Background()
	objs := append(legacyObjects("a"), legacyObjects("b")...)
	// Someone else's object at a legacy name is not Strait's to delete.
	objs = append(objs, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: legacyAgentServiceAccount, Namespace: MemberNamespace("c")}})
	cs := fake.NewClientset(objs...)
	var got []string
	record := func(a Action) { got = append(got, a.String()) }
	for _, id := range []string{"a", "c"} {
		if err := removeLegacy(ctx, cs, "broker", id, record); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"deleted ClusterRoleBinding strait-member-reader-a in broker",
		"deleted ConfigMap strait-member-a/strait-membership in broker",
		"deleted Secret strait-member-a/strait-agent-token in broker",
		"deleted ServiceAccount strait-member-a/strait-agent in broker",
	}
	if !slices.Equal(got, want) {
		t.Errorf("actions\n  %q\nwant\n  %q", got, want)
	}
	if _, err := cs.CoreV1().ServiceAccounts(MemberNamespace("c")).Get(ctx, legacyAgentServiceAccount, metav1.GetOptions{}); err != nil {
		t.Errorf("an unlabelled object was deleted: %v", err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(MemberNamespace("b")).Get(ctx, legacyAgentServiceAccount, metav1.GetOptions{}); err != nil {
		t.Errorf("another member's old objects were deleted: %v", err)
	}
	got = nil
	if err := removeLegacy(ctx, cs, "broker", "a", record); err != nil || len(got) != 0 {
		t.Errorf("second run: %v, %q", err, got)
	}
}

// TestClusterReaderDuringMigration: the ClusterRole of the old layout and the new one share
// their name. While members of the old layout use it, it keeps its rules and the members'
// group is not bound to it; the migration of the last of them replaces it.
func TestClusterReaderDuringMigration(t *testing.T) {
	ctx := context.Background()
	objs := append([]runtime.Object{legacyClusterRole()}, legacyObjects("a")...)
	objs = append(objs, legacyObjects("b")...)
	cs := fake.NewClientset(objs...)
	clusterRole := func() *rbacv1.ClusterRole {
		r, err := cs.RbacV1().ClusterRoles().Get(ctx, MemberReaderRole, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	groupBound := func() bool {
		_, err := cs.RbacV1().ClusterRoleBindings().Get(ctx, MemberReaderRole, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	migrate := func(id string) *joinPlan {
		t.Helper()
		p := &joinPlan{broker: clients{name: "broker", kube: cs}, joining: Member{ID: id}}
		j := &journal{}
		if err := p.grantClusterReader(ctx, j); err != nil {
			t.Fatal(err)
		}
		if err := p.migrate(ctx, j); err != nil {
			t.Fatal(err)
		}
		return p
	}

	p := migrate("a")
	if groupBound() || !slices.EqualFunc(clusterRole().Rules, legacyClusterRole().Rules, ruleEqual) {
		t.Errorf("with member b still in the old layout: group bound %v, rules %+v", groupBound(), clusterRole().Rules)
	}
	if w := strings.Join(p.warnings, "\n"); !strings.Contains(w, "members of the old broker layout are left (ClusterRoleBindings strait-member-reader-b): run strait join for each of them") {
		t.Errorf("warnings %q", p.warnings)
	}
	p = migrate("b")
	if !groupBound() || !slices.EqualFunc(clusterRole().Rules, readerClusterRole().Rules, ruleEqual) {
		t.Errorf("after the last migration: group bound %v, rules %+v", groupBound(), clusterRole().Rules)
	}
	if len(p.warnings) != 0 {
		t.Errorf("warnings %q", p.warnings)
	}
}

func ruleEqual(a, b rbacv1.PolicyRule) bool {
	return slices.Equal(a.APIGroups, b.APIGroups) && slices.Equal(a.Resources, b.Resources) && slices.Equal(a.Verbs, b.Verbs) && slices.Equal(a.ResourceNames, b.ResourceNames)
}

func TestReleaseLegacyReaderRole(t *testing.T) {
	ctx := context.Background()
	clustersetNS := namespace(ClustersetNamespace, "")
	for _, tc := range []struct {
		name    string
		objs    []runtime.Object
		actions []string
		rules   []rbacv1.PolicyRule // nil: the ClusterRole is gone
		bound   bool
	}{
		{"an old clusterset: its last member leaves", []runtime.Object{legacyClusterRole()},
			[]string{"deleted ClusterRole strait-member-reader in broker"}, nil, false},
		{"old members left", append([]runtime.Object{legacyClusterRole()}, legacyObjects("b")...),
			nil, legacyClusterRole().Rules, false},
		{"the last old member leaves a migrated clusterset", []runtime.Object{legacyClusterRole(), clustersetNS},
			[]string{"updated ClusterRole strait-member-reader in broker", "created ClusterRoleBinding strait-member-reader in broker"}, readerClusterRole().Rules, true},
		{"the new role stays, even with no member", []runtime.Object{readerClusterRole(), readerClusterRoleBinding()},
			nil, readerClusterRole().Rules, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset(tc.objs...)
			j := &journal{}
			if err := releaseLegacyReaderRole(ctx, j, "broker", cs); err != nil {
				t.Fatal(err)
			}
			if got := actionStrings(j.actions); !slices.Equal(got, tc.actions) {
				t.Errorf("actions %q, want %q", got, tc.actions)
			}
			r, err := cs.RbacV1().ClusterRoles().Get(ctx, MemberReaderRole, metav1.GetOptions{})
			switch {
			case tc.rules == nil && !apierrors.IsNotFound(err):
				t.Errorf("ClusterRole: %v, want it deleted", err)
			case tc.rules != nil && (err != nil || !slices.EqualFunc(r.Rules, tc.rules, ruleEqual)):
				t.Errorf("ClusterRole %v, %v; want rules %+v", r, err, tc.rules)
			}
			_, err = cs.RbacV1().ClusterRoleBindings().Get(ctx, MemberReaderRole, metav1.GetOptions{})
			if (err == nil) != tc.bound {
				t.Errorf("group binding: %v, want bound %v", err, tc.bound)
			}
		})
	}
}
