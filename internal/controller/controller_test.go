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
