package exporter

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/mcs"
)

// ViaIngress exports a Service through the host of an Ingress that routes to it (the remote
// service is reached as, say, abc.com). Importers get an ExternalName Service to the host
// instead of addresses.
const ViaIngress = "ingress"

// AnnotationIngressHost on a ServiceExport through an Ingress picks the host when the
// namespace's Ingresses route more than one host to the Service.
const AnnotationIngressHost = "export.strait.io/ingress-host"

// IngressRoute is how other clusters reach a Service through an Ingress.
type IngressRoute struct {
	Host string
	// Port is 443 ("https") when an Ingress terminates TLS for the host, else 80 ("http").
	Port mcsv1beta1.ServicePort
	// Ingress names the Ingress the host was taken from.
	Ingress string
}

// FindIngressRoute finds the Ingress host through which svc is exported: the host of an
// Ingress rule with a path whose backend is the Service. Wildcard rules and rules without a
// host cannot be named by a client and are not candidates. Several distinct hosts need
// chosen (the ServiceExport's AnnotationIngressHost) to pick one; the error says which
// hosts there are.
func FindIngressRoute(svc *corev1.Service, ingresses []*networkingv1.Ingress, chosen string) (IngressRoute, error) {
	sorted := slices.Clone(ingresses)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	routes := map[string]IngressRoute{}
	var hosts []string
	for _, ing := range sorted {
		if ing.Namespace != svc.Namespace || ing.DeletionTimestamp != nil {
			continue
		}
		for _, rule := range ing.Spec.Rules {
			if !routesTo(rule, svc.Name) || mcs.ValidateHost(rule.Host) != nil {
				continue
			}
			r, seen := routes[rule.Host]
			if !seen {
				r = IngressRoute{Host: rule.Host, Ingress: ing.Name,
					Port: mcsv1beta1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}
				hosts = append(hosts, rule.Host)
			}
			if terminatesTLS(ing, rule.Host) {
				r.Port.Name, r.Port.Port = "https", 443
			}
			routes[rule.Host] = r
		}
	}
	sort.Strings(hosts)
	switch {
	case chosen != "":
		if r, ok := routes[chosen]; ok {
			return r, nil
		}
		if len(hosts) == 0 {
			return IngressRoute{}, fmt.Errorf("%s=%q, but no Ingress in namespace %s routes a host to Service %s", AnnotationIngressHost, chosen, svc.Namespace, svc.Name)
		}
		return IngressRoute{}, fmt.Errorf("%s=%q is not a host the Ingresses of namespace %s route to Service %s; they route %s",
			AnnotationIngressHost, chosen, svc.Namespace, svc.Name, strings.Join(hosts, ", "))
	case len(hosts) == 0:
		return IngressRoute{}, fmt.Errorf("%s=%s needs an Ingress in namespace %s with a rule for a host (not a wildcard) and a path whose backend is Service %s; there is none",
			AnnotationExportVia, ViaIngress, svc.Namespace, svc.Name)
	case len(hosts) > 1:
		return IngressRoute{}, fmt.Errorf("the Ingresses of namespace %s route several hosts to Service %s (%s); choose one with the annotation %s",
			svc.Namespace, svc.Name, strings.Join(hosts, ", "), AnnotationIngressHost)
	}
	return routes[hosts[0]], nil
}

// routesTo reports whether an Ingress rule sends some path to the Service.
func routesTo(rule networkingv1.IngressRule, service string) bool {
	if rule.HTTP == nil {
		return false
	}
	for _, p := range rule.HTTP.Paths {
		if p.Backend.Service != nil && p.Backend.Service.Name == service {
			return true
		}
	}
	return false
}

// terminatesTLS reports whether the Ingress serves host over TLS.
func terminatesTLS(ing *networkingv1.Ingress, host string) bool {
	for _, tls := range ing.Spec.TLS {
		if slices.Contains(tls.Hosts, host) {
			return true
		}
	}
	return false
}
