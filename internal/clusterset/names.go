package clusterset

import "strings"

// Names and labels shared by `strait join`, the agent and `strait status`.
const (
	// SystemNamespace holds Strait's objects in each member cluster.
	SystemNamespace = "strait-system"
	// BrokerSecretName is the Secret in SystemNamespace with the member's broker kubeconfig.
	BrokerSecretName = "strait-broker"
	// BrokerSecretKey is the key of the kubeconfig in BrokerSecretName.
	BrokerSecretKey = "kubeconfig"

	// MemberNamespacePrefix prefixes the broker namespace of each member: strait-member-<id>.
	// A member writes only there; every member reads every member namespace.
	MemberNamespacePrefix = "strait-member-"
	// ClustersetNamespace is the broker namespace of the clusterset itself, written only by
	// the clusterset administrator (`strait join`): the membership registry (a ConfigMap
	// per member, RegistryPrefix + id), the namespace policy, and the members' identities
	// (a ServiceAccount per member, RegistryPrefix + id, whose group MembersGroup the
	// readers' RoleBindings name).
	ClustersetNamespace = "strait-clusterset"
	// RegistryPrefix prefixes a member's registry ConfigMap and ServiceAccount.
	RegistryPrefix = "member-"
	// MembersGroup is the group of every member's identity on the broker.
	MembersGroup = "system:serviceaccounts:" + ClustersetNamespace
	// NamespacePolicyConfigMap, in ClustersetNamespace, says which clusters may export into
	// which namespaces (internal/policy).
	NamespacePolicyConfigMap = "namespace-policy"
	// MemberRole and its RoleBinding let a member write its own broker namespace.
	MemberRole = "strait-member"
	// MemberReaderRole and its RoleBinding, in every member namespace, the clusterset
	// namespace and the federation namespace, let every member read what Strait keeps there.
	MemberReaderRole = "strait-member-reader"

	// ManagedByLabel and ManagedByValue mark every object Strait writes.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "strait"
	// ClusterIDLabel names the member an object belongs to.
	ClusterIDLabel = "strait.io/cluster-id"

	// ServiceProxyNameLabel (service.kubernetes.io/service-proxy-name) hands an EndpointSlice
	// to another proxy: every record a member keeps on the broker carries it with
	// RecordsProxyName, so kube-proxy of a cluster that is also the broker skips records,
	// which are data, not endpoints of a local Service.
	ServiceProxyNameLabel = "service.kubernetes.io/service-proxy-name"
	RecordsProxyName      = "strait-records"

	// DefaultClusterSet is the clusterset name when none is given.
	DefaultClusterSet = "clusterset"
)

// Keys of the MembershipConfigMap.
const (
	KeyClusterID    = "clusterID"
	KeyClusterUID   = "clusterUID"
	KeyClusterSet   = "clusterSet"
	KeyRegion       = "region"
	KeyZone         = "zone"
	KeyPodCIDRs     = "podCIDRs"
	KeyServiceCIDRs = "serviceCIDRs"
	KeyJoinedAt     = "joinedAt"
)

// MemberNamespace is the broker namespace of a member.
func MemberNamespace(id string) string { return MemberNamespacePrefix + id }

// RegistryName is the name of a member's registry ConfigMap and of its ServiceAccount in
// ClustersetNamespace.
func RegistryName(id string) string { return RegistryPrefix + id }

// ClusterIDFromRegistryName returns the cluster ID of a registry ConfigMap's name.
func ClusterIDFromRegistryName(name string) (string, bool) {
	id, ok := strings.CutPrefix(name, RegistryPrefix)
	return id, ok && id != ""
}

// ClusterIDFromNamespace returns the member ID of a broker namespace, and false for any
// namespace that is not a member namespace.
func ClusterIDFromNamespace(ns string) (string, bool) {
	id, ok := strings.CutPrefix(ns, MemberNamespacePrefix)
	if !ok || ValidateClusterID(id) != nil {
		return "", false
	}
	return id, true
}

// labels returns the labels of an object that belongs to member id (none for shared objects).
func labels(id string) map[string]string {
	l := map[string]string{ManagedByLabel: ManagedByValue}
	if id != "" {
		l[ClusterIDLabel] = id
	}
	return l
}

// The layout before the membership registry (one identity and one membership ConfigMap per
// member namespace, a ClusterRoleBinding per member). Join migrates a member away from it.
const (
	legacyAgentServiceAccount = "strait-agent"
	legacyAgentTokenSecret    = "strait-agent-token"
	legacyMembershipConfigMap = "strait-membership"
	legacyReaderClusterRole   = "strait-member-reader"
)

func legacyReaderBinding(id string) string { return legacyReaderClusterRole + "-" + id }
