package clusterset

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// Registration is what `strait join` writes on the broker for member m that other members
// rely on to read its records, in join's order: the member namespace, the reader Role and
// RoleBinding in it, and the registry ConfigMap, which join writes last because it is
// what makes the cluster a member (readers watch only registered members' namespaces).
// The member's own identity and write grants (ServiceAccount, token, Role strait-member)
// are left out: they only matter to a writer using the member's credential.
type Registration struct {
	Namespace     *corev1.Namespace
	ReaderRole    *rbacv1.Role
	ReaderBinding *rbacv1.RoleBinding
	Registry      *corev1.ConfigMap
}

// BrokerRegistration returns the objects join writes for m, as join builds them. The
// scale harness registers simulated members with it.
func BrokerRegistration(m Member) Registration {
	ns := MemberNamespace(m.ID)
	return Registration{
		Namespace:     namespace(ns, m.ID),
		ReaderRole:    readerRole(ns, m.ID, readMemberRecords),
		ReaderBinding: readerRoleBinding(ns, m.ID),
		Registry:      registryConfigMap(m),
	}
}
