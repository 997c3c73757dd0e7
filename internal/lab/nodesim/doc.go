// Package nodesim is the node simulator of a lab cluster: it stands in for the kubelet.
//
// Lab clusters run a real kube-apiserver, kube-controller-manager, kube-proxy and CoreDNS but
// no container runtime and no scheduler, so without a kubelet every pod would stay Pending,
// EndpointSlices would stay empty and nothing would answer on a pod address. The simulator
// closes that gap with as little machinery as possible:
//
//   - it registers one Node and keeps it healthy (node Lease plus Ready heartbeats), so the
//     node-lifecycle controller never taints it or evicts its pods;
//   - it binds unscheduled pods to that Node, because there is no scheduler;
//   - it gives each pod an address from the node's pod CIDR and reports it Running and Ready,
//     so the endpoint controllers publish it and kube-proxy routes to it; the annotation
//     lab.strait.io/ready: "false" turns readiness off to exercise failover;
//   - it answers HTTP on every TCP container port of every pod address with a small JSON
//     document naming the cluster and pod, so tests can tell which backend served a request;
//   - it finalizes deleted pods the way the kubelet does.
//
// Nothing in the product depends on this package; it exists for the lab and its tests.
package nodesim
