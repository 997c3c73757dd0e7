// Package simmember simulates member clusters of a clusterset for the scale harness
// (`make bench-scale`, test/bench/scale_bench_test.go), as Cilium's cmapisrv-mock stands
// in for remote clusters: a simulated member has no API server and no agent, but the
// broker cannot tell it from a real one. It is registered with the objects `strait join`
// writes (clusterset.BrokerRegistration, the registry ConfigMap last), renews its heartbeat
// Lease with the heartbeat's own code, and writes the records its exporter would write for
// its Services, built by the exporter's own functions from the Service, ServiceExport and
// EndpointSlice a real member would hold.
//
// This file is the pure part: which member exports which Service, and what its records
// are. generator.go writes them to a broker.
package simmember

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/exporter"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// Spec is the shape of a simulated clusterset.
type Spec struct {
	// Members is the number of simulated members.
	Members int
	// Services is the number of distinct Services (svc-0000...) in Namespace.
	Services int
	// ExportersPerService is how many members export each Service (at most Members); a
	// member exports Services*ExportersPerService/Members of them.
	ExportersPerService int
	// Endpoints is the number of ready endpoints of each export.
	Endpoints int
	// Namespace of the exported Services.
	Namespace string
}

// MemberID is the cluster ID of simulated member i.
func MemberID(i int) string { return fmt.Sprintf("sim-%03d", i) }

// ServiceName is the name of Service s.
func ServiceName(s int) string { return fmt.Sprintf("svc-%04d", s) }

// Exporters lists the members that export Service s: ExportersPerService consecutive
// members, starting at a different one for each Service, so every member exports about
// the same number.
func (sp Spec) Exporters(s int) []int {
	k := min(sp.ExportersPerService, sp.Members)
	out := make([]int, k)
	for j := range k {
		out[j] = (s*k + j) % sp.Members
	}
	return out
}

// Exports lists the Services member i exports.
func (sp Spec) Exports(i int) []int {
	var out []int
	for s := range sp.Services {
		for _, m := range sp.Exporters(s) {
			if m == i {
				out = append(out, s)
				break
			}
		}
	}
	return out
}

// Member is the registry entry of simulated member i, as join would record it.
func Member(i int) clusterset.Member {
	id := MemberID(i)
	return clusterset.Member{
		ID: id, ClusterSet: clusterset.DefaultClusterSet, ClusterUID: "uid-" + id,
		Region: fmt.Sprintf("region%d", i%4), Zone: fmt.Sprintf("zone%d", i%12),
		PodCIDRs: []string{podCIDR(i)}, ServiceCIDRs: []string{fmt.Sprintf("172.%d.%d.0/24", 16+i/256%16, i%256)},
		Namespace: clusterset.MemberNamespace(id),
	}
}

func podCIDR(i int) string { return fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256) }

// Service is the Service a simulated member exports: a ClusterIP Service with one TCP
// port, as a real member's API server would hold it.
func Service(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol}, SessionAffinity: corev1.ServiceAffinityNone,
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}
}

// ServiceExport is the export of ns/name.
func ServiceExport(ns, name string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
}

// Address is the pod address of endpoint slot ep of a member's Service after version
// changes of that slot: every change replaces the pod, and the new pod has a new address
// (unique per member, Service and slot for 65,535 changes... of one slot per 256 slots).
func Address(member, slots, ep int, version uint32) string {
	n := int(version)*slots + ep + 1
	return fmt.Sprintf("10.%d.%d.%d", member%256, (n>>8)&0xff, n&0xff)
}

// LocalSlice is the endpointslice controller's slice of ns/name in a simulated member,
// with a ready pod at each address.
func LocalSlice(ns, name string, addrs []string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-abcde", Labels: map[string]string{
			discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: "endpointslice-controller.k8s.io"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(int32(8080))}},
	}
	for i, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{a},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			NodeName:   ptr.To(fmt.Sprintf("node-%d", i%3)),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: fmt.Sprintf("%s-%d", name, i)},
		})
	}
	return s
}

// Records are the broker records the exporter of cluster writes for an export of svc
// whose local EndpointSlices are local: its ServiceImport record and its EndpointSlice
// records, built by the exporter's own functions.
func Records(cluster string, svc *corev1.Service, exp *mcsv1beta1.ServiceExport, local []*discoveryv1.EndpointSlice) (*mcsv1beta1.ServiceImport, []*discoveryv1.EndpointSlice) {
	ns := clusterset.MemberNamespace(cluster)
	si := records.ToServiceImport(ns, mcs.ExportFromService(cluster, svc, exp))
	return si, exporter.DesiredSlices(ns, cluster, svc.Namespace, svc.Name, local)
}
