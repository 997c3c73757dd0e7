package externalservice

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/strait-io/strait/api/v1alpha1"
)

// ParseTarget reads one HOST[:PORT] of `strait map --to`: an IPv4 address, an IPv6 address
// (in brackets when it has a port), or a hostname. Port is 0 when not given.
func ParseTarget(s string) (v1alpha1.Target, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return v1alpha1.Target{}, errors.New("empty target")
	}
	host, portStr := s, ""
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, portStr = h, p
	} else if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		host = s[1 : len(s)-1]
	} else if strings.Count(s, ":") == 1 {
		return v1alpha1.Target{}, fmt.Errorf("target %q: %w", s, err)
	}
	var t v1alpha1.Target
	if portStr != "" {
		p, err := strconv.Atoi(portStr)
		if err != nil || p < 1 || p > 65535 {
			return v1alpha1.Target{}, fmt.Errorf("target %q: port %q must be a number from 1 to 65535", s, portStr)
		}
		t.Port = int32(p)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		t.IP = a.String()
	} else {
		t.Hostname = strings.ToLower(host)
	}
	return t, nil
}

// MapOptions are the settings of `strait map`.
type MapOptions struct {
	Name, Namespace string
	// Targets are HOST[:PORT] values.
	Targets []string
	// Port is the local Service port; 0 takes the targets' common port.
	Port     int32
	PortName string
	Protocol corev1.Protocol
	Headless bool
	// HealthCheck is "", "tcp" or "http[:PATH]".
	HealthCheck        string
	IntervalSeconds    int32
	TimeoutSeconds     int32
	HealthyThreshold   int32
	UnhealthyThreshold int32
}

// Map builds the ExternalService `strait map` writes. The Service listens on Port; targets
// listening elsewhere get a targetPort (one common port) or their own ports. The result is
// validated and checked as the agent would, so a mapping the agent would refuse is
// refused here before anything is written.
func Map(o MapOptions) (*v1alpha1.ExternalService, error) {
	if len(o.Targets) == 0 {
		return nil, errors.New("--to needs at least one HOST:PORT")
	}
	var targets []v1alpha1.Target
	ports := map[int32]bool{}
	for _, s := range o.Targets {
		t, err := ParseTarget(s)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
		ports[t.Port] = true
	}
	port := o.Port
	common := int32(0)
	if len(ports) == 1 {
		for p := range ports {
			common = p
		}
	}
	if port == 0 {
		if common == 0 {
			return nil, errors.New("give --port: the targets do not share one port")
		}
		port = common
	}
	sp := v1alpha1.ServicePort{Name: o.PortName, Protocol: o.Protocol, Port: port}
	if sp.Protocol == "" {
		sp.Protocol = corev1.ProtocolTCP
	}
	if common != 0 {
		// One port for all: a targetPort, and plain targets.
		if common != port {
			sp.TargetPort = common
		}
		for i := range targets {
			targets[i].Port = 0
		}
	} else {
		for i := range targets {
			if targets[i].Port == port {
				targets[i].Port = 0
			}
		}
	}
	es := &v1alpha1.ExternalService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: Kind},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace},
		Spec: v1alpha1.ExternalServiceSpec{
			Ports: []v1alpha1.ServicePort{sp}, Targets: targets, Headless: o.Headless,
		},
	}
	if o.HealthCheck != "" {
		hc := &v1alpha1.HealthCheck{
			IntervalSeconds: o.IntervalSeconds, TimeoutSeconds: o.TimeoutSeconds,
			HealthyThreshold: o.HealthyThreshold, UnhealthyThreshold: o.UnhealthyThreshold,
		}
		switch kind, path, _ := strings.Cut(o.HealthCheck, ":"); kind {
		case "tcp":
			if path != "" {
				return nil, fmt.Errorf("--health-check %q: tcp takes no path", o.HealthCheck)
			}
			hc.TCP = &v1alpha1.TCPHealthCheck{}
		case "http":
			hc.HTTP = &v1alpha1.HTTPHealthCheck{Path: path}
		default:
			return nil, fmt.Errorf("--health-check %q: use tcp, http or http:/PATH", o.HealthCheck)
		}
		es.Spec.HealthCheck = hc
	}
	es.Spec = WithDefaults(es.Spec)
	if errs := Validate(es); len(errs) > 0 {
		return nil, errors.New(describe(errs))
	}
	if r := CheckSupported(es.Spec); r != nil {
		return nil, errors.New(r.Message)
	}
	return es, nil
}

func describe(errs field.ErrorList) string {
	msgs := make([]string, 0, len(errs))
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "; ")
}
