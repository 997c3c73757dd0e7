// Package clusterview makes the agent's view of the clusterset visible: which members it
// serves, holds or withdrew, and whether the broker is reachable or withdrawals are frozen.
// It records an Event for each change, keeps the view in a ConfigMap of the member's
// strait-system namespace (what `strait status` shows), and exports it as metrics.
package clusterview

import (
	"context"
	"encoding/json"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/livenessmetrics"
)

// Event reasons, on the member's ClusterProperty cluster.clusterset.k8s.io.
const (
	EventMemberWithdrawn   = "MemberWithdrawn"
	EventMemberAlive       = "MemberAlive"
	EventWithdrawalsFrozen = "WithdrawalsFrozen"
	EventWithdrawalsResume = "WithdrawalsResumed"
)

// Writer keeps the published view and the events.
type Writer struct {
	Client   kubernetes.Interface
	Identity string
	Recorder record.EventRecorder
	// Subject is what events are recorded on.
	Subject *corev1.ObjectReference
}

// Write stores the view in the ConfigMap, creating it when missing.
func (w *Writer) Write(ctx context.Context, v liveness.View) error {
	data, err := json.Marshal(liveness.Published{WrittenAt: v.Now, Identity: w.Identity, View: v})
	if err != nil {
		return err
	}
	cms := w.Client.CoreV1().ConfigMaps(clusterset.SystemNamespace)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: liveness.ViewConfigMap, Namespace: clusterset.SystemNamespace,
			Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}},
		Data: map[string]string{liveness.ViewKey: string(data)},
	}
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = cms.Create(ctx, cm, metav1.CreateOptions{})
	}
	return err
}

// Record records an Event for each change and for the freeze starting or ending.
func (w *Writer) Record(prev, v liveness.View, changes []liveness.Change) {
	if w.Recorder == nil {
		return
	}
	for _, c := range changes {
		switch {
		case c.To == liveness.Withdrawn:
			w.Recorder.Eventf(w.Subject, corev1.EventTypeWarning, EventMemberWithdrawn, "Member %s withdrawn from imports, global Services and federation: %s", c.ID, c.Reason)
		case c.To == liveness.Alive && c.From == liveness.Withdrawn:
			w.Recorder.Eventf(w.Subject, corev1.EventTypeNormal, EventMemberAlive, "Member %s renews its lease again; its endpoints are served", c.ID)
		}
	}
	switch {
	case v.Frozen && v.FrozenReason != prev.FrozenReason:
		w.Recorder.Eventf(w.Subject, corev1.EventTypeWarning, EventWithdrawalsFrozen, "Nothing learned from the broker is withdrawn: %s", v.FrozenReason)
	case !v.Frozen && prev.Frozen:
		w.Recorder.Event(w.Subject, corev1.EventTypeNormal, EventWithdrawalsResume, "The broker is reachable again; withdrawals resume once a full lease period has been watched")
	}
}

// Setup publishes the agent's view: Events and the ConfigMap whenever a verdict or the
// freeze changes, and only then (a view rewritten on a timer would be a write every few
// seconds per cluster for nothing). Its metrics are the agent's Collector, registered once
// per process.
func Setup(e *env.Env) error {
	w := &Writer{
		Client: e.Member.Kube, Identity: e.Settings.Identity, Recorder: e.Recorder,
		Subject: &corev1.ObjectReference{APIVersion: "about.k8s.io/v1alpha1", Kind: "ClusterProperty", Name: clusterset.ClusterIDProperty},
	}
	changed := make(chan liveness.View, 1)
	var prev liveness.View
	e.OnLiveness(func(v liveness.View, changes []liveness.Change) {
		w.Record(prev, v, changes)
		prev = v
		select { // keep only the latest view for the writer
		case <-changed:
		default:
		}
		changed <- v
	})
	e.Manager.Go("cluster view", func(ctx context.Context) error {
		var pending *liveness.View
		retry := time.NewTimer(0)
		<-retry.C
		for {
			select {
			case <-ctx.Done():
				return nil
			case v := <-changed:
				pending = &v
			case <-retry.C:
			}
			if pending == nil {
				continue
			}
			if err := w.Write(ctx, *pending); err != nil {
				if ctx.Err() == nil {
					klog.FromContext(ctx).V(2).Info("Writing the agent's view; retrying", "configMap", clusterset.SystemNamespace+"/"+liveness.ViewConfigMap, "err", err)
					retry.Reset(5 * time.Second)
				}
				continue
			}
			pending = nil
		}
	})
	return nil
}

// Collector exports the verdicts of the tracker current returns (nil: nothing, as on a
// standby replica).
func Collector(current func() *liveness.Tracker) prometheus.Collector {
	return livenessmetrics.Collector(func() (liveness.View, bool) {
		t := current()
		if t == nil {
			return liveness.View{}, false
		}
		return t.View(), true
	})
}
