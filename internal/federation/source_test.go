package federation

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/liveness"
)

func brokerObjects(now time.Time) []runtime.Object {
	objs := []runtime.Object{brokerService()}
	for _, m := range []clusterset.Member{{ID: "c1", Region: "r1", Zone: "r1a"}, {ID: "c2", Region: "r1", Zone: "r1b"}} {
		ns := clusterset.MemberNamespace(m.ID)
		objs = append(objs,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName(m.ID), Namespace: clusterset.ClustersetNamespace}, Data: clusterset.MembershipData(m)},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: liveness.LeaseName, Namespace: ns},
				Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: now}, LeaseDurationSeconds: ptr.To(int32(15))}},
		)
		s := Shard{Cluster: m.ID, Namespace: DefaultNamespace, Name: "web", State: ShardCreated, ReadyEndpoints: 1,
			Ingress: Ingress{Source: IngressNodes, IPs: ips("192.168.0." + m.ID[1:]), Ports: brokerNodePorts}}
		for _, r := range ToRecords(ns, fed, s) {
			objs = append(objs, r)
		}
	}
	// The agent's leader lease on the broker cluster has the heartbeat's name too; it is no
	// member's lease.
	objs = append(objs, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: liveness.LeaseName, Namespace: clusterset.SystemNamespace}})
	return objs
}

func healthOf(svcs []zone.Service) map[string]bool {
	out := map[string]bool{}
	for _, s := range svcs {
		for _, sh := range s.Shards {
			out[sh.Cluster] = sh.Healthy
		}
	}
	return out
}

func TestSourceFollowsTheBroker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	cs := fake.NewClientset(brokerObjects(now)...)
	cfg := DefaultConfig()
	cfg.Name = fed
	m, err := controller.NewManager(controller.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(m, cs, mcsfake.NewSimpleClientset(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Services(ctx); err == nil {
		t.Fatal("Services before the caches synced must fail, not return an empty list")
	}
	go func() { _ = m.Start(ctx) }()
	waitFor(t, src.Synced)
	svcs, err := src.Services(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 1 || len(svcs[0].Shards) != 2 {
		t.Fatalf("services %+v", svcs)
	}
	if h := healthOf(svcs); !h["c1"] || !h["c2"] {
		t.Fatalf("health %v", h)
	}
	if locs, err := src.Locations(); err != nil || len(locs) != 2 || locs[1] != (zone.Location{Cluster: "c2", Region: "r1", Zone: "r1b"}) {
		t.Errorf("locations %v, %v", locs, err)
	}

	// c2's shard loses its endpoints: a change notification, then unhealthy.
	drain(src.Changed())
	s := Shard{Cluster: "c2", Namespace: DefaultNamespace, Name: "web", State: ShardCreated, ReadyEndpoints: 0,
		Ingress: Ingress{Source: IngressNodes, IPs: ips("192.168.0.2"), Ports: brokerNodePorts}}
	rec := ToRecords(clusterset.MemberNamespace("c2"), fed, s)[0]
	if _, err := cs.DiscoveryV1().EndpointSlices(rec.Namespace).Update(ctx, rec, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-src.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no change notification")
	}
	waitFor(t, func() bool {
		svcs, err := src.Services(ctx)
		return err == nil && !healthOf(svcs)["c2"] && healthOf(svcs)["c1"]
	})

	// A malformed membership record makes the read fail rather than drop the member.
	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName("c3"), Namespace: clusterset.ClustersetNamespace},
		Data: map[string]string{clusterset.KeyClusterID: "c4"}}
	if _, err := cs.CoreV1().ConfigMaps(bad.Namespace).Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := src.Services(ctx)
		return err != nil
	})
	if err := cs.CoreV1().ConfigMaps(bad.Namespace).Delete(ctx, bad.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Validate leaves out what strait dns would reject, and keeps the rest.
	src.Validate = func(z zone.Service) error {
		if z.Name == "web" {
			return errors.New("too long")
		}
		return nil
	}
	waitFor(t, func() bool {
		svcs, err := src.Services(ctx)
		return err == nil && len(svcs) == 0 && len(src.Rejected()) == 1 && strings.Contains(src.Rejected()[0].Error(), "too long")
	})
}

func TestReadSnapshot(t *testing.T) {
	now := time.Now()
	cs := fake.NewClientset(brokerObjects(now)...)
	cfg := DefaultConfig()
	cfg.Name = fed
	snap, err := ReadSnapshot(context.Background(), cs, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Services) != 1 || len(snap.Members) != 2 || len(snap.Shards) != 2 {
		t.Errorf("snapshot: %d services, %d members, %d shards", len(snap.Services), len(snap.Members), len(snap.Shards))
	}
	// One read observes no renewal: every member is Held, never judged dead.
	for _, m := range snap.Members {
		if s := snap.Liveness.State(m.ID); s != liveness.Held {
			t.Errorf("member %s is %s from a single read, want Held", m.ID, s)
		}
	}
}

func drain(c <-chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
