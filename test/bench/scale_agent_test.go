package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/agent"
)

// The scale harness runs the member's agent as a process of its own (this test binary,
// re-executed with STRAIT_SCALE_AGENT set), so that its CPU time, heap and RSS are the
// agent's alone, not the lab supervisor's, the generator's or the benchmark's. The agent
// is the product's agent.New with the flags' defaults; the only addition is a transport
// wrapper (agent.Config.WrapTransport) that counts its API requests by cluster, verb and
// status code, and the bytes of the broker's watch streams, served as JSON on
// STRAIT_SCALE_STATS.
func TestMain(m *testing.M) {
	if os.Getenv("STRAIT_SCALE_AGENT") != "" {
		os.Exit(runScaleAgent())
	}
	os.Exit(m.Run())
}

// agentStats is what the agent process reports on /stats.
type agentStats struct {
	CPUSeconds  float64          `json:"cpuSeconds"`
	HeapInuse   uint64           `json:"heapInuse"`
	RSS         uint64           `json:"rss"`
	Requests    map[string]int64 `json:"requests"` // "member|PUT|409" -> count
	WatchBytes  int64            `json:"watchBytes"`
	WatchesOpen int64            `json:"watchesOpen"`
}

// counter counts requests; it is the agent's transport wrapper.
type counter struct {
	memberHost string
	mu         sync.Mutex
	requests   map[string]int64
	watchBytes atomic.Int64
	watches    atomic.Int64
}

type countingRT struct {
	c  *counter
	rt http.RoundTripper
}

func (c countingRT) RoundTrip(req *http.Request) (*http.Response, error) {
	target := "broker"
	if req.URL.Host == c.c.memberHost {
		target = "member"
	}
	resp, err := c.rt.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	watch := req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1"
	verb := req.Method
	if watch {
		verb = "WATCH"
	}
	c.c.mu.Lock()
	c.c.requests[target+"|"+verb+"|"+code]++
	c.c.mu.Unlock()
	if err == nil && watch && target == "broker" {
		c.c.watches.Add(1)
		resp.Body = &countingBody{ReadCloser: resp.Body, c: c.c}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	c      *counter
	closed atomic.Bool
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.c.watchBytes.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error {
	if b.closed.CompareAndSwap(false, true) {
		b.c.watches.Add(-1)
	}
	return b.ReadCloser.Close()
}

func (c *counter) stats(gc bool) agentStats {
	if gc {
		runtime.GC()
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
	s := agentStats{CPUSeconds: cpu, HeapInuse: ms.HeapInuse, RSS: rss(), Requests: map[string]int64{},
		WatchBytes: c.watchBytes.Load(), WatchesOpen: c.watches.Load()}
	c.mu.Lock()
	for k, v := range c.requests {
		s.Requests[k] = v
	}
	c.mu.Unlock()
	return s
}

// rss is the process's resident set size from /proc/self/status (VmRSS).
func rss() uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runScaleAgent() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	c := &counter{memberHost: os.Getenv("STRAIT_SCALE_MEMBER_HOST"), requests: map[string]int64{}}
	ln, err := net.Listen("tcp", os.Getenv("STRAIT_SCALE_STATS"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if path := r.URL.Query().Get("heapprofile"); path != "" {
				// After a GC: what the agent holds live, by allocation site.
				runtime.GC()
				if err := writeHeapProfile(path); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
				}
				return
			}
			_ = json.NewEncoder(w).Encode(c.stats(r.URL.Query().Get("gc") != ""))
		}))
	}()
	cfg := agent.DefaultConfig()
	cfg.Kubeconfig, cfg.Context = os.Getenv("STRAIT_SCALE_KUBECONFIG"), os.Getenv("STRAIT_SCALE_CONTEXT")
	cfg.MetricsAddress, cfg.HealthAddress = os.Getenv("STRAIT_SCALE_METRICS"), os.Getenv("STRAIT_SCALE_HEALTH")
	cfg.Identity = fmt.Sprintf("scale-%d-%d", os.Getpid(), time.Now().UnixNano())
	cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return countingRT{c: c, rt: rt} }
	a, err := agent.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
