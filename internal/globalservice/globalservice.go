// Package globalservice holds the rules of global Services, ClusterMesh style: the same
// Service (name, namespace) in several members, annotated global, is load-balanced by each
// member's kube-proxy across the ready endpoints of every member. It says how a Service
// asks for it (annotations, Cilium's included), what a member's broker records of it look
// like, and which remote slices a member adds to its Service; the agent's reconcilers
// (internal/agent/global) and `strait status` share it. Users keep the plain
// <svc>.<ns>.svc.cluster.local name.
package globalservice

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/names"
	"github.com/strait-io/strait/internal/records"
)

// Service annotations. Cilium's are honoured too, so ClusterMesh manifests work unchanged.
const (
	AnnotationGlobal   = "service.strait.io/global"
	AnnotationShared   = "service.strait.io/shared"
	AnnotationAffinity = "service.strait.io/affinity"

	CiliumGlobal   = "service.cilium.io/global"
	CiliumShared   = "service.cilium.io/shared"
	CiliumAffinity = "service.cilium.io/affinity"
)

// LabelGlobalService marks broker records and local slices of a global Service with its name.
const LabelGlobalService = "strait.io/global-service"

// Affinity says which endpoints a member's Service serves.
type Affinity string

// Affinities.
const (
	// AffinityNone serves local and remote ready endpoints alike.
	AffinityNone Affinity = "none"
	// AffinityLocal serves remote endpoints only while no local endpoint is ready.
	AffinityLocal Affinity = "local"
	// AffinityRemote would prefer remote endpoints. kube-proxy serves every ready endpoint
	// of a Service and the local ones belong to the endpointslice controller, so it cannot be
	// honoured; it is reported and treated as none.
	AffinityRemote Affinity = "remote"
)

// Options of one Service, read from its annotations.
type Options struct {
	Global   bool
	Shared   bool
	Affinity Affinity
	// Problem describes an annotation value that was not understood.
	Problem string
}

func annotation(svc *corev1.Service, ours, cilium string) (string, bool) {
	if v, ok := svc.Annotations[ours]; ok {
		return strings.ToLower(strings.TrimSpace(v)), true
	}
	v, ok := svc.Annotations[cilium]
	return strings.ToLower(strings.TrimSpace(v)), ok
}

// OptionsOf reads a Service's global options; Strait's annotations win over Cilium's.
func OptionsOf(svc *corev1.Service) Options {
	o := Options{Shared: true, Affinity: AffinityNone}
	if v, ok := annotation(svc, AnnotationGlobal, CiliumGlobal); ok {
		o.Global = v == "true"
	}
	if v, ok := annotation(svc, AnnotationShared, CiliumShared); ok {
		o.Shared = v != "false"
	}
	if v, ok := annotation(svc, AnnotationAffinity, CiliumAffinity); ok {
		switch Affinity(v) {
		case AffinityNone, AffinityLocal:
			o.Affinity = Affinity(v)
		case AffinityRemote:
			o.Problem = "affinity remote cannot be honoured with kube-proxy (the local endpoints belong to the endpointslice controller); serving local and remote endpoints as with affinity none"
		default:
			o.Problem = fmt.Sprintf("affinity %q is not one of local, remote, none; using none", v)
		}
	}
	return o
}

// RecordLabels label a member's broker record of a global Service.
func RecordLabels(cluster, ns, name string) map[string]string {
	return map[string]string{
		clusterset.ManagedByLabel:        clusterset.ManagedByValue,
		LabelGlobalService:               name,
		records.LabelServiceNamespace:    ns,
		labelSourceCluster:               cluster,
		clusterset.ServiceProxyNameLabel: clusterset.RecordsProxyName,
	}
}

// RecordSelector selects the records of a global Service in any member namespace.
func RecordSelector(ns, name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel:     clusterset.ManagedByValue,
		LabelGlobalService:            name,
		records.LabelServiceNamespace: ns,
	})
}

// RecordKey returns "namespace/name" of the Service a global record belongs to.
func RecordKey(obj metav1.Object) (string, bool) {
	l := obj.GetLabels()
	if l[clusterset.ManagedByLabel] != clusterset.ManagedByValue || l[LabelGlobalService] == "" || l[records.LabelServiceNamespace] == "" {
		return "", false
	}
	return l[records.LabelServiceNamespace] + "/" + l[LabelGlobalService], true
}

const labelSourceCluster = mcsv1beta1.LabelSourceCluster

// Remote is one member's published endpoints of a global Service.
type Remote struct {
	Cluster string
	Slices  []*discoveryv1.EndpointSlice
}

// Desired computes the remote slices a member adds to its Service: every live remote
// member's slices, unless affinity is local and the Service has a ready local endpoint.
// Ports are matched by name: a remote port the local Service lacks is dropped, so a port
// one cluster lacks is never routed to it; conflicts name the ports whose protocol differs.
func Desired(svc *corev1.Service, opts Options, localReady int, remotes []Remote) (slices []*discoveryv1.EndpointSlice, conflicts []string) {
	if !opts.Global || (opts.Affinity == AffinityLocal && localReady > 0) {
		return nil, nil
	}
	local := map[string]corev1.ServicePort{}
	for _, p := range svc.Spec.Ports {
		local[p.Name] = p
	}
	for _, r := range remotes {
		for _, rs := range r.Slices {
			var ports []discoveryv1.EndpointPort
			for _, p := range rs.Ports {
				name := ""
				if p.Name != nil {
					name = *p.Name
				}
				lp, ok := local[name]
				if !ok {
					continue
				}
				proto := corev1.ProtocolTCP
				if p.Protocol != nil {
					proto = *p.Protocol
				}
				lproto := lp.Protocol
				if lproto == "" {
					lproto = corev1.ProtocolTCP
				}
				if proto != lproto {
					conflicts = append(conflicts, fmt.Sprintf("port %q is %s in cluster %s but %s here", name, proto, r.Cluster, lproto))
					continue
				}
				ports = append(ports, *p.DeepCopy())
			}
			if len(ports) == 0 {
				continue
			}
			slices = append(slices, &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{
					Name:      ImportedSliceName(svc.Name, r.Cluster, rs.AddressType),
					Namespace: svc.Namespace,
					Labels: map[string]string{
						clusterset.ManagedByLabel:    clusterset.ManagedByValue,
						LabelGlobalService:           svc.Name,
						labelSourceCluster:           r.Cluster,
						discoveryv1.LabelServiceName: svc.Name,
						discoveryv1.LabelManagedBy:   records.EndpointSliceManagedBy,
					},
				},
				AddressType: rs.AddressType,
				Endpoints:   rs.Endpoints,
				Ports:       ports,
			})
		}
	}
	return slices, conflicts
}

// ImportedSliceName names the local slice of a remote member's endpoints.
func ImportedSliceName(svc, cluster string, family discoveryv1.AddressType) string {
	return names.Unique("global", svc, cluster, strings.ToLower(string(family)))
}
