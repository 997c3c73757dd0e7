package doctor

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/api/v1alpha1"
)

const corefile = `.:53 {
    errors
    health
    hosts /etc/coredns/custom.hosts {
        192.168.0.199 s3.k8s3   # invented for k8s3-s3
        10.9.9.9 mysql.test-1.svc.cluster.local
        10.9.9.8 ghost.test-2.svc.cluster.local
        fallthrough
    }
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
}
`

func TestParseCorefile(t *testing.T) {
	cf := ParseCorefile(corefile, map[string]string{"custom.hosts": "# from the file\n10.1.1.1 Legacy.Example.\n10.1.1.2 legacy.example\n"})
	want := []HostsEntry{
		{Name: "legacy.example", Addresses: []string{"10.1.1.1", "10.1.1.2"}},
		{Name: "s3.k8s3", Addresses: []string{"192.168.0.199"}},
		{Name: "mysql.test-1.svc.cluster.local", Addresses: []string{"10.9.9.9"}},
		{Name: "ghost.test-2.svc.cluster.local", Addresses: []string{"10.9.9.8"}},
	}
	if !reflect.DeepEqual(cf.Hosts, want) {
		t.Errorf("hosts %+v\nwant %+v", cf.Hosts, want)
	}
	if !reflect.DeepEqual(cf.Zones, []string{"cluster.local"}) {
		t.Errorf("zones %v", cf.Zones)
	}
	if ns, svc, ok := cf.ServiceName("mysql.test-1.svc.cluster.local"); !ok || ns != "test-1" || svc != "mysql" {
		t.Errorf("ServiceName = %s %s %v", ns, svc, ok)
	}
	if _, _, ok := cf.ServiceName("s3.k8s3"); ok {
		t.Error("s3.k8s3 taken for a Service name")
	}
	if got := ParseCorefile(".:53 {\n  forward . 8.8.8.8\n}\n", nil); len(got.Hosts) != 0 {
		t.Errorf("no hosts block: %+v", got.Hosts)
	}
}

func service(ns, name string, f func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "svc-" + "uid"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	f(s)
	return s
}

func alias(target string, ports ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) {
		s.Spec.Type, s.Spec.ExternalName, s.Spec.Ports = corev1.ServiceTypeExternalName, target, ports
	}
}

func ports(ps ...corev1.ServicePort) func(*corev1.Service) {
	return func(s *corev1.Service) { s.Spec.Ports = ps }
}

func sp(name string, port, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: port, TargetPort: intstr.FromInt32(target)}
}

func endpoints(ns, name, portName string, port int32, ips ...string) *corev1.Endpoints {
	e := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: "ep-uid"}}
	ss := corev1.EndpointSubset{Ports: []corev1.EndpointPort{{Name: portName, Port: port, Protocol: corev1.ProtocolTCP}}}
	for _, ip := range ips {
		ss.Addresses = append(ss.Addresses, corev1.EndpointAddress{IP: ip})
	}
	e.Subsets = []corev1.EndpointSubset{ss}
	return e
}

// mirrored is what the EndpointSlice mirroring controller makes of an Endpoints object.
func mirrored(e *corev1.Endpoints) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: e.Namespace, Name: e.Name + "-abcde", Labels: map[string]string{
			discoveryv1.LabelServiceName: e.Name, discoveryv1.LabelManagedBy: mirroringManager}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
}

func codes(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Code)+" "+f.Object.String())
	}
	return strings.Join(out, "; ")
}

func TestAnalyze(t *testing.T) {
	cf := ParseCorefile(corefile, nil)
	mysql := endpoints("test-1", "mysql", "", 3307, "192.168.1.10")
	tests := []struct {
		name  string
		in    Inputs
		codes string
		check func(t *testing.T, fs []Finding)
	}{
		{
			name:  "IP in externalName with a port remapping it ignores",
			in:    Inputs{Services: []*corev1.Service{service("prod", "k8s3-s3", alias("192.168.0.199", sp("http", 80, 30099)))}},
			codes: "ExternalNameIP Service prod/k8s3-s3",
			check: func(t *testing.T, fs []Finding) {
				f := fs[0]
				if !strings.Contains(f.Why, "does not resolve") || !strings.Contains(f.Why, "80 -> 30099") {
					t.Errorf("why: %s", f.Why)
				}
				c := f.Conversion
				if c == nil {
					t.Fatalf("no conversion; fix %q", f.Fix)
				}
				x := c.ExternalService
				if p := x.Spec.Ports[0]; p.Name != "http" || p.Port != 80 || p.TargetPort != 30099 || x.Spec.Targets[0].IP != "192.168.0.199" || c.Service.UID != "svc-uid" {
					t.Errorf("conversion %+v", x.Spec)
				}
				if !strings.Contains(f.Fix, "strait map k8s3-s3 -n prod --to 192.168.0.199:30099 --port 80 --port-name http") {
					t.Errorf("fix %q", f.Fix)
				}
			},
		},
		{
			name: "a name invented in the CoreDNS hosts block",
			in: Inputs{Namespace: "prod", Corefile: &cf, Services: []*corev1.Service{
				service("prod", "k8s3-s3", alias("s3.k8s3", sp("http", 80, 30099))),
			}},
			codes: "ExternalNameHostsName Service prod/k8s3-s3",
			check: func(t *testing.T, fs []Finding) {
				c := fs[0].Conversion
				if c == nil || c.ExternalService.Spec.Targets[0].IP != "192.168.0.199" || c.ExternalService.Spec.Ports[0].TargetPort != 30099 {
					t.Fatalf("conversion %+v", c)
				}
				if !strings.Contains(c.After, `"s3.k8s3"`) {
					t.Errorf("after: %q", c.After)
				}
			},
		},
		{
			name:  "ExternalName to a real host with a remapped port",
			in:    Inputs{Services: []*corev1.Service{service("prod", "k8s2-s2", alias("abc.com", sp("http", 80, 8080)))}},
			codes: "ExternalNameTargetPortIgnored Service prod/k8s2-s2",
			check: func(t *testing.T, fs []Finding) {
				if fs[0].Conversion != nil || !strings.Contains(fs[0].Why, "abc.com:80") {
					t.Errorf("%+v", fs[0])
				}
			},
		},
		{
			name:  "IP in externalName without ports: no automatic conversion",
			in:    Inputs{Services: []*corev1.Service{service("test-1", "mysql", alias("192.168.1.10"))}},
			codes: "ExternalNameIP Service test-1/mysql",
			check: func(t *testing.T, fs []Finding) {
				if fs[0].Conversion != nil || !strings.Contains(fs[0].Fix, "--to 192.168.1.10:PORT") {
					t.Errorf("%+v", fs[0])
				}
			},
		},
		{
			name: "a hostname and a remapped MySQL done right: nothing to report",
			in: Inputs{
				Services: []*corev1.Service{
					service("prod", "k8s2-s2", alias("abc.com", sp("http", 80, 80))),
					service("test-1", "mysql", ports(sp("", 3306, 3307))),
					service("default", "kubernetes", ports(sp("https", 443, 6443))),
				},
				Endpoints: []*corev1.Endpoints{mysql},
				Slices:    []*discoveryv1.EndpointSlice{mirrored(mysql)},
				Probed:    map[string]error{"192.168.1.10:3307": nil},
			},
		},
		{
			name: "Services of Strait and of controllers are not hand-made",
			in: Inputs{
				Services: []*corev1.Service{
					service("test-1", "derived-x", func(s *corev1.Service) { s.Labels = map[string]string{"app.kubernetes.io/managed-by": "strait"} }),
					service("test-1", "other", ports(sp("", 80, 80))),
				},
				Slices: []*discoveryv1.EndpointSlice{{ObjectMeta: metav1.ObjectMeta{Namespace: "test-1", Name: "other-1", Labels: map[string]string{
					discoveryv1.LabelServiceName: "other", discoveryv1.LabelManagedBy: "some-controller"}}}},
			},
		},
		{
			name:  "selector-less Service without endpoints",
			in:    Inputs{Services: []*corev1.Service{service("test-1", "mysql", ports(sp("", 3306, 3306)))}},
			codes: "NoEndpoints Service test-1/mysql",
			check: func(t *testing.T, fs []Finding) {
				if fs[0].Conversion != nil || !strings.Contains(fs[0].Fix, "strait map mysql -n test-1 --to HOST:PORT --port 3306") {
					t.Errorf("%+v", fs[0])
				}
			},
		},
		{
			name: "port names that do not match",
			in: Inputs{
				Services:  []*corev1.Service{service("test-1", "mysql", ports(sp("mysql", 3306, 3307)))},
				Endpoints: []*corev1.Endpoints{endpoints("test-1", "mysql", "db", 3307, "192.168.1.10")},
			},
			codes: "PortNameMismatch Service test-1/mysql",
			check: func(t *testing.T, fs []Finding) {
				c := fs[0].Conversion
				if c == nil {
					t.Fatalf("no conversion: %s", fs[0].Fix)
				}
				x := c.ExternalService
				if p := x.Spec.Ports[0]; p.Name != "mysql" || p.Port != 3306 || p.TargetPort != 3307 || x.Spec.HealthCheck != nil {
					t.Errorf("conversion %+v", x.Spec)
				}
				if c.Endpoints == nil || c.Endpoints.UID != "ep-uid" {
					t.Errorf("the hand-written Endpoints are not replaced: %+v", c)
				}
			},
		},
		{
			name: "one of two hand-written addresses is dead",
			in: Inputs{
				Services:  []*corev1.Service{service("test-1", "mysql", ports(sp("", 3306, 3306)))},
				Endpoints: []*corev1.Endpoints{endpoints("test-1", "mysql", "", 3307, "192.168.1.10", "192.168.1.11")},
				Probed:    map[string]error{"192.168.1.10:3307": nil, "192.168.1.11:3307": errors.New("connection refused")},
			},
			codes: "UnreachableEndpoints Service test-1/mysql",
			check: func(t *testing.T, fs []Finding) {
				if !strings.Contains(fs[0].Problem, "192.168.1.11:3307 (connection refused)") {
					t.Errorf("problem %q", fs[0].Problem)
				}
				x := fs[0].Conversion.ExternalService
				if len(x.Spec.Targets) != 2 || x.Spec.HealthCheck == nil || x.Spec.HealthCheck.TCP == nil || x.Spec.Ports[0].TargetPort != 3307 {
					t.Errorf("conversion %+v", x.Spec)
				}
			},
		},
		{
			name: "every hand-written address is dead: nothing to convert to",
			in: Inputs{
				Services:  []*corev1.Service{service("test-1", "mysql", ports(sp("", 3306, 3306)))},
				Endpoints: []*corev1.Endpoints{endpoints("test-1", "mysql", "", 3307, "192.168.1.11")},
				Probed:    map[string]error{"192.168.1.11:3307": errors.New("timed out")},
			},
			codes: "UnreachableEndpoints Service test-1/mysql",
			check: func(t *testing.T, fs []Finding) {
				if fs[0].Conversion != nil || !strings.Contains(fs[0].Why, "No endpoint") {
					t.Errorf("%+v", fs[0])
				}
			},
		},
		{
			name: "hand-written EndpointSlices with different ports per address",
			in: Inputs{
				Services: []*corev1.Service{service("test-1", "db", ports(sp("sql", 3306, 0)))},
				Slices: []*discoveryv1.EndpointSlice{{
					ObjectMeta:  metav1.ObjectMeta{Namespace: "test-1", Name: "db-a", UID: "s-a", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("x"), Port: ptr.To[int32](3307)}},
					Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.1"}}},
				}, {
					ObjectMeta:  metav1.ObjectMeta{Namespace: "test-1", Name: "db-b", UID: "s-b", Labels: map[string]string{discoveryv1.LabelServiceName: "db"}},
					AddressType: discoveryv1.AddressTypeIPv4,
					Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("x"), Port: ptr.To[int32](3308)}},
					Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.2"}}},
				}},
			},
			codes: "PortNameMismatch Service test-1/db",
			check: func(t *testing.T, fs []Finding) {
				c := fs[0].Conversion
				if c == nil {
					t.Fatalf("no conversion: %s", fs[0].Fix)
				}
				got := c.ExternalService.Spec.Targets
				want := []v1alpha1.Target{{IP: "10.0.0.1", Port: 3307}, {IP: "10.0.0.2", Port: 3308}}
				if !reflect.DeepEqual(got, want) || len(c.Slices) != 2 {
					t.Errorf("targets %+v, slices %+v", got, c.Slices)
				}
			},
		},
		{
			name: "hosts entries shadowing Service names",
			in: Inputs{Corefile: &cf, Services: []*corev1.Service{
				service("test-1", "mysql", alias("mysql.example.com")),
			}},
			codes: "HostsShadowsService ConfigMap kube-system/coredns; HostsShadowsService ConfigMap kube-system/coredns",
			check: func(t *testing.T, fs []Finding) {
				all := fs[0].Problem + fs[1].Problem
				if !strings.Contains(all, "overrides the Service test-1/mysql") || !strings.Contains(all, "invents the Service name test-2/ghost") {
					t.Errorf("problems %q", all)
				}
			},
		},
		{
			name:  "hosts entries of other namespaces are out of scope",
			in:    Inputs{Namespace: "prod", Corefile: &cf},
			codes: "",
		},
		{
			name: "conflicting and invalid exports",
			in: Inputs{Exports: []Export{
				{Namespace: "web", Name: "a", Conditions: []metav1.Condition{{Type: "Conflict", Status: metav1.ConditionTrue, Message: "PortConflict: ports differ"}}},
				{Namespace: "web", Name: "b", Conditions: []metav1.Condition{{Type: "Valid", Status: metav1.ConditionFalse, Message: "ExternalName"}}},
				{Namespace: "web", Name: "c", Conditions: []metav1.Condition{{Type: "Valid", Status: metav1.ConditionTrue}, {Type: "Conflict", Status: metav1.ConditionFalse}}},
			}},
			codes: "ExportConflict ServiceExport web/a; ExportConflict ServiceExport web/b",
		},
		{
			name: "ExternalServices that are not Ready",
			in: Inputs{ExternalServices: []*v1alpha1.ExternalService{
				{ObjectMeta: metav1.ObjectMeta{Namespace: "test-1", Name: "mysql"}, Status: v1alpha1.ExternalServiceStatus{Conditions: []metav1.Condition{
					{Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, Reason: v1alpha1.ReasonServiceNotOwned, Message: "exists"}}}},
				{ObjectMeta: metav1.ObjectMeta{Namespace: "test-1", Name: "fine"}, Status: v1alpha1.ExternalServiceStatus{Conditions: []metav1.Condition{
					{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonReady}}}},
			}},
			codes: "ExternalServiceNotReady ExternalService test-1/mysql",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := Analyze(tt.in)
			if got := codes(fs); got != tt.codes {
				t.Fatalf("findings %q, want %q", got, tt.codes)
			}
			for _, f := range fs {
				if f.Problem == "" || f.Why == "" || f.Fix == "" {
					t.Errorf("finding without problem, why or fix: %+v", f)
				}
			}
			if tt.check != nil {
				tt.check(t, fs)
			}
		})
	}
}

func TestProbeTargets(t *testing.T) {
	in := Inputs{
		Services: []*corev1.Service{
			service("test-1", "mysql", ports(sp("", 3306, 3307))),
			service("test-1", "dns", ports(corev1.ServicePort{Protocol: corev1.ProtocolUDP, Port: 53})),
			service("prod", "x", alias("192.168.0.199", sp("http", 80, 30099))),
		},
		Endpoints: []*corev1.Endpoints{
			endpoints("test-1", "mysql", "", 3307, "192.168.1.10", "192.168.1.11"),
			endpoints("test-1", "dns", "", 53, "192.168.1.53"),
		},
	}
	if got, want := ProbeTargets(in), []string{"192.168.1.10:3307", "192.168.1.11:3307"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ProbeTargets = %v, want %v (TCP only, hand-made endpoints only)", got, want)
	}
}
