package clusterset

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// API groups of the records members keep on the broker.
const (
	mcsGroup          = "multicluster.x-k8s.io"
	discoveryGroup    = "discovery.k8s.io"
	coordinationGroup = "coordination.k8s.io"
	eventsGroup       = "events.k8s.io"
)

// DefaultFederationNamespace is the broker namespace whose Services are federated, unless
// join is told another (internal/federation has the same default).
const DefaultFederationNamespace = "strait-federation"

// MemberTokenRolePrefix prefixes the Role and RoleBinding, in ClustersetNamespace, that let
// a member request tokens for its own ServiceAccount: MemberTokenRole(id).
const MemberTokenRolePrefix = "strait-member-token-"

// MemberTokenRole names the Role and RoleBinding that let member id renew its own token.
func MemberTokenRole(id string) string { return MemberTokenRolePrefix + id }

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
)

func meta(name, namespace, id string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: labels(id)}
}

func namespace(name, id string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: meta(name, "", id)}
}

// memberServiceAccount is the member's identity on the broker. Living in
// ClustersetNamespace puts it in MembersGroup, the subject of every reader grant. Nothing
// runs as it inside the broker, so it mounts no token.
func memberServiceAccount(id string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   meta(RegistryName(id), ClustersetNamespace, id),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// memberSubject is the member's ServiceAccount as an RBAC subject.
func memberSubject(id string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: RegistryName(id), Namespace: ClustersetNamespace}
}

// membersSubject is every member at once.
func membersSubject() rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: MembersGroup}
}

// memberRole lets a member write its own records, and nothing else: who a member is (the
// registry) is decided by join alone, and reading is granted to all members alike by the
// reader roles.
func memberRole(id string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: meta(MemberRole, MemberNamespace(id), id),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports", "serviceimports/status"}, Verbs: writeVerbs},
			{APIGroups: []string{discoveryGroup}, Resources: []string{"endpointslices"}, Verbs: writeVerbs},
			{APIGroups: []string{coordinationGroup}, Resources: []string{"leases"}, Verbs: writeVerbs},
			{APIGroups: []string{"", eventsGroup}, Resources: []string{"events"}, Verbs: writeVerbs},
		},
	}
}

func memberRoleBinding(id string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: meta(MemberRole, MemberNamespace(id), id),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: MemberRole},
		Subjects:   []rbacv1.Subject{memberSubject(id)},
	}
}

// Where a reader Role is, which decides what it lets members read.
type readerScope int

const (
	// readMemberRecords: a member namespace, the records of one member.
	readMemberRecords readerScope = iota
	// readRegistry: ClustersetNamespace, the registry and the namespace policy.
	readRegistry
	// readFederation: the federation namespace, the federated Services and their status.
	readFederation
)

// readerRules is what every member may read in a namespace of the given scope.
func readerRules(scope readerScope) []rbacv1.PolicyRule {
	switch scope {
	case readRegistry:
		return []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: readVerbs}}
	case readFederation:
		return []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: readVerbs},
			{APIGroups: []string{discoveryGroup}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
		}
	default:
		return []rbacv1.PolicyRule{
			{APIGroups: []string{discoveryGroup}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
			{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports"}, Verbs: readVerbs},
			{APIGroups: []string{coordinationGroup}, Resources: []string{"leases"}, Verbs: readVerbs},
		}
	}
}

// readerRole lets every member read what Strait keeps in one namespace; id is the member
// the namespace belongs to, empty for the shared namespaces.
func readerRole(ns, id string, scope readerScope) *rbacv1.Role {
	return &rbacv1.Role{ObjectMeta: meta(MemberReaderRole, ns, id), Rules: readerRules(scope)}
}

func readerRoleBinding(ns, id string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: meta(MemberReaderRole, ns, id),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: MemberReaderRole},
		Subjects:   []rbacv1.Subject{membersSubject()},
	}
}

// readerClusterRole is the members' only cluster-wide grant: reading the kube-system
// namespace object, whose uid tells an agent whether its own cluster hosts the broker.
func readerClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: meta(MemberReaderRole, "", ""),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces"}, ResourceNames: []string{metav1.NamespaceSystem}, Verbs: []string{"get"}},
		},
	}
}

func readerClusterRoleBinding() *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: meta(MemberReaderRole, "", ""),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: MemberReaderRole},
		Subjects:   []rbacv1.Subject{membersSubject()},
	}
}

// memberTokenRole lets a member's agent request new tokens for its own ServiceAccount, so
// it renews the expiring credential join gave it without an administrator.
func memberTokenRole(id string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: meta(MemberTokenRole(id), ClustersetNamespace, id),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"serviceaccounts/token"}, ResourceNames: []string{RegistryName(id)}, Verbs: []string{"create"}},
		},
	}
}

func memberTokenRoleBinding(id string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: meta(MemberTokenRole(id), ClustersetNamespace, id),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: MemberTokenRole(id)},
		Subjects:   []rbacv1.Subject{memberSubject(id)},
	}
}

// registryConfigMap is the member's record in the registry: what makes it a member.
func registryConfigMap(m Member) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta(RegistryName(m.ID), ClustersetNamespace, m.ID), Data: MembershipData(m)}
}

func brokerSecret(id string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: meta(BrokerSecretName, SystemNamespace, id),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{BrokerSecretKey: kubeconfig},
	}
}
