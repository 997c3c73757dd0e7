// Package doctor finds the hand-made ways of calling outside services by local names that
// go wrong: ExternalName Services holding IP addresses or names invented
// in CoreDNS's hosts block, targetPorts an ExternalName silently ignores, selector-less
// Services without endpoints or whose port names do not match them, hand-written endpoints
// nothing answers at, hosts entries that shadow Service names, and exports in conflict. For
// each it says what is wrong, why it hurts, and how to fix it, and where a conversion is
// possible it builds the ExternalService that replaces the hand-made objects.
//
// It is pure: the caller lists the objects, probes the addresses ProbeTargets names, and
// applies the conversions.
package doctor

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strait-io/strait/api/v1alpha1"
	es "github.com/strait-io/strait/internal/externalservice"
)

// Code names a kind of problem.
type Code string

// The problems the doctor finds.
const (
	CodeExternalNameIP          Code = "ExternalNameIP"
	CodeExternalNameHostsName   Code = "ExternalNameHostsName"
	CodeExternalNameTargetPort  Code = "ExternalNameTargetPortIgnored"
	CodeHostsShadowsService     Code = "HostsShadowsService"
	CodeNoEndpoints             Code = "NoEndpoints"
	CodePortNameMismatch        Code = "PortNameMismatch"
	CodeUnreachableEndpoints    Code = "UnreachableEndpoints"
	CodeExportConflict          Code = "ExportConflict"
	CodeExternalServiceNotReady Code = "ExternalServiceNotReady"
)

// Endpoint managers whose slices are not hand-made.
const (
	mirroringManager  = "endpointslicemirroring-controller.k8s.io"
	controllerManager = "endpointslice-controller.k8s.io"
)

// Object names the object a finding is about.
type Object struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (o Object) String() string {
	if o.Namespace == "" {
		return o.Kind + " " + o.Name
	}
	return o.Kind + " " + o.Namespace + "/" + o.Name
}

// Ref is an object read by the doctor, with the UID it had, so a conversion never deletes an
// object that was replaced meanwhile.
type Ref struct {
	Name string    `json:"name"`
	UID  types.UID `json:"uid"`
}

// Conversion replaces a hand-made Service with an ExternalService of the same name: the
// ExternalService is created, the Service is handed over to it and converted in place, and
// the hand-written endpoints are deleted once the new ones are ready.
type Conversion struct {
	ExternalService *v1alpha1.ExternalService `json:"externalService"`
	Service         Ref                       `json:"service"`
	// Endpoints and Slices are the hand-written endpoints to delete afterwards.
	Endpoints *Ref  `json:"endpoints,omitempty"`
	Slices    []Ref `json:"endpointSlices,omitempty"`
	// After is what is left to do by hand (a hosts line to remove).
	After string `json:"after,omitempty"`
}

// Finding is one problem.
type Finding struct {
	Code    Code   `json:"code"`
	Object  Object `json:"object"`
	Problem string `json:"problem"`
	Why     string `json:"why"`
	Fix     string `json:"fix"`
	// Conversion, when set, is what `strait doctor --fix` applies. Findings about the same
	// Service share one conversion.
	Conversion *Conversion `json:"conversion,omitempty"`
}

// Export is a ServiceExport as the doctor needs it.
type Export struct {
	Namespace, Name string
	Conditions      []metav1.Condition
}

// Inputs are the objects of the namespaces examined.
type Inputs struct {
	// Namespace is the namespace examined; "" for all.
	Namespace        string
	Services         []*corev1.Service
	Endpoints        []*corev1.Endpoints
	Slices           []*discoveryv1.EndpointSlice
	ExternalServices []*v1alpha1.ExternalService
	// Corefile is CoreDNS's configuration; nil when it could not be read.
	Corefile *Corefile
	Exports  []Export
	// Probed holds the result of probing the addresses of ProbeTargets, by "ip:port"; nil
	// means the address answered. Addresses not probed are not judged.
	Probed map[string]error
}

// backend is one hand-written endpoint address and the ports it was written with.
type backend struct {
	ip    string
	ports []port
}

type port struct {
	name     string
	number   int32
	protocol corev1.Protocol
}

// handMade is a selector-less Service someone maintains by hand, and its endpoints.
type handMade struct {
	svc       *corev1.Service
	backends  []backend
	endpoints *Ref
	slices    []Ref
}

func key(ns, name string) string { return ns + "/" + name }

// handMadeServices finds the selector-less Services whose endpoints nobody but a person
// writes: not Strait's, not the API server's own, not fed by another controller.
func handMadeServices(in Inputs) []*handMade {
	endpoints := map[string]*corev1.Endpoints{}
	for _, e := range in.Endpoints {
		endpoints[key(e.Namespace, e.Name)] = e
	}
	slices := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range in.Slices {
		if n := s.Labels[discoveryv1.LabelServiceName]; n != "" {
			slices[key(s.Namespace, n)] = append(slices[key(s.Namespace, n)], s)
		}
	}
	var out []*handMade
	for _, svc := range in.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) > 0 ||
			svc.Labels[es.ManagedByLabel] == es.ManagedByValue || metav1.GetControllerOfNoCopy(svc) != nil ||
			(svc.Namespace == metav1.NamespaceDefault && svc.Name == "kubernetes") {
			continue
		}
		h := &handMade{svc: svc}
		controlled := false
		for _, s := range slices[key(svc.Namespace, svc.Name)] {
			switch s.Labels[discoveryv1.LabelManagedBy] {
			case mirroringManager:
				// A copy of the Endpoints object, which is read instead.
			case "":
				h.slices = append(h.slices, Ref{s.Name, s.UID})
				if s.AddressType == discoveryv1.AddressTypeFQDN {
					continue
				}
				var ps []port
				for _, p := range s.Ports {
					ps = append(ps, endpointPort(p))
				}
				for _, ep := range s.Endpoints {
					for _, a := range ep.Addresses {
						h.backends = append(h.backends, backend{ip: a, ports: ps})
					}
				}
			default:
				controlled = true // endpoints someone's controller keeps
			}
		}
		if controlled {
			continue
		}
		if e, ok := endpoints[key(svc.Namespace, svc.Name)]; ok && e.Labels[discoveryv1.LabelManagedBy] == "" {
			h.endpoints = &Ref{e.Name, e.UID}
			for _, ss := range e.Subsets {
				var ps []port
				for _, p := range ss.Ports {
					ps = append(ps, port{name: p.Name, number: p.Port, protocol: orTCP(p.Protocol)})
				}
				for _, a := range append(append([]corev1.EndpointAddress{}, ss.Addresses...), ss.NotReadyAddresses...) {
					h.backends = append(h.backends, backend{ip: a.IP, ports: ps})
				}
			}
		}
		out = append(out, h)
	}
	return out
}

func endpointPort(p discoveryv1.EndpointPort) port {
	out := port{protocol: corev1.ProtocolTCP}
	if p.Name != nil {
		out.name = *p.Name
	}
	if p.Port != nil {
		out.number = *p.Port
	}
	if p.Protocol != nil {
		out.protocol = *p.Protocol
	}
	return out
}

func orTCP(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// byName finds the endpoint port kube-proxy pairs with a Service port: same name and
// protocol.
func byName(sp corev1.ServicePort, ports []port) (port, bool) {
	for _, p := range ports {
		if p.name == sp.Name && p.protocol == orTCP(sp.Protocol) {
			return p, true
		}
	}
	return port{}, false
}

// pair finds the endpoint port a Service port was meant for: by name, else the only one,
// else by number (targetPort, then port).
func pair(svc *corev1.Service, sp corev1.ServicePort, ports []port) (port, bool) {
	if p, ok := byName(sp, ports); ok {
		return p, true
	}
	if len(svc.Spec.Ports) == 1 && len(ports) == 1 {
		return ports[0], true
	}
	for _, want := range []int32{sp.TargetPort.IntVal, sp.Port} {
		for _, p := range ports {
			if want != 0 && p.number == want && p.protocol == orTCP(sp.Protocol) {
				return p, true
			}
		}
	}
	return port{}, false
}

// ProbeTargets lists the "ip:port" addresses of hand-written endpoints worth probing: each
// address on the TCP port paired with the Service's first port.
func ProbeTargets(in Inputs) []string {
	seen := map[string]bool{}
	var out []string
	for _, h := range handMadeServices(in) {
		for _, a := range probeAddresses(h) {
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
	}
	sort.Strings(out)
	return out
}

func probeAddresses(h *handMade) []string {
	if len(h.svc.Spec.Ports) == 0 || orTCP(h.svc.Spec.Ports[0].Protocol) != corev1.ProtocolTCP {
		return nil
	}
	var out []string
	for _, b := range h.backends {
		if p, ok := pair(h.svc, h.svc.Spec.Ports[0], b.ports); ok && p.number > 0 {
			out = append(out, net.JoinHostPort(b.ip, strconv.Itoa(int(p.number))))
		}
	}
	return out
}

// Analyze returns the findings, ordered by object and code.
func Analyze(in Inputs) []Finding {
	var out []Finding
	hosts := Corefile{}
	if in.Corefile != nil {
		hosts = *in.Corefile
	}
	for _, svc := range in.Services {
		if svc.Spec.Type == corev1.ServiceTypeExternalName && metav1.GetControllerOfNoCopy(svc) == nil &&
			svc.Labels[es.ManagedByLabel] != es.ManagedByValue {
			out = append(out, externalName(svc, hosts)...)
		}
	}
	for _, h := range handMadeServices(in) {
		out = append(out, selectorless(h, in.Probed)...)
	}
	out = append(out, shadows(in, hosts)...)
	out = append(out, exports(in)...)
	out = append(out, notReady(in)...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i].Object, out[j].Object
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return out[i].Code < out[j].Code
	})
	return out
}

func serviceObject(svc *corev1.Service) Object {
	return Object{Kind: "Service", Namespace: svc.Namespace, Name: svc.Name}
}

// remapped lists the ports of an ExternalName Service whose targetPort differs from port.
func remapped(svc *corev1.Service) []corev1.ServicePort {
	var out []corev1.ServicePort
	for _, p := range svc.Spec.Ports {
		if tp := p.TargetPort.IntVal; tp != 0 && tp != p.Port {
			out = append(out, p)
		}
	}
	return out
}

func describePorts(ports []corev1.ServicePort) string {
	var s []string
	for _, p := range ports {
		s = append(s, fmt.Sprintf("%d -> %d", p.Port, p.TargetPort.IntVal))
	}
	return strings.Join(s, ", ")
}

func externalName(svc *corev1.Service, hosts Corefile) []Finding {
	name := strings.TrimSuffix(svc.Spec.ExternalName, ".")
	obj := serviceObject(svc)
	remap := remapped(svc)
	ignored := ""
	if len(remap) > 0 {
		ignored = fmt.Sprintf(" Its targetPort is ignored too (%s): an ExternalName is only a DNS alias, so clients connect to the Service port.", describePorts(remap))
	}
	switch {
	case es.IsIPLiteral(name):
		ip := strings.Trim(name, "[]")
		f := Finding{
			Code: CodeExternalNameIP, Object: obj,
			Problem: fmt.Sprintf("ExternalName Service %s/%s holds the IP address %s.", svc.Namespace, svc.Name, ip),
			Why: "externalName must be a DNS name. CoreDNS does not answer with an IP address put there, so the Service name does not resolve: " +
				"every request becomes failed lookups down the resolver's search list, which proxies such as nginx (and CoreDNS, for names it " +
				"cannot forward) log as errors, drowning the real logs." + ignored,
		}
		f.Conversion, f.Fix = convertAlias(svc, []string{ip}, "")
		return []Finding{f}
	case hostsHas(hosts, name):
		entry, _ := hosts.Lookup(name)
		f := Finding{
			Code: CodeExternalNameHostsName, Object: obj,
			Problem: fmt.Sprintf("ExternalName Service %s/%s points at %s, a name that exists only in the hosts block of CoreDNS (%s).",
				svc.Namespace, svc.Name, name, strings.Join(entry.Addresses, ", ")),
			Why: "The name is invented in cluster-wide, hand-edited CoreDNS configuration that no namespace owns, no review sees, " +
				"and a CoreDNS upgrade or reset silently drops; every pod of every namespace resolves it." + ignored,
		}
		after := fmt.Sprintf("then remove %q from the hosts block (kubectl -n kube-system edit configmap coredns) unless something else uses it", name)
		f.Conversion, f.Fix = convertAlias(svc, entry.Addresses, after)
		return []Finding{f}
	case len(remap) > 0:
		p := remap[0]
		return []Finding{{
			Code: CodeExternalNameTargetPort, Object: obj,
			Problem: fmt.Sprintf("ExternalName Service %s/%s remaps ports (%s), which an ExternalName cannot do.", svc.Namespace, svc.Name, describePorts(remap)),
			Why: fmt.Sprintf("An ExternalName Service is only a DNS alias; kube-proxy is not involved, so clients connect to %s:%d, not to port %d.",
				name, p.Port, p.TargetPort.IntVal),
			Fix: fmt.Sprintf("Call %s on port %d, or map its IP addresses so the port is remapped: strait map %s -n %s --to IP:%d --port %d",
				name, p.TargetPort.IntVal, svc.Name, svc.Namespace, p.TargetPort.IntVal, p.Port),
		}}
	}
	return nil
}

func hostsHas(c Corefile, name string) bool {
	_, ok := c.Lookup(name)
	return ok
}

// convertAlias builds the conversion of an ExternalName Service to IP targets.
func convertAlias(svc *corev1.Service, ips []string, after string) (*Conversion, string) {
	x := &v1alpha1.ExternalService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: es.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace},
	}
	for _, p := range svc.Spec.Ports {
		sp := v1alpha1.ServicePort{Name: p.Name, Protocol: orTCP(p.Protocol), AppProtocol: p.AppProtocol, Port: p.Port}
		if tp := p.TargetPort.IntVal; tp != 0 && tp != p.Port {
			sp.TargetPort = tp
		}
		x.Spec.Ports = append(x.Spec.Ports, sp)
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			x.Spec.Targets = append(x.Spec.Targets, v1alpha1.Target{IP: a.String()})
		}
	}
	if len(x.Spec.Ports) == 0 {
		return nil, fmt.Sprintf("The Service lists no ports, so the port to map is unknown: strait map %s -n %s --to %s:PORT --port PORT",
			svc.Name, svc.Namespace, hostPort(ips[0]))
	}
	return conversion(x, svc, nil, nil, after)
}

func hostPort(ip string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]"
	}
	return ip
}

// conversion validates an ExternalService built for svc and says how to apply it.
func conversion(x *v1alpha1.ExternalService, svc *corev1.Service, endpoints *Ref, slices []Ref, after string) (*Conversion, string) {
	x.Spec = es.WithDefaults(x.Spec)
	if errs := es.Validate(x); len(errs) > 0 {
		return nil, fmt.Sprintf("No automatic conversion (%s); fix the addresses, then map them with strait map %s -n %s --to HOST:PORT",
			errs.ToAggregate(), svc.Name, svc.Namespace)
	}
	if r := es.CheckSupported(x.Spec); r != nil {
		return nil, "No automatic conversion: " + r.Message
	}
	c := &Conversion{ExternalService: x, Service: Ref{svc.Name, svc.UID}, Endpoints: endpoints, Slices: slices, After: after}
	fix := "strait doctor --fix converts it in place: it creates ExternalService " + svc.Namespace + "/" + svc.Name +
		", hands the Service over to it and removes hand-written endpoints only once the new ones are ready"
	if cmd := MapCommand(x); cmd != "" {
		fix += "; by hand: " + cmd
	}
	if after != "" {
		fix += "; " + after
	}
	return c, fix
}

// MapCommand is the `strait map` command line that writes x, or "" when x has several ports.
func MapCommand(x *v1alpha1.ExternalService) string {
	if len(x.Spec.Ports) != 1 {
		return ""
	}
	p := x.Spec.Ports[0]
	var to []string
	for _, t := range x.Spec.Targets {
		port := p.Port
		if p.TargetPort != 0 {
			port = p.TargetPort
		}
		if t.Port != 0 {
			port = t.Port
		}
		host := t.IP + t.Hostname
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		to = append(to, host+":"+strconv.Itoa(int(port)))
	}
	cmd := fmt.Sprintf("strait map %s -n %s --to %s --port %d", x.Name, x.Namespace, strings.Join(to, ","), p.Port)
	if p.Name != "" {
		cmd += " --port-name " + p.Name
	}
	if p.Protocol != corev1.ProtocolTCP && p.Protocol != "" {
		cmd += " --protocol " + string(p.Protocol)
	}
	if x.Spec.Headless {
		cmd += " --headless"
	}
	if hc := x.Spec.HealthCheck; hc != nil {
		if hc.HTTP != nil {
			cmd += " --health-check http:" + hc.HTTP.Path
		} else {
			cmd += " --health-check tcp"
		}
	}
	return cmd
}

func selectorless(h *handMade, probed map[string]error) []Finding {
	svc, obj := h.svc, serviceObject(h.svc)
	if len(h.backends) == 0 {
		what := "its cluster IP refuses every connection"
		if svc.Spec.ClusterIP == corev1.ClusterIPNone {
			what = "its name does not resolve"
		}
		return []Finding{{
			Code: CodeNoEndpoints, Object: obj,
			Problem: fmt.Sprintf("Service %s/%s has no selector and no endpoints.", svc.Namespace, svc.Name),
			Why:     fmt.Sprintf("Nothing fills in the endpoints of a Service without a selector, so %s.", what),
			Fix:     fmt.Sprintf("Map it to the addresses it stands for: strait map %s -n %s --to HOST:PORT --port %d", svc.Name, svc.Namespace, firstPort(svc)),
		}}
	}
	var out []Finding
	// Port names kube-proxy cannot pair.
	for _, sp := range svc.Spec.Ports {
		var names []string
		missing := false
		for _, b := range h.backends {
			if _, ok := byName(sp, b.ports); !ok {
				missing = true
			}
			for _, p := range b.ports {
				names = append(names, fmt.Sprintf("%q", p.name))
			}
		}
		if !missing {
			continue
		}
		sort.Strings(names)
		out = append(out, Finding{
			Code: CodePortNameMismatch, Object: obj,
			Problem: fmt.Sprintf("Port %q of Service %s/%s has no endpoint port of that name (the endpoints name theirs %s).",
				sp.Name, svc.Namespace, svc.Name, strings.Join(uniq(names), ", ")),
			Why: fmt.Sprintf("kube-proxy pairs Service ports with endpoint ports by name and protocol; without a match, connections to port %d are refused.", sp.Port),
		})
	}
	// Addresses nothing answers at.
	var dead, alive []string
	for _, a := range probeAddresses(h) {
		err, ok := probed[a]
		switch {
		case !ok:
		case err != nil:
			dead = append(dead, a+" ("+err.Error()+")")
		default:
			alive = append(alive, a)
		}
	}
	if len(dead) > 0 {
		f := Finding{
			Code: CodeUnreachableEndpoints, Object: obj,
			Problem: fmt.Sprintf("Endpoints of Service %s/%s point at addresses nothing answers at: %s.", svc.Namespace, svc.Name, strings.Join(dead, ", ")),
			Why:     "Hand-written endpoints are never health-checked: connections sent there fail, and nothing takes the address out.",
		}
		if len(alive) == 0 {
			f.Why += " No endpoint of this Service answers at all."
		}
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil
	}
	var c *Conversion
	fix := ""
	if len(dead) > 0 && len(alive) == 0 {
		fix = fmt.Sprintf("No endpoint answers, so there is nothing to convert to; find the right address, then: strait map %s -n %s --to HOST:PORT --port %d --health-check tcp",
			svc.Name, svc.Namespace, firstPort(svc))
	} else {
		c, fix = convertSelectorless(h, len(dead) > 0)
	}
	for i := range out {
		out[i].Conversion, out[i].Fix = c, fix
	}
	return out
}

func firstPort(svc *corev1.Service) int32 {
	if len(svc.Spec.Ports) == 0 {
		return 80
	}
	return svc.Spec.Ports[0].Port
}

func uniq(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// convertSelectorless builds the ExternalService of a hand-made Service from its endpoints,
// pairing ports the way the author meant them; with a health check when some endpoints
// are dead, so they are taken out.
func convertSelectorless(h *handMade, check bool) (*Conversion, string) {
	svc := h.svc
	x := &v1alpha1.ExternalService{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.GroupVersion.String(), Kind: es.Kind},
		ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace},
		Spec:       v1alpha1.ExternalServiceSpec{Headless: svc.Spec.ClusterIP == corev1.ClusterIPNone},
	}
	// numbers[i][ip] is the port of backend ip for Service port i.
	numbers := make([]map[string]int32, len(svc.Spec.Ports))
	var ips []string
	for i, sp := range svc.Spec.Ports {
		numbers[i] = map[string]int32{}
		for _, b := range h.backends {
			p, ok := pair(svc, sp, b.ports)
			if !ok {
				return nil, fmt.Sprintf("No automatic conversion: the endpoint ports of %s cannot be paired with Service port %d; map it by hand: strait map %s -n %s --to HOST:PORT --port %d",
					b.ip, sp.Port, svc.Name, svc.Namespace, sp.Port)
			}
			if _, seen := numbers[i][b.ip]; !seen && i == 0 {
				ips = append(ips, b.ip)
			}
			numbers[i][b.ip] = p.number
		}
	}
	sort.Strings(ips)
	for i, sp := range svc.Spec.Ports {
		out := v1alpha1.ServicePort{Name: sp.Name, Protocol: orTCP(sp.Protocol), AppProtocol: sp.AppProtocol, Port: sp.Port}
		distinct := map[int32]bool{}
		for _, n := range numbers[i] {
			distinct[n] = true
		}
		switch {
		case x.Spec.Headless:
			// DNS hands out the addresses; ports are what the clients use.
		case len(distinct) == 1:
			for n := range distinct {
				if n != sp.Port {
					out.TargetPort = n
				}
			}
		case len(svc.Spec.Ports) == 1:
			// One port, several numbers: every target gets its own.
		default:
			return nil, fmt.Sprintf("No automatic conversion: the endpoints of port %d listen on different ports; write the ExternalService by hand", sp.Port)
		}
		x.Spec.Ports = append(x.Spec.Ports, out)
	}
	for _, ip := range ips {
		t := v1alpha1.Target{IP: ip}
		if len(svc.Spec.Ports) == 1 && !x.Spec.Headless && x.Spec.Ports[0].TargetPort == 0 {
			if n := numbers[0][ip]; n != svc.Spec.Ports[0].Port {
				t.Port = n
			}
		}
		x.Spec.Targets = append(x.Spec.Targets, t)
	}
	if check && orTCP(svc.Spec.Ports[0].Protocol) == corev1.ProtocolTCP {
		x.Spec.HealthCheck = &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}}
	}
	return conversion(x, svc, h.endpoints, h.slices, "")
}

// shadows reports hosts entries for names of the cluster zone.
func shadows(in Inputs, hosts Corefile) []Finding {
	services := map[string]bool{}
	for _, s := range in.Services {
		services[key(s.Namespace, s.Name)] = true
	}
	var out []Finding
	for _, h := range hosts.Hosts {
		ns, name, ok := hosts.ServiceName(h.Name)
		if !ok || (in.Namespace != "" && ns != in.Namespace) {
			continue
		}
		what := "invents the Service name"
		if services[key(ns, name)] {
			what = "overrides the Service"
		}
		out = append(out, Finding{
			Code:    CodeHostsShadowsService,
			Object:  Object{Kind: "ConfigMap", Namespace: metav1.NamespaceSystem, Name: "coredns"},
			Problem: fmt.Sprintf("The CoreDNS hosts block maps %s to %s: it %s %s/%s.", h.Name, strings.Join(h.Addresses, ", "), what, ns, name),
			Why: fmt.Sprintf("CoreDNS answers from its hosts block before the kubernetes plugin, so every pod gets %s for %s whatever the Service says, and changes to the Service never reach DNS.",
				strings.Join(h.Addresses, ", "), h.Name),
			Fix: fmt.Sprintf("Remove the entry (kubectl -n kube-system edit configmap coredns) and map the name where it belongs: strait map %s -n %s --to %s:PORT --port PORT",
				name, ns, hostPort(h.Addresses[0])),
		})
	}
	return out
}

func exports(in Inputs) []Finding {
	var out []Finding
	for _, e := range in.Exports {
		obj := Object{Kind: "ServiceExport", Namespace: e.Namespace, Name: e.Name}
		if c := meta.FindStatusCondition(e.Conditions, "Conflict"); c != nil && c.Status == metav1.ConditionTrue {
			out = append(out, Finding{
				Code: CodeExportConflict, Object: obj,
				Problem: fmt.Sprintf("The export of %s/%s conflicts with other clusters' exports: %s", e.Namespace, e.Name, c.Message),
				Why:     "Every importing cluster serves the oldest export's definition, so this cluster's Service is not what clients elsewhere get.",
				Fix:     "Make the Service's ports, type and session affinity the same in every exporting cluster (strait status lists the conflicts).",
			})
		}
		if c := meta.FindStatusCondition(e.Conditions, "Valid"); c != nil && c.Status == metav1.ConditionFalse {
			out = append(out, Finding{
				Code: CodeExportConflict, Object: obj,
				Problem: fmt.Sprintf("The export of %s/%s is not valid: %s", e.Namespace, e.Name, c.Message),
				Why:     "An invalid export is published nowhere; other clusters cannot reach this Service by its clusterset name.",
				Fix:     "Export a Service that exists and is not an ExternalName; to share an outside service, map it with strait map in each cluster.",
			})
		}
	}
	return out
}

func notReady(in Inputs) []Finding {
	var out []Finding
	for _, x := range in.ExternalServices {
		c := meta.FindStatusCondition(x.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil || c.Status == metav1.ConditionTrue || c.Reason == v1alpha1.ReasonProbing {
			continue
		}
		out = append(out, Finding{
			Code:    CodeExternalServiceNotReady,
			Object:  Object{Kind: es.Kind, Namespace: x.Namespace, Name: x.Name},
			Problem: fmt.Sprintf("ExternalService %s/%s is not Ready (%s): %s", x.Namespace, x.Name, c.Reason, c.Message),
			Why:     "Its Service is missing, stale, or has no healthy target.",
			Fix:     "Correct what the condition names (kubectl -n " + x.Namespace + " describe externalservice " + x.Name + ").",
		})
	}
	return out
}
