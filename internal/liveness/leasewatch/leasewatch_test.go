package leasewatch

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
)

// A client whose shared rate limiter is exhausted (hundreds of informers listing at once)
// must not make the broker look unreachable: the probe and the control client have
// limiters of their own.
func TestProbeIsNotQueuedBehindTheClientsLimiter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			_, _ = w.Write([]byte("ok"))
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"kind":"Lease","apiVersion":"coordination.k8s.io/v1","metadata":{"name":"x"}}`))
		}
	}))
	defer srv.Close()
	// One request a minute, the one token already spent: anything on this limiter waits.
	busy := flowcontrol.NewTokenBucketRateLimiter(1.0/60, 1)
	busy.Accept()
	cfg := &rest.Config{Host: srv.URL, RateLimiter: busy}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error(); err == nil {
		t.Fatal("the test is broken: a request on the exhausted limiter went through")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := Readyz(client.Discovery().RESTClient())(ctx); err != nil {
		t.Fatalf("the probe waited behind the client's own rate limiter and failed: %v", err)
	}

	control, err := kubernetes.NewForConfig(ControlConfig(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := control.CoordinationV1().Leases("ns").Get(ctx, "x", metav1.GetOptions{}); err != nil {
		t.Fatalf("the control client (heartbeat) waited behind the shared rate limiter: %v", err)
	}
}
