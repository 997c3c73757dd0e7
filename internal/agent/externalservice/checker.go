package externalservice

import (
	"context"
	"encoding/json"
	"maps"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/strait-io/strait/api/v1alpha1"
	es "github.com/strait-io/strait/internal/externalservice"
	"github.com/strait-io/strait/internal/externalservice/probe"
)

// Prober runs one health check. probe.Prober implements it; the lab passes one that dials
// inside the cluster's network namespace, because that is where its addresses live.
type Prober interface {
	TCP(ctx context.Context, address string) error
	HTTP(ctx context.Context, address, path string) error
}

// Checker runs the health checks of every ExternalService that has one, each on its own
// interval, and keeps the targets' states in memory. When a target's health changes it
// calls notify with the ExternalService's key, so the reconciler rewrites its endpoints.
// The states are lost when the agent restarts: targets start Unknown (in use) again, which
// is the safe side for traffic.
type Checker struct {
	ctx    context.Context
	prober Prober
	notify func(key string)

	mu      sync.Mutex
	watches map[string]*watch
}

// watch is the running checks of one ExternalService.
type watch struct {
	fingerprint string
	cancel      context.CancelFunc

	mu     sync.Mutex
	states map[string]es.State // by TargetAddress
}

// NewChecker returns a checker whose checks run until ctx ends. A nil prober dials
// directly.
func NewChecker(ctx context.Context, prober Prober, notify func(key string)) *Checker {
	if prober == nil {
		prober = probe.Prober{}
	}
	return &Checker{ctx: ctx, prober: prober, notify: notify, watches: map[string]*watch{}}
}

// target is one check: the address health is keyed by and the address dialled.
type target struct {
	Address string `json:"address"`
	Probe   string `json:"probe"`
}

// Ensure makes the checks of key match spec (defaults applied, with a health check) and
// returns the targets' current states. Targets that stay keep their state when the checks
// change.
func (c *Checker) Ensure(key string, spec v1alpha1.ExternalServiceSpec) map[string]es.State {
	var targets []target
	for _, t := range spec.Targets {
		targets = append(targets, target{Address: es.TargetAddress(spec, t), Probe: es.ProbeAddress(spec, t)})
	}
	fp, _ := json.Marshal(struct {
		Targets []target
		Check   *v1alpha1.HealthCheck
	}{targets, spec.HealthCheck})
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches[key]
	if w != nil && w.fingerprint == string(fp) {
		return w.snapshot()
	}
	states := map[string]es.State{}
	if w != nil {
		w.stop()
		old := w.snapshot()
		for _, t := range targets {
			if s, ok := old[t.Address]; ok {
				states[t.Address] = s
			}
		}
	}
	for _, t := range targets {
		if _, ok := states[t.Address]; !ok {
			states[t.Address] = es.NewState()
		}
	}
	ctx, cancel := context.WithCancel(c.ctx)
	w = &watch{fingerprint: string(fp), cancel: cancel, states: states}
	c.watches[key] = w
	go c.run(ctx, key, w, targets, *spec.HealthCheck)
	return w.snapshot()
}

// Stop ends the checks of key, if any.
func (c *Checker) Stop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if w := c.watches[key]; w != nil {
		w.stop()
		delete(c.watches, key)
	}
}

// stop cancels the checks without waiting: a round in flight is dropped, never recorded.
func (w *watch) stop() { w.cancel() }

func (w *watch) snapshot() map[string]es.State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.states)
}

// run checks every target once at once, then every interval, until ctx ends.
func (c *Checker) run(ctx context.Context, key string, w *watch, targets []target, hc v1alpha1.HealthCheck) {
	logger := klog.FromContext(ctx).WithValues("externalService", key)
	interval := time.Duration(hc.IntervalSeconds) * time.Second
	timeout := time.Duration(hc.TimeoutSeconds) * time.Second
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	first := true
	for {
		results := make([]error, len(targets))
		var wg sync.WaitGroup
		for i, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				if hc.HTTP != nil {
					results[i] = c.prober.HTTP(pctx, t.Probe, hc.HTTP.Path)
				} else {
					results[i] = c.prober.TCP(pctx, t.Probe)
				}
			}()
		}
		wg.Wait()
		if ctx.Err() != nil {
			return
		}
		changed := first
		w.mu.Lock()
		for i, t := range targets {
			old := w.states[t.Address]
			s := es.Observe(old, results[i], hc)
			w.states[t.Address] = s
			if s.Health != old.Health {
				changed = true
				logger.Info("Target health changed", "target", t.Address, "from", old.Health, "to", s.Health, "message", s.Message)
			}
		}
		w.mu.Unlock()
		first = false
		if changed {
			c.notify(key)
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}
