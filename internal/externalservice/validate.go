// Package externalservice holds the pure rules of the ExternalService API: validation (the
// rules the CRD schema enforces, repeated for clients and for clusters whose CRD lags), the
// standard objects an ExternalService stands for, target health from check results, the
// Ready condition, and parsing of `strait map` targets. It does no I/O, so the agent, the
// CLI and the doctor share one definition of what an ExternalService means.
package externalservice

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/strait-io/strait/api/v1alpha1"
)

// Limits the CRD schema sets too.
const (
	MaxPorts    = 100
	MaxTargets  = 100
	MaxHostname = 253
)

// Health check defaults, the same as the CRD schema's.
const (
	DefaultIntervalSeconds    = 10
	DefaultTimeoutSeconds     = 2
	DefaultHealthyThreshold   = 1
	DefaultUnhealthyThreshold = 3
	DefaultHTTPPath           = "/"
)

// WithDefaults returns a copy of spec with the defaults the API server applies, for objects
// that did not come through it (tests, `strait map --dry-run`).
func WithDefaults(spec v1alpha1.ExternalServiceSpec) v1alpha1.ExternalServiceSpec {
	out := *spec.DeepCopy()
	for i := range out.Ports {
		if out.Ports[i].Protocol == "" {
			out.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	if hc := out.HealthCheck; hc != nil {
		if hc.IntervalSeconds == 0 {
			hc.IntervalSeconds = DefaultIntervalSeconds
		}
		if hc.TimeoutSeconds == 0 {
			hc.TimeoutSeconds = min(DefaultTimeoutSeconds, hc.IntervalSeconds)
		}
		if hc.HealthyThreshold == 0 {
			hc.HealthyThreshold = DefaultHealthyThreshold
		}
		if hc.UnhealthyThreshold == 0 {
			hc.UnhealthyThreshold = DefaultUnhealthyThreshold
		}
		if hc.HTTP != nil && hc.HTTP.Path == "" {
			hc.HTTP.Path = DefaultHTTPPath
		}
	}
	return out
}

// Validate checks an ExternalService (defaults applied) against the rules of the CRD schema.
// Error paths name the field the way the API server does ("spec.targets[1].ip").
func Validate(es *v1alpha1.ExternalService) field.ErrorList {
	var errs field.ErrorList
	if msgs := validation.IsDNS1035Label(es.Name); len(msgs) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), es.Name,
			"the Service takes this name, so it must be a DNS-1035 label: "+strings.Join(msgs, "; ")))
	}
	spec := field.NewPath("spec")
	errs = append(errs, validatePorts(es.Spec.Ports, spec.Child("ports"))...)
	errs = append(errs, validateTargets(es.Spec, spec.Child("targets"))...)
	if es.Spec.Headless && remapsPorts(es.Spec) {
		errs = append(errs, field.Invalid(spec.Child("headless"), true,
			"a headless ExternalService cannot remap ports: clients connect to the target addresses directly; drop headless or make targetPort equal port"))
	}
	if hc := es.Spec.HealthCheck; hc != nil {
		errs = append(errs, validateHealthCheck(hc, spec.Child("healthCheck"))...)
	}
	return errs
}

func validPort(p int32) bool { return p >= 1 && p <= 65535 }

func validatePorts(ports []v1alpha1.ServicePort, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(ports) == 0:
		return append(errs, field.Required(path, "at least one port"))
	case len(ports) > MaxPorts:
		errs = append(errs, field.TooMany(path, len(ports), MaxPorts))
	}
	names := map[string]bool{}
	type protoPort struct {
		protocol corev1.Protocol
		port     int32
	}
	seen := map[protoPort]bool{}
	for i, p := range ports {
		pp := path.Index(i)
		if p.Name != "" {
			for _, msg := range validation.IsDNS1123Label(p.Name) {
				errs = append(errs, field.Invalid(pp.Child("name"), p.Name, msg))
			}
		} else if len(ports) > 1 {
			errs = append(errs, field.Required(pp.Child("name"), "every port needs a name when there is more than one"))
		}
		if names[p.Name] {
			errs = append(errs, field.Duplicate(pp.Child("name"), p.Name))
		}
		names[p.Name] = true
		switch p.Protocol {
		case corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP:
		default:
			errs = append(errs, field.NotSupported(pp.Child("protocol"), p.Protocol, []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP, corev1.ProtocolSCTP}))
		}
		if !validPort(p.Port) {
			errs = append(errs, field.Invalid(pp.Child("port"), p.Port, "must be between 1 and 65535"))
		}
		if p.TargetPort != 0 && !validPort(p.TargetPort) {
			errs = append(errs, field.Invalid(pp.Child("targetPort"), p.TargetPort, "must be between 1 and 65535"))
		}
		key := protoPort{p.Protocol, p.Port}
		if seen[key] {
			errs = append(errs, field.Duplicate(pp, fmt.Sprintf("%d/%s", p.Port, p.Protocol)))
		}
		seen[key] = true
	}
	return errs
}

func validateTargets(spec v1alpha1.ExternalServiceSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch {
	case len(spec.Targets) == 0:
		return append(errs, field.Required(path, "at least one hostname or IP address"))
	case len(spec.Targets) > MaxTargets:
		errs = append(errs, field.TooMany(path, len(spec.Targets), MaxTargets))
	}
	seen := map[v1alpha1.Target]bool{}
	for i, t := range spec.Targets {
		tp := path.Index(i)
		switch {
		case t.Hostname == "" && t.IP == "":
			errs = append(errs, field.Required(tp, "set exactly one of hostname and ip"))
		case t.Hostname != "" && t.IP != "":
			errs = append(errs, field.Invalid(tp, t.Hostname+" / "+t.IP, "set exactly one of hostname and ip"))
		case t.Hostname != "":
			errs = append(errs, ValidateHostname(t.Hostname, tp.Child("hostname"))...)
		default:
			errs = append(errs, ValidateIP(t.IP, tp.Child("ip"))...)
		}
		if t.Port != 0 {
			if !validPort(t.Port) {
				errs = append(errs, field.Invalid(tp.Child("port"), t.Port, "must be between 1 and 65535"))
			}
			if len(spec.Ports) != 1 {
				errs = append(errs, field.Invalid(tp.Child("port"), t.Port, "a target may carry its own port only when spec.ports has exactly one port"))
			}
		}
		if seen[t] {
			errs = append(errs, field.Duplicate(tp, t))
		}
		seen[t] = true
	}
	return errs
}

// ValidateHostname checks a hostname target: a DNS name of at most 253 characters that is
// not an IP address (an IP in a name field is the classic ExternalName mistake).
func ValidateHostname(h string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(h) > MaxHostname {
		return append(errs, field.TooLong(path, h, MaxHostname))
	}
	if IsIPLiteral(h) {
		return append(errs, field.Invalid(path, h, "hostname must be a DNS name, not an IP address; put IP addresses in the ip field"))
	}
	for _, msg := range validation.IsDNS1123Subdomain(strings.TrimSuffix(h, ".")) {
		errs = append(errs, field.Invalid(path, h, msg))
	}
	return errs
}

// IsIPLiteral reports whether s is an IP address, or looks like a dotted number (which no
// real hostname is, and which resolvers would not treat as a name either).
func IsIPLiteral(s string) bool {
	s = strings.TrimSuffix(strings.Trim(s, "[]"), ".")
	if _, err := netip.ParseAddr(s); err == nil {
		return true
	}
	return s != "" && strings.Trim(s, "0123456789.") == ""
}

// ValidateIP checks an IP target: canonical, and an address an EndpointSlice may hold.
func ValidateIP(s string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return append(errs, field.Invalid(path, s, "must be an IPv4 or IPv6 address in canonical form, such as 10.0.0.7 or fd00::7"))
	}
	if a.String() != s {
		return append(errs, field.Invalid(path, s, "must be in canonical form: "+a.String()))
	}
	if a.IsLoopback() || a.IsUnspecified() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() {
		errs = append(errs, field.Invalid(path, s, "must not be a loopback, link-local or unspecified address"))
	}
	return errs
}

func validateHealthCheck(hc *v1alpha1.HealthCheck, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if (hc.TCP == nil) == (hc.HTTP == nil) {
		errs = append(errs, field.Invalid(path, "", "set exactly one of tcp and http"))
	}
	if hc.HTTP != nil && !strings.HasPrefix(hc.HTTP.Path, "/") {
		errs = append(errs, field.Invalid(path.Child("http", "path"), hc.HTTP.Path, "must start with /"))
	}
	if hc.Port != 0 && !validPort(hc.Port) {
		errs = append(errs, field.Invalid(path.Child("port"), hc.Port, "must be between 1 and 65535"))
	}
	for _, f := range []struct {
		name     string
		v, lo, h int32
	}{
		{"intervalSeconds", hc.IntervalSeconds, 1, 3600},
		{"timeoutSeconds", hc.TimeoutSeconds, 1, 60},
		{"healthyThreshold", hc.HealthyThreshold, 1, 100},
		{"unhealthyThreshold", hc.UnhealthyThreshold, 1, 100},
	} {
		if f.v < f.lo || f.v > f.h {
			errs = append(errs, field.Invalid(path.Child(f.name), f.v, fmt.Sprintf("must be between %d and %d", f.lo, f.h)))
		}
	}
	if hc.TimeoutSeconds > hc.IntervalSeconds {
		errs = append(errs, field.Invalid(path.Child("timeoutSeconds"), hc.TimeoutSeconds, "must not exceed intervalSeconds"))
	}
	return errs
}

// remapsPorts reports whether any target is reached on another port than the Service's.
func remapsPorts(spec v1alpha1.ExternalServiceSpec) bool {
	for _, p := range spec.Ports {
		if p.TargetPort != 0 && p.TargetPort != p.Port {
			return true
		}
	}
	for _, t := range spec.Targets {
		if t.Port != 0 && len(spec.Ports) > 0 && t.Port != spec.Ports[0].Port {
			return true
		}
	}
	return false
}
