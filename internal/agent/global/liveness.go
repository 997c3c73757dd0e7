package global

import (
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"

	"github.com/strait-io/strait/internal/agent/heartbeat"
	"github.com/strait-io/strait/internal/clusterset"
)

// DefaultGracePeriod is how long after its lease expired a member's endpoints are still
// served. The lease lasts three heartbeats, so a single missed renewal never withdraws
// anything; together a member is withdrawn about 25 s after its agent stopped.
const DefaultGracePeriod = 10 * time.Second

// LeaseLiveness decides liveness from the members' heartbeat leases on the broker.
type LeaseLiveness struct {
	Leases coordinationlisters.LeaseLister
	Grace  time.Duration
	Now    func() time.Time
}

// Alive implements Liveness. A member without a lease (an agent that never ran, or a
// broker that was just restored) counts as alive: withdrawing on missing data would turn a
// broker hiccup into an outage.
func (l LeaseLiveness) Alive(cluster string) (bool, time.Duration) {
	lease, err := l.Leases.Leases(clusterset.MemberNamespace(cluster)).Get(heartbeat.LeaseName)
	if apierrors.IsNotFound(err) || err != nil || lease.Spec.RenewTime == nil || lease.Spec.LeaseDurationSeconds == nil {
		return true, 0
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	return Expiry(lease.Spec.RenewTime.Time, time.Duration(*lease.Spec.LeaseDurationSeconds)*time.Second, l.Grace, now())
}

// Expiry says whether a lease renewed at renew, lasting duration, still counts after grace,
// and how long until that changes (0 once it has expired).
func Expiry(renew time.Time, duration, grace time.Duration, now time.Time) (alive bool, remaining time.Duration) {
	deadline := renew.Add(duration + grace)
	if now.After(deadline) {
		return false, 0
	}
	return true, deadline.Sub(now) + 100*time.Millisecond
}
