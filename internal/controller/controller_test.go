package controller

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"
)

// conflicting fails its first reconcile of each key with a (wrapped) write conflict.
type conflicting struct {
	mu   sync.Mutex
	seen map[string]int
	done chan struct{}
}

func (c *conflicting) Reconcile(_ context.Context, key string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[key]++
	if c.seen[key] == 1 {
		err := apierrors.NewConflict(schema.GroupResource{Resource: "serviceimports"}, key, fmt.Errorf("the object has been modified"))
		return fmt.Errorf("writing the status: %w", err)
	}
	close(c.done)
	return nil
}

// TestConflictsAreRetriedQuietly: a write conflict is retried, counted as a conflict and
// logged only at V(2), never as an error.
func TestConflictsAreRetriedQuietly(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	var lock sync.Mutex
	logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(1), textlogger.Output(writerFunc(func(p []byte) (int, error) {
		lock.Lock()
		defer lock.Unlock()
		return buf.Write(p)
	}))))
	ctx, cancel := context.WithCancel(klog.NewContext(context.Background(), logger))
	defer cancel()
	l := New("test", m)
	r := &conflicting{seen: map[string]int{}, done: make(chan struct{})}
	l.Enqueue("ns/a")
	go l.Run(ctx, 1, r)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the key was not retried")
	}
	cancel()
	if n := testutil.ToFloat64(m.reconciles.WithLabelValues("test", "conflict")); n != 1 {
		t.Errorf("conflicts counted %v, want 1", n)
	}
	if n := testutil.ToFloat64(m.reconciles.WithLabelValues("test", "error")); n != 0 {
		t.Errorf("errors counted %v, want 0", n)
	}
	lock.Lock()
	defer lock.Unlock()
	if s := buf.String(); strings.Contains(s, "conflict") || strings.Contains(s, "failed") {
		t.Errorf("logged at V(1): %s", s)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// failing fails every reconcile with err until it has failed n times.
type failing struct {
	err  error
	n    int
	mu   sync.Mutex
	done chan struct{}
}

func (f *failing) Reconcile(context.Context, string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		return nil
	}
	f.n--
	if f.n == 0 {
		defer close(f.done)
	}
	return f.err
}

// TestErrorsAreCountedByReason: an operator sees why reconciles fail (RBAC, the API server
// away) in strait_reconcile_errors_total without reading logs.
func TestErrorsAreCountedByReason(t *testing.T) {
	gr := schema.GroupResource{Resource: "services"}
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("updating: %w", apierrors.NewForbidden(gr, "web", fmt.Errorf("no RBAC"))), ReasonForbidden},
		{apierrors.NewServiceUnavailable("the broker restarts"), ReasonUnavailable},
		{apierrors.NewTimeoutError("slow", 1), ReasonTimeout},
		{apierrors.NewInvalid(schema.GroupKind{Kind: "Service"}, "web", nil), ReasonInvalid},
		{apierrors.NewNotFound(gr, "web"), ReasonNotFound},
		{apierrors.NewAlreadyExists(gr, "web"), ReasonConflict},
		{fmt.Errorf("the cache is not synced"), ReasonOther},
	} {
		t.Run(tc.want, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m, err := NewMetrics(reg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l := New("import", m)
			r := &failing{err: tc.err, n: 2, done: make(chan struct{})}
			l.Enqueue("ns/web")
			go l.Run(ctx, 1, r)
			select {
			case <-r.done:
			case <-time.After(10 * time.Second):
				t.Fatal("the key was not retried")
			}
			// The second failure is counted once Reconcile returned.
			deadline := time.Now().Add(10 * time.Second)
			for testutil.ToFloat64(m.errors.WithLabelValues("import", tc.want)) != 2 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if n := testutil.ToFloat64(m.errors.WithLabelValues("import", tc.want)); n != 2 {
				t.Errorf(`strait_reconcile_errors_total{reconciler="import",reason=%q} = %v, want 2`, tc.want, n)
			}
			if n := testutil.CollectAndCount(m.errors); n != 1 {
				t.Errorf("%d series of strait_reconcile_errors_total, want only reason %q", n, tc.want)
			}
		})
	}
}
