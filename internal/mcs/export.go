// Package mcs holds the Multi-Cluster Services (KEP-1645) rules that decide what a
// clusterset-wide service looks like: how the exports of one namespace/name from several
// member clusters merge into a single ServiceImport, and which exports are in conflict.
//
// It is pure on purpose: the agent's export side (conditions on each member's
// ServiceExport) and import side (the ServiceImport every member writes) run the same
// function over the same broker records, so every member reaches the same answer without
// talking to the others. Nothing here reads a clock, a client or the environment.
package mcs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Export is one member's export of a Service, as recorded on the broker.
type Export struct {
	// Cluster is the source cluster ID. Callers take it from the broker namespace the
	// record lives in, never from anything the member wrote into the record, so a member
	// cannot speak for another.
	Cluster string
	// Created is the broker-assigned creationTimestamp of the record. The oldest export
	// wins every conflict; a member's own annotations must never feed this.
	Created time.Time

	Namespace string
	Name      string

	Type                  mcsv1beta1.ServiceImportType
	Ports                 []mcsv1beta1.ServicePort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	InternalTrafficPolicy *corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   *string
	IPFamilies            []corev1.IPFamily

	// Labels and Annotations are the ServiceExport's exportedLabels and
	// exportedAnnotations, which the ServiceImport carries.
	Labels      map[string]string
	Annotations map[string]string

	// Host, when set, is the Ingress host through which the Service is reached from other
	// clusters, and Ports are the Ingress's ports. Such an export has no addresses: a
	// hostname cannot back a ClusterSet IP, so importers map the name to the host with an
	// ExternalName Service. Exports with and without a host are aggregated apart
	// (SplitByHost).
	Host string

	// Unreadable, set by whoever read the record, says what of it could not be read (a
	// malformed annotation); Validate then refuses the export.
	Unreadable string
}

// SplitByHost separates the exports reached through addresses from those reached through an
// Ingress host. Each group is aggregated on its own: the first backs the ClusterSet IP
// (or the headless name), the second the ExternalName to the host.
func SplitByHost(exports []Export) (addresses, hosts []Export) {
	for _, e := range exports {
		if e.Host == "" {
			addresses = append(addresses, e)
		} else {
			hosts = append(hosts, e)
		}
	}
	return addresses, hosts
}

// Validate reports whether the record can take part in aggregation. Records come from
// other members, so a malformed one (unknown type, invalid port, label the API server
// would refuse) must be dropped and reported by the caller rather than allowed to win
// and break the ServiceImport for the whole clusterset.
func (e *Export) Validate() error {
	var errs []string
	if e.Unreadable != "" {
		errs = append(errs, e.Unreadable)
	}
	for _, msg := range validation.IsDNS1123Label(e.Cluster) {
		errs = append(errs, "cluster: "+msg)
	}
	if e.Namespace == "" {
		errs = append(errs, "namespace: must not be empty")
	}
	if e.Name == "" {
		errs = append(errs, "name: must not be empty")
	}
	switch e.Type {
	case mcsv1beta1.ClusterSetIP, mcsv1beta1.Headless:
	default:
		errs = append(errs, fmt.Sprintf("type: %q is neither %s nor %s", e.Type, mcsv1beta1.ClusterSetIP, mcsv1beta1.Headless))
	}
	names := map[string]bool{}
	protoPorts := map[protoPort]bool{}
	for _, p := range e.Ports {
		p = normalizePort(p)
		switch p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, fmt.Sprintf("port %s: unsupported protocol", portString(p)))
		}
		if p.Port < 1 || p.Port > 65535 {
			errs = append(errs, fmt.Sprintf("port %s: number out of range 1-65535", portString(p)))
		}
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, fmt.Sprintf("port %s: name: %s", portString(p), msg))
			}
		}
		if names[p.Name] {
			errs = append(errs, fmt.Sprintf("port %s: duplicate name", portString(p)))
		}
		names[p.Name] = true
		k := protoPort{p.Protocol, p.Port}
		if protoPorts[k] {
			errs = append(errs, fmt.Sprintf("port %s: duplicate protocol and number", portString(p)))
		}
		protoPorts[k] = true
	}
	if e.Host != "" {
		if err := ValidateHost(e.Host); err != nil {
			errs = append(errs, "host: "+err.Error())
		}
	}
	switch e.SessionAffinity {
	case "", corev1.ServiceAffinityNone, corev1.ServiceAffinityClientIP:
	default:
		errs = append(errs, fmt.Sprintf("sessionAffinity: unsupported value %q", e.SessionAffinity))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Labels)) {
		for _, msg := range validation.IsQualifiedName(k) {
			errs = append(errs, fmt.Sprintf("exportedLabels %q: %s", k, msg))
		}
		for _, msg := range validation.IsValidLabelValue(e.Labels[k]) {
			errs = append(errs, fmt.Sprintf("exportedLabels %q: %s", k, msg))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(e.Annotations)) {
		for _, msg := range validation.IsQualifiedName(strings.ToLower(k)) {
			errs = append(errs, fmt.Sprintf("exportedAnnotations %q: %s", k, msg))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid export of %s/%s from cluster %q: %s", e.Namespace, e.Name, e.Cluster, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateHost checks that host can be the externalName of a Service: a lowercase DNS name
// (RFC 1123 subdomain, at most 253 characters), not an IP address and not a wildcard.
func ValidateHost(host string) error {
	if _, err := netip.ParseAddr(host); err == nil {
		return fmt.Errorf("%q is an IP address; a host must be a DNS name", host)
	}
	if msgs := validation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return fmt.Errorf("%q is not a valid DNS name: %s", host, strings.Join(msgs, "; "))
	}
	return nil
}

// PortsFromService converts a Service's ports to ServiceImport ports. Only the fields a
// consumer sees travel (name, protocol, appProtocol, port); targetPort and nodePort are
// local to the exporting cluster. An empty protocol becomes TCP, the Service default.
func PortsFromService(svc *corev1.Service) []mcsv1beta1.ServicePort {
	if svc == nil || len(svc.Spec.Ports) == 0 {
		return nil
	}
	ports := make([]mcsv1beta1.ServicePort, 0, len(svc.Spec.Ports))
	for _, p := range svc.Spec.Ports {
		ports = append(ports, normalizePort(mcsv1beta1.ServicePort{
			Name:        p.Name,
			Protocol:    p.Protocol,
			AppProtocol: clonePtr(p.AppProtocol),
			Port:        p.Port,
		}))
	}
	return ports
}

// ExportFromService builds the export record of a local Service and its ServiceExport.
// The Service is headless exactly when its clusterIP is "None". Created is left zero: the
// broker assigns it when the record is first written. exp may be nil (no exported labels
// or annotations). Nothing in the result aliases svc or exp.
func ExportFromService(cluster string, svc *corev1.Service, exp *mcsv1beta1.ServiceExport) Export {
	e := Export{Cluster: cluster}
	if svc != nil {
		e.Namespace = svc.Namespace
		e.Name = svc.Name
		e.Type = mcsv1beta1.ClusterSetIP
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			e.Type = mcsv1beta1.Headless
		}
		e.Ports = PortsFromService(svc)
		e.SessionAffinity = svc.Spec.SessionAffinity
		if e.SessionAffinity == "" {
			e.SessionAffinity = corev1.ServiceAffinityNone
		}
		e.SessionAffinityConfig = svc.Spec.SessionAffinityConfig.DeepCopy()
		e.InternalTrafficPolicy = clonePtr(svc.Spec.InternalTrafficPolicy)
		e.TrafficDistribution = clonePtr(svc.Spec.TrafficDistribution)
		e.IPFamilies = slices.Clone(svc.Spec.IPFamilies)
	}
	if exp != nil {
		if e.Namespace == "" {
			e.Namespace, e.Name = exp.Namespace, exp.Name
		}
		e.Labels = maps.Clone(exp.Spec.ExportedLabels)
		e.Annotations = maps.Clone(exp.Spec.ExportedAnnotations)
	}
	return e
}

type protoPort struct {
	protocol corev1.Protocol
	port     int32
}

func normalizePort(p mcsv1beta1.ServicePort) mcsv1beta1.ServicePort {
	if p.Protocol == "" {
		p.Protocol = corev1.ProtocolTCP
	}
	return p
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
