// Package charts embeds Strait's Helm chart (charts/strait), so `strait join --install` and
// `make manifests` render the very chart that `helm install` installs; internal/chart
// renders it.
package charts

import "embed"

// Strait is the chart's directory tree, rooted at "strait".
//
//go:embed all:strait
var Strait embed.FS
