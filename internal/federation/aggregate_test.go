package federation

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/policy"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func TestShardHealth(t *testing.T) {
	ready := &Shard{State: ShardCreated, ReadyEndpoints: 2}
	for _, tc := range []struct {
		name    string
		shard   *Shard
		member  liveness.State
		wasDown bool
		healthy bool
		reason  string
	}{
		{name: "alive, ready endpoints", shard: ready, member: liveness.Alive, healthy: true, reason: ReasonHealthy},
		{name: "withdrawn member", shard: ready, member: liveness.Withdrawn, reason: ReasonMemberDown},
		{name: "member down wins over a missing shard", member: liveness.Withdrawn, reason: ReasonMemberDown},
		// Held: no decision. What the status said before stays.
		{name: "held, was healthy", shard: ready, member: liveness.Held, healthy: true, reason: ReasonHealthy},
		{name: "held, was down", shard: ready, member: liveness.Held, wasDown: true, reason: ReasonMemberDown},
		{name: "alive again after being down", shard: ready, member: liveness.Alive, wasDown: true, healthy: true, reason: ReasonHealthy},
		{name: "no record", member: liveness.Alive, reason: ReasonShardMissing},
		{name: "pending", shard: &Shard{State: ShardPending}, member: liveness.Alive, reason: ReasonShardMissing},
		{name: "conflict", shard: &Shard{State: ShardConflict, Problem: "taken"}, member: liveness.Alive, reason: ReasonShardConflict},
		{name: "no ready endpoint", shard: &Shard{State: ShardAdopted}, member: liveness.Alive, reason: ReasonNoReadyEndpoints},
		{name: "the broker's own shard", shard: &Shard{State: ShardBroker, ReadyEndpoints: 1}, member: liveness.Alive, healthy: true, reason: ReasonHealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := ShardHealth(tc.shard, tc.member, tc.wasDown)
			if h.Healthy != tc.healthy || h.Reason != tc.reason {
				t.Errorf("health %+v; want healthy=%v reason %s", h, tc.healthy, tc.reason)
			}
			if h.Message == "" {
				t.Error("no message")
			}
		})
	}
}

// view gives each member a verdict.
func view(states map[string]liveness.State) liveness.View {
	var v liveness.View
	for id, s := range states {
		v.Members = append(v.Members, liveness.Member{ID: id, State: s})
	}
	return v
}

// brokerNodePorts are brokerService's node ports, as a shard on them reports them.
var brokerNodePorts = []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 30001}, {Name: "dns", Protocol: corev1.ProtocolUDP, Port: 30002}}

// The clusterset's namespace policy decides whose shards count: a cluster that may not
// export into the federation namespace is not published.
func TestAggregateHonoursTheNamespacePolicy(t *testing.T) {
	snap := snapshot()
	snap.Policy = policy.Clusterset{Namespaces: map[string][]string{DefaultNamespace: {"c1"}}}
	st := Aggregate(snap, brokerService())
	for _, sh := range st.Shards {
		if sh.Cluster != "c1" && (sh.Healthy || sh.Reason != ReasonNamespaceNotAllowed) {
			t.Errorf("shard %s: %+v, want NamespaceNotAllowed", sh.Cluster, sh.Health)
		}
	}
	if !st.Shards[0].Healthy {
		t.Errorf("c1, allowed: %+v", st.Shards[0])
	}
}

// A shard whose member refused the broker's node port is not published: DNS hands out one
// port for every shard's nodes.
func TestAggregateNodePortMismatch(t *testing.T) {
	snap := snapshot()
	k := ShardKey{Cluster: "c2", Namespace: DefaultNamespace, Name: "web"}
	sh := snap.Shards[k]
	sh.ReadyEndpoints = 1
	snap.Shards[k] = sh
	if st := Aggregate(snap, brokerService()); !st.Shards[1].Healthy {
		t.Fatalf("c2 on the broker's ports: %+v, want healthy", st.Shards[1])
	}
	sh.Ingress.Ports = []Port{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 31050}, brokerNodePorts[1]}
	snap.Shards[k] = sh
	st := Aggregate(snap, brokerService())
	c2 := st.Shards[1]
	if c2.Healthy || c2.Reason != ReasonNodePortMismatch || !strings.Contains(c2.Message, "node port 31050") || !strings.Contains(c2.Message, "30001") {
		t.Errorf("c2 %+v; want NodePortMismatch naming 31050 and 30001", c2)
	}
	if z := ZoneService(st); z.Shards[1].Healthy {
		t.Error("the mismatched shard is published in DNS")
	}
}

// snapshot is a federation of four members in two regions, as in the lab.
func snapshot() *Snapshot {
	members := []clusterset.Member{
		{ID: "c1", Region: "r1", Zone: "r1a"}, {ID: "c2", Region: "r1", Zone: "r1b"},
		{ID: "c3", Region: "r2", Zone: "r2a"}, {ID: "c4"},
	}
	shard := func(c string, state ShardState, ready int, addrs ...string) Shard {
		return Shard{Cluster: c, Namespace: DefaultNamespace, Name: "web", State: state, ReadyEndpoints: ready,
			Ingress: Ingress{Source: IngressNodes, IPs: ips(addrs...), Ports: brokerNodePorts}, ClusterIPs: ips("10.96.0." + c[1:]), Region: "node-r", Zone: "node-z"}
	}
	shards := map[ShardKey]Shard{}
	for _, s := range []Shard{
		shard("c1", ShardBroker, 2, "192.168.1.2"),
		shard("c2", ShardAdopted, 0, "192.168.2.2", "192.168.1.2"),
		shard("c3", ShardCreated, 1, "192.168.3.2"),
		shard("c4", ShardPending, 0),
		{Cluster: "c9", Namespace: DefaultNamespace, Name: "web", State: ShardCreated},
	} {
		shards[s.Key()] = s
	}
	return &Snapshot{
		Federation: fed, Services: []*corev1.Service{brokerService()}, Members: members, Shards: shards,
		Liveness: view(map[string]liveness.State{"c1": liveness.Alive, "c2": liveness.Alive, "c3": liveness.Withdrawn, "c4": liveness.Alive}),
	}
}

func TestAggregate(t *testing.T) {
	snap := snapshot()
	st := Aggregate(snap, brokerService())
	type row struct {
		cluster, region, zone string
		healthy               bool
		reason                string
	}
	var got []row
	for _, sh := range st.Shards {
		got = append(got, row{sh.Cluster, sh.Region, sh.Zone, sh.Healthy, sh.Reason})
	}
	want := []row{
		{"c1", "r1", "r1a", true, ReasonHealthy},
		{"c2", "r1", "r1b", false, ReasonNoReadyEndpoints},
		{"c3", "r2", "r2a", false, ReasonMemberDown},
		// No region in the membership: the nodes' topology labels fill it.
		{"c4", "node-r", "node-z", false, ReasonShardMissing},
	}
	if !slices.Equal(got, want) {
		t.Errorf("shards\n got %v\nwant %v", got, want)
	}
	if st.TTL != 30*time.Second || !st.SelectionValid || len(st.Unknown) != 0 {
		t.Errorf("status %+v", st)
	}
	// The union: every existing shard's ingress, healthy or not, sorted and unique; the
	// pending c4 and the non-member c9 add nothing.
	var lb []string
	for _, in := range st.LoadBalancerIngress() {
		lb = append(lb, in.IP)
		if in.IPMode == nil || *in.IPMode != corev1.LoadBalancerIPModeVIP {
			t.Errorf("ingress %s without ipMode VIP (the API server defaults it)", in.IP)
		}
	}
	if !slices.Equal(lb, []string{"192.168.1.2", "192.168.2.2", "192.168.3.2"}) {
		t.Errorf("load balancer ingress %v", lb)
	}

	selective := brokerService()
	selective.Annotations[AnnotationClusters] = "c2,c1,ghost"
	st = Aggregate(snap, selective)
	if len(st.Shards) != 2 || st.Shards[0].Cluster != "c1" || st.Shards[1].Cluster != "c2" || !slices.Equal(st.Unknown, []string{"ghost"}) {
		t.Errorf("selection: shards %v unknown %v", st.Shards, st.Unknown)
	}
	c := apimeta.FindStatusCondition(st.Conditions(), ConditionFederated)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != ReasonUnknownCluster || !strings.Contains(c.Message, "ghost") {
		t.Errorf("Federated condition %+v", c)
	}

	invalid := brokerService()
	invalid.Annotations[AnnotationClusters] = "c1,BAD"
	st = Aggregate(snap, invalid)
	if st.SelectionValid || len(st.Shards) != 4 {
		t.Errorf("invalid selection: valid=%v, %d shards (members keep what they report)", st.SelectionValid, len(st.Shards))
	}
	if c := apimeta.FindStatusCondition(st.Conditions(), ConditionFederated); c.Reason != ReasonInvalidSelector {
		t.Errorf("condition %+v", c)
	}
}

func TestConditionsAreValidForServiceStatus(t *testing.T) {
	st := Aggregate(snapshot(), brokerService())
	svc := brokerService()
	ApplyStatus(svc, st, t0)
	if errs := metav1validation.ValidateConditions(svc.Status.Conditions, field.NewPath("status", "conditions")); len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	var types []string
	for _, c := range svc.Status.Conditions {
		types = append(types, c.Type)
	}
	want := []string{ConditionFederated, "shard.federation.strait.io/c1", "shard.federation.strait.io/c2", "shard.federation.strait.io/c3", "shard.federation.strait.io/c4"}
	if !slices.Equal(types, want) {
		t.Errorf("condition types %v", types)
	}
	c1 := apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition("c1"))
	if c1.Status != metav1.ConditionTrue || c1.ObservedGeneration != 3 || !strings.Contains(c1.Message, "r1/r1a") {
		t.Errorf("c1 condition %+v", c1)
	}
}

func TestApplyStatusIsIdempotentAndKeepsOthersConditions(t *testing.T) {
	snap := snapshot()
	svc := brokerService()
	svc.Status.Conditions = []metav1.Condition{
		{Type: "example.com/Other", Status: metav1.ConditionTrue, Reason: "Mine", LastTransitionTime: metav1.NewTime(t0)},
		{Type: ShardCondition("gone"), Status: metav1.ConditionTrue, Reason: ReasonHealthy, LastTransitionTime: metav1.NewTime(t0)},
	}
	if !ApplyStatus(svc, Aggregate(snap, svc), t0) {
		t.Fatal("first apply changed nothing")
	}
	if apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition("gone")) != nil {
		t.Error("the condition of a cluster no longer placed stays")
	}
	if apimeta.FindStatusCondition(svc.Status.Conditions, "example.com/Other") == nil {
		t.Error("someone else's condition was removed")
	}
	if ApplyStatus(svc, Aggregate(snap, svc), t0.Add(time.Second)) {
		t.Error("a second apply with nothing changed reports a change")
	}
	// A shard turning healthy changes its condition and its transition time only.
	snap.Shards[ShardKey{Cluster: "c2", Namespace: DefaultNamespace, Name: "web"}] = Shard{
		Cluster: "c2", Namespace: DefaultNamespace, Name: "web", State: ShardAdopted, ReadyEndpoints: 1}
	before := *apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition("c1"))
	later := t0.Add(time.Minute)
	if !ApplyStatus(svc, Aggregate(snap, svc), later) {
		t.Fatal("a health change was not applied")
	}
	c2 := apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition("c2"))
	if c2.Status != metav1.ConditionTrue || !c2.LastTransitionTime.Time.Equal(later) {
		t.Errorf("c2 %+v", c2)
	}
	if after := apimeta.FindStatusCondition(svc.Status.Conditions, ShardCondition("c1")); !after.LastTransitionTime.Equal(&before.LastTransitionTime) {
		t.Error("an unchanged condition got a new transition time")
	}
}

// The API refuses status.loadBalancer.ingress on a Service that is not a LoadBalancer: a
// federated NodePort Service gets conditions only.
func TestApplyStatusNodePortHasNoLoadBalancerIngress(t *testing.T) {
	snap := snapshot()
	svc := brokerService()
	svc.Spec.Type = corev1.ServiceTypeNodePort
	svc.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "192.0.2.1"}}
	if !ApplyStatus(svc, Aggregate(snap, svc), t0) {
		t.Fatal("nothing applied")
	}
	if len(svc.Status.LoadBalancer.Ingress) != 0 || apimeta.FindStatusCondition(svc.Status.Conditions, ConditionFederated) == nil {
		t.Errorf("status %+v; want conditions and no load balancer ingress", svc.Status)
	}
}

// A member without a verdict (Held: the reader just started, or the broker is away) keeps
// the health the status last had: down stays down, up stays up.
func TestAggregateHeldKeepsTheStatus(t *testing.T) {
	snap := snapshot()
	svc := brokerService()
	ApplyStatus(svc, Aggregate(snap, svc), t0)
	snap.Liveness = liveness.View{} // every member Held
	st := Aggregate(snap, svc)
	for _, sh := range st.Shards {
		if sh.Cluster == "c3" && sh.Reason != ReasonMemberDown {
			t.Errorf("c3 was down and is Held: %+v, want MemberDown", sh)
		}
		if sh.Cluster == "c1" && !sh.Healthy {
			t.Errorf("c1 was healthy and is Held: %+v, want healthy", sh)
		}
	}
}

func TestZoneService(t *testing.T) {
	st := Aggregate(snapshot(), brokerService())
	z := ZoneService(st)
	if z.Namespace != DefaultNamespace || z.Name != "web" || z.Federation != fed || z.TTL != 30*time.Second || len(z.Shards) != 4 {
		t.Fatalf("%+v", z)
	}
	if s := z.Shards[0]; s.Cluster != "c1" || !s.Healthy || s.Region != "r1" || s.Zone != "r1a" ||
		!slices.Equal(s.Addresses, ips("192.168.1.2")) || !slices.Equal(s.LocalAddresses, ips("10.96.0.1")) {
		t.Errorf("c1 shard %+v", s)
	}
	// The zone model accepts it and answers with the federation's hierarchy: r1 has a healthy shard,
	// r2 does not and becomes a CNAME to the global name.
	recs, err := zone.Records(zone.Config{Domain: "example.com"}, []zone.Service{z})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, r := range recs {
		lines = append(lines, r.String())
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"web.strait-federation.fed.svc.r1.example.com.\t30\tIN\tA\t192.168.1.2",
		"web.strait-federation.fed.svc.r2.example.com.\t30\tIN\tCNAME\tweb.strait-federation.fed.svc.example.com.",
		"web.strait-federation.fed.svc.r1b.r1.example.com.\t30\tIN\tCNAME\tweb.strait-federation.fed.svc.r1.example.com.",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("records lack %q:\n%s", want, all)
		}
	}
}
