package externalservice

import (
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/strait-io/strait/api/v1alpha1"
	"github.com/strait-io/strait/internal/externalservice/probe"
)

func object(name string, spec v1alpha1.ExternalServiceSpec) *v1alpha1.ExternalService {
	return &v1alpha1.ExternalService{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "test-1", UID: "uid-1", Generation: 3},
		Spec:       WithDefaults(spec),
	}
}

func port(name string, p, target int32) v1alpha1.ServicePort {
	return v1alpha1.ServicePort{Name: name, Port: p, TargetPort: target}
}

func ip(a string) v1alpha1.Target { return v1alpha1.Target{IP: a} }

func hostT(h string) v1alpha1.Target { return v1alpha1.Target{Hostname: h} }

func TestValidate(t *testing.T) {
	ok := v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("mysql", 3306, 3307)}, Targets: []v1alpha1.Target{ip("10.1.0.7")}}
	with := func(f func(s *v1alpha1.ExternalServiceSpec)) v1alpha1.ExternalServiceSpec {
		s := *ok.DeepCopy()
		f(&s)
		return s
	}
	tests := []struct {
		name string
		obj  string
		spec v1alpha1.ExternalServiceSpec
		want string // substring of the error; "" for valid
	}{
		{"valid", "mysql", ok, ""},
		{"valid hostname with trailing dot", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Targets = []v1alpha1.Target{hostT("mysql.example.com.")}
		}), ""},
		{"valid IPv6", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{ip("fd00::7")} }), ""},
		{"name not a DNS-1035 label", "1mysql", ok, "metadata.name"},
		{"IP in a hostname field", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Targets = []v1alpha1.Target{hostT("192.168.0.199")}
		}), "spec.targets[0].hostname: Invalid value: \"192.168.0.199\": hostname must be a DNS name, not an IP address"},
		{"IPv6 in a hostname field", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{hostT("fd00::1")} }), "not an IP address"},
		{"hostname over 253", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Targets = []v1alpha1.Target{hostT(strings.Repeat("a.", 127) + "com")}
		}), "spec.targets[0].hostname: Too long"},
		{"port 0", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Ports[0].Port = 0 }), "spec.ports[0].port: Invalid value: 0"},
		{"port 70000", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Ports[0].Port = 70000 }), "spec.ports[0].port: Invalid value: 70000"},
		{"target port 70000", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Ports[0].TargetPort = 70000 }), "spec.ports[0].targetPort"},
		{"duplicate port names", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Ports = []v1alpha1.ServicePort{port("db", 3306, 0), port("db", 3307, 0)}
		}), "spec.ports[1].name: Duplicate value: \"db\""},
		{"unnamed ports when several", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Ports = []v1alpha1.ServicePort{port("", 3306, 0), port("x", 3307, 0)}
		}), "spec.ports[0].name: Required"},
		{"duplicate port numbers", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Ports = []v1alpha1.ServicePort{port("a", 3306, 0), port("b", 3306, 0)}
		}), "spec.ports[1]: Duplicate"},
		{"no ports", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Ports = nil }), "spec.ports: Required"},
		{"empty targets", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = nil }), "spec.targets: Required"},
		{"neither hostname nor ip", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{{Port: 1}} }), "set exactly one of hostname and ip"},
		{"both hostname and ip", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Targets = []v1alpha1.Target{{Hostname: "a.com", IP: "10.0.0.1"}}
		}), "set exactly one"},
		{"non-canonical ip", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{ip("FD00::7")} }), "canonical form: fd00::7"},
		{"loopback ip", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{ip("127.0.0.1")} }), "loopback"},
		{"garbage ip", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Targets = []v1alpha1.Target{ip("10.0.0")} }), "spec.targets[0].ip"},
		{"duplicate targets", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Targets = []v1alpha1.Target{ip("10.0.0.1"), ip("10.0.0.1")}
		}), "spec.targets[1]: Duplicate"},
		{"target port with several ports", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.Ports = []v1alpha1.ServicePort{port("a", 1, 0), port("b", 2, 0)}
			s.Targets[0].Port = 5
		}), "only when spec.ports has exactly one port"},
		{"headless remapping", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Headless = true }), "spec.headless"},
		{"headless without remapping", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) { s.Headless, s.Ports[0].TargetPort = true, 0 }), ""},
		{"health check with both kinds", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.HealthCheck = &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}, HTTP: &v1alpha1.HTTPHealthCheck{Path: "/"}, IntervalSeconds: 1, TimeoutSeconds: 1, HealthyThreshold: 1, UnhealthyThreshold: 1}
		}), "set exactly one of tcp and http"},
		{"health check timeout over interval", "mysql", with(func(s *v1alpha1.ExternalServiceSpec) {
			s.HealthCheck = &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}, IntervalSeconds: 1, TimeoutSeconds: 5, HealthyThreshold: 1, UnhealthyThreshold: 1}
		}), "spec.healthCheck.timeoutSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(object(tt.obj, tt.spec)).ToAggregate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("valid spec rejected: %v", err)
			case tt.want != "" && err == nil:
				t.Errorf("accepted, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	t.Run("one hostname without remapping is an ExternalName", func(t *testing.T) {
		// abc.com behind another cluster's Ingress.
		obj := object("k8s2-s2", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 80, 80)}, Targets: []v1alpha1.Target{hostT("abc.com")}})
		d, r := Plan(obj, nil)
		if r != nil {
			t.Fatal(r)
		}
		svc := d.Service
		if d.Mode != v1alpha1.ModeExternalName || svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "abc.com" || len(d.Slices) != 0 {
			t.Fatalf("got mode %s, Service %+v, %d slices", d.Mode, svc.Spec, len(d.Slices))
		}
		if !IsControlledBy(svc, obj) || svc.Labels[LabelName] != "k8s2-s2" || svc.Labels[ManagedByLabel] != ManagedByValue {
			t.Errorf("Service metadata %+v", svc.ObjectMeta)
		}
	})
	t.Run("IP with remapped port is a selector-less Service with a slice", func(t *testing.T) {
		// mysql:3306 -> 192.168.1.10:3307.
		obj := object("mysql", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("", 3306, 3307)}, Targets: []v1alpha1.Target{ip("192.168.1.10")}})
		d, r := Plan(obj, nil)
		if r != nil {
			t.Fatal(r)
		}
		if d.Mode != v1alpha1.ModeClusterIP || d.Service.Spec.Type != corev1.ServiceTypeClusterIP || d.Service.Spec.ClusterIP != "" || d.Service.Spec.Selector != nil {
			t.Fatalf("Service %+v", d.Service.Spec)
		}
		if p := d.Service.Spec.Ports[0]; p.Port != 3306 || p.TargetPort != intstr.FromInt32(3307) || p.Protocol != corev1.ProtocolTCP {
			t.Errorf("Service port %+v", p)
		}
		if len(d.Slices) != 1 {
			t.Fatalf("%d slices, want 1", len(d.Slices))
		}
		s := d.Slices[0]
		if s.AddressType != discoveryv1.AddressTypeIPv4 || s.Labels[discoveryv1.LabelServiceName] != "mysql" || s.Labels[discoveryv1.LabelManagedBy] != EndpointSliceManagedBy {
			t.Errorf("slice %+v", s.ObjectMeta)
		}
		if *s.Ports[0].Port != 3307 || *s.Ports[0].Name != "" || len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "192.168.1.10" || !*s.Endpoints[0].Conditions.Ready {
			t.Errorf("slice content %+v %+v", s.Ports, s.Endpoints)
		}
	})
	t.Run("headless", func(t *testing.T) {
		obj := object("mysql", v1alpha1.ExternalServiceSpec{Headless: true, Ports: []v1alpha1.ServicePort{port("", 3306, 0)}, Targets: []v1alpha1.Target{ip("192.168.1.10")}})
		d, r := Plan(obj, nil)
		if r != nil || d.Mode != v1alpha1.ModeHeadless || d.Service.Spec.ClusterIP != corev1.ClusterIPNone || *d.Slices[0].Ports[0].Port != 3306 {
			t.Fatalf("%+v %v", d, r)
		}
	})
	t.Run("per-target ports and both families split the slices; unhealthy targets are not ready", func(t *testing.T) {
		obj := object("db", v1alpha1.ExternalServiceSpec{
			Ports:   []v1alpha1.ServicePort{port("sql", 3306, 0)},
			Targets: []v1alpha1.Target{ip("10.0.0.2"), ip("10.0.0.1"), {IP: "10.0.0.3", Port: 3307}, ip("fd00::1")},
		})
		d, r := Plan(obj, Health{"10.0.0.1:3306": v1alpha1.HealthUnhealthy, "10.0.0.2:3306": v1alpha1.HealthHealthy})
		if r != nil {
			t.Fatal(r)
		}
		got := map[string]string{}
		for _, s := range d.Slices {
			var eps []string
			for _, e := range s.Endpoints {
				r := "ready"
				if !*e.Conditions.Ready {
					r = "notready"
				}
				eps = append(eps, e.Addresses[0]+"="+r)
			}
			got[string(s.AddressType)+"/"+strconv.Itoa(int(*s.Ports[0].Port))] = strings.Join(eps, ",")
		}
		want := map[string]string{
			"IPv4/3306": "10.0.0.1=notready,10.0.0.2=ready",
			"IPv4/3307": "10.0.0.3=ready",
			"IPv6/3306": "fd00::1=ready",
		}
		if len(got) != len(want) {
			t.Fatalf("slices %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("slice %s: %q, want %q", k, got[k], v)
			}
		}
		// Names are deterministic and distinct.
		again, _ := Plan(obj, nil)
		for i := range d.Slices {
			if d.Slices[i].Name != again.Slices[i].Name {
				t.Errorf("slice names differ between runs: %s, %s", d.Slices[i].Name, again.Slices[i].Name)
			}
		}
	})
	refusals := []struct {
		name   string
		spec   v1alpha1.ExternalServiceSpec
		reason string
		field  string
	}{
		{"hostname with remapped port", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 80, 30099)}, Targets: []v1alpha1.Target{hostT("s3.k8s3")}},
			v1alpha1.ReasonUnsupportedTargets, "spec.ports[0].targetPort"},
		{"hostname with its own port", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 80, 0)}, Targets: []v1alpha1.Target{{Hostname: "a.com", Port: 8080}}},
			v1alpha1.ReasonUnsupportedTargets, "spec.targets[0].port"},
		{"hostnames and IPs mixed", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 80, 0)}, Targets: []v1alpha1.Target{ip("10.0.0.1"), hostT("a.com")}},
			v1alpha1.ReasonUnsupportedTargets, "spec.targets[1].hostname"},
		{"two hostnames", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 80, 0)}, Targets: []v1alpha1.Target{hostT("a.com"), hostT("b.com")}},
			v1alpha1.ReasonUnsupportedTargets, "spec.targets[1].hostname"},
		{"invalid spec", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("http", 0, 0)}, Targets: []v1alpha1.Target{hostT("a.com")}},
			v1alpha1.ReasonInvalidSpec, "spec.ports[0].port"},
	}
	for _, tt := range refusals {
		t.Run("refuses "+tt.name, func(t *testing.T) {
			d, r := Plan(object("x", tt.spec), nil)
			if r == nil {
				t.Fatalf("planned %+v, want a refusal", d)
			}
			if r.Reason != tt.reason || !strings.Contains(r.Message, tt.field) {
				t.Errorf("refusal %v, want reason %s naming %s", r, tt.reason, tt.field)
			}
		})
	}
}

func TestObserve(t *testing.T) {
	hc := v1alpha1.HealthCheck{HealthyThreshold: 2, UnhealthyThreshold: 3}
	fail := errors.New("connection refused")
	steps := []struct {
		err  error
		want v1alpha1.TargetHealth
	}{
		{fail, v1alpha1.HealthUnknown}, // below the threshold, a new target stays in use
		{nil, v1alpha1.HealthHealthy},  // the first pass makes it healthy
		{fail, v1alpha1.HealthHealthy},
		{fail, v1alpha1.HealthHealthy},
		{fail, v1alpha1.HealthUnhealthy}, // third failure in a row
		{nil, v1alpha1.HealthUnhealthy},  // one pass is not enough to come back
		{fail, v1alpha1.HealthUnhealthy},
		{nil, v1alpha1.HealthUnhealthy},
		{nil, v1alpha1.HealthHealthy}, // two in a row
	}
	s := NewState()
	for i, st := range steps {
		s = Observe(s, st.err, hc)
		if s.Health != st.want {
			t.Fatalf("step %d: %s, want %s (%+v)", i, s.Health, st.want, s)
		}
	}
	if s.Message != "" {
		t.Errorf("healthy target keeps message %q", s.Message)
	}

	// A refused check takes a healthy target out at once, with the reason; a later pass
	// clears the reason (and brings it back after the healthy threshold).
	refused := &probe.RefusedError{Addr: netip.MustParseAddr("169.254.169.254"), Kind: probe.KindMetadata}
	s = Observe(s, refused, hc)
	if s.Health != v1alpha1.HealthUnhealthy || s.Reason != v1alpha1.ReasonHealthCheckRefused || s.Message != refused.Error() {
		t.Errorf("refused: %+v", s)
	}
	st := TargetStatuses(v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("", 80, 0)}, Targets: []v1alpha1.Target{ip("10.0.0.1")},
		HealthCheck: &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}}}, map[string]State{"10.0.0.1:80": s}, nil, metav1.Now())
	if st[0].Reason != v1alpha1.ReasonHealthCheckRefused || !strings.HasPrefix(st[0].Message, "not probed: 169.254.169.254 is a cloud metadata address") {
		t.Errorf("target status: %+v", st[0])
	}
	s = Observe(Observe(s, nil, hc), nil, hc)
	if s.Health != v1alpha1.HealthHealthy || s.Reason != "" {
		t.Errorf("after passes: %+v", s)
	}
}

func TestReadyCondition(t *testing.T) {
	obj := object("db", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("", 3306, 0)}, Targets: []v1alpha1.Target{ip("10.0.0.1"), ip("10.0.0.2")},
		HealthCheck: &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}}})
	now := metav1.Now()
	cond := func(states map[string]State) metav1.Condition {
		return ReadyCondition(obj, v1alpha1.ModeClusterIP, TargetStatuses(obj.Spec, states, nil, now))
	}
	if c := cond(nil); c.Status != metav1.ConditionUnknown || c.Reason != v1alpha1.ReasonProbing {
		t.Errorf("before checks: %+v", c)
	}
	down := State{Health: v1alpha1.HealthUnhealthy, Message: "connection refused"}
	up := State{Health: v1alpha1.HealthHealthy}
	if c := cond(map[string]State{"10.0.0.1:3306": down, "10.0.0.2:3306": up}); c.Status != metav1.ConditionTrue || !strings.Contains(c.Message, "1 of 2") || !strings.Contains(c.Message, "10.0.0.1:3306: connection refused") {
		t.Errorf("one down: %+v", c)
	}
	if c := cond(map[string]State{"10.0.0.1:3306": down, "10.0.0.2:3306": down}); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonNoHealthyTargets || c.ObservedGeneration != 3 {
		t.Errorf("all down: %+v", c)
	}
	noCheck := object("db", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{port("", 3306, 0)}, Targets: []v1alpha1.Target{ip("10.0.0.1")}})
	st := TargetStatuses(noCheck.Spec, nil, nil, now)
	if st[0].Health != v1alpha1.HealthUnchecked {
		t.Errorf("without a health check: %+v", st)
	}
	if c := ReadyCondition(noCheck, v1alpha1.ModeClusterIP, st); c.Status != metav1.ConditionTrue {
		t.Errorf("without a health check: %+v", c)
	}
	// Transition times survive an unchanged health.
	earlier := metav1.NewTime(now.Add(-5 * time.Minute))
	prev := []v1alpha1.TargetStatus{{Address: "10.0.0.1:3306", Health: v1alpha1.HealthUnchecked, LastTransitionTime: &earlier}}
	if got := TargetStatuses(noCheck.Spec, nil, prev, now); !got[0].LastTransitionTime.Equal(&earlier) {
		t.Errorf("transition time %v, want %v", got[0].LastTransitionTime, earlier)
	}
}

func TestParseTargetAndMap(t *testing.T) {
	for in, want := range map[string]v1alpha1.Target{
		"10.0.0.1:3307":    {IP: "10.0.0.1", Port: 3307},
		"[fd00::1]:80":     {IP: "fd00::1", Port: 80},
		"fd00::1":          {IP: "fd00::1"},
		"Abc.COM":          {Hostname: "abc.com"},
		"abc.com:443":      {Hostname: "abc.com", Port: 443},
		" 192.168.0.199 ":  {IP: "192.168.0.199"},
		"[fd00:0::1]:8080": {IP: "fd00::1", Port: 8080},
	} {
		got, err := ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "a.com:0", "a.com:70000", "a.com:http"} {
		if got, err := ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) = %+v, want an error", in, got)
		}
	}

	tests := []struct {
		name    string
		o       MapOptions
		ports   string // port->targetPort
		targets string
		err     string
	}{
		{"MySQL 3306 to 3307", MapOptions{Targets: []string{"10.1.0.5:3307"}, Port: 3306}, "3306->3307", "10.1.0.5", ""},
		{"NodePort 30099 as port 80", MapOptions{Targets: []string{"192.168.0.199:30099"}, Port: 80, PortName: "http"}, "80->30099", "192.168.0.199", ""},
		{"no remapping", MapOptions{Targets: []string{"10.0.0.1:5432", "10.0.0.2:5432"}}, "5432->0", "10.0.0.1,10.0.0.2", ""},
		{"own ports", MapOptions{Targets: []string{"10.0.0.1:3307", "10.0.0.2:3308", "10.0.0.3"}, Port: 3306}, "3306->0", "10.0.0.1:3307,10.0.0.2:3308,10.0.0.3", ""},
		{"hostname", MapOptions{Targets: []string{"abc.com:80"}}, "80->0", "abc.com", ""},
		{"different ports need --port", MapOptions{Targets: []string{"10.0.0.1:1", "10.0.0.2:2"}}, "", "", "give --port"},
		{"no port at all", MapOptions{Targets: []string{"10.0.0.1"}}, "", "", "give --port"},
		{"hostname remap refused before writing", MapOptions{Targets: []string{"s3.k8s3:30099"}, Port: 80}, "", "", "cannot have its port remapped"},
		{"loopback refused", MapOptions{Targets: []string{"127.0.0.1:80"}}, "", "", "loopback"},
		{"bad health check", MapOptions{Targets: []string{"10.0.0.1:80"}, HealthCheck: "icmp"}, "", "", "--health-check"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Name, tt.o.Namespace = "svc", "ns"
			es, err := Map(tt.o)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := es.Spec.Ports[0]
			if got := strconv.Itoa(int(p.Port)) + "->" + strconv.Itoa(int(p.TargetPort)); got != tt.ports {
				t.Errorf("ports %s, want %s", got, tt.ports)
			}
			var ts []string
			for _, x := range es.Spec.Targets {
				s := x.IP + x.Hostname
				if x.Port != 0 {
					s += ":" + strconv.Itoa(int(x.Port))
				}
				ts = append(ts, s)
			}
			if got := strings.Join(ts, ","); got != tt.targets {
				t.Errorf("targets %s, want %s", got, tt.targets)
			}
		})
	}
	es, err := Map(MapOptions{Name: "db", Namespace: "ns", Targets: []string{"10.0.0.1:80"}, HealthCheck: "http:/healthz", IntervalSeconds: 2, UnhealthyThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	if hc := es.Spec.HealthCheck; hc.HTTP.Path != "/healthz" || hc.IntervalSeconds != 2 || hc.TimeoutSeconds != 2 || hc.HealthyThreshold != 1 || hc.UnhealthyThreshold != 2 {
		t.Errorf("health check %+v", hc)
	}
}
