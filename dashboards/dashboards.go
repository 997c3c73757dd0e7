// Package dashboards holds Strait's Grafana dashboard (strait.json): panels for every
// metric the agent, the federation controller and strait dns register, over a Prometheus
// data source chosen with the ${datasource} variable. Import it in Grafana as it is; its
// test keeps it in line with the metrics (docs/metrics.md describes them).
package dashboards

import _ "embed"

// Strait is the dashboard's JSON.
//
//go:embed strait.json
var Strait []byte
