// Package dns wires strait dns together: a Source of federated services feeds the
// authoritative server (internal/dns/server) and the publishers (internal/dns/publish/...),
// all computed by the pure zone model (internal/dns/zone).
//
// A failing or empty read never removes anything: after a Source error the server keeps
// answering from the last good snapshot and nothing is published; an empty list is treated
// the same way unless AllowEmpty says an empty federation is real.
package dns

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/dns/zone"
)

// Source lists the federated services and the health of their shards. A list it returns
// must be complete: the runner serves and publishes exactly it.
type Source interface {
	Services(ctx context.Context) ([]zone.Service, error)
}

// Notifier is implemented by sources that know when their services changed (a watch); the
// runner then syncs at once instead of waiting for the next interval.
type Notifier interface {
	Changed() <-chan struct{}
}

// Server is what the runner needs of the DNS server.
type Server interface {
	Update(services []zone.Service) error
	Zone() *zone.Zone
}

// Publisher publishes the records to one DNS system. allowEmpty is passed on from the runner:
// without it a publisher refuses an empty set that would delete what it published.
type Publisher interface {
	Name() string
	Publish(ctx context.Context, records []zone.Record, allowEmpty bool) error
}

// DefaultInterval is how often the source is read when it does not notify changes.
const DefaultInterval = 5 * time.Second

// DefaultResync is how often publishers are re-run with unchanged records, to repair drift
// (records deleted by hand at the DNS server).
const DefaultResync = 5 * time.Minute

// Runner keeps the server and the publishers in line with the source.
type Runner struct {
	Source     Source
	Server     Server
	Publishers []Publisher
	// Interval between reads of the source; 0 means DefaultInterval.
	Interval time.Duration
	// Resync re-publishes unchanged records this often; 0 means DefaultResync.
	Resync time.Duration
	// AllowEmpty: an empty list from the source is real and empties the zone.
	AllowEmpty bool
	// Metrics, when set, count publishes and failed syncs.
	Metrics *RunnerMetrics

	published map[string]publishState
	hadAny    bool
	read      atomic.Bool
}

// Ready reports whether the source was read once: from then on the server answers what
// the source holds, not an empty zone.
func (r *Runner) Ready() error {
	if !r.read.Load() {
		return errors.New("the federated services have not been read yet")
	}
	return nil
}

type publishState struct {
	hash uint64
	at   time.Time
}

// Run syncs at once, then on every interval and change notification, until ctx ends.
// Sync errors are logged, not returned: the next round tries again.
func (r *Runner) Run(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	interval := r.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	var changed <-chan struct{}
	if n, ok := r.Source.(Notifier); ok {
		changed = n.Changed()
	}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "DNS sync failed; serving and publishing the last good records")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-changed:
		}
	}
}

// Sync reads the source once, updates the server and runs the publishers whose records
// changed (or are due for a resync).
func (r *Runner) Sync(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	services, err := r.Source.Services(ctx)
	if err != nil {
		r.Metrics.failed(stageSource)
		return fmt.Errorf("reading federated services: %w", err)
	}
	if len(services) == 0 && !r.AllowEmpty {
		r.read.Store(true) // an empty federation is served as such until it has services
		if r.hadAny {
			logger.Info("Source returned no services; keeping the records served and published (set AllowEmpty if the federation is empty)")
		}
		return nil
	}
	if err := r.Server.Update(services); err != nil {
		r.Metrics.failed(stageZone)
		return fmt.Errorf("building the zone: %w", err)
	}
	r.read.Store(true)
	r.hadAny = len(services) > 0
	records := r.Server.Zone().Records()
	h := hashRecords(records)
	resync := r.Resync
	if resync <= 0 {
		resync = DefaultResync
	}
	if r.published == nil {
		r.published = map[string]publishState{}
	}
	var errs []error
	for _, p := range r.Publishers {
		last, ok := r.published[p.Name()]
		if ok && last.hash == h && time.Since(last.at) < resync {
			continue
		}
		err := p.Publish(ctx, records, r.AllowEmpty)
		r.Metrics.published(p.Name(), err, time.Now())
		if err != nil {
			delete(r.published, p.Name())
			errs = append(errs, fmt.Errorf("publishing to %s: %w", p.Name(), err))
			continue
		}
		r.published[p.Name()] = publishState{hash: h, at: time.Now()}
		logger.V(2).Info("Published DNS records", "publisher", p.Name(), "records", len(records))
	}
	return errors.Join(errs...)
}

func hashRecords(rs []zone.Record) uint64 {
	h := fnv.New64a()
	for _, r := range rs {
		fmt.Fprintln(h, r.String(), r.Service)
	}
	return h.Sum64()
}

// DefaultOwner is the owner ID of a strait dns that reads the clusterset's broker, when
// --owner is not given: see OwnerID. The broker's kube-system namespace is readable with a
// member's broker credential.
func DefaultOwner(ctx context.Context, broker kubernetes.Interface, domain string) (string, error) {
	ns, err := broker.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the broker's kube-system namespace, whose UID makes the default owner ID (or give --owner): %w", err)
	}
	return OwnerID(string(ns.UID), domain), nil
}

// OwnerID is "strait-" and 16 hex digits of a hash of the clusterset's identity (the UID of
// the broker's kube-system namespace, which lives as long as the broker cluster) and the
// federation domain: two installations, or one installation's two domains, never share an
// owner by default. It is a valid label value and ownership-record owner.
func OwnerID(clustersetUID, domain string) string {
	h := sha256.Sum256([]byte("strait.io/dns-owner/v1\x00" + clustersetUID + "\x00" + strings.ToLower(strings.TrimSuffix(domain, "."))))
	return "strait-" + hex.EncodeToString(h[:8])
}
