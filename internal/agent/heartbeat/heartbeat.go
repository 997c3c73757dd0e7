// Package heartbeat keeps a member's Lease on the broker fresh. Other members, strait dns
// and the federation status writer judge from its renewals, on their own clocks, whether the
// member's agent is alive (package liveness). Every replica of the agent renews it, leader or
// not, from the moment it starts: a restart, a leader change or the member's own API server
// being down is not taken for the member's death.
package heartbeat

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
)

// Reporter is told how each renewal went: a renewal is a request to the broker, so it
// tells whether the broker is reachable.
type Reporter interface {
	BrokerReachable()
	BrokerUnreachable(err error)
}

// Run renews the Lease every interval until ctx ends, the first time at once. Failures are
// logged and retried: the broker being down must not stop the agent.
func Run(ctx context.Context, broker kubernetes.Interface, clusterID string, interval time.Duration, r Reporter) {
	ns := clusterset.MemberNamespace(clusterID)
	logger := klog.FromContext(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	failing := false
	for {
		rctx, cancel := context.WithTimeout(ctx, interval)
		err := Renew(rctx, broker, ns, clusterID, interval)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			if !failing {
				logger.Error(err, "Renewing the member lease on the broker", "namespace", ns)
			}
			failing = true
			if r != nil {
				r.BrokerUnreachable(err)
			}
		default:
			if failing {
				logger.Info("Member lease renewed again", "namespace", ns)
			}
			failing = false
			if r != nil {
				r.BrokerReachable()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// Renew creates or renews the Lease once. The renewTime it writes is this member's clock;
// readers never compare it with theirs, only notice that it changed.
func Renew(ctx context.Context, broker kubernetes.Interface, ns, clusterID string, interval time.Duration) error {
	now := metav1.NewMicroTime(time.Now())
	duration := ptr.To(int32((3 * interval).Seconds()))
	client := broker.CoordinationV1().Leases(ns)
	lease, err := client.Get(ctx, liveness.LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: liveness.LeaseName, Namespace: ns,
				Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue, clusterset.ClusterIDLabel: clusterID}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(clusterID),
				LeaseDurationSeconds: duration,
				AcquireTime:          &now,
				RenewTime:            &now,
			},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	lease.Spec.RenewTime = &now
	lease.Spec.HolderIdentity = ptr.To(clusterID)
	lease.Spec.LeaseDurationSeconds = duration
	_, err = client.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}
