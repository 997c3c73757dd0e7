// Package livenessmetrics exports a reader's liveness view (package liveness) as
// Prometheus gauges: whether the broker answers, whether withdrawals are frozen, each
// member's verdict and how long ago its lease was seen renewed. The agent and strait dns
// both report their own view with it.
package livenessmetrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/strait-io/strait/internal/liveness"
)

var (
	brokerReachable = prometheus.NewDesc("strait_broker_reachable", "1 while the broker answers this component, 0 while it does not.", nil, nil)
	frozen          = prometheus.NewDesc("strait_withdrawals_frozen", "1 while nothing learned from the broker may be withdrawn (broker unreachable, or most members silent at once).", nil, nil)
	memberState     = prometheus.NewDesc("strait_member_state", "1 for each member's current verdict (Alive, Held, Withdrawn).", []string{"cluster", "state"}, nil)
	renewalAge      = prometheus.NewDesc("strait_member_last_renewal_seconds", "Seconds since this component last observed the member's lease being renewed (its own clock).", []string{"cluster"}, nil)
)

// Collector exports the view that view returns; when it returns false (no view yet, or a
// standby replica) it exports nothing.
func Collector(view func() (liveness.View, bool)) prometheus.Collector { return collector{view} }

type collector struct{ view func() (liveness.View, bool) }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{brokerReachable, frozen, memberState, renewalAge} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	v, ok := c.view()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(brokerReachable, prometheus.GaugeValue, boolValue(v.Broker.Reachable))
	ch <- prometheus.MustNewConstMetric(frozen, prometheus.GaugeValue, boolValue(v.Frozen))
	for _, m := range v.Members {
		for _, s := range []liveness.State{liveness.Alive, liveness.Held, liveness.Withdrawn} {
			ch <- prometheus.MustNewConstMetric(memberState, prometheus.GaugeValue, boolValue(m.State == s), m.ID, string(s))
		}
		if !m.LastRenewalObserved.IsZero() {
			ch <- prometheus.MustNewConstMetric(renewalAge, prometheus.GaugeValue, v.Now.Sub(m.LastRenewalObserved).Seconds(), m.ID)
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
