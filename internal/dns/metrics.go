package dns

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Publish results in strait_dns_publish_total.
const (
	resultSuccess = "success"
	resultError   = "error"
)

// Stages of a sync that can fail, in strait_dns_sync_errors_total.
const (
	stageSource = "source"
	stageZone   = "zone"
)

// RunnerMetrics are the runner's metrics: what it publishes and how its syncs fail.
// Publishers are labelled by name; there are as many as are configured (one or two).
type RunnerMetrics struct {
	publishes   *prometheus.CounterVec
	lastSuccess *prometheus.GaugeVec
	syncErrors  *prometheus.CounterVec
}

// NewRunnerMetrics creates the runner's metrics and registers them with reg.
func NewRunnerMetrics(reg prometheus.Registerer) (*RunnerMetrics, error) {
	m := &RunnerMetrics{
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_publish_total",
			Help: "Publishes of the records to a target (RFC 2136 server, DNSEndpoint namespace), by result: success or error."},
			[]string{"target", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "strait_dns_publish_last_success_timestamp_seconds",
			Help: "When the records were last published to a target successfully (Unix time)."},
			[]string{"target"}),
		syncErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_sync_errors_total",
			Help: "Syncs that changed nothing because a stage failed: source (the federated services could not be read) or zone (they were refused as invalid); the last good records stay served and published."},
			[]string{"stage"}),
	}
	for _, stage := range []string{stageSource, stageZone} {
		m.syncErrors.WithLabelValues(stage)
	}
	for _, c := range []prometheus.Collector{m.publishes, m.lastSuccess, m.syncErrors} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// published records a publish to target.
func (m *RunnerMetrics) published(target string, err error, now time.Time) {
	if m == nil {
		return
	}
	if err != nil {
		m.publishes.WithLabelValues(target, resultError).Inc()
		// Both series exist from the first publish on, so rate() sees the first change.
		m.publishes.WithLabelValues(target, resultSuccess)
		return
	}
	m.publishes.WithLabelValues(target, resultSuccess).Inc()
	m.publishes.WithLabelValues(target, resultError)
	m.lastSuccess.WithLabelValues(target).Set(float64(now.Unix()))
}

// failed records a sync that failed at stage.
func (m *RunnerMetrics) failed(stage string) {
	if m != nil {
		m.syncErrors.WithLabelValues(stage).Inc()
	}
}
