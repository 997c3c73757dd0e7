package federation

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/policy"
)

// Snapshot is everything the broker holds about a federation at one moment.
type Snapshot struct {
	// Federation is the federation's name.
	Federation string
	// Services are the broker's federated Services.
	Services []*corev1.Service
	Members  []clusterset.Member
	Shards   map[ShardKey]Shard
	// Liveness is the reader's verdict on each member (package liveness). A reader that
	// cannot observe leases over time (a one-shot command) leaves it empty: every member is
	// then Held.
	Liveness liveness.View
	// Policy is the clusterset's namespace policy: a shard of a cluster that may not
	// export into the Service's namespace is not published.
	Policy policy.Clusterset
}

// Health is a shard's health and why.
type Health struct {
	Healthy bool   `json:"healthy"`
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// memberDownMessage is constant (no age), so the status does not change on every look.
const memberDownMessage = "the member's agent stopped renewing its lease on the broker"

// ShardHealth decides a shard's health: unhealthy when the member is withdrawn (package
// liveness); otherwise healthy when the shard exists with at least one ready endpoint. A
// member whose verdict is Held keeps what it had: if the shard was down because the member
// was (wasDown, from the broker Service's shard condition), it stays down.
func ShardHealth(shard *Shard, member liveness.State, wasDown bool) Health {
	switch {
	case member == liveness.Withdrawn, member == liveness.Held && wasDown:
		return Health{Reason: ReasonMemberDown, Message: memberDownMessage}
	}
	return shardHealth(shard)
}

func shardHealth(shard *Shard) Health {
	switch {
	case shard == nil:
		return Health{Reason: ReasonShardMissing, Message: "the member has not reported the shard yet"}
	case shard.State == ShardConflict:
		return Health{Reason: ReasonShardConflict, Message: shard.Problem}
	case !shard.State.Exists():
		msg := "the member has not created the Service yet"
		if shard.Problem != "" {
			msg = shard.Problem
		}
		return Health{Reason: ReasonShardMissing, Message: msg}
	case shard.ReadyEndpoints == 0:
		return Health{Reason: ReasonNoReadyEndpoints, Message: "the Service has no ready endpoint in the member"}
	}
	return Health{Healthy: true, Reason: ReasonHealthy, Message: fmt.Sprintf("%d ready endpoints", shard.ReadyEndpoints)}
}

// nodePortMismatch says how a shard reached on its nodes' ports fails to serve the broker
// Service's node ports, "" when it serves them all. DNS hands out every shard's nodes for
// one name, so a client uses the broker's port everywhere: a shard on another port is left
// out rather than published with a port that does not reach it.
func nodePortMismatch(svc *corev1.Service, shard *Shard) string {
	if shard == nil || shard.Ingress.Source != IngressNodes || shard.State == ShardBroker {
		return ""
	}
	var bad []string
	for _, p := range svc.Spec.Ports {
		if p.NodePort == 0 {
			continue
		}
		proto := p.Protocol
		if proto == "" {
			proto = corev1.ProtocolTCP
		}
		var got int32
		for _, sp := range shard.Ingress.Ports {
			if sp.Name == p.Name && (sp.Protocol == proto || sp.Protocol == "") {
				got = sp.Port
			}
		}
		if got != p.NodePort {
			bad = append(bad, fmt.Sprintf("port %d/%s is on node port %d there, not the broker's %d", p.Port, proto, got, p.NodePort))
		}
	}
	if len(bad) == 0 {
		return ""
	}
	return strings.Join(bad, "; ") + " (the broker's port is taken in that cluster); left out of DNS"
}

// wasDown reports whether the broker Service's condition of cluster's shard says the
// member was down: the decision a Held member keeps.
func wasDown(svc *corev1.Service, cluster string) bool {
	c := apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition(cluster))
	return c != nil && c.Reason == ReasonMemberDown
}

// ShardStatus is one cluster's shard of a federated Service.
type ShardStatus struct {
	Cluster string `json:"cluster"`
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	// State is empty when the member reported nothing.
	State          ShardState `json:"state,omitempty"`
	ReadyEndpoints int        `json:"readyEndpoints"`
	Health
	Ingress    Ingress      `json:"ingress"`
	ClusterIPs []netip.Addr `json:"clusterIPs,omitempty"`
}

// ServiceStatus is a federated Service and its shards.
type ServiceStatus struct {
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Federation string `json:"federation"`
	// TTL overrides the DNS TTL; 0 means the server's default.
	TTL        time.Duration `json:"-"`
	TTLSeconds int64         `json:"ttlSeconds,omitempty"`
	// Unknown lists selected clusters that are not members.
	Unknown []string `json:"unknownClusters,omitempty"`
	// Problems are annotation errors.
	Problems []string `json:"problems,omitempty"`
	// SelectionValid is false when the cluster selector could not be read; members then
	// neither place nor remove shards.
	SelectionValid bool          `json:"selectionValid"`
	Shards         []ShardStatus `json:"shards"`
	// Generation is the broker Service's metadata.generation.
	Generation int64 `json:"-"`
}

// Aggregate computes the status of one federated Service. Its shards are those of the
// selected members, reported or not, sorted by cluster; with an invalid selection, the
// members that still report a shard (they keep what they had).
func Aggregate(snap *Snapshot, svc *corev1.Service) ServiceStatus {
	st := ServiceStatus{Namespace: svc.Namespace, Name: svc.Name, Federation: snap.Federation, Generation: svc.Generation, SelectionValid: true}
	ttl, err := ParseTTL(svc)
	if err != nil {
		st.Problems = append(st.Problems, err.Error())
	}
	st.TTL, st.TTLSeconds = ttl, int64(ttl/time.Second)
	var placed []clusterset.Member
	sel, err := ParseSelection(svc)
	if err != nil {
		st.SelectionValid = false
		st.Problems = append([]string{err.Error()}, st.Problems...)
		for _, m := range snap.Members {
			if _, ok := snap.Shards[ShardKey{Cluster: m.ID, Namespace: svc.Namespace, Name: svc.Name}]; ok {
				placed = append(placed, m)
			}
		}
	} else {
		placed, st.Unknown = sel.Resolve(snap.Members)
	}
	for _, m := range placed {
		var shard *Shard
		if s, ok := snap.Shards[ShardKey{Cluster: m.ID, Namespace: svc.Namespace, Name: svc.Name}]; ok {
			shard = &s
		}
		h := ShardHealth(shard, snap.Liveness.State(m.ID), wasDown(svc, m.ID))
		if problem := nodePortMismatch(svc, shard); h.Healthy && problem != "" {
			h = Health{Reason: ReasonNodePortMismatch, Message: problem}
		}
		if msg, ok := snap.Policy.Allows(svc.Namespace, m.ID); !ok {
			h = Health{Reason: ReasonNamespaceNotAllowed, Message: msg + "; left out of DNS"}
		}
		ss := ShardStatus{Cluster: m.ID, Region: m.Region, Zone: m.Zone, Health: h}
		if shard != nil {
			ss.State, ss.ReadyEndpoints, ss.Ingress, ss.ClusterIPs = shard.State, shard.ReadyEndpoints, shard.Ingress, shard.ClusterIPs
			// The membership (join flags, or node labels at join time) wins; the nodes'
			// current topology labels fill what it lacks.
			switch {
			case ss.Region == "":
				ss.Region, ss.Zone = shard.Region, shard.Zone
			case ss.Zone == "" && shard.Region == ss.Region:
				ss.Zone = shard.Zone
			}
		}
		if ss.Region == "" {
			ss.Zone = "" // a zone is only meaningful inside a region
		}
		st.Shards = append(st.Shards, ss)
	}
	return st
}

// AggregateAll computes the status of every federated Service of the snapshot, sorted by
// namespace and name.
func AggregateAll(snap *Snapshot) []ServiceStatus {
	out := make([]ServiceStatus, 0, len(snap.Services))
	for _, svc := range snap.Services {
		out = append(out, Aggregate(snap, svc))
	}
	slices.SortFunc(out, func(a, b ServiceStatus) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// LoadBalancerIngress is the union of the shards' ingress addresses, every existing shard
// healthy or not (as the federation v1 did: health decides DNS, not the status), IPs sorted
// before hostnames.
func (s ServiceStatus) LoadBalancerIngress() []corev1.LoadBalancerIngress {
	var ips []netip.Addr
	var hosts []string
	for _, sh := range s.Shards {
		if !sh.State.Exists() {
			continue
		}
		ips = append(ips, sh.Ingress.IPs...)
		hosts = append(hosts, sh.Ingress.Hostnames...)
	}
	var out []corev1.LoadBalancerIngress
	for _, a := range sortedAddrs(ips) {
		out = append(out, corev1.LoadBalancerIngress{IP: a.String(), IPMode: ptr.To(corev1.LoadBalancerIPModeVIP)})
	}
	for _, h := range sortedStrings(hosts) {
		out = append(out, corev1.LoadBalancerIngress{Hostname: h})
	}
	return out
}

// Conditions are the broker Service's conditions: Federated, and one per placed cluster.
func (s ServiceStatus) Conditions() []metav1.Condition {
	fed := metav1.Condition{Type: ConditionFederated, Status: metav1.ConditionTrue, Reason: ReasonValid, ObservedGeneration: s.Generation,
		Message: fmt.Sprintf("placed in %d clusters", len(s.Shards))}
	switch {
	case !s.SelectionValid:
		fed.Status, fed.Reason = metav1.ConditionFalse, ReasonInvalidSelector
		fed.Message = strings.Join(s.Problems, "; ") + "; members neither create nor delete shards until it is fixed"
	case len(s.Unknown) > 0:
		fed.Status, fed.Reason = metav1.ConditionFalse, ReasonUnknownCluster
		fed.Message = fmt.Sprintf("annotation %s names clusters that are not members: %s; nothing is placed there (placed in %d clusters)",
			AnnotationClusters, strings.Join(s.Unknown, ", "), len(s.Shards))
	case len(s.Problems) > 0:
		fed.Status, fed.Reason = metav1.ConditionFalse, ReasonInvalidTTL
		fed.Message = strings.Join(s.Problems, "; ") + "; the default TTL is used"
	}
	out := []metav1.Condition{fed}
	for _, sh := range s.Shards {
		c := metav1.Condition{Type: ShardCondition(sh.Cluster), Status: metav1.ConditionFalse, Reason: sh.Reason, Message: sh.Message, ObservedGeneration: s.Generation}
		if sh.Healthy {
			c.Status = metav1.ConditionTrue
		}
		where := sh.Cluster
		if sh.Zone != "" {
			where += " (" + sh.Region + "/" + sh.Zone + ")"
		} else if sh.Region != "" {
			where += " (" + sh.Region + ")"
		}
		c.Message = where + ": " + c.Message
		out = append(out, c)
	}
	return out
}

// ApplyStatus writes the status into svc (a copy of the broker Service): the load balancer
// ingress (for a LoadBalancer Service only: the API refuses it on any other type), Strait's
// conditions (a cluster no longer placed loses its shard condition; other conditions are
// kept). It reports whether anything changed.
func ApplyStatus(svc *corev1.Service, st ServiceStatus, now time.Time) bool {
	before := svc.Status.DeepCopy()
	svc.Status.LoadBalancer.Ingress = nil
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		svc.Status.LoadBalancer.Ingress = st.LoadBalancerIngress()
	}
	want := st.Conditions()
	keep := map[string]bool{}
	for _, c := range want {
		keep[c.Type] = true
	}
	svc.Status.Conditions = slices.DeleteFunc(svc.Status.Conditions, func(c metav1.Condition) bool {
		return strings.HasPrefix(c.Type, ShardConditionPrefix) && !keep[c.Type]
	})
	for _, c := range want {
		c.LastTransitionTime = metav1.NewTime(now)
		apimeta.SetStatusCondition(&svc.Status.Conditions, c)
	}
	slices.SortStableFunc(svc.Status.Conditions, func(a, b metav1.Condition) int {
		// Federated first, then the shards by cluster, then anyone else's.
		rank := func(t string) int {
			switch {
			case t == ConditionFederated:
				return 0
			case strings.HasPrefix(t, ShardConditionPrefix):
				return 1
			}
			return 2
		}
		if d := rank(a.Type) - rank(b.Type); d != 0 {
			return d
		}
		if rank(a.Type) == 1 {
			return strings.Compare(a.Type, b.Type)
		}
		return 0
	})
	return !statusEqual(before, &svc.Status)
}

func statusEqual(a, b *corev1.ServiceStatus) bool {
	if len(a.LoadBalancer.Ingress) != len(b.LoadBalancer.Ingress) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.LoadBalancer.Ingress {
		x, y := a.LoadBalancer.Ingress[i], b.LoadBalancer.Ingress[i]
		if x.IP != y.IP || x.Hostname != y.Hostname || !ptr.Equal(x.IPMode, y.IPMode) {
			return false
		}
	}
	for i := range a.Conditions {
		x, y := a.Conditions[i], b.Conditions[i]
		if x.Type != y.Type || x.Status != y.Status || x.Reason != y.Reason || x.Message != y.Message ||
			x.ObservedGeneration != y.ObservedGeneration || !x.LastTransitionTime.Equal(&y.LastTransitionTime) {
			return false
		}
	}
	return true
}
