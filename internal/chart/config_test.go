package chart

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/strait-io/strait/charts"
	"github.com/strait-io/strait/config/crd"
)

// config/ is generated from the chart; a chart change without `make manifests` leaves it
// behind, and kubectl apply -k users would run something else than helm users.
func TestConfigIsTheChartsRender(t *testing.T) {
	files, err := ConfigFiles()
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join("..", "..", "config")
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(config, name))
		if err != nil {
			t.Errorf("config/%s: %v; run `make manifests`", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("config/%s differs from the chart's render; run `make manifests` and commit config/", name)
		}
	}
	stale, err := StaleConfigFiles(os.DirFS(config), files)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stale {
		t.Errorf("config/%s is not rendered from the chart; run `make manifests` (it removes it) or add it to the chart", name)
	}
}

// The CRDs `strait join` installs (config/crd, embedded) are the chart's.
func TestCRDsAreTheCharts(t *testing.T) {
	for name, data := range map[string][]byte{
		"about.k8s.io_clusterproperties.yaml":       crd.ClusterPropertyCRD,
		"multicluster.x-k8s.io_serviceexports.yaml": crd.ServiceExportCRD,
		"multicluster.x-k8s.io_serviceimports.yaml": crd.ServiceImportCRD,
		"strait.io_externalservices.yaml":           crd.ExternalServiceCRD,
	} {
		chartCRD, err := charts.Strait.ReadFile("strait/crds/" + name)
		if err != nil {
			t.Errorf("charts/strait/crds/%s: %v", name, err)
			continue
		}
		if !bytes.Equal(chartCRD, data) {
			t.Errorf("config/crd/%s differs from charts/strait/crds/%s; run `make manifests`", name, name)
		}
	}
}
