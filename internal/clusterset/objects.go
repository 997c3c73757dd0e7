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

// agentServiceAccount is the member's identity on the broker. Nothing runs as it inside the
// broker, so it mounts no token.
func agentServiceAccount(id string) *corev1.ServiceAccount {
	return &corev1.ServiceAccount{
		ObjectMeta:                   meta(legacyAgentServiceAccount, MemberNamespace(id), id),
		AutomountServiceAccountToken: ptr.To(false),
	}
}

// agentTokenSecret asks the token controller for a long-lived token of the service account,
// which the member stores in its broker kubeconfig.
func agentTokenSecret(id string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: meta(legacyAgentTokenSecret, MemberNamespace(id), id), Type: corev1.SecretTypeServiceAccountToken}
	s.Annotations = map[string]string{corev1.ServiceAccountNameKey: legacyAgentServiceAccount}
	return s
}

// memberRole lets a member write its own records. Its membership ConfigMap is read-only to
// it: only join (an administrator) decides who a member is.
func memberRole(id string) *rbacv1.Role {
	return &rbacv1.Role{
		ObjectMeta: meta(MemberRole, MemberNamespace(id), id),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports", "serviceimports/status"}, Verbs: writeVerbs},
			{APIGroups: []string{discoveryGroup}, Resources: []string{"endpointslices"}, Verbs: writeVerbs},
			{APIGroups: []string{coordinationGroup}, Resources: []string{"leases"}, Verbs: writeVerbs},
			{APIGroups: []string{"", eventsGroup}, Resources: []string{"events"}, Verbs: writeVerbs},
			{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: readVerbs},
		},
	}
}

func memberRoleBinding(id string) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{
		ObjectMeta: meta(MemberRole, MemberNamespace(id), id),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: MemberRole},
		Subjects:   []rbacv1.Subject{agentSubject(id)},
	}
}

// readerClusterRole lets members read every member's records; it is shared by all members.
// Services are read for federated Services: the agent watches only the federation namespace,
// which is configurable per agent, so the grant cannot name it.
func readerClusterRole() *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{
		ObjectMeta: meta(legacyReaderClusterRole, "", ""),
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"namespaces", "configmaps", "services"}, Verbs: readVerbs},
			{APIGroups: []string{mcsGroup}, Resources: []string{"serviceimports"}, Verbs: readVerbs},
			{APIGroups: []string{discoveryGroup}, Resources: []string{"endpointslices"}, Verbs: readVerbs},
			{APIGroups: []string{coordinationGroup}, Resources: []string{"leases"}, Verbs: readVerbs},
		},
	}
}

func readerBinding(id string) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: meta(legacyReaderBinding(id), "", id),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: legacyReaderClusterRole},
		Subjects:   []rbacv1.Subject{agentSubject(id)},
	}
}

func agentSubject(id string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: legacyAgentServiceAccount, Namespace: MemberNamespace(id)}
}

func membershipConfigMap(m Member) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: meta(legacyMembershipConfigMap, MemberNamespace(m.ID), m.ID), Data: MembershipData(m)}
}

func brokerSecret(id string, kubeconfig []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: meta(BrokerSecretName, SystemNamespace, id),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{BrokerSecretKey: kubeconfig},
	}
}
