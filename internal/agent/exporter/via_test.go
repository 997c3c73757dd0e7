package exporter

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(ip string, ready corev1.ConditionStatus) *corev1.Node {
	return &corev1.Node{Status: corev1.NodeStatus{
		Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: ip}, {Type: corev1.NodeHostName, Address: "n"}},
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
	}}
}

func TestViaNodePortPublishesNodeAddressesAndNodePorts(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30099, Protocol: corev1.ProtocolTCP}}}}
	if err := CheckVia(ViaNodePort, svc); err != nil {
		t.Fatal(err)
	}
	meta := func(discoveryv1.AddressType) metav1.ObjectMeta { return metav1.ObjectMeta{Name: "rec"} }
	slices := ViaSlices(ViaNodePort, svc, []*corev1.Node{node("192.168.0.199", corev1.ConditionTrue), node("192.168.0.200", corev1.ConditionFalse)}, true, meta)
	if len(slices) != 1 || len(slices[0].Endpoints) != 2 {
		t.Fatalf("slices = %+v", slices)
	}
	s := slices[0]
	if *s.Ports[0].Port != 30099 || *s.Ports[0].Name != "http" {
		t.Errorf("port = %d %q; want the node port 30099 under the Service's port name", *s.Ports[0].Port, *s.Ports[0].Name)
	}
	if !*s.Endpoints[0].Conditions.Ready || *s.Endpoints[1].Conditions.Ready {
		t.Errorf("readiness = %v, %v; want the NotReady node's address unready", *s.Endpoints[0].Conditions.Ready, *s.Endpoints[1].Conditions.Ready)
	}
	// No ready pod behind the Service: nothing is ready, so importers do not send traffic.
	for _, e := range ViaSlices(ViaNodePort, svc, []*corev1.Node{node("192.168.0.199", corev1.ConditionTrue)}, false, meta)[0].Endpoints {
		if *e.Conditions.Ready {
			t.Error("node address ready although the Service has no ready endpoint")
		}
	}
}

func TestCheckViaRefusesWhatCannotWork(t *testing.T) {
	clusterIP := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	for via, want := range map[string]string{
		ViaNodePort:     "needs a Service of type NodePort",
		ViaLoadBalancer: "needs a load balancer ingress IP",
		"NodePort":      `is not one of "nodeport", "loadbalancer", "ingress"`,
	} {
		if err := CheckVia(via, clusterIP); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckVia(%s) = %v, want %q", via, err, want)
		}
	}
	lb := clusterIP.DeepCopy()
	lb.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "10.254.0.11"}}
	if err := CheckVia(ViaLoadBalancer, lb); err != nil {
		t.Errorf("CheckVia(loadbalancer) with an ingress IP: %v", err)
	}
}
