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
	MemberNamespacePrefix = "strait-member-"
	// MembershipConfigMap describes the member in its broker namespace.
	MembershipConfigMap = "strait-membership"
	// AgentServiceAccount is the member's identity on the broker.
	AgentServiceAccount = "strait-agent"
	// AgentTokenSecret holds the long-lived token of AgentServiceAccount.
	AgentTokenSecret = "strait-agent-token"
	// MemberRole and its RoleBinding let a member write its own broker namespace.
	MemberRole = "strait-member"
	// MemberReaderClusterRole lets members read every member's records; each member has a
	// ClusterRoleBinding named MemberReaderClusterRole + "-" + id.
	MemberReaderClusterRole = "strait-member-reader"

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

// MemberReaderBinding is the name of a member's ClusterRoleBinding to MemberReaderClusterRole.
func MemberReaderBinding(id string) string { return MemberReaderClusterRole + "-" + id }

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
