// Package clusterset manages clusterset membership: which clusters belong to the clusterset,
// what the broker holds about each of them, and the credential each member uses to reach the
// broker.
//
// The data model lives in ordinary Kubernetes objects. In every member cluster: the About API
// ClusterProperty objects cluster.clusterset.k8s.io (the cluster ID) and clusterset.k8s.io
// (the clusterset name), the Multi-Cluster Services CRDs, and the Secret
// strait-system/strait-broker holding a kubeconfig for the broker. On the broker: one namespace
// per member (strait-member-<id>) with the member's service account, its least-privilege RBAC
// (write its own namespace, read everyone's) and the strait-membership ConfigMap describing
// the member (ID, region, zone, CIDRs, join time).
//
// Rules that need no API server (ID syntax, CIDR overlaps, who owns an ID, the shape of the
// objects written) are pure functions in this package, table-tested; Join, Leave, ReadMembers
// and the credential helpers do the API plumbing around them.
package clusterset
