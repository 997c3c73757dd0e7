package exporter

import (
	"fmt"
	"net/netip"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// AnnotationExportVia on a ServiceExport publishes addresses other clusters can reach when
// pod IPs are not routable between clusters: "nodeport" publishes every Ready
// node's InternalIP with the Service's node ports, "loadbalancer" the Service's load
// balancer ingress IPs with its ports. Importers then route the ClusterSet IP to those.
// "ingress" publishes the host of an Ingress instead (see FindIngressRoute).
const AnnotationExportVia = "export.strait.io/via"

// Ways to be reached.
const (
	ViaPods         = ""
	ViaNodePort     = "nodeport"
	ViaLoadBalancer = "loadbalancer"
)

// ReasonInvalidExportVia is the Valid=False reason of an export whose via annotation cannot
// be honoured.
const ReasonInvalidExportVia = "InvalidExportVia"

// CheckVia says whether a Service can be exported the requested way through addresses;
// exports through an Ingress are checked by FindIngressRoute.
func CheckVia(via string, svc *corev1.Service) error {
	switch via {
	case ViaPods, ViaIngress:
		return nil
	case ViaNodePort:
		for _, p := range svc.Spec.Ports {
			if p.NodePort == 0 {
				return fmt.Errorf("%s=%s needs a Service of type NodePort or LoadBalancer with node ports; port %q has none", AnnotationExportVia, via, p.Name)
			}
		}
		return nil
	case ViaLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if _, err := netip.ParseAddr(in.IP); err == nil {
				return nil
			}
		}
		return fmt.Errorf("%s=%s needs a load balancer ingress IP; Service %s/%s has none yet", AnnotationExportVia, via, svc.Namespace, svc.Name)
	}
	return fmt.Errorf("%s=%q is not one of %q, %q, %q (absent: pod addresses)", AnnotationExportVia, via, ViaNodePort, ViaLoadBalancer, ViaIngress)
}

// ViaSlices computes the published slices of a Service exported through its node ports or
// load balancer. Endpoints are ready only while the Service has a ready local endpoint (and,
// for node ports, the node is Ready), so importers stop sending traffic that would fail.
func ViaSlices(via string, svc *corev1.Service, nodes []*corev1.Node, localReady bool, meta func(discoveryv1.AddressType) metav1.ObjectMeta) []*discoveryv1.EndpointSlice {
	type target struct {
		addr  netip.Addr
		ready bool
	}
	var targets []target
	usePort := func(p corev1.ServicePort) int32 { return p.Port }
	switch via {
	case ViaNodePort:
		usePort = func(p corev1.ServicePort) int32 { return p.NodePort }
		for _, n := range nodes {
			for _, a := range n.Status.Addresses {
				if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP {
					targets = append(targets, target{ip, localReady && nodeReady(n)})
				}
			}
		}
	case ViaLoadBalancer:
		for _, in := range svc.Status.LoadBalancer.Ingress {
			if ip, err := netip.ParseAddr(in.IP); err == nil {
				targets = append(targets, target{ip, localReady})
			}
		}
	}
	byType := map[discoveryv1.AddressType]*discoveryv1.EndpointSlice{}
	for _, t := range targets {
		family := discoveryv1.AddressTypeIPv4
		if t.addr.Is6() {
			family = discoveryv1.AddressTypeIPv6
		}
		s, ok := byType[family]
		if !ok {
			s = &discoveryv1.EndpointSlice{ObjectMeta: meta(family), AddressType: family}
			for _, p := range svc.Spec.Ports {
				s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(usePort(p)), AppProtocol: p.AppProtocol})
			}
			byType[family] = s
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{t.addr.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(t.ready), Serving: ptr.To(t.ready), Terminating: ptr.To(false)}})
	}
	var out []*discoveryv1.EndpointSlice
	for _, s := range byType {
		sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
