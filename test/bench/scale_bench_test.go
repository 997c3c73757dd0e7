package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
	"github.com/strait-io/strait/internal/records"
	"github.com/strait-io/strait/test/bench/simmember"
)

// BenchmarkScale is the scale harness (`make bench-scale`): one real broker (cluster01)
// and one real member (cluster02) whose agent runs as a process of its own, and N
// simulated members (package simmember) whose records a generator writes to the broker
// as their agents would. Per size it loads the clusterset, then runs SCALE_RUNS rounds of
// churn (record changes at SCALE_RATE per member per second, at most SCALE_MAX_RATE in
// all, for SCALE_WINDOW) each followed by an agent restart, then lets one member die and
// come back. See BENCHMARKS.md, "Scale: simulated members".
//
// Environment: SCALE_SIZES (default 10,50,100,250), SCALE_RUNS (2), SCALE_SERVICES
// (1000), SCALE_EXPORTERS (members exporting each Service, 10), SCALE_ENDPOINTS (10),
// SCALE_RATE (20), SCALE_MAX_RATE (50), SCALE_WINDOW (10s), SCALE_DEATH (1: measure a
// member's death).
func BenchmarkScale(b *testing.B) {
	sizes := []int{10, 50, 100, 250}
	if v := os.Getenv("SCALE_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("SCALE_SIZES=%q", v)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			for range b.N {
				runScale(b, n)
			}
		})
	}
}

// scaleAgent is the member's agent process.
type scaleAgent struct {
	b                       *testing.B
	dir                     string
	env                     []string
	stats, health           string
	cmd                     *exec.Cmd
	done                    chan struct{}
	starts                  int
	memberHost, kubeconfigs string
}

func freePort(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newScaleAgent(b *testing.B, lab *labtest.Lab, cluster string) *scaleAgent {
	u, err := url.Parse(lab.RESTConfig(cluster).Host)
	if err != nil {
		b.Fatal(err)
	}
	a := &scaleAgent{b: b, dir: agentLogDir(b), stats: freePort(b), health: freePort(b)}
	a.env = append(os.Environ(), "STRAIT_SCALE_AGENT=1",
		"STRAIT_SCALE_KUBECONFIG="+lab.Kubeconfig(), "STRAIT_SCALE_CONTEXT="+cluster,
		"STRAIT_SCALE_MEMBER_HOST="+u.Host, "STRAIT_SCALE_STATS="+a.stats,
		"STRAIT_SCALE_HEALTH="+a.health, "STRAIT_SCALE_METRICS="+freePort(b))
	b.Cleanup(a.stop)
	return a
}

// agentLogDir is where the agent processes' logs go (agent-<start>.log): under
// $SCALE_AGENT_LOGS, one directory per size, kept after the benchmark; else a temporary
// directory.
func agentLogDir(b *testing.B) string {
	root := os.Getenv("SCALE_AGENT_LOGS")
	if root == "" {
		return b.TempDir()
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", "=", "-").Replace(b.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// start starts the agent process and returns when it started (not when it is ready).
func (a *scaleAgent) start() {
	a.starts++
	logf, err := os.Create(filepath.Join(a.dir, fmt.Sprintf("agent-%d.log", a.starts)))
	if err != nil {
		a.b.Fatal(err)
	}
	a.cmd = exec.Command(os.Args[0], "-test.run=^$")
	a.cmd.Env, a.cmd.Stdout, a.cmd.Stderr = a.env, logf, logf
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := a.cmd.Start(); err != nil {
		a.b.Fatal(err)
	}
	a.done = make(chan struct{})
	go func() { _ = a.cmd.Wait(); logf.Close(); close(a.done) }()
}

// waitReady waits for the agent's /readyz.
func (a *scaleAgent) waitReady(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + a.health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-a.done:
			a.b.Fatalf("the agent exited; see %s", a.dir)
		case <-time.After(100 * time.Millisecond):
		}
	}
	a.b.Fatalf("the agent was not ready within %s", timeout)
}

// stop ends the agent as a Deployment's pod is ended: SIGTERM, then SIGKILL after 30 s.
func (a *scaleAgent) stop() {
	if a.cmd == nil || a.cmd.Process == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(30 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

func (a *scaleAgent) read(gc bool) agentStats {
	u := "http://" + a.stats + "/stats"
	if gc {
		u += "?gc=1"
	}
	resp, err := http.Get(u)
	if err != nil {
		a.b.Fatalf("agent stats: %v", err)
	}
	defer resp.Body.Close()
	var s agentStats
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		a.b.Fatal(err)
	}
	return s
}

// heapProfile makes the agent write its heap profile (live objects after a GC) to path,
// for `go tool pprof -sample_index=inuse_space`.
func (a *scaleAgent) heapProfile(path string) {
	resp, err := http.Get("http://" + a.stats + "/stats?heapprofile=" + url.QueryEscape(path))
	if err != nil {
		a.b.Fatalf("agent heap profile: %v", err)
	}
	msg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		a.b.Fatalf("agent heap profile to %s: %s", path, msg)
	}
	a.b.Logf("agent heap profile: %s", path)
}

// writes counts the agent's mutating requests and its conflicts between two readings.
func writes(s0, s1 agentStats) (writes, conflicts int64) {
	for k, v := range s1.Requests {
		parts := strings.Split(k, "|")
		switch parts[1] {
		case "POST", "PUT", "PATCH", "DELETE":
			writes += v - s0.Requests[k]
			if parts[2] == "409" {
				conflicts += v - s0.Requests[k]
			}
		}
	}
	return
}

// importedView follows the member's imported EndpointSlices: when each address first
// appeared in the slice of each (Service, source cluster), and what each slice holds.
type importedView struct {
	mu        sync.Mutex
	firstSeen map[string]time.Time // service|source|address
	endpoints map[string]int       // service|source -> endpoints
	total     int
}

func (v *importedView) observe(obj any) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	now := time.Now()
	key := s.Labels[mcsv1beta1.LabelServiceName] + "|" + s.Labels[mcsv1beta1.LabelSourceCluster]
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, e := range s.Endpoints {
		for _, a := range e.Addresses {
			k := key + "|" + a
			if _, ok := v.firstSeen[k]; !ok {
				v.firstSeen[k] = now
			}
		}
	}
	v.total += len(s.Endpoints) - v.endpoints[key]
	v.endpoints[key] = len(s.Endpoints)
}

func (v *importedView) forget(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return
	}
	key := s.Labels[mcsv1beta1.LabelServiceName] + "|" + s.Labels[mcsv1beta1.LabelSourceCluster]
	v.mu.Lock()
	v.total -= v.endpoints[key]
	delete(v.endpoints, key)
	v.mu.Unlock()
}

func (v *importedView) counts() (slices, endpoints int) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.endpoints), v.total
}

func (v *importedView) fromSource(src string) int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for k := range v.endpoints {
		if strings.HasSuffix(k, "|"+src) {
			n++
		}
	}
	return n
}

func (v *importedView) seen(k string) (time.Time, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	t, ok := v.firstSeen[k]
	return t, ok
}

// change is one record change and when its write started.
type change struct {
	key string // service|source|new address
	t0  time.Time
}

func until(b *testing.B, what string, timeout time.Duration, cond func() bool) time.Duration {
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			b.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

// waitArrived waits until every change is in the member and returns the latencies, and
// how many changes never showed within timeout (none is expected: a change is a new
// address, which stays until ten more changes of the same export).
func waitArrived(v *importedView, changes []change, timeout time.Duration) ([]time.Duration, int) {
	var out []time.Duration
	missing := 0
	deadline := time.Now().Add(timeout)
	for _, c := range changes {
		for {
			t, ok := v.seen(c.key)
			if ok {
				out = append(out, t.Sub(c.t0))
				break
			}
			if time.Now().After(deadline) {
				missing++
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return out, missing
}

// progress tells the person running the harness where it is (the benchmark's own log is
// printed only at its end).
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

func pct(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)) * p)
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	if v := os.Getenv(name); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatalf("%s=%q: %v", name, v, err)
		}
		return d
	}
	return def
}

func fastClient(b *testing.B, cfg *rest.Config) (kubernetes.Interface, mcsclient.Interface) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 2000, 4000
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	mc, err := mcsclient.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return kc, mc
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	wg.Wait()
	if err, ok := first.Load().(error); ok {
		return err
	}
	return nil
}

func runScale(b *testing.B, n int) {
	spec := simmember.Spec{Members: n, Services: envInt("SCALE_SERVICES", 1000), ExportersPerService: envInt("SCALE_EXPORTERS", 10),
		Endpoints: envInt("SCALE_ENDPOINTS", 10), Namespace: benchNamespace}
	runs := envInt("SCALE_RUNS", 2)
	window := envDuration(b, "SCALE_WINDOW", 10*time.Second)
	rate := min(float64(envInt("SCALE_RATE", 20)*n), float64(envInt("SCALE_MAX_RATE", 50)))
	exporters := min(spec.ExportersPerService, n)
	wantSlices := spec.Services * exporters
	wantEndpoints := wantSlices * spec.Endpoints

	logf := func(format string, args ...any) { b.Helper(); b.Logf(format, args...); progress(format, args...) }
	progress("members=%d: starting the lab", n)
	lab := labtest.Start(b, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Only cluster02's agent runs, as a process of its own; cluster01 is the broker and
	// nothing else (its agent and strait dns stopped).
	lab.StopComponent("cluster01", supervisor.Agent)
	lab.StopComponent("cluster02", supervisor.Agent)
	lab.StopComponent("cluster01", supervisor.StraitDNS)
	member := lab.Client("cluster02")
	if _, err := member.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: benchNamespace}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	agentProc := newScaleAgent(b, lab, "cluster02")
	agentProc.start()
	agentProc.waitReady(2 * time.Minute)
	time.Sleep(2 * time.Second)
	idle := agentProc.read(true)

	view := &importedView{firstSeen: map[string]time.Time{}, endpoints: map[string]int{}}
	factory := informers.NewSharedInformerFactoryWithOptions(member, 0, informers.WithNamespace(benchNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = discoveryv1.LabelManagedBy + "=" + records.EndpointSliceManagedBy
		}))
	_, _ = factory.Discovery().V1().EndpointSlices().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: view.observe, UpdateFunc: func(_, o any) { view.observe(o) }, DeleteFunc: view.forget,
	})
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	// Load: register every member (as join does), start their heartbeats, publish.
	kc, mc := fastClient(b, lab.RESTConfig("cluster01"))
	gen := &simmember.Generator{Broker: kc, BrokerMCS: mc, Spec: spec}
	progress("members=%d: registering and publishing %d exports", n, wantSlices)
	t0 := time.Now()
	if err := parallel(n, 8, func(i int) error { return gen.Register(ctx, i) }); err != nil {
		b.Fatal(err)
	}
	var hbErrors atomic.Int64
	go gen.RunHeartbeats(ctx, &hbErrors)
	var pairs [][2]int
	for s := range spec.Services {
		for _, i := range spec.Exporters(s) {
			pairs = append(pairs, [2]int{i, s})
		}
	}
	if err := parallel(len(pairs), 32, func(k int) error { return gen.PublishExport(ctx, pairs[k][0], pairs[k][1]) }); err != nil {
		b.Fatal(err)
	}
	written := time.Since(t0)
	until(b, "initial import", 20*time.Minute, func() bool { s, e := view.counts(); return s == wantSlices && e == wantEndpoints })
	loaded := time.Since(t0)
	time.Sleep(5 * time.Second) // the import's status writes settle
	steady := agentProc.read(true)
	if dir := os.Getenv("SCALE_HEAP_PROFILE"); dir != "" {
		agentProc.heapProfile(filepath.Join(dir, fmt.Sprintf("agent-heap-members-%d.pprof", n)))
	}
	logf("members=%d: agent after the load: heap in use %.1f MiB (idle before the load %.1f), RSS %.1f MiB (idle %.1f), %d broker watches open",
		n, float64(steady.HeapInuse)/(1<<20), float64(idle.HeapInuse)/(1<<20), float64(steady.RSS)/(1<<20), float64(idle.RSS)/(1<<20), steady.WatchesOpen)
	logf("members=%d: %d services x %d exporters x %d endpoints = %d imported endpoints; broker records written in %s, all imported after %s",
		n, spec.Services, exporters, spec.Endpoints, wantEndpoints, written.Round(time.Second), loaded.Round(time.Second))

	// Background: the agent's writes and watch bytes with no change at all (leases only).
	bg0 := agentProc.read(false)
	time.Sleep(10 * time.Second)
	bg1 := agentProc.read(false)
	bgWrites, _ := writes(bg0, bg1)
	bgWritesPerSec := float64(bgWrites) / 10
	bgWatchPerSec := float64(bg1.WatchBytes-bg0.WatchBytes) / 10
	bgCPUPerSec := (bg1.CPUSeconds - bg0.CPUSeconds) / 10
	logf("members=%d: background (leases only): %.1f agent writes/s, %.0f watch bytes/s from the broker, %.3f agent CPU s/s", n, bgWritesPerSec, bgWatchPerSec, bgCPUPerSec)

	pick := func(r *rand.Rand) (int, int) {
		for {
			s := r.IntN(spec.Services)
			ex := spec.Exporters(s)
			i := ex[r.IntN(len(ex))]
			if gen.Alive(i) {
				return i, s
			}
		}
	}
	var (
		lat, resync, ready                         []time.Duration
		cpuPer1k, writesPerChange, conflictsPerChg []float64
		watchPerChange, achieved                   []float64
		totalChanges, missing                      int
	)
	for run := range runs {
		// Churn: changes at the target rate, each a pod replaced in one member's export.
		r := rand.New(rand.NewPCG(uint64(n), uint64(run)))
		s0 := agentProc.read(false)
		start := time.Now()
		var mu sync.Mutex
		var changes []change
		work := make(chan [2]int, 1024)
		var wg sync.WaitGroup
		var failed, skipped atomic.Int64
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for w := range work {
					t := time.Now()
					addr, err := gen.Change(ctx, w[0], w[1])
					if err != nil {
						failed.Add(1)
						continue
					}
					mu.Lock()
					changes = append(changes, change{simmember.ServiceName(w[1]) + "|" + simmember.MemberID(w[0]) + "|" + addr, t})
					mu.Unlock()
				}
			}()
		}
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		for time.Since(start) < window {
			<-tick.C
			i, s := pick(r)
			select {
			case work <- [2]int{i, s}:
			default:
				skipped.Add(1)
			}
		}
		tick.Stop()
		close(work)
		wg.Wait()
		sent := time.Since(start)
		l, lost := waitArrived(view, changes, 3*time.Minute)
		missing += lost
		elapsed := time.Since(start)
		time.Sleep(2 * time.Second) // status writes that follow the last change
		s1 := agentProc.read(false)
		w, c := writes(s0, s1)
		k := float64(len(changes))
		span := elapsed.Seconds() + 2
		lat = append(lat, l...)
		totalChanges += len(changes)
		cpuPer1k = append(cpuPer1k, (s1.CPUSeconds-s0.CPUSeconds-bgCPUPerSec*span)/k*1000)
		writesPerChange = append(writesPerChange, (float64(w)-bgWritesPerSec*span)/k)
		conflictsPerChg = append(conflictsPerChg, float64(c)/k)
		watchPerChange = append(watchPerChange, (float64(s1.WatchBytes-s0.WatchBytes)-bgWatchPerSec*span)/k)
		achieved = append(achieved, k/sent.Seconds())
		logf("members=%d run %d: %d changes in %s (%.0f/s, target %.0f/s, %d skipped, %d failed, %d never imported); change->imported p50 %s p99 %s max %s; agent CPU %.2fs, writes %d, conflicts %d, broker watch bytes %d",
			n, run+1, len(changes), sent.Round(time.Millisecond), k/sent.Seconds(), rate, skipped.Load(), failed.Load(), lost,
			pct(l, .5).Round(time.Millisecond), pct(l, .99).Round(time.Millisecond), pct(l, 1).Round(time.Millisecond),
			s1.CPUSeconds-s0.CPUSeconds, w, c, s1.WatchBytes-s0.WatchBytes)

		// Restart: the agent stopped; one export of every Service changes while it is
		// down; resync is from the new process's start until all of them are imported.
		agentProc.stop()
		var down []change
		var dmu sync.Mutex
		if err := parallel(spec.Services, 16, func(s int) error {
			ex := spec.Exporters(s)
			i := ex[(run+s)%len(ex)]
			if !gen.Alive(i) {
				return nil
			}
			addr, err := gen.Change(ctx, i, s)
			if err != nil {
				return err
			}
			dmu.Lock()
			down = append(down, change{key: simmember.ServiceName(s) + "|" + simmember.MemberID(i) + "|" + addr})
			dmu.Unlock()
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		restart := time.Now()
		agentProc.start()
		agentProc.waitReady(5 * time.Minute)
		ready = append(ready, time.Since(restart))
		for i := range down {
			down[i].t0 = restart
		}
		rl, lost := waitArrived(view, down, 3*time.Minute)
		missing += lost
		resync = append(resync, pct(rl, 1))
		logf("members=%d run %d: agent restart -> ready %s, -> all %d changes made while it was down imported %s",
			n, run+1, ready[len(ready)-1].Round(time.Millisecond), len(down), resync[len(resync)-1].Round(time.Millisecond))
		time.Sleep(3 * time.Second)
	}
	mem := agentProc.read(true)

	// A member dies (stops renewing its lease) and comes back.
	var died, back time.Duration
	if envInt("SCALE_DEATH", 1) == 1 {
		progress("members=%d: member %s stops renewing its lease", n, simmember.MemberID(0))
		victim := simmember.MemberID(0)
		had := view.fromSource(victim)
		gen.Kill(0)
		died = until(b, "dead member withdrawn", 3*time.Minute, func() bool { return view.fromSource(victim) == 0 })
		gen.Revive(0)
		_ = gen.Renew(ctx, 0)
		back = until(b, "member back", 3*time.Minute, func() bool { return view.fromSource(victim) == had })
		logf("members=%d: member %s (%d imported slices) stopped renewing -> withdrawn %s; renewing again -> back %s",
			n, victim, had, died.Round(100*time.Millisecond), back.Round(100*time.Millisecond))
	}

	per10k := func(bytes uint64) float64 { return float64(bytes) / (1 << 20) / (float64(wantEndpoints) / 10000) }
	growth := func(after, before uint64) float64 { return per10k(after - min(before, after)) }
	med := func(f []float64) float64 {
		s := append([]float64(nil), f...)
		sort.Float64s(s)
		return s[len(s)/2]
	}
	b.ReportMetric(float64(pct(lat, .5).Milliseconds()), "change-p50-ms")
	b.ReportMetric(float64(pct(lat, .99).Milliseconds()), "change-p99-ms")
	b.ReportMetric(float64(pct(resync, .5).Milliseconds()), "resync-p50-ms")
	b.ReportMetric(float64(pct(resync, 1).Milliseconds()), "resync-max-ms")
	b.ReportMetric(med(cpuPer1k), "cpu-s-per-1k-changes")
	b.ReportMetric(med(writesPerChange), "writes-per-change")
	b.ReportMetric(med(conflictsPerChg), "conflicts-per-change")
	b.ReportMetric(per10k(steady.HeapInuse), "heap-MiB-per-10k-endpoints")
	b.ReportMetric(per10k(steady.RSS), "rss-MiB-per-10k-endpoints")
	logf("SCALE members=%d runs=%d changes=%d rate=%.0f/s (achieved p50 %.0f/s) | change->imported p50 %s p99 %s | resync p50 %s max %s (ready p50 %s) | CPU s/1k changes p50 %.2f (runs %s) | writes/change p50 %.2f | conflicts/change p50 %.3f (runs %s) | heap %.0f MiB (%.1f/10k, growth %.1f/10k), RSS %.0f MiB (%.1f/10k), after runs heap %.0f RSS %.0f MiB | idle heap %.1f RSS %.1f MiB | broker watch: %d open, %.0f B/s idle, %.0f B/change | death -> withdrawn %s, back %s | changes never imported %d | heartbeat errors %d | background %.1f writes/s, %.3f CPU s/s",
		n, runs, totalChanges, rate, med(achieved),
		pct(lat, .5).Round(time.Millisecond), pct(lat, .99).Round(time.Millisecond),
		pct(resync, .5).Round(time.Millisecond), pct(resync, 1).Round(time.Millisecond), pct(ready, .5).Round(time.Millisecond),
		med(cpuPer1k), fmtFloats(cpuPer1k), med(writesPerChange), med(conflictsPerChg), fmtFloats(conflictsPerChg),
		float64(steady.HeapInuse)/(1<<20), per10k(steady.HeapInuse), growth(steady.HeapInuse, idle.HeapInuse),
		float64(steady.RSS)/(1<<20), per10k(steady.RSS), float64(mem.HeapInuse)/(1<<20), float64(mem.RSS)/(1<<20),
		float64(idle.HeapInuse)/(1<<20), float64(idle.RSS)/(1<<20),
		steady.WatchesOpen, bgWatchPerSec, med(watchPerChange),
		died.Round(100*time.Millisecond), back.Round(100*time.Millisecond), missing, hbErrors.Load(), bgWritesPerSec, bgCPUPerSec)
}

func fmtFloats(f []float64) string {
	s := make([]string, len(f))
	for i, v := range f {
		s[i] = strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strings.Join(s, "/")
}
