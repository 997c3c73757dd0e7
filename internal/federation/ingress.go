package federation

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// IngressSource says where a shard's ingress addresses come from.
type IngressSource string

// Ingress sources, in the order ShardIngress tries them.
const (
	// IngressLoadBalancer: the Service's status.loadBalancer.ingress (a cloud load
	// balancer), on the Service's ports.
	IngressLoadBalancer IngressSource = "LoadBalancer"
	// IngressExternalIPs: the Service's spec.externalIPs, on the Service's ports.
	IngressExternalIPs IngressSource = "ExternalIPs"
	// IngressNodes: a NodePort Service, or a LoadBalancer Service no load balancer has
	// served yet: the addresses of the ready nodes (ExternalIP where a node has one, else
	// InternalIP), on the NodePorts.
	IngressNodes IngressSource = "NodePorts"
	// IngressClusterIP: a ClusterIP Service: its cluster IPs, reachable from outside the
	// cluster only where the network routes service CIDRs.
	IngressClusterIP IngressSource = "ClusterIP"
	// IngressNone: a headless or ExternalName Service has no address of its own.
	IngressNone IngressSource = "None"
)

// Port is a port the ingress addresses serve on.
type Port struct {
	Name     string          `json:"name,omitempty"`
	Protocol corev1.Protocol `json:"protocol"`
	Port     int32           `json:"port"`
}

// Ingress is how clients outside the member cluster reach a shard.
type Ingress struct {
	Source IngressSource `json:"source"`
	// IPs are sorted and unique.
	IPs []netip.Addr `json:"ips,omitempty"`
	// Hostnames (load balancers that have a name, not an address) are lower case, sorted
	// and unique.
	Hostnames []string `json:"hostnames,omitempty"`
	Ports     []Port   `json:"ports,omitempty"`
}

// ShardIngress derives a shard's ingress from its Service and the cluster's nodes. In a
// cluster without a load balancer controller (like the lab) a LoadBalancer Service is
// reached on its NodePorts, so its nodes' addresses count until a load balancer serves it.
// ignoreLoadBalancer skips status.loadBalancer.ingress: when the member cluster is the
// broker, its Service's status is the federation's union and not the shard's own.
func ShardIngress(svc *corev1.Service, nodes []*corev1.Node, ignoreLoadBalancer bool) Ingress {
	if svc == nil {
		return Ingress{Source: IngressNone}
	}
	servicePorts := func(nodePorts bool) []Port {
		var out []Port
		for _, p := range svc.Spec.Ports {
			n := p.Port
			if nodePorts {
				n = p.NodePort
			}
			if n != 0 {
				out = append(out, Port{Name: p.Name, Protocol: p.Protocol, Port: n})
			}
		}
		return out
	}
	typ := svc.Spec.Type
	if typ == corev1.ServiceTypeExternalName {
		return Ingress{Source: IngressNone}
	}
	if typ == corev1.ServiceTypeLoadBalancer && !ignoreLoadBalancer {
		var ips []netip.Addr
		var hosts []string
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if a, err := netip.ParseAddr(in.IP); err == nil {
				ips = append(ips, a.Unmap())
			} else if in.Hostname != "" {
				hosts = append(hosts, strings.ToLower(in.Hostname))
			}
		}
		if len(ips)+len(hosts) > 0 {
			return Ingress{Source: IngressLoadBalancer, IPs: sortedAddrs(ips), Hostnames: sortedStrings(hosts), Ports: servicePorts(false)}
		}
	}
	if ips := parseAddrs(svc.Spec.ExternalIPs); len(ips) > 0 {
		return Ingress{Source: IngressExternalIPs, IPs: ips, Ports: servicePorts(false)}
	}
	if typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer {
		return Ingress{Source: IngressNodes, IPs: NodeAddresses(nodes, typ == corev1.ServiceTypeLoadBalancer), Ports: servicePorts(true)}
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return Ingress{Source: IngressNone}
	}
	return Ingress{Source: IngressClusterIP, IPs: ClusterIPs(svc), Ports: servicePorts(false)}
}

// ClusterIPs returns a Service's cluster IPs, sorted; none for a headless Service.
func ClusterIPs(svc *corev1.Service) []netip.Addr {
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	return parseAddrs(ips)
}

// NodeAddresses returns the addresses of the ready nodes: each node's ExternalIPs when it has
// any, else its InternalIPs. forLoadBalancer leaves out nodes labelled
// node.kubernetes.io/exclude-from-external-load-balancers, as cloud providers do.
func NodeAddresses(nodes []*corev1.Node, forLoadBalancer bool) []netip.Addr {
	var out []netip.Addr
	for _, n := range nodes {
		if !nodeReady(n) || n.Spec.Unschedulable {
			continue
		}
		if _, excluded := n.Labels[corev1.LabelNodeExcludeBalancers]; forLoadBalancer && excluded {
			continue
		}
		var external, internal []netip.Addr
		for _, a := range n.Status.Addresses {
			ip, err := netip.ParseAddr(a.Address)
			if err != nil {
				continue
			}
			switch a.Type {
			case corev1.NodeExternalIP:
				external = append(external, ip.Unmap())
			case corev1.NodeInternalIP:
				internal = append(internal, ip.Unmap())
			}
		}
		if len(external) > 0 {
			out = append(out, external...)
		} else {
			out = append(out, internal...)
		}
	}
	return sortedAddrs(out)
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func parseAddrs(in []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return sortedAddrs(out)
}

func sortedAddrs(in []netip.Addr) []netip.Addr {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

func sortedStrings(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := slices.Clone(in)
	slices.Sort(out)
	return slices.Compact(out)
}
