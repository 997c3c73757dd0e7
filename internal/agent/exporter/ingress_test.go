package exporter

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ingress returns an Ingress of namespace shop routing each host to service.
func ingress(name, service string, hosts ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"}}
	for _, h := range hosts {
		ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: h, IngressRuleValue: networkingv1.IngressRuleValue{
			HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{Path: "/",
				Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: service}}}}}}})
	}
	return ing
}

func TestFindIngressRoute(t *testing.T) {
	web := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop"}}
	tls := ingress("secure", "web", "secure.abc.com")
	tls.Spec.TLS = []networkingv1.IngressTLS{{Hosts: []string{"secure.abc.com"}}}
	other := ingress("other", "web", "abc.com")
	other.Namespace = "elsewhere"
	tests := []struct {
		name      string
		ingresses []*networkingv1.Ingress
		chosen    string
		host      string
		port      int32
		err       string
	}{
		{name: "one host over plain HTTP", ingresses: []*networkingv1.Ingress{ingress("web", "web", "abc.com"), ingress("api", "api", "api.abc.com")},
			host: "abc.com", port: 80},
		{name: "TLS for the host means port 443", ingresses: []*networkingv1.Ingress{tls}, host: "secure.abc.com", port: 443},
		{name: "the same host in two Ingresses counts once", ingresses: []*networkingv1.Ingress{ingress("a", "web", "abc.com"), ingress("b", "web", "abc.com")},
			host: "abc.com", port: 80},
		{name: "several hosts need a choice", ingresses: []*networkingv1.Ingress{ingress("web", "web", "abc.com", "www.abc.com")},
			err: "route several hosts to Service web (abc.com, www.abc.com); choose one with the annotation export.strait.io/ingress-host"},
		{name: "the chosen host", ingresses: []*networkingv1.Ingress{ingress("web", "web", "abc.com"), tls}, chosen: "secure.abc.com",
			host: "secure.abc.com", port: 443},
		{name: "a chosen host no Ingress routes", ingresses: []*networkingv1.Ingress{ingress("web", "web", "abc.com")}, chosen: "abd.com",
			err: `export.strait.io/ingress-host="abd.com" is not a host the Ingresses of namespace shop route to Service web; they route abc.com`},
		{name: "wildcards, empty hosts, other Services and other namespaces do not count",
			ingresses: []*networkingv1.Ingress{ingress("wild", "web", "*.abc.com", ""), ingress("api", "api", "api.abc.com"), other},
			err:       "needs an Ingress in namespace shop with a rule for a host (not a wildcard) and a path whose backend is Service web; there is none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := FindIngressRoute(web, tt.ingresses, tt.chosen)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || r.Host != tt.host || r.Port.Port != tt.port {
				t.Fatalf("route = %+v, %v; want %s port %d", r, err, tt.host, tt.port)
			}
		})
	}
}
