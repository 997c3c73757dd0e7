// Package labtest starts lab clusters for integration tests: real etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler, kube-proxy and CoreDNS per cluster, and a real
// node (containerd and the kubelet), in network namespaces named after a random lab name, so test packages running in parallel
// never meet. The supervisor runs inside the test binary; everything is stopped and removed
// when the test ends, and the leftovers of a test binary that was killed are swept on the
// next start.
package labtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/strait-io/strait/internal/lab"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/process"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// registryDir records the labs test binaries started, so a killed test binary's network
// namespaces are removed by the next test that starts a lab.
const registryDir = "/run/strait-labtest"

// startTimeout bounds a lab start in tests, binaries cached.
const startTimeout = 5 * time.Minute

// Lab is a running test lab.
type Lab struct {
	Dir  state.Dir
	Plan *plan.Lab
	Sup  *supervisor.Supervisor
	t    testing.TB
}

// Start starts a lab with n clusters named cluster01.. and stops it when the test ends.
func Start(t testing.TB, n int) *Lab {
	t.Helper()
	return StartNamed(t, plan.DefaultNames(n)...)
}

// StartNamed starts a lab with the named clusters.
func StartNamed(t testing.TB, names ...string) *Lab {
	t.Helper()
	l, err := Try(t, Options{Names: names})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// AgentBinary, when set, makes every lab of the test binary run its clusters' agents as
// pods of Strait's chart, from an image of this strait binary (see lab.Options). The e2e
// suite sets it to the strait it built; benchmarks leave it empty, for agents inside the
// supervisor that they can stop and replace with their own.
var AgentBinary string

// Options say how Try starts a lab.
type Options struct {
	// Names of the clusters.
	Names []string
	// AgentsInSupervisor runs the agents inside the supervisor even when AgentBinary is
	// set: for a test that installs the chart itself.
	AgentsInSupervisor bool
	// BeforeStart, if set, runs once the lab is prepared (state directory, certificates,
	// binaries) and before its supervisor starts: a test of failures breaks something here.
	BeforeStart func(dir state.Dir, l *plan.Lab)
}

// Try starts a lab and returns it once it runs, or the error it failed to start with
// (after the supervisor has stopped everything it started). Everything is stopped and
// checked for leftovers when the test ends, whether the lab started or not.
func Try(t testing.TB, o Options) (*Lab, error) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts lab clusters; skipped under -short (make test-unit)")
	}
	if err := lab.CheckHost(); err != nil {
		t.Fatalf("integration tests run real lab clusters: %v", err)
	}
	sweep(t)
	name := "t" + randomHex(5)
	base, err := os.MkdirTemp("", "strait-labtest-")
	if err != nil {
		t.Fatal(err)
	}
	dir := state.Dir(filepath.Join(base, name))
	agentBinary := AgentBinary
	if o.AgentsInSupervisor {
		agentBinary = ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	l, err := lab.Prepare(ctx, lab.Options{
		Dir: dir, Names: o.Names, AgentBinary: agentBinary,
		Builder: &binaries.Builder{Progress: func(p binaries.Progress) {
			if p.Step != "build" {
				t.Logf("lab binaries: %s %s", p.Step, p.Message)
			}
		}},
	})
	if err != nil {
		os.RemoveAll(base)
		t.Fatalf("preparing lab: %v", err)
	}
	register(t, l, dir)
	if o.BeforeStart != nil {
		o.BeforeStart(dir, l)
	}
	sup, err := supervisor.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.Run(runCtx) }()
	var runErr error
	exited := false
	t.Cleanup(func() {
		stop()
		if !exited {
			if err := <-done; err != nil {
				t.Errorf("stopping lab %s: %v", name, err)
			}
		}
		for _, left := range Leftovers(dir, l) {
			t.Errorf("left after the lab stopped: %s", left)
		}
		if t.Failed() {
			dumpLogs(t, dir, l)
		}
		os.RemoveAll(base)
		os.Remove(filepath.Join(registryDir, name+".json"))
	})
	deadline := time.Now().Add(startTimeout)
	for {
		phase, failure := sup.Phase()
		if phase == supervisor.PhaseRunning {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("lab %s did not start within %s (%s): %s", name, startTimeout, phase, failure)
		}
		select {
		case runErr = <-done:
			exited = true
			if runErr == nil {
				runErr = fmt.Errorf("lab %s supervisor exited while starting (%s): %s", name, phase, failure)
			}
			return nil, runErr
		case <-time.After(100 * time.Millisecond):
		}
	}
	return &Lab{Dir: dir, Plan: l, Sup: sup, t: t}, nil
}

// Cluster returns the plan of one cluster.
func (l *Lab) Cluster(name string) plan.Cluster {
	l.t.Helper()
	c, err := l.Plan.Cluster(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return *c
}

// Names lists the clusters.
func (l *Lab) Names() []string { return l.Plan.Names() }

// RESTConfig returns an admin client configuration for a cluster.
func (l *Lab) RESTConfig(name string) *rest.Config {
	cfg := state.RESTConfig(l.Dir.Cluster(name), l.Cluster(name), state.Admin)
	// A test's client watches and polls at once (informers recording deletions, polls of
	// a few requests every 200 ms): client-go's default of 5 requests per second would make
	// the test's own client the bottleneck it reports on.
	cfg.QPS, cfg.Burst = 100, 200
	return cfg
}

// Client returns an admin clientset for a cluster.
func (l *Lab) Client(name string) kubernetes.Interface {
	l.t.Helper()
	cs, err := kubernetes.NewForConfig(l.RESTConfig(name))
	if err != nil {
		l.t.Fatal(err)
	}
	return cs
}

// Kubeconfig is the lab's kubeconfig, one context per cluster.
func (l *Lab) Kubeconfig() string { return l.Dir.Kubeconfig() }

// BrokerURL is how the host reaches the broker's API server. The members' stored broker
// credential may name another address (with agents in pods, the broker's node address,
// which only the clusters reach); the lab's kubeconfig names this URL in its contexts'
// strait.io extension, which strait status and diagnose read.
func (l *Lab) BrokerURL() string {
	return state.APIServerURL(l.Plan.Clusters[0])
}

// AgentKubeconfig is the kubeconfig the lab's agent of a cluster runs with: the chart's
// ServiceAccount strait-agent, with the chart's RBAC and nothing more.
func (l *Lab) AgentKubeconfig(name string) string {
	return l.Dir.Cluster(name).Kubeconfig(state.Agent)
}

// Exec runs a command as a pod of the cluster would (see `strait lab exec`) and returns its
// standard output; the error includes standard error.
func (l *Lab) Exec(ctx context.Context, cluster string, args ...string) (string, error) {
	cmd, err := lab.ExecCommand(ctx, l.Dir, cluster, args)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), cluster, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Leftovers lists what a stopped lab left on the host: network namespaces, mounts under its
// state directory, its nodes' cgroups and processes in them.
func Leftovers(dir state.Dir, l *plan.Lab) []string {
	var out []string
	for _, ns := range l.Namespaces() {
		if netns.Exists(ns) {
			out = append(out, "network namespace "+ns)
		}
	}
	if data, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], string(dir)+"/") {
				out = append(out, "mount "+f[4])
			}
		}
	}
	// Every component is given a path of the state directory on its command line.
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		data, err := os.ReadFile(p)
		if err == nil && strings.Contains(string(data), string(dir)+"/") {
			out = append(out, "process "+filepath.Base(filepath.Dir(p))+": "+strings.ReplaceAll(string(data), "\x00", " "))
		}
	}
	for _, c := range l.Clusters {
		matches, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", supervisor.CgroupRoot(c)))
		if m, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", supervisor.CgroupRoot(c))); len(m) > 0 {
			matches = append(matches, m...)
		}
		for _, m := range matches {
			out = append(out, "cgroup "+m)
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// entry is what the registry records of a running test lab.
type entry struct {
	PID        int      `json:"pid"`
	Namespaces []string `json:"namespaces"`
	Processes  string   `json:"processes"`
	Dir        string   `json:"dir,omitempty"`
}

func register(t testing.TB, l *plan.Lab, dir state.Dir) {
	if err := os.MkdirAll(registryDir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(entry{PID: os.Getpid(), Namespaces: l.Namespaces(), Dir: string(dir)})
	if err := os.WriteFile(filepath.Join(registryDir, l.Name+".json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sweep removes the network namespaces of test labs whose test binary is gone. Their
// component processes died with it (parent-death signal).
func sweep(t testing.TB) {
	entries, err := os.ReadDir(registryDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		path := filepath.Join(registryDir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var en entry
		if json.Unmarshal(data, &en) != nil || process.Alive(en.PID) {
			continue
		}
		name := strings.TrimSuffix(e.Name(), ".json")
		stale := &plan.Lab{Name: name}
		var errs []error
		// The nodes' pods, mounts and cgroups, as `strait lab down` removes them.
		if saved, err := state.Load(state.Dir(en.Dir)); en.Dir != "" && err == nil {
			if err := supervisor.Cleanup(context.Background(), state.Dir(en.Dir), saved.Lab); err != nil {
				errs = append(errs, err)
			}
			os.RemoveAll(filepath.Dir(en.Dir))
		}
		for _, ns := range en.Namespaces {
			if netns.Exists(ns) {
				if out, err := exec.Command("ip", "netns", "delete", ns).CombinedOutput(); err != nil {
					errs = append(errs, fmt.Errorf("%v: %s", err, out))
				}
			}
			_ = os.RemoveAll(filepath.Join(netns.EtcDir, ns))
		}
		if len(errs) == 0 {
			os.Remove(path)
			t.Logf("removed the leftovers of test lab %s (test process %s is gone)", stale.Name, strconv.Itoa(en.PID))
		}
	}
}

func dumpLogs(t testing.TB, dir state.Dir, l *plan.Lab) {
	for _, c := range l.Clusters {
		for _, comp := range supervisor.ComponentNames {
			data, err := os.ReadFile(dir.Cluster(c.Name).Log(comp))
			if errors.Is(err, os.ErrNotExist) || err != nil {
				continue
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) > 20 {
				lines = lines[len(lines)-20:]
			}
			t.Logf("--- %s %s log (last lines):\n%s", c.Name, comp, strings.Join(lines, "\n"))
		}
		// Strait's pods (agents in pods, or installed by the test), as the kubelet kept
		// their logs: <namespace>_<pod>_<uid>/<container>/<restart>.log.
		logs, _ := filepath.Glob(filepath.Join(dir.Cluster(c.Name).PodLogs(), "strait-system_*", "*", "*.log"))
		for _, f := range logs {
			data, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			lines := strings.Split(strings.TrimSpace(string(data)), "\n")
			if len(lines) > 60 {
				lines = lines[len(lines)-60:]
			}
			rel, _ := filepath.Rel(dir.Cluster(c.Name).PodLogs(), f)
			t.Logf("--- %s pod log %s (last lines):\n%s", c.Name, rel, strings.Join(lines, "\n"))
		}
	}
}

// StopComponent stops one component of a cluster (see supervisor.ComponentNames).
func (l *Lab) StopComponent(cluster, component string) {
	l.t.Helper()
	if err := l.Sup.StopComponent(cluster, component); err != nil {
		l.t.Fatal(err)
	}
}

// StartComponent starts a stopped component again and waits until it is healthy.
func (l *Lab) StartComponent(cluster, component string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := l.Sup.StartComponent(ctx, cluster, component); err != nil {
		l.t.Fatal(err)
	}
}
