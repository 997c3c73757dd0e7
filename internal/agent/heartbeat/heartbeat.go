// Package heartbeat keeps a member's Lease on the broker fresh. Its age tells every other
// member, and `strait status`, whether the member's agent is alive.
package heartbeat

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
)

// LeaseName is the name of the member's Lease in its broker namespace.
const LeaseName = "strait-agent"

// Run renews the Lease every interval until ctx ends. Failures are logged and retried: the
// broker being down must not stop the agent.
func Run(ctx context.Context, broker kubernetes.Interface, clusterID string, interval time.Duration) {
	ns := clusterset.MemberNamespace(clusterID)
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if err := Renew(ctx, broker, ns, clusterID, interval); err != nil {
			klog.FromContext(ctx).Error(err, "Renewing the member lease on the broker", "namespace", ns)
		}
	}, interval)
}

// Renew creates or renews the Lease once.
func Renew(ctx context.Context, broker kubernetes.Interface, ns, clusterID string, interval time.Duration) error {
	now := metav1.NewMicroTime(time.Now())
	client := broker.CoordinationV1().Leases(ns)
	lease, err := client.Get(ctx, LeaseName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = client.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: LeaseName, Namespace: ns,
				Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue, clusterset.ClusterIDLabel: clusterID}},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity:       ptr.To(clusterID),
				LeaseDurationSeconds: ptr.To(int32((3 * interval).Seconds())),
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
	lease.Spec.LeaseDurationSeconds = ptr.To(int32((3 * interval).Seconds()))
	_, err = client.Update(ctx, lease, metav1.UpdateOptions{})
	return err
}
