package controller

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gauge is a collector of one constant gauge, standing for one that reads the caches.
type gauge struct{ desc *prometheus.Desc }

func (g gauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }
func (g gauge) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 1)
}

// TestCollectWhileRunning: a collector given to Collect is scraped while the manager runs
// and gone once it stops, so the next run (a new leadership term) can register its own.
func TestCollectWhileRunning(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := gauge{prometheus.NewDesc("strait_test_things", "Things.", nil, nil)}
	count := func() int {
		n, err := testutil.GatherAndCount(reg, "strait_test_things")
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for run := range 2 {
		m, err := NewManager(Options{Name: "test", Registry: reg})
		if err != nil {
			t.Fatal(err)
		}
		m.Collect(c)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Start(ctx) }()
		for deadline := time.Now().Add(10 * time.Second); count() == 0; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("run %d: the collector was never scraped", run)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		if n := count(); n != 0 {
			t.Errorf("run %d: the collector is still scraped after the manager stopped", run)
		}
	}
}
