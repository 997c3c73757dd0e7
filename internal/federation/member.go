package federation

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/clusterset"
)

// Ownership says whose a member's Service of a federated name is.
type Ownership string

// Ownerships.
const (
	// OwnedCreated: Strait created it for this federation.
	OwnedCreated Ownership = "Created"
	// OwnedAdopted: it existed and Strait adopted it for this federation.
	OwnedAdopted Ownership = "Adopted"
	// NotOwned: a user's Service, which a federated Service of that name adopts.
	NotOwned Ownership = "NotOwned"
	// OwnedElsewhere: another Strait component (an MCS import, an ExternalService) or
	// another federation manages it; a federated Service never takes it over.
	OwnedElsewhere Ownership = "OwnedElsewhere"
)

// OwnershipOf classifies an existing member Service for federation fed.
func OwnershipOf(svc *corev1.Service, fed string) Ownership {
	l := svc.Labels
	if l[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
		// Without the managed-by label a Service is a user's, even if it still carries the
		// federation label (someone took it back by removing ours).
		return NotOwned
	}
	if l[LabelFederation] != fed {
		return OwnedElsewhere
	}
	if l[LabelAdopted] == "true" {
		return OwnedAdopted
	}
	return OwnedCreated
}

// Action is what a member does with its Service of a federated name.
type Action string

// Actions.
const (
	// ActionNone: nothing to write (in line, not selected, or not ours).
	ActionNone Action = "None"
	// ActionCreate: create the Service (and its namespace when missing).
	ActionCreate Action = "Create"
	// ActionAdopt: label an existing Service as adopted and bring its spec in line.
	ActionAdopt Action = "Adopt"
	// ActionUpdate: bring a Service Strait created or adopted in line.
	ActionUpdate Action = "Update"
	// ActionDelete: the Service Strait created is no longer federated here; delete it.
	ActionDelete Action = "Delete"
	// ActionRelease: the Service Strait adopted is no longer federated here; remove
	// Strait's labels and annotations and leave it to its owner. An adopted Service is the
	// user's and is never deleted.
	ActionRelease Action = "Release"
	// ActionConflict: a Service of that name belongs to something else; nothing is written
	// and the shard reports the problem.
	ActionConflict Action = "Conflict"
)

// Decision is the outcome of Plan.
type Decision struct {
	Action Action
	// Desired is the Service to create or update (Create, Adopt, Update, Release).
	Desired *corev1.Service
	// Reason explains None and Conflict.
	Reason string
}

// PlanInput is what Plan decides from.
type PlanInput struct {
	// Federation is the federation's name.
	Federation string
	// Cluster is the member's cluster ID.
	Cluster string
	// Broker is the federated Service; nil when it does not exist.
	Broker *corev1.Service
	// Local is the member's Service of the same namespace and name; nil when absent.
	Local *corev1.Service
	// LocalIsBroker is true when the member cluster is the broker cluster: its Service of
	// the federated name is the broker Service itself, never written by the member side.
	LocalIsBroker bool
}

// Wanted reports whether the broker asks for a shard in cluster, and why not. A Service
// being deleted asks for none. An invalid selection is an error: the caller must then
// neither create nor delete anything.
func Wanted(broker *corev1.Service, cluster string) (bool, error) {
	if broker == nil || broker.DeletionTimestamp != nil {
		return false, nil
	}
	sel, err := ParseSelection(broker)
	if err != nil {
		return false, err
	}
	return sel.Selects(cluster), nil
}

// Plan decides what a member does for one federated name. It is pure: the reconciler
// applies the decision.
func Plan(in PlanInput) Decision {
	if in.LocalIsBroker {
		return Decision{Action: ActionNone, Reason: "this cluster is the broker: its Service is the federated Service itself"}
	}
	wanted, err := Wanted(in.Broker, in.Cluster)
	if err != nil {
		return Decision{Action: ActionNone, Reason: err.Error()}
	}
	var own Ownership
	if in.Local != nil {
		own = OwnershipOf(in.Local, in.Federation)
	}
	if !wanted {
		switch {
		case in.Local == nil || in.Local.DeletionTimestamp != nil:
		case own == OwnedCreated:
			return Decision{Action: ActionDelete}
		case own == OwnedAdopted:
			return Decision{Action: ActionRelease, Desired: Released(in.Local)}
		}
		return Decision{Action: ActionNone, Reason: "not selected"}
	}
	switch {
	case in.Local == nil:
		return Decision{Action: ActionCreate, Desired: MemberService(in.Broker, nil, in.Federation)}
	case in.Local.DeletionTimestamp != nil:
		return Decision{Action: ActionNone, Reason: "the Service is being deleted; it is created again once it is gone"}
	case own == OwnedElsewhere:
		return Decision{Action: ActionConflict, Reason: conflictReason(in.Local, in.Federation)}
	case own == NotOwned:
		return Decision{Action: ActionAdopt, Desired: MemberService(in.Broker, in.Local, in.Federation)}
	}
	want := MemberService(in.Broker, in.Local, in.Federation)
	if InLine(in.Local, want) {
		return Decision{Action: ActionNone, Reason: "in line"}
	}
	return Decision{Action: ActionUpdate, Desired: want}
}

func conflictReason(svc *corev1.Service, fed string) string {
	if f := svc.Labels[LabelFederation]; f != "" && f != fed {
		return fmt.Sprintf("Service %s/%s belongs to federation %q, not %q", svc.Namespace, svc.Name, f, fed)
	}
	return fmt.Sprintf("Service %s/%s is managed by another Strait component (labelled %s=%s without %s=%s); it is not adopted",
		svc.Namespace, svc.Name, clusterset.ManagedByLabel, clusterset.ManagedByValue, LabelFederation, fed)
}

// Released is an adopted Service given back to its owner: without Strait's labels and
// annotations, its spec (cluster IP, ports, selector) as it is, so it keeps serving.
func Released(svc *corev1.Service) *corev1.Service {
	out := svc.DeepCopy()
	for _, k := range []string{clusterset.ManagedByLabel, LabelFederation, LabelAdopted} {
		delete(out.Labels, k)
	}
	for k := range out.Annotations {
		if strings.HasPrefix(k, "federation.strait.io/") {
			delete(out.Annotations, k)
		}
	}
	return out
}

// AnnotationRefusedNodePorts, on a member Service, lists the broker's node ports the member
// cluster refused (already allocated there): the member keeps its own node port for them,
// and its shard is reported as not reachable on the broker's port (ReasonNodePortMismatch).
// Removing the annotation makes the member try the broker's ports again.
const AnnotationRefusedNodePorts = "federation.strait.io/refused-node-ports"

// RefusedNodePorts reads AnnotationRefusedNodePorts.
func RefusedNodePorts(svc *corev1.Service) map[int32]bool {
	out := map[int32]bool{}
	if svc == nil {
		return out
	}
	for _, f := range strings.Split(svc.Annotations[AnnotationRefusedNodePorts], ",") {
		if n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 32); err == nil && n > 0 {
			out[int32(n)] = true
		}
	}
	return out
}

// WithRefusedNodePorts returns want with the given broker node ports refused: recorded in
// AnnotationRefusedNodePorts (with those refused before) and left to the member to allocate
// (or kept as have has them).
func WithRefusedNodePorts(want, have *corev1.Service, refused []int32) *corev1.Service {
	out := want.DeepCopy()
	all := RefusedNodePorts(want)
	for _, n := range refused {
		all[n] = true
	}
	var list []string
	for n := range all {
		list = append(list, strconv.Itoa(int(n)))
	}
	slices.Sort(list)
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	out.Annotations[AnnotationRefusedNodePorts] = strings.Join(list, ",")
	for i, p := range out.Spec.Ports {
		if all[p.NodePort] {
			out.Spec.Ports[i].NodePort = 0
			if have != nil {
				out.Spec.Ports[i].NodePort = nodePortOf(have.Spec.Ports, p)
			}
		}
	}
	return out
}

// skippedAnnotations are broker annotations that are not copied to members: Strait's own,
// and kubectl's record of the broker object.
func skippedAnnotation(key string) bool {
	return strings.HasPrefix(key, "federation.strait.io/") || key == corev1.LastAppliedConfigAnnotation
}

// MemberService is the member Service a broker Service asks for: its labels, annotations
// and spec, while the member's own allocations are kept — ClusterIP(s), IP families,
// NodePorts, the health check NodePort, external IPs and the load balancer class, which
// are the member cluster's to assign. existing is the member's Service (nil to create one);
// labels and annotations are merged into its own, never removed.
func MemberService(broker, existing *corev1.Service, fed string) *corev1.Service {
	var out *corev1.Service
	if existing == nil {
		out = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: broker.Name, Namespace: broker.Namespace}}
	} else {
		out = existing.DeepCopy()
	}
	labels := map[string]string{}
	maps.Copy(labels, out.Labels)
	maps.Copy(labels, broker.Labels)
	labels[clusterset.ManagedByLabel] = clusterset.ManagedByValue
	labels[LabelFederation] = fed
	if existing != nil && (OwnershipOf(existing, fed) == NotOwned || existing.Labels[LabelAdopted] == "true") {
		labels[LabelAdopted] = "true"
	} else {
		delete(labels, LabelAdopted)
	}
	out.Labels = labels
	annotations := map[string]string{}
	maps.Copy(annotations, out.Annotations)
	for k, v := range broker.Annotations {
		if !skippedAnnotation(k) {
			annotations[k] = v
		}
	}
	if len(annotations) == 0 {
		annotations = nil
	}
	out.Annotations = annotations
	var have *corev1.ServiceSpec
	if existing != nil {
		have = &existing.Spec
	}
	// The existing annotations, AnnotationRefusedNodePorts among them, were kept above.
	out.Spec = memberSpec(&broker.Spec, have, RefusedNodePorts(existing))
	return out
}

// memberSpec is the broker's spec with the member's allocations (from have, nil when
// creating). Node ports are the broker's, so a client reaches every shard on the port it was
// given; a broker node port the member refused (taken there) stays the member's own.
func memberSpec(b *corev1.ServiceSpec, have *corev1.ServiceSpec, refused map[int32]bool) corev1.ServiceSpec {
	typ := b.Type
	if typ == "" {
		typ = corev1.ServiceTypeClusterIP
	}
	external := typ == corev1.ServiceTypeNodePort || typ == corev1.ServiceTypeLoadBalancer
	s := corev1.ServiceSpec{
		Type:                     typ,
		Selector:                 maps.Clone(b.Selector),
		SessionAffinity:          b.SessionAffinity,
		SessionAffinityConfig:    b.SessionAffinityConfig.DeepCopy(),
		PublishNotReadyAddresses: b.PublishNotReadyAddresses,
		TrafficDistribution:      copyPtr(b.TrafficDistribution),
	}
	if typ == corev1.ServiceTypeExternalName {
		s.ExternalName = b.ExternalName
	} else {
		s.InternalTrafficPolicy = copyPtr(b.InternalTrafficPolicy)
	}
	if external {
		s.ExternalTrafficPolicy = b.ExternalTrafficPolicy
	}
	if typ == corev1.ServiceTypeLoadBalancer {
		s.LoadBalancerSourceRanges = append([]string(nil), b.LoadBalancerSourceRanges...)
		s.AllocateLoadBalancerNodePorts = copyPtr(b.AllocateLoadBalancerNodePorts)
		s.LoadBalancerClass = copyPtr(b.LoadBalancerClass)
		if have != nil && have.LoadBalancerClass != nil {
			s.LoadBalancerClass = copyPtr(have.LoadBalancerClass) // immutable once set
		}
		s.LoadBalancerIP = b.LoadBalancerIP
	}
	switch {
	case typ == corev1.ServiceTypeExternalName:
		// An ExternalName Service has no cluster IP.
	case have != nil && have.Type != corev1.ServiceTypeExternalName:
		s.ClusterIP, s.ClusterIPs = have.ClusterIP, append([]string(nil), have.ClusterIPs...)
		s.IPFamilies, s.IPFamilyPolicy = append([]corev1.IPFamily(nil), have.IPFamilies...), copyPtr(have.IPFamilyPolicy)
	default:
		if b.ClusterIP == corev1.ClusterIPNone {
			s.ClusterIP = corev1.ClusterIPNone
		}
		// IP families are the member's: copy only a dual-stack wish, never the broker's
		// defaulted family list.
		if p := b.IPFamilyPolicy; p != nil && *p != corev1.IPFamilyPolicySingleStack {
			s.IPFamilyPolicy = copyPtr(p)
		}
	}
	if have != nil {
		s.ExternalIPs = append([]string(nil), have.ExternalIPs...)
		if typ == corev1.ServiceTypeLoadBalancer && s.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal {
			s.HealthCheckNodePort = have.HealthCheckNodePort
		}
	}
	for _, p := range b.Ports {
		port := corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: p.TargetPort, AppProtocol: copyPtr(p.AppProtocol)}
		switch {
		case !external:
		case p.NodePort != 0 && !refused[p.NodePort]:
			port.NodePort = p.NodePort
		case have != nil:
			port.NodePort = nodePortOf(have.Ports, p)
		}
		s.Ports = append(s.Ports, port)
	}
	return s
}

// nodePortOf finds the member's NodePort of a broker port: same port and protocol, else the
// same name.
func nodePortOf(have []corev1.ServicePort, p corev1.ServicePort) int32 {
	for _, h := range have {
		if h.Port == p.Port && h.Protocol == p.Protocol && h.NodePort != 0 {
			return h.NodePort
		}
	}
	for _, h := range have {
		if p.Name != "" && h.Name == p.Name && h.Protocol == p.Protocol && h.NodePort != 0 {
			return h.NodePort
		}
	}
	return 0
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// InLine reports whether have already is want: labels and annotations of want present in
// have, and the same spec. A NodePort or cluster IP that want leaves to the API server (0,
// "") matches whatever have was given.
func InLine(have, want *corev1.Service) bool {
	for k, v := range want.Labels {
		if have.Labels[k] != v {
			return false
		}
	}
	if _, adopted := have.Labels[LabelAdopted]; adopted && want.Labels[LabelAdopted] == "" {
		return false
	}
	for k, v := range want.Annotations {
		if have.Annotations[k] != v {
			return false
		}
	}
	w := want.Spec.DeepCopy()
	if w.ClusterIP == "" && w.Type != corev1.ServiceTypeExternalName {
		w.ClusterIP, w.ClusterIPs = have.Spec.ClusterIP, have.Spec.ClusterIPs
	}
	if w.IPFamilyPolicy == nil {
		w.IPFamilyPolicy = have.Spec.IPFamilyPolicy
	}
	if len(w.IPFamilies) == 0 {
		w.IPFamilies = have.Spec.IPFamilies
	}
	if w.HealthCheckNodePort == 0 {
		w.HealthCheckNodePort = have.Spec.HealthCheckNodePort
	}
	if len(w.Ports) == len(have.Spec.Ports) {
		for i := range w.Ports {
			if w.Ports[i].NodePort == 0 {
				w.Ports[i].NodePort = have.Spec.Ports[i].NodePort
			}
		}
	}
	return equality.Semantic.DeepEqual(*w, have.Spec)
}
