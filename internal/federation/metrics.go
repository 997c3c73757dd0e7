package federation

import (
	"github.com/prometheus/client_golang/prometheus"
)

// healthReasons are the reasons a shard's health can have (ShardHealth, Aggregate): the
// values of strait_federation_shards' reason label, every one reported, zero or not.
var healthReasons = []string{ReasonHealthy, ReasonShardMissing, ReasonNoReadyEndpoints, ReasonMemberDown,
	ReasonShardConflict, ReasonNodePortMismatch, ReasonNamespaceNotAllowed}

var (
	servicesDesc = prometheus.NewDesc("strait_federation_services",
		"Federated Services on the broker.", nil, nil)
	unservedDesc = prometheus.NewDesc("strait_federation_services_without_healthy_shards",
		"Federated Services none of whose shards is healthy: their global DNS name answers no address.", nil, nil)
	shardsDesc = prometheus.NewDesc("strait_federation_shards",
		"Shards of federated Services in the clusters they are placed in, by health: Healthy, or the reason they are not (ShardMissing, NoReadyEndpoints, MemberDown, ShardConflict, NodePortMismatch, NamespaceNotAllowed).",
		[]string{"reason"}, nil)
)

// Collector reports the federated Services and their shards by health, as the status
// writer computes them, from a snapshot taken at each scrape.
type Collector struct {
	Snapshot func() (*Snapshot, error)
}

// Describe implements prometheus.Collector.
func (c Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- servicesDesc
	ch <- unservedDesc
	ch <- shardsDesc
}

// Collect implements prometheus.Collector. Without a snapshot (caches not synced) it
// reports nothing rather than zeros.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	snap, err := c.Snapshot()
	if err != nil {
		return
	}
	shards := make(map[string]int, len(healthReasons))
	unserved := 0
	for _, st := range AggregateAll(snap) {
		healthy := false
		for _, sh := range st.Shards {
			shards[sh.Reason]++
			healthy = healthy || sh.Healthy
		}
		if !healthy {
			unserved++
		}
	}
	ch <- prometheus.MustNewConstMetric(servicesDesc, prometheus.GaugeValue, float64(len(snap.Services)))
	ch <- prometheus.MustNewConstMetric(unservedDesc, prometheus.GaugeValue, float64(unserved))
	for _, r := range healthReasons {
		ch <- prometheus.MustNewConstMetric(shardsDesc, prometheus.GaugeValue, float64(shards[r]), r)
	}
}
