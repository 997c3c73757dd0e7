// Package clusterset manages clusterset membership: which clusters belong to the clusterset,
// what the broker holds about each of them, and the credential each member uses to reach the
// broker.
//
// The data model lives in ordinary Kubernetes objects. In every member cluster: the About API
// ClusterProperty objects cluster.clusterset.k8s.io (the cluster ID) and clusterset.k8s.io
// (the clusterset name), the Multi-Cluster Services CRDs, and the Secret
// strait-system/strait-broker holding a self-contained, expiring credential for the broker.
// On the broker: the namespace strait-clusterset with the membership registry (a ConfigMap
// per member, member-<id>: ID, region, zone, CIDRs, join time) and each member's identity
// (ServiceAccount member-<id>), and one namespace per member (strait-member-<id>) that only
// the member writes; every member reads the member namespaces, the registry and the
// federation namespace, and nothing else (see objects.go).
//
// Rules that need no API server (ID syntax, CIDR overlaps, who owns an ID, the shape of the
// objects written) are pure functions in this package, table-tested; Join, Leave, ReadMembers
// and the credential helpers do the API plumbing around them.
package clusterset
