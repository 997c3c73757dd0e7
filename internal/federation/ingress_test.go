package federation

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, ready bool, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status}}
	for i := 0; i+1 < len(addrs); i += 2 {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(addrs[i]), Address: addrs[i+1]})
	}
	return n
}

func ips(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestShardIngress(t *testing.T) {
	internal, external := string(corev1.NodeInternalIP), string(corev1.NodeExternalIP)
	nodes := []*corev1.Node{
		node("n1", true, internal, "192.168.1.2"),
		node("n2", true, internal, "192.168.1.3", external, "203.0.113.3"),
		node("n3", false, internal, "192.168.1.4"),
		node("n4", true, internal, "fd00::5"),
	}
	excluded := node("n5", true, internal, "192.168.1.6")
	excluded.Labels[corev1.LabelNodeExcludeBalancers] = ""
	cordoned := node("n6", true, internal, "192.168.1.7")
	cordoned.Spec.Unschedulable = true
	nodes = append(nodes, excluded, cordoned)

	lb := brokerService()
	lbServed := brokerService()
	lbServed.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.2"}, {IP: "198.51.100.1"}, {Hostname: "LB.Example.com"}}
	nodePort := brokerService()
	nodePort.Spec.Type = corev1.ServiceTypeNodePort
	extIPs := brokerService()
	extIPs.Spec.Type, extIPs.Spec.ExternalIPs = corev1.ServiceTypeClusterIP, []string{"198.51.100.9"}
	clusterIP := brokerService()
	clusterIP.Spec.Type = corev1.ServiceTypeClusterIP
	clusterIP.Spec.ClusterIPs = []string{"10.96.0.5", "fd00:96::5"}
	headless := brokerService()
	headless.Spec.Type, headless.Spec.ClusterIP, headless.Spec.ClusterIPs = corev1.ServiceTypeClusterIP, corev1.ClusterIPNone, []string{corev1.ClusterIPNone}
	extName := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "x.example.com"}}

	for _, tc := range []struct {
		name     string
		svc      *corev1.Service
		ignoreLB bool
		source   IngressSource
		ips      []netip.Addr
		hosts    []string
		ports    []int32
	}{
		{name: "LoadBalancer served by a load balancer: its ingress on the service ports", svc: lbServed,
			source: IngressLoadBalancer, ips: ips("198.51.100.1", "198.51.100.2"), hosts: []string{"lb.example.com"}, ports: []int32{80, 53}},
		{name: "LoadBalancer without a load balancer: ready, schedulable, not excluded nodes on the node ports", svc: lb,
			source: IngressNodes, ips: ips("192.168.1.2", "203.0.113.3", "fd00::5"), ports: []int32{30001, 30002}},
		{name: "the broker's own Service: its status is the union, never its ingress", svc: lbServed, ignoreLB: true,
			source: IngressNodes, ips: ips("192.168.1.2", "203.0.113.3", "fd00::5"), ports: []int32{30001, 30002}},
		{name: "NodePort: nodes, excluded-from-balancers ones too", svc: nodePort,
			source: IngressNodes, ips: ips("192.168.1.2", "192.168.1.6", "203.0.113.3", "fd00::5"), ports: []int32{30001, 30002}},
		{name: "external IPs", svc: extIPs, source: IngressExternalIPs, ips: ips("198.51.100.9"), ports: []int32{80, 53}},
		{name: "ClusterIP: its cluster IPs", svc: clusterIP, source: IngressClusterIP, ips: ips("10.96.0.5", "fd00:96::5"), ports: []int32{80, 53}},
		{name: "headless: none", svc: headless, source: IngressNone},
		{name: "ExternalName: none", svc: extName, source: IngressNone},
		{name: "no Service: none", svc: nil, source: IngressNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ShardIngress(tc.svc, nodes, tc.ignoreLB)
			var ports []int32
			for _, p := range got.Ports {
				ports = append(ports, p.Port)
			}
			if got.Source != tc.source || !slices.Equal(got.IPs, tc.ips) || !slices.Equal(got.Hostnames, tc.hosts) || !slices.Equal(ports, tc.ports) {
				t.Errorf("got %s %v %v %v\nwant %s %v %v %v", got.Source, got.IPs, got.Hostnames, ports, tc.source, tc.ips, tc.hosts, tc.ports)
			}
		})
	}
}

func TestNodeAddressesAreSortedAndUnique(t *testing.T) {
	var nodes []*corev1.Node
	for i := 5; i > 0; i-- {
		nodes = append(nodes, node(fmt.Sprint("n", i), true, string(corev1.NodeInternalIP), fmt.Sprintf("10.0.0.%d", i%3)))
	}
	got := NodeAddresses(nodes, false)
	if !slices.Equal(got, ips("10.0.0.0", "10.0.0.1", "10.0.0.2")) {
		t.Errorf("%v", got)
	}
}
