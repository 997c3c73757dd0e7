package heartbeat

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/agent/agenttest"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
)

var memberNS = clusterset.MemberNamespace("c1")

func lease(t *testing.T, broker *agenttest.Cluster) *coordinationv1.Lease {
	t.Helper()
	l, err := broker.Kube.Tracker().Get(coordinationv1.SchemeGroupVersion.WithResource("leases"), memberNS, liveness.LeaseName)
	if err != nil {
		t.Fatalf("no lease: %v", err)
	}
	return l.(*coordinationv1.Lease)
}

func TestRenewCreatesThenUpdatesTheLease(t *testing.T) {
	broker := agenttest.NewCluster(t)
	ctx := context.Background()
	if err := Renew(ctx, broker.Kube, memberNS, "c1", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	l := lease(t, broker)
	if l.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue || l.Labels[clusterset.ClusterIDLabel] != "c1" {
		t.Errorf("labels %v", l.Labels)
	}
	if ptr.Deref(l.Spec.HolderIdentity, "") != "c1" || ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 15 || l.Spec.RenewTime == nil || l.Spec.AcquireTime == nil {
		t.Errorf("spec %+v, want holder c1, leaseDurationSeconds 15, renew and acquire times", l.Spec)
	}

	// Someone else's view of the lease, an hour old: renewing takes it back and renews it.
	stale := l.DeepCopy()
	hourAgo := metav1.NewMicroTime(time.Now().Add(-time.Hour))
	stale.Spec.HolderIdentity, stale.Spec.LeaseDurationSeconds, stale.Spec.RenewTime = ptr.To("someone-else"), ptr.To[int32](99), &hourAgo
	broker.Put(t, stale)
	broker.ClearActions()
	if err := Renew(ctx, broker.Kube, memberNS, "c1", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if wr := broker.Writes(); len(wr) != 1 || wr[0] != "update leases "+memberNS+"/"+liveness.LeaseName {
		t.Errorf("writes %v, want one update", wr)
	}
	l = lease(t, broker)
	if ptr.Deref(l.Spec.HolderIdentity, "") != "c1" || ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 6 {
		t.Errorf("spec %+v, want holder c1, leaseDurationSeconds 6", l.Spec)
	}
	if !l.Spec.RenewTime.After(hourAgo.Time) {
		t.Errorf("renewTime %v not renewed", l.Spec.RenewTime)
	}
}

func TestRenewReturnsErrors(t *testing.T) {
	for _, verb := range []string{"get", "create", "update"} {
		broker := agenttest.NewCluster(t)
		if verb == "update" {
			if err := Renew(context.Background(), broker.Kube, memberNS, "c1", time.Second); err != nil {
				t.Fatal(err)
			}
		}
		broker.Fail(verb, "leases", agenttest.ErrInjected)
		if err := Renew(context.Background(), broker.Kube, memberNS, "c1", time.Second); !errors.Is(err, agenttest.ErrInjected) {
			t.Errorf("%s failing: error %v", verb, err)
		}
	}
}

// reporter records what Run reports.
type reporter struct {
	reachable   chan struct{}
	unreachable chan error
}

func newReporter() *reporter {
	return &reporter{reachable: make(chan struct{}, 100), unreachable: make(chan error, 100)}
}

func (r *reporter) BrokerReachable()            { r.reachable <- struct{}{} }
func (r *reporter) BrokerUnreachable(err error) { r.unreachable <- err }

// run starts Run and stops it when the test ends.
func run(t *testing.T, broker *agenttest.Cluster, interval time.Duration, r Reporter) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Run(ctx, broker.Kube, "c1", interval, r)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

func (r *reporter) waitReachable(t *testing.T) {
	t.Helper()
	select {
	case <-r.reachable:
	case err := <-r.unreachable:
		t.Fatalf("reported unreachable: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reported")
	}
}

func (r *reporter) waitUnreachable(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.unreachable:
		return err
	case <-r.reachable:
		t.Fatal("reported reachable")
	case <-time.After(10 * time.Second):
		t.Fatal("nothing reported")
	}
	return nil
}

// TestRunRenewsAtOnce: with an interval far longer than the test, only the renewal on
// start can have written the lease.
func TestRunRenewsAtOnce(t *testing.T) {
	broker := agenttest.NewCluster(t)
	r := newReporter()
	run(t, broker, time.Hour, r)
	r.waitReachable(t)
	if l := lease(t, broker); ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 3*3600 {
		t.Errorf("leaseDurationSeconds %d", ptr.Deref(l.Spec.LeaseDurationSeconds, 0))
	}
}

func TestRunReportsTheBroker(t *testing.T) {
	broker := agenttest.NewCluster(t)
	var down atomic.Bool
	down.Store(true)
	broker.Kube.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if down.Load() {
			return true, nil, agenttest.ErrInjected
		}
		return false, nil, nil
	})
	r := newReporter()
	run(t, broker, 10*time.Millisecond, r)
	if err := r.waitUnreachable(t); !errors.Is(err, agenttest.ErrInjected) {
		t.Errorf("reported %v", err)
	}
	// Still down on the next tick: still reported.
	if err := r.waitUnreachable(t); !errors.Is(err, agenttest.ErrInjected) {
		t.Errorf("reported %v", err)
	}
	down.Store(false)
	// Reports made before the broker came back may still be queued.
	deadline := time.After(10 * time.Second)
	for back := false; !back; {
		select {
		case <-r.reachable:
			back = true
		case <-r.unreachable:
		case <-deadline:
			t.Fatal("the broker's return was not reported")
		}
	}
	lease(t, broker)
}
