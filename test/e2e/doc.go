// Package e2e holds end-to-end scenarios across several lab clusters: real API servers,
// CoreDNS and kube-proxy, with dig and curl run through `strait lab exec`.
package e2e
