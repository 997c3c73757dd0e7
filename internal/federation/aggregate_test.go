package federation

import (
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/zone"
)

var t0 = time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)

func lease(renewed time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: renewed}, LeaseDurationSeconds: ptr.To(int32(15))}}
}

func TestShardHealth(t *testing.T) {
	const grace = 10 * time.Second
	ready := &Shard{State: ShardCreated, ReadyEndpoints: 2}
	for _, tc := range []struct {
		name    string
		shard   *Shard
		lease   *coordinationv1.Lease
		healthy bool
		reason  string
		recheck time.Duration
	}{
		{name: "fresh lease, ready endpoints", shard: ready, lease: lease(t0.Add(-5 * time.Second)), healthy: true, reason: ReasonHealthy, recheck: 20*time.Second + 100*time.Millisecond},
		{name: "no lease yet counts as alive", shard: ready, healthy: true, reason: ReasonHealthy},
		{name: "expired but within grace", shard: ready, lease: lease(t0.Add(-20 * time.Second)), healthy: true, reason: ReasonHealthy, recheck: 5*time.Second + 100*time.Millisecond},
		{name: "expired past grace", shard: ready, lease: lease(t0.Add(-26 * time.Second)), reason: ReasonMemberDown},
		{name: "member down wins over a missing shard", lease: lease(t0.Add(-time.Hour)), reason: ReasonMemberDown},
		{name: "no record", reason: ReasonShardMissing},
		{name: "pending", shard: &Shard{State: ShardPending}, reason: ReasonShardMissing},
		{name: "conflict", shard: &Shard{State: ShardConflict, Problem: "taken"}, reason: ReasonShardConflict},
		{name: "no ready endpoint", shard: &Shard{State: ShardAdopted}, reason: ReasonNoReadyEndpoints},
		{name: "the broker's own shard", shard: &Shard{State: ShardBroker, ReadyEndpoints: 1}, healthy: true, reason: ReasonHealthy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, recheck := ShardHealth(tc.shard, tc.lease, grace, t0)
			if h.Healthy != tc.healthy || h.Reason != tc.reason || recheck != tc.recheck {
				t.Errorf("health %+v recheck %v; want healthy=%v reason %s recheck %v", h, recheck, tc.healthy, tc.reason, tc.recheck)
			}
			if h.Message == "" {
				t.Error("no message")
			}
		})
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
			Ingress: Ingress{Source: IngressNodes, IPs: ips(addrs...)}, ClusterIPs: ips("10.96.0." + c[1:]), Region: "node-r", Zone: "node-z"}
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
		Federation: fed, Services: []*corev1.Service{brokerService()}, Members: members, Shards: shards, Now: t0, Grace: 10 * time.Second,
		Leases: map[string]*coordinationv1.Lease{"c1": lease(t0), "c2": lease(t0), "c3": lease(t0.Add(-time.Minute)), "c4": lease(t0)},
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
	snap.Now = t0.Add(time.Second)
	if ApplyStatus(svc, Aggregate(snap, svc), snap.Now) {
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
	// The zone model accepts it and answers the seed's hierarchy: r1 has a healthy shard,
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
