package mcs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Import is the clusterset-wide view of one exported namespace/name: what every member
// writes as its ServiceImport (and, for ClusterSetIP, its derived Service).
type Import struct {
	Namespace string
	Name      string

	Type mcsv1beta1.ServiceImportType
	// Ports is the union of all exports' ports, after the oldest export's definition
	// won each name or protocol/number clash. Sorted by number, then protocol.
	Ports                 []mcsv1beta1.ServicePort
	SessionAffinity       corev1.ServiceAffinity
	SessionAffinityConfig *corev1.SessionAffinityConfig
	InternalTrafficPolicy *corev1.ServiceInternalTrafficPolicy
	TrafficDistribution   *string
	IPFamilies            []corev1.IPFamily
	Labels                map[string]string
	Annotations           map[string]string
	// Host is the Ingress host of an import of exports through Ingress hosts.
	Host string

	// Clusters lists every exporting cluster, sorted; it feeds status.clusters.
	Clusters []string
}

// Conflict is one property on which the exports of a service disagree, as seen from one
// export. Field names the property the way the ServiceImport or ServiceExport spells it
// ("ports", "type", "exportedLabels", ...).
type Conflict struct {
	Reason  mcsv1beta1.ServiceExportConditionReason
	Field   string
	Message string
}

// Result is the outcome of aggregating the exports of one namespace/name.
type Result struct {
	Import Import
	// Winner is the cluster of the oldest export, whose values decide every conflict.
	Winner string
	// Conflicts holds, per exporting cluster, the conflicts to report on that cluster's
	// ServiceExport, in a fixed field order. A cluster without conflicts has no entry.
	// Per KEP-1645 a conflicting property is reported on every export of the service,
	// the winner included, not only on the exports that lost.
	Conflicts map[string][]Conflict
	// Dropped lists the exports left out because they are invalid or duplicated, sorted
	// by cluster. The others are aggregated as if they did not exist.
	Dropped []Dropped
}

// Dropped is an export left out of the aggregation, and why.
type Dropped struct {
	Cluster string
	Reason  string
}

// ErrNoExports is returned by Aggregate when no valid export is left: a ServiceImport
// exists only while at least one export does, so there is nothing to compute.
var ErrNoExports = errors.New("no exports to aggregate")

// Aggregate merges the exports of namespace/name from all member clusters, following
// KEP-1645 "Constraints and Conflict Resolution":
//
//   - Precedence goes by the broker-assigned creation time, oldest first; equal times
//     (creationTimestamp has one-second resolution) are ordered by cluster ID so every
//     member computes the same winner.
//   - Ports are merged as a union, first by name, then by protocol and number, since a
//     Service may repeat neither. On a clash the older export's port is kept. If the
//     exports' port sets are not identical, every export gets a PortConflict (the
//     union is still served).
//   - Type, session affinity and its config, internal traffic policy, traffic
//     distribution, IP families (compared as sets) and exported labels and annotations
//     take the oldest export's value; if any export differs, every export gets a
//     Conflict with the standard reason.
//
// The result does not depend on the order of exports. One member's bad export never
// blocks the others: an export that is invalid (Validate) or for another namespace/name,
// and every export of a cluster that exports the service more than once, are left out and
// listed in Result.Dropped. Only when nothing valid is left does Aggregate fail, with
// ErrNoExports (and the Dropped list).
func Aggregate(ns, name string, exports []Export) (Result, error) {
	if len(exports) == 0 {
		return Result{}, ErrNoExports
	}
	count := map[string]int{}
	for _, e := range exports {
		count[e.Cluster]++
	}
	var dropped []Dropped
	sorted := make([]Export, 0, len(exports))
	for i := range exports {
		e := &exports[i]
		switch err := e.Validate(); {
		case count[e.Cluster] > 1:
			if !slices.ContainsFunc(dropped, func(d Dropped) bool { return d.Cluster == e.Cluster }) {
				dropped = append(dropped, Dropped{e.Cluster, fmt.Sprintf("cluster %q has %d records of %s/%s; all are ignored until it has one", e.Cluster, count[e.Cluster], ns, name)})
			}
		case err != nil:
			dropped = append(dropped, Dropped{e.Cluster, err.Error()})
		case e.Namespace != ns || e.Name != name:
			dropped = append(dropped, Dropped{e.Cluster, fmt.Sprintf("export from cluster %q is for %s/%s, not %s/%s", e.Cluster, e.Namespace, e.Name, ns, name)})
		default:
			sorted = append(sorted, normalize(*e))
		}
	}
	slices.SortStableFunc(dropped, func(a, b Dropped) int { return strings.Compare(a.Cluster, b.Cluster) })
	if len(sorted) == 0 {
		return Result{Dropped: dropped}, ErrNoExports
	}
	slices.SortFunc(sorted, func(a, b Export) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.Cluster, b.Cluster)
	})

	w := &sorted[0]
	res := Result{
		Winner:    w.Cluster,
		Conflicts: map[string][]Conflict{},
		Dropped:   dropped,
		Import: Import{
			Namespace:             ns,
			Name:                  name,
			Type:                  w.Type,
			SessionAffinity:       w.SessionAffinity,
			SessionAffinityConfig: w.SessionAffinityConfig.DeepCopy(),
			InternalTrafficPolicy: clonePtr(w.InternalTrafficPolicy),
			TrafficDistribution:   clonePtr(w.TrafficDistribution),
			IPFamilies:            slices.Clone(w.IPFamilies),
			Labels:                maps.Clone(w.Labels),
			Annotations:           maps.Clone(w.Annotations),
			Host:                  w.Host,
		},
	}
	for _, e := range sorted {
		res.Import.Clusters = append(res.Import.Clusters, e.Cluster)
	}
	slices.Sort(res.Import.Clusters)

	res.Import.Ports = mergePorts(sorted, res.Conflicts)
	for _, r := range rules {
		r.apply(sorted, res.Conflicts)
	}
	return res, nil
}

// normalize fills the API defaults a record may omit, so that an unset value and its
// default never count as a conflict, and gives the export its own port slice.
func normalize(e Export) Export {
	ports := make([]mcsv1beta1.ServicePort, len(e.Ports))
	for i, p := range e.Ports {
		ports[i] = normalizePort(p)
	}
	e.Ports = ports
	if e.SessionAffinity == "" {
		e.SessionAffinity = corev1.ServiceAffinityNone
	}
	return e
}

// mergePorts computes the port union of exports (oldest first) and records a
// PortConflict on every export when their port sets are not identical.
func mergePorts(sorted []Export, conflicts map[string][]Conflict) []mcsv1beta1.ServicePort {
	type owned struct {
		port    mcsv1beta1.ServicePort
		cluster string
	}
	byName := map[string]owned{}
	byNumber := map[protoPort]owned{}
	var union []mcsv1beta1.ServicePort
	lost := map[string][]string{} // cluster -> its ports that lost to an older definition
	won := map[string][]string{}  // cluster -> its ports that beat a newer definition
	for _, e := range sorted {
		for _, p := range e.Ports {
			o, clash := byName[p.Name]
			if clash && portEqual(o.port, p) {
				continue
			}
			if !clash {
				o, clash = byNumber[protoPort{p.Protocol, p.Port}]
			}
			if clash {
				lost[e.Cluster] = append(lost[e.Cluster], fmt.Sprintf("%s loses to %s of cluster %s", portString(p), portString(o.port), o.cluster))
				won[o.cluster] = append(won[o.cluster], fmt.Sprintf("%s wins over %s of cluster %s", portString(o.port), portString(p), e.Cluster))
				continue
			}
			o = owned{port: p, cluster: e.Cluster}
			byName[p.Name] = o
			byNumber[protoPort{p.Protocol, p.Port}] = o
			union = append(union, clonePort(p))
		}
	}
	slices.SortFunc(union, comparePorts)

	identical := true
	first := sortedPorts(sorted[0].Ports)
	for _, e := range sorted[1:] {
		if !slices.EqualFunc(first, sortedPorts(e.Ports), portEqual) {
			identical = false
			break
		}
	}
	if identical {
		return union
	}
	all := make([]string, 0, len(sorted))
	for _, e := range sorted {
		all = append(all, e.Cluster)
	}
	slices.Sort(all)
	for _, e := range sorted {
		var parts []string
		if len(won[e.Cluster]) > 0 {
			parts = append(parts, "ports of this export kept over newer exports: "+strings.Join(won[e.Cluster], ", "))
		}
		if len(lost[e.Cluster]) > 0 {
			parts = append(parts, "ports of this export dropped in favour of older exports: "+strings.Join(lost[e.Cluster], ", "))
		}
		parts = append(parts, fmt.Sprintf("ports are not identical across clusters %s; the service exposes their union %s",
			strings.Join(all, ", "), portsString(union)))
		conflicts[e.Cluster] = append(conflicts[e.Cluster], Conflict{
			Reason:  mcsv1beta1.ServiceExportReasonPortConflict,
			Field:   "ports",
			Message: "ports: " + strings.Join(parts, "; "),
		})
	}
	return union
}

// rule is one whole-service property decided by the oldest export.
type rule struct {
	field  string
	reason mcsv1beta1.ServiceExportConditionReason
	equal  func(a, b *Export) bool
	// describe says how e differs from the oldest export.
	describe func(oldest, e *Export) string
}

// rules in the order their conflicts are reported, after ports.
var rules = []rule{
	scalarRule("type", mcsv1beta1.ServiceExportReasonTypeConflict, func(e *Export) string {
		return string(e.Type)
	}),
	scalarRule("sessionAffinity", mcsv1beta1.ServiceExportReasonSessionAffinityConflict, func(e *Export) string {
		return string(e.SessionAffinity)
	}),
	scalarRule("sessionAffinityConfig", mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict, func(e *Export) string {
		c := e.SessionAffinityConfig
		switch {
		case c == nil:
			return unset
		case c.ClientIP == nil:
			return "clientIP=" + unset
		case c.ClientIP.TimeoutSeconds == nil:
			return "clientIP.timeoutSeconds=" + unset
		default:
			return fmt.Sprintf("clientIP.timeoutSeconds=%d", *c.ClientIP.TimeoutSeconds)
		}
	}),
	scalarRule("internalTrafficPolicy", mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict, func(e *Export) string {
		return ptrString(e.InternalTrafficPolicy)
	}),
	scalarRule("trafficDistribution", mcsv1beta1.ServiceExportReasonTrafficDistributionConflict, func(e *Export) string {
		return ptrString(e.TrafficDistribution)
	}),
	// A different family order still reaches every backend, so families compare as sets.
	scalarRule("ipFamilies", mcsv1beta1.ServiceExportReasonIPFamilyConflict, func(e *Export) string {
		fams := make([]string, 0, len(e.IPFamilies))
		for _, f := range e.IPFamilies {
			fams = append(fams, string(f))
		}
		slices.Sort(fams)
		return "[" + strings.Join(slices.Compact(fams), ",") + "]"
	}),
	mapRule("exportedLabels", mcsv1beta1.ServiceExportReasonLabelsConflict, func(e *Export) map[string]string {
		return e.Labels
	}),
	mapRule("exportedAnnotations", mcsv1beta1.ServiceExportReasonAnnotationsConflict, func(e *Export) map[string]string {
		return e.Annotations
	}),
	scalarRule("host", ReasonHostConflict, func(e *Export) string {
		return e.Host
	}),
}

// ReasonHostConflict is the Conflict reason of exports through different Ingress hosts; the
// oldest export's host is the one importers map the name to. (The KEP has no standard
// reason for it: hosts are a Strait extension.)
const ReasonHostConflict mcsv1beta1.ServiceExportConditionReason = "HostConflict"

const unset = "<unset>"

// scalarRule compares exports by a rendering of the property; value must be injective.
func scalarRule(field string, reason mcsv1beta1.ServiceExportConditionReason, value func(*Export) string) rule {
	return rule{
		field:  field,
		reason: reason,
		equal:  func(a, b *Export) bool { return value(a) == value(b) },
		describe: func(oldest, e *Export) string {
			return fmt.Sprintf("this export has %s, the oldest export has %s", value(e), value(oldest))
		},
	}
}

// mapRule compares exports by a string map; messages name the keys that differ rather
// than the values, which may be long.
func mapRule(field string, reason mcsv1beta1.ServiceExportConditionReason, get func(*Export) map[string]string) rule {
	return rule{
		field:  field,
		reason: reason,
		equal:  func(a, b *Export) bool { return maps.Equal(get(a), get(b)) },
		describe: func(oldest, e *Export) string {
			a, b := get(oldest), get(e)
			var keys []string
			for k, v := range a {
				if w, ok := b[k]; !ok || w != v {
					keys = append(keys, k)
				}
			}
			for k := range b {
				if _, ok := a[k]; !ok {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			return "this export differs from the oldest export on keys " + strings.Join(keys, ", ")
		},
	}
}

func (r rule) apply(sorted []Export, conflicts map[string][]Conflict) {
	w := &sorted[0]
	var differ []string
	for i := 1; i < len(sorted); i++ {
		if !r.equal(w, &sorted[i]) {
			differ = append(differ, sorted[i].Cluster)
		}
	}
	if len(differ) == 0 {
		return
	}
	slices.Sort(differ)
	others := strings.Join(differ, ", ")
	for i := range sorted {
		e := &sorted[i]
		var msg string
		switch {
		case i == 0:
			msg = fmt.Sprintf("this export is the oldest and its value is used; clusters %s export a different value", others)
		case !r.equal(w, e):
			msg = fmt.Sprintf("%s; the oldest export's value (cluster %s) is used", r.describe(w, e), w.Cluster)
		default:
			msg = fmt.Sprintf("clusters %s export a value other than the oldest export's (cluster %s), which this export shares and which is used", others, w.Cluster)
		}
		conflicts[e.Cluster] = append(conflicts[e.Cluster], Conflict{Reason: r.reason, Field: r.field, Message: r.field + ": " + msg})
	}
}

func portEqual(a, b mcsv1beta1.ServicePort) bool {
	return a.Name == b.Name && a.Protocol == b.Protocol && a.Port == b.Port && ptrString(a.AppProtocol) == ptrString(b.AppProtocol)
}

// comparePorts orders by number, then protocol, then the rest, so equal sets sort equally.
func comparePorts(a, b mcsv1beta1.ServicePort) int {
	if a.Port != b.Port {
		return int(a.Port) - int(b.Port)
	}
	if c := strings.Compare(string(a.Protocol), string(b.Protocol)); c != 0 {
		return c
	}
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	return strings.Compare(ptrString(a.AppProtocol), ptrString(b.AppProtocol))
}

func sortedPorts(ports []mcsv1beta1.ServicePort) []mcsv1beta1.ServicePort {
	s := slices.Clone(ports)
	slices.SortFunc(s, comparePorts)
	return s
}

func clonePort(p mcsv1beta1.ServicePort) mcsv1beta1.ServicePort {
	p.AppProtocol = clonePtr(p.AppProtocol)
	return p
}

// portString renders a port as name:number/protocol, with appProtocol when set.
func portString(p mcsv1beta1.ServicePort) string {
	s := fmt.Sprintf("%d/%s", p.Port, p.Protocol)
	if p.Name != "" {
		s = p.Name + ":" + s
	}
	if p.AppProtocol != nil {
		s += " (appProtocol " + *p.AppProtocol + ")"
	}
	return s
}

func portsString(ports []mcsv1beta1.ServicePort) string {
	parts := make([]string, 0, len(ports))
	for _, p := range ports {
		parts = append(parts, portString(p))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func ptrString[T ~string](p *T) string {
	if p == nil {
		return unset
	}
	return fmt.Sprintf("%q", string(*p))
}
