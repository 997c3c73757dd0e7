// Package supervisor runs a lab: it creates the lab network, starts every cluster's
// components in order (each waited for until healthy) up to a real node (containerd and
// the kubelet), writes the objects a cluster needs beyond what its API server creates, answers status and shutdown requests on a unix socket, and on the
// way out stops everything and removes the network. It is the `strait lab supervise` process
// behind `strait lab up`, and runs inside the test binary for integration tests.
package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/process"
	"github.com/strait-io/strait/internal/lab/state"
)

// Phases of a lab.
const (
	PhaseStarting = "Starting"
	PhaseRunning  = "Running"
	PhaseStopping = "Stopping"
	PhaseFailed   = "Failed"
	PhaseStopped  = "Stopped"
)

// Timeouts for each component to become healthy. Generous: ten clusters starting on two
// cores take a while, and a slow start is not a failure.
const (
	startTimeout = 3 * time.Minute
	stopGrace    = 10 * time.Second
)

// Supervisor runs one lab.
type Supervisor struct {
	dir  state.Dir
	lab  *plan.Lab
	bins binaries.Set

	mu       sync.Mutex
	phase    string
	failure  string
	started  time.Time
	events   []Event
	clusters map[string]*cluster
	shutdown chan struct{}
	stopOnce sync.Once
	// agentPods: the clusters' agents run as the chart's Deployment (see installAgent).
	agentPods bool
}

// Event is one step of the lab's life, shown as progress by `lab up`.
type Event struct {
	Time    time.Time `json:"time"`
	Cluster string    `json:"cluster,omitempty"`
	Message string    `json:"message"`
}

// New prepares a supervisor for the lab saved in dir.
func New(dir state.Dir) (*Supervisor, error) {
	saved, err := state.Load(dir)
	if err != nil {
		return nil, err
	}
	s := &Supervisor{
		dir:       dir,
		lab:       saved.Lab,
		bins:      binaries.Set{Dir: saved.Binaries},
		phase:     PhaseStarting,
		clusters:  map[string]*cluster{},
		shutdown:  make(chan struct{}),
		agentPods: saved.AgentPods,
	}
	reg := &images.Registry{Archives: func() []string { return append(slices.Clone(saved.Images), loadedImages(dir)...) }}
	for _, c := range saved.Lab.Clusters {
		s.clusters[c.Name] = newCluster(saved.Lab, c, dir.Cluster(c.Name), s.bins, saved.Images, reg, s.event)
		s.clusters[c.Name].agentPods = saved.AgentPods
	}
	return s, nil
}

func (s *Supervisor) event(cluster, format string, args ...any) {
	e := Event{Time: time.Now(), Cluster: cluster, Message: fmt.Sprintf(format, args...)}
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
	klog.InfoS(e.Message, "cluster", cluster)
}

func (s *Supervisor) setPhase(phase, failure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phase, s.failure = phase, failure
}

// Phase returns the lab's phase and, if it failed, why.
func (s *Supervisor) Phase() (phase, failure string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase, s.failure
}

// Shutdown asks a running supervisor to stop the lab.
func (s *Supervisor) Shutdown() {
	s.stopOnce.Do(func() { close(s.shutdown) })
}

// Lock takes the lab's lock, which is held for the supervisor's whole life: a second `up`
// of the same lab fails here. The returned function releases it.
func Lock(dir state.Dir) (func(), error) {
	if err := os.MkdirAll(string(dir), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(dir.LockFile(), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("the lab in %s is already running; stop it first with `strait lab down`", dir)
		}
		return nil, fmt.Errorf("locking %s: %w", dir.LockFile(), err)
	}
	return func() { f.Close() }, nil
}

// Locked reports whether a supervisor holds the lab's lock.
func Locked(dir state.Dir) bool {
	f, err := os.Open(dir.LockFile())
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// Run starts the lab and keeps it running until ctx ends or Shutdown is called; then it stops
// everything and removes the network. If the start fails, everything started so far is
// stopped again and the error says which component failed and where its log is.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	unlock, err := Lock(s.dir)
	if err != nil {
		return err
	}
	defer unlock()
	// Left-overs of a supervisor that died (killed, machine rebooted) would block the start.
	if err := Cleanup(ctx, s.dir, s.lab); err != nil {
		return fmt.Errorf("cleaning up after the lab's previous run: %w", err)
	}
	s.started = time.Now()

	srv, err := serveControl(s)
	if err != nil {
		return err
	}
	defer srv.close()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.shutdown:
			cancel()
		case <-runCtx.Done():
		}
	}()

	defer func() {
		s.setPhase(PhaseStopping, s.failureText())
		stopErr := s.stopAll(context.WithoutCancel(ctx))
		if err == nil {
			err = stopErr
		}
		if err != nil {
			s.setPhase(PhaseFailed, err.Error())
		} else {
			s.setPhase(PhaseStopped, "")
		}
		s.event("", "lab %s stopped", s.lab.Name)
	}()

	if err := s.start(runCtx); err != nil {
		if runCtx.Err() != nil && ctx.Err() == nil {
			return nil // asked to shut down while starting
		}
		s.setPhase(PhaseFailed, err.Error())
		return err
	}
	s.setPhase(PhaseRunning, "")
	s.event("", "lab %s is up: %d clusters in %s", s.lab.Name, len(s.lab.Clusters), time.Since(s.started).Round(100*time.Millisecond))
	<-runCtx.Done()
	return nil
}

func (s *Supervisor) failureText() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failure
}

// start builds the network, then starts the clusters, a few at a time so that ten clusters
// on a small machine do not all fight for the CPU at once.
func (s *Supervisor) start(ctx context.Context) error {
	s.event("", "creating the lab network (%d network namespaces)", len(s.lab.Clusters)+1)
	if err := netns.Setup(ctx, s.lab); err != nil {
		return err
	}
	for _, c := range s.lab.Clusters {
		if err := netns.WriteResolvConf(c.Namespace, ResolvConf(c)); err != nil {
			return err
		}
		if err := state.WriteFileAtomic(s.dir.Cluster(c.Name).Corefile(), []byte(Corefile(s.dir.Cluster(c.Name), c, labDNSAddr(s.lab))), 0o644); err != nil {
			return err
		}
	}
	parallel := max(2, runtime.NumCPU())
	sem := make(chan struct{}, parallel)
	errs := make([]error, len(s.lab.Clusters))
	var wg sync.WaitGroup
	for i, c := range s.lab.Clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			errs[i] = s.clusters[c.Name].start(ctx, s.recordProcesses)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return s.joinClusterset(ctx)
}

// recordProcesses saves the process groups of every running component.
func (s *Supervisor) recordProcesses() {
	p := state.Processes{Supervisor: os.Getpid(), Components: map[string]int{}}
	for name, c := range s.clusters {
		for comp, pid := range c.pids() {
			p.Components[name+"/"+comp] = pid
		}
	}
	if err := state.SaveProcesses(s.dir, p); err != nil {
		klog.ErrorS(err, "Recording component processes")
	}
}

// stopAll stops the clusters' components (in reverse start order within each cluster) and
// removes the network.
func (s *Supervisor) stopAll(ctx context.Context) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, c := range s.clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.stop(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := netns.Teardown(ctx, s.lab); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(s.dir.ProcessesFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Cleanup removes what a dead supervisor left behind: component process groups and network
// namespaces. It must only be called while holding the lab's lock, or when no supervisor
// holds it.
func Cleanup(ctx context.Context, dir state.Dir, l *plan.Lab) error {
	procs, err := state.LoadProcesses(dir)
	if err != nil {
		return err
	}
	for _, pid := range procs.Components {
		process.KillGroup(pid)
	}
	var errs []error
	for _, c := range l.Clusters {
		if err := cleanupNode(dir.Cluster(c.Name), c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := netns.Teardown(ctx, l); err != nil {
		return err
	}
	if err := os.Remove(dir.ProcessesFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// loadedImages lists the archives `strait lab load-image` recorded for the lab.
func loadedImages(dir state.Dir) []string {
	data, err := os.ReadFile(dir.LoadedImages())
	if err != nil {
		return nil
	}
	var paths []string
	if err := json.Unmarshal(data, &paths); err != nil {
		klog.ErrorS(err, "Reading the loaded images", "file", dir.LoadedImages())
		return nil
	}
	return paths
}

// Status reports the lab's phase, events and, with live health checks, every component.
func (s *Supervisor) Status(ctx context.Context) Status {
	s.mu.Lock()
	st := Status{
		Lab:        s.lab.Name,
		Phase:      s.phase,
		Error:      s.failure,
		Started:    s.started,
		Kubeconfig: s.dir.Kubeconfig(),
		Supervisor: os.Getpid(),
		Events:     append([]Event(nil), s.events...),
	}
	s.mu.Unlock()
	st.Clusters = make([]ClusterStatus, len(s.lab.Clusters))
	var wg sync.WaitGroup
	for i, c := range s.lab.Clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st.Clusters[i] = s.clusters[c.Name].status(ctx)
		}()
	}
	wg.Wait()
	return st
}

// Client returns an admin client of a cluster of the lab.
func Client(dir state.Dir, c plan.Cluster) (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(state.RESTConfig(dir.Cluster(c.Name), c, state.Admin))
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
