package dns

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
)

type fakeSource struct {
	services []zone.Service
	err      error
}

func (f *fakeSource) Services(context.Context) ([]zone.Service, error) { return f.services, f.err }

type fakePublisher struct {
	calls      [][]zone.Record
	allowEmpty []bool
	err        error
}

func (f *fakePublisher) Name() string { return "fake" }
func (f *fakePublisher) Publish(_ context.Context, rs []zone.Record, allowEmpty bool) error {
	f.calls = append(f.calls, rs)
	f.allowEmpty = append(f.allowEmpty, allowEmpty)
	return f.err
}

func svc(healthy bool) []zone.Service {
	return []zone.Service{{Namespace: "n", Name: "s", Federation: "f", Shards: []zone.Shard{
		{Cluster: "c1", Region: "r", Zone: "z", Healthy: healthy, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
	}}}
}

func TestRunnerNeverRemovesOnErrorOrEmpty(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(server.Config{Zone: zone.Config{Domain: "example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{services: svc(true)}
	pub := &fakePublisher{}
	r := &Runner{Source: src, Server: srv, Publishers: []Publisher{pub}}
	answer := func() zone.Rcode {
		res := srv.Zone().Answer("s.n.f.svc.z.r.example.com.", zone.TypeA, zone.Location{})
		if len(res.Answer) == 0 {
			return -1
		}
		return res.Rcode
	}

	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if answer() != zone.RcodeSuccess || len(pub.calls) != 1 || len(pub.calls[0]) != 3 {
		t.Fatalf("first sync: answer %v, calls %d", answer(), len(pub.calls))
	}
	// Unchanged: the publisher is not called again.
	if err := r.Sync(ctx); err != nil || len(pub.calls) != 1 {
		t.Fatalf("unchanged sync: %v, %d calls", err, len(pub.calls))
	}
	// A source error changes nothing.
	src.err = errors.New("broker down")
	if err := r.Sync(ctx); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Errorf("source error: %v", err)
	}
	if answer() != zone.RcodeSuccess || len(pub.calls) != 1 {
		t.Error("a source error changed the served or published records")
	}
	// An empty list changes nothing either.
	src.err, src.services = nil, nil
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if answer() != zone.RcodeSuccess || len(pub.calls) != 1 {
		t.Error("an empty list changed the served or published records")
	}
	// An invalid list is rejected whole.
	bad := svc(false)
	bad[0].Name = "Not_A_Label"
	src.services = bad
	if err := r.Sync(ctx); err == nil || !strings.Contains(err.Error(), `"Not_A_Label"`) {
		t.Errorf("invalid list: %v", err)
	}
	if answer() != zone.RcodeSuccess || len(pub.calls) != 1 {
		t.Error("an invalid list changed the served or published records")
	}
	// A change is served and published; a failed publish is retried on the next sync.
	src.services = svc(false)
	pub.err = errors.New("server unreachable")
	if err := r.Sync(ctx); err == nil || !strings.Contains(err.Error(), "publishing to fake: server unreachable") {
		t.Errorf("failed publish: %v", err)
	}
	if res := srv.Zone().Answer("s.n.f.svc.z.r.example.com.", zone.TypeA, zone.Location{}); res.Answer[0].Type != zone.TypeCNAME {
		t.Errorf("change not served: %v", res.Answer)
	}
	pub.err = nil
	if err := r.Sync(ctx); err != nil || len(pub.calls) != 3 {
		t.Errorf("retry: %v, %d calls", err, len(pub.calls))
	}
	// With AllowEmpty an empty list empties the zone and is handed on with allowEmpty.
	r.AllowEmpty, src.services = true, nil
	if err := r.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if answer() != -1 || len(pub.calls) != 4 || len(pub.calls[3]) != 0 || !pub.allowEmpty[3] {
		t.Errorf("allowed empty: answer %v calls %d", answer(), len(pub.calls))
	}
}

type notifySource struct {
	fakeSource
	ch    chan struct{}
	reads atomic.Int32
}

func (n *notifySource) Changed() <-chan struct{} { return n.ch }
func (n *notifySource) Services(ctx context.Context) ([]zone.Service, error) {
	n.reads.Add(1)
	return n.fakeSource.Services(ctx)
}

func TestRunnerSyncsOnNotification(t *testing.T) {
	srv, err := server.New(server.Config{Zone: zone.Config{Domain: "example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	src := &notifySource{fakeSource: fakeSource{services: svc(true)}, ch: make(chan struct{})}
	r := &Runner{Source: src, Server: srv, Interval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	// The runner takes a notification only between syncs: once the second one is taken, the
	// sync the first one triggered is over (the interval, an hour, triggers none).
	src.ch <- struct{}{}
	src.ch <- struct{}{}
	if n := src.reads.Load(); n < 2 {
		t.Errorf("%d reads of the source after a notification, want 2", n)
	}
}

func TestFileSource(t *testing.T) {
	path := filepath.Join(t.TempDir(), "services.yaml")
	in := []zone.Service{{Namespace: "shop", Name: "web", Federation: "fed", TTL: time.Minute, Shards: []zone.Shard{
		{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: true,
			Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")}, LocalAddresses: []netip.Addr{netip.MustParseAddr("10.96.0.10")}},
		{Cluster: "c2"},
	}}}
	b, err := FormatFile(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := FileSource{Path: path}.Services(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n%+v\nwant:\n%+v\nfile:\n%s", out, in, b)
	}
	for _, c := range []struct{ doc, want string }{
		{"services:\n- name: a\n  typo: 1\n", `unknown field "typo"`},
		{"services:\n- name: a\n  ttl: soon\n", "ttl: time: invalid duration"},
		{"services:\n- name: a\n  shards:\n  - addresses: [300.1.1.1]\n", "300.1.1.1"},
	} {
		if _, err := ParseFile([]byte(c.doc)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseFile(%q): %v, want %q", c.doc, err, c.want)
		}
	}
	if _, err := (FileSource{Path: filepath.Join(t.TempDir(), "missing")}).Services(context.Background()); err == nil {
		t.Error("a missing file read without error")
	}
}

func TestDefaultOwner(t *testing.T) {
	broker := func(uid string) *fake.Clientset {
		return fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: types.UID(uid)}})
	}
	ctx := context.Background()
	a, err := DefaultOwner(ctx, broker("0b6e6f0e-1111"), "example.com")
	if err != nil {
		t.Fatal(err)
	}
	same, _ := DefaultOwner(ctx, broker("0b6e6f0e-1111"), "Example.com.")
	otherSet, _ := DefaultOwner(ctx, broker("7c1d2a9f-2222"), "example.com")
	otherDomain, _ := DefaultOwner(ctx, broker("0b6e6f0e-1111"), "fed.example.com")
	if a != same || a == otherSet || a == otherDomain || otherSet == otherDomain {
		t.Errorf("owners: %s %s %s %s", a, same, otherSet, otherDomain)
	}
	if !strings.HasPrefix(a, "strait-") || len(a) != len("strait-")+16 || len(validation.IsValidLabelValue(a)) > 0 {
		t.Errorf("owner %q is not a label value of the expected form", a)
	}
	if _, err := DefaultOwner(ctx, fake.NewClientset(), "example.com"); err == nil || !strings.Contains(err.Error(), "give --owner") {
		t.Errorf("no kube-system: %v", err)
	}
}

// TestRunnerMetrics: an operator sees publishes by target and result, when the last one
// succeeded, and syncs that failed, by stage.
func TestRunnerMetrics(t *testing.T) {
	ctx := context.Background()
	srv, err := server.New(server.Config{Zone: zone.Config{Domain: "example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	metrics, err := NewRunnerMetrics(srv.Metrics())
	if err != nil {
		t.Fatal(err)
	}
	src := &fakeSource{services: svc(true)}
	pub := &fakePublisher{err: errors.New("server unreachable")}
	r := &Runner{Source: src, Server: srv, Publishers: []Publisher{pub}, Metrics: metrics}
	if r.Ready() == nil {
		t.Error("ready before the source was read")
	}
	_ = r.Sync(ctx) // the publish fails
	pub.err = nil
	_ = r.Sync(ctx) // retried: succeeds
	src.err = errors.New("broker down")
	_ = r.Sync(ctx)
	src.err, src.services = nil, []zone.Service{{Namespace: "n", Name: "Not_A_Label", Federation: "f"}}
	_ = r.Sync(ctx)
	if err := r.Ready(); err != nil {
		t.Errorf("not ready after the source was read: %v", err)
	}
	want := `
# HELP strait_dns_publish_total Publishes of the records to a target (RFC 2136 server, DNSEndpoint namespace), by result: success or error.
# TYPE strait_dns_publish_total counter
strait_dns_publish_total{result="error",target="fake"} 1
strait_dns_publish_total{result="success",target="fake"} 1
# HELP strait_dns_sync_errors_total Syncs that changed nothing because a stage failed: source (the federated services could not be read) or zone (they were refused as invalid); the last good records stay served and published.
# TYPE strait_dns_sync_errors_total counter
strait_dns_sync_errors_total{stage="source"} 1
strait_dns_sync_errors_total{stage="zone"} 1
# HELP strait_dns_zone_records A, AAAA and CNAME records of the global, region and zone names served (what publishers keep in other DNS servers).
# TYPE strait_dns_zone_records gauge
strait_dns_zone_records 3
`
	if err := testutil.GatherAndCompare(srv.Metrics(), strings.NewReader(want),
		"strait_dns_publish_total", "strait_dns_sync_errors_total", "strait_dns_zone_records"); err != nil {
		t.Error(err)
	}
	if n, _ := testutil.GatherAndCount(srv.Metrics(), "strait_dns_publish_last_success_timestamp_seconds"); n != 1 {
		t.Errorf("%d last-success timestamps, want 1", n)
	}
}
