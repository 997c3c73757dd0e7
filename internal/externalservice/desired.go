package externalservice

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/api/v1alpha1"
	"github.com/strait-io/strait/internal/names"
)

// Labels on every object written for an ExternalService.
const (
	// LabelName names the ExternalService an object was written for.
	LabelName = "externalservice.strait.io/name"
	// EndpointSliceManagedBy is the endpointslice.kubernetes.io/managed-by value of the
	// slices of ExternalServices: distinct from the EndpointSlice controllers' values and
	// from the MCS import's, so no other controller touches them.
	EndpointSliceManagedBy = "externalservice.strait.io"
	// ManagedByLabel and ManagedByValue mark every object Strait writes (the values of
	// clusterset.ManagedByLabel and clusterset.ManagedByValue, repeated to keep this package
	// free of client code).
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedByValue = "strait"
	// Kind of the API type.
	Kind = "ExternalService"
)

// Refusal says why an ExternalService gets no objects; Reason is a Ready condition reason.
type Refusal struct {
	Reason  string
	Message string
}

func (r *Refusal) Error() string { return r.Reason + ": " + r.Message }

// Desired is what an ExternalService stands for: one Service and, for IP targets, its
// EndpointSlices (sorted by name).
type Desired struct {
	Mode    v1alpha1.ServiceMode
	Service *corev1.Service
	Slices  []*discoveryv1.EndpointSlice
}

// Health is the health of targets by address (TargetAddress); a missing address is Unknown.
type Health map[string]v1alpha1.TargetHealth

// Used reports whether traffic goes to a target in state h.
func Used(h v1alpha1.TargetHealth) bool { return h != v1alpha1.HealthUnhealthy }

// CheckSupported applies the rules the schema cannot: what Strait does with hostnames. One
// hostname without port remapping is an ExternalName; anything else that involves
// hostnames is refused, because Strait does not resolve names itself (docs/externalservice.md).
func CheckSupported(spec v1alpha1.ExternalServiceSpec) *Refusal {
	var hosts []int
	ips := 0
	for i, t := range spec.Targets {
		if t.Hostname != "" {
			hosts = append(hosts, i)
		} else {
			ips++
		}
	}
	switch {
	case len(hosts) == 0:
		return nil
	case ips > 0:
		return &Refusal{v1alpha1.ReasonUnsupportedTargets, fmt.Sprintf(
			"spec.targets[%d].hostname: hostnames and IP addresses cannot be mixed; Strait does not resolve names itself, so use either IP addresses only or one hostname", hosts[0])}
	case len(hosts) > 1:
		return &Refusal{v1alpha1.ReasonUnsupportedTargets, fmt.Sprintf(
			"spec.targets[%d].hostname: only one hostname is supported (an ExternalName Service is a single DNS alias); map the others under other names or use IP addresses", hosts[1])}
	}
	for i, p := range spec.Ports {
		if p.TargetPort != 0 && p.TargetPort != p.Port {
			return &Refusal{v1alpha1.ReasonUnsupportedTargets, fmt.Sprintf(
				"spec.ports[%d].targetPort: a hostname target cannot have its port remapped (%d -> %d): an ExternalName Service is only a DNS alias and clients connect to port %d; use IP targets to remap ports",
				i, p.Port, p.TargetPort, p.Port)}
		}
	}
	if t := spec.Targets[hosts[0]]; t.Port != 0 && t.Port != spec.Ports[0].Port {
		return &Refusal{v1alpha1.ReasonUnsupportedTargets, fmt.Sprintf(
			"spec.targets[%d].port: a hostname target cannot have its port remapped (%d -> %d): an ExternalName Service is only a DNS alias; use IP targets to remap ports",
			hosts[0], spec.Ports[0].Port, t.Port)}
	}
	return nil
}

// Plan computes the objects of an ExternalService (defaults applied) given its targets'
// health. It refuses invalid or unsupported specs; nothing is written for them.
func Plan(es *v1alpha1.ExternalService, health Health) (*Desired, *Refusal) {
	if errs := Validate(es); len(errs) > 0 {
		return nil, &Refusal{v1alpha1.ReasonInvalidSpec, errs.ToAggregate().Error()}
	}
	if r := CheckSupported(es.Spec); r != nil {
		return nil, r
	}
	svc := &corev1.Service{
		ObjectMeta: objectMeta(es, es.Name, map[string]string{}),
		Spec:       corev1.ServiceSpec{SessionAffinity: corev1.ServiceAffinityNone},
	}
	for _, p := range es.Spec.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Protocol: p.Protocol, AppProtocol: p.AppProtocol, Port: p.Port,
			TargetPort: intstr.FromInt32(targetPort(p)),
		})
	}
	if t := es.Spec.Targets[0]; t.Hostname != "" {
		svc.Spec.Type = corev1.ServiceTypeExternalName
		svc.Spec.ExternalName = t.Hostname
		return &Desired{Mode: v1alpha1.ModeExternalName, Service: svc}, nil
	}
	d := &Desired{Mode: v1alpha1.ModeClusterIP, Service: svc}
	svc.Spec.Type = corev1.ServiceTypeClusterIP
	if es.Spec.Headless {
		d.Mode = v1alpha1.ModeHeadless
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	d.Slices = slices(es, health)
	return d, nil
}

func targetPort(p v1alpha1.ServicePort) int32 {
	if p.TargetPort != 0 {
		return p.TargetPort
	}
	return p.Port
}

// objectMeta is the metadata of an object written for es: its labels and es as controller.
func objectMeta(es *v1alpha1.ExternalService, name string, extra map[string]string) metav1.ObjectMeta {
	l := map[string]string{ManagedByLabel: ManagedByValue, LabelName: es.Name}
	for k, v := range extra {
		l[k] = v
	}
	return metav1.ObjectMeta{
		Name: name, Namespace: es.Namespace, Labels: l,
		OwnerReferences: []metav1.OwnerReference{OwnerReference(es)},
	}
}

// OwnerReference makes es the controller of an object, so deleting es deletes its objects
// and no object is ever claimed by two ExternalServices.
func OwnerReference(es *v1alpha1.ExternalService) metav1.OwnerReference {
	return metav1.OwnerReference{
		APIVersion: v1alpha1.GroupVersion.String(), Kind: Kind,
		Name: es.Name, UID: es.UID, Controller: ptr.To(true),
	}
}

// IsControlledBy reports whether es is the controller of obj.
func IsControlledBy(obj metav1.Object, es *v1alpha1.ExternalService) bool {
	ref := metav1.GetControllerOfNoCopy(obj)
	return ref != nil && ref.UID == es.UID && ref.Kind == Kind && es.UID != ""
}

// IsOurs reports whether obj was written for some ExternalService of that name (the current
// one or a deleted predecessor): it carries the labels and an ExternalService controller.
func IsOurs(obj metav1.Object, name string) bool {
	l := obj.GetLabels()
	ref := metav1.GetControllerOfNoCopy(obj)
	return l[ManagedByLabel] == ManagedByValue && l[LabelName] == name && ref != nil && ref.Kind == Kind && ref.Name == name
}

// group is the targets that share one EndpointSlice: one address type and one port set.
type group struct {
	addressType discoveryv1.AddressType
	port        int32 // a target's own port; 0 for the spec's ports
}

func slices(es *v1alpha1.ExternalService, health Health) []*discoveryv1.EndpointSlice {
	byGroup := map[group][]discoveryv1.Endpoint{}
	for _, t := range es.Spec.Targets {
		a := netip.MustParseAddr(t.IP) // validated
		g := group{addressType: discoveryv1.AddressTypeIPv4, port: t.Port}
		if a.Is6() {
			g.addressType = discoveryv1.AddressTypeIPv6
		}
		h, ok := health[TargetAddress(es.Spec, t)]
		if !ok {
			h = v1alpha1.HealthUnknown
		}
		used := Used(h)
		byGroup[g] = append(byGroup[g], discoveryv1.Endpoint{
			Addresses:  []string{t.IP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(used), Serving: ptr.To(used), Terminating: ptr.To(false)},
		})
	}
	var out []*discoveryv1.EndpointSlice
	for g, eps := range byGroup {
		parts := []string{es.Name, strings.ToLower(string(g.addressType))}
		if g.port != 0 {
			parts = append(parts, strconv.Itoa(int(g.port)))
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: objectMeta(es, names.Unique(parts...), map[string]string{
				discoveryv1.LabelManagedBy:   EndpointSliceManagedBy,
				discoveryv1.LabelServiceName: es.Name,
			}),
			AddressType: g.addressType,
			Endpoints:   eps,
		}
		sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
		for _, p := range es.Spec.Ports {
			port := targetPort(p)
			if g.port != 0 {
				port = g.port
			}
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{
				Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(port), AppProtocol: p.AppProtocol,
			})
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// TargetAddress is how a target is dialled for the first port of the spec: ip:port,
// [ipv6]:port or hostname:port. Status and health are keyed by it.
func TargetAddress(spec v1alpha1.ExternalServiceSpec, t v1alpha1.Target) string {
	port := int32(0)
	if len(spec.Ports) > 0 {
		port = targetPort(spec.Ports[0])
	}
	if t.Port != 0 {
		port = t.Port
	}
	return net.JoinHostPort(host(t), strconv.Itoa(int(port)))
}

// ProbeAddress is where the health check of a target connects: the check's own port, or
// the target's address.
func ProbeAddress(spec v1alpha1.ExternalServiceSpec, t v1alpha1.Target) string {
	if hc := spec.HealthCheck; hc != nil && hc.Port != 0 {
		return net.JoinHostPort(host(t), strconv.Itoa(int(hc.Port)))
	}
	return TargetAddress(spec, t)
}

func host(t v1alpha1.Target) string {
	if t.IP != "" {
		return t.IP
	}
	return strings.TrimSuffix(t.Hostname, ".")
}
