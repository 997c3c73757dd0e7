package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/process"
	"github.com/strait-io/strait/internal/lab/state"
)

// cluster runs the components of one lab cluster.
type cluster struct {
	plan  plan.Cluster
	dir   state.ClusterDir
	specs map[string]process.Spec
	event func(cluster, format string, args ...any)
	// components are the names of this cluster's components, in start order.
	components []string
	labDNSAddr string // where the lab's strait dns listens, for its health check
	bins       binaries.Set
	images     []string         // archives of the lab's images, loaded into the node
	registry   *images.Registry // served to the node's containerd
	agentPods  bool             // the agent runs as the chart's Deployment, not in the supervisor
	stopping   atomic.Bool      // the whole cluster is stopping (not one component)

	mu       sync.Mutex
	procs    map[string]*process.Process
	inproc   map[string]*task
	order    []string // started components, for stopping in reverse
	checker  *checker
	corefile *corefileSync
	record   func()
}

// task is a component that runs inside the supervisor.
type task struct {
	spec    taskSpec
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
	err     error
}

// taskSpec is how an in-process component runs. run lasts until its context ends and then
// returns nil, or the error that kept it from stopping cleanly (an agent in pods whose
// Deployment could not be scaled to 0). stopTime bounds how long stopping it may take;
// zero is stopGrace.
type taskSpec struct {
	run      func(ctx context.Context) error
	stopTime time.Duration
}

// runs is the spec of a component that stops as soon as its context ends.
func runs(run func(ctx context.Context) error) taskSpec { return taskSpec{run: run} }

// stopWithin is how long the task may take to return once stopped.
func (t *task) stopWithin() time.Duration {
	if t.spec.stopTime > 0 {
		return t.spec.stopTime
	}
	return stopGrace
}

func (t *task) running() bool {
	select {
	case <-t.done:
		return false
	default:
		return true
	}
}

func newCluster(l *plan.Lab, c plan.Cluster, cd state.ClusterDir, bins binaries.Set, imgs []string, reg *images.Registry,
	event func(string, string, ...any)) *cluster {
	return &cluster{
		bins:       bins,
		images:     imgs,
		registry:   reg,
		plan:       c,
		dir:        cd,
		specs:      specs(bins, cd, c),
		event:      event,
		components: clusterComponents(c.Name == Broker(l).Name),
		labDNSAddr: labDNSAddr(l),
		procs:      map[string]*process.Process{},
		inproc:     map[string]*task{},
	}
}

// startProcess starts one external component and waits until check passes.
func (c *cluster) startProcess(ctx context.Context, name string, check func(context.Context) error, record func()) error {
	t0 := time.Now()
	p, err := process.Start(c.specs[name])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[name] = p
	c.addOrder(name)
	c.mu.Unlock()
	record()
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := p.WaitFor(wctx, "healthy", check); err != nil {
		return err
	}
	c.event(c.plan.Name, "%s is up (%s)", name, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// addOrder notes a started component once; the caller holds c.mu.
func (c *cluster) addOrder(name string) {
	for _, n := range c.order {
		if n == name {
			return
		}
	}
	c.order = append(c.order, name)
}

// startTask runs an in-process component until the cluster stops.
func (c *cluster) startTask(name string, spec taskSpec) *task {
	ctx, cancel := context.WithCancel(context.Background())
	t := &task{spec: spec, started: time.Now(), cancel: cancel, done: make(chan struct{})}
	c.mu.Lock()
	c.inproc[name] = t
	c.addOrder(name)
	c.mu.Unlock()
	go func() {
		defer close(t.done)
		t.err = spec.run(ctx)
		if t.err != nil && ctx.Err() == nil {
			c.event(c.plan.Name, "%s stopped: %v", name, t.err)
		}
	}()
	return t
}

// start brings the cluster up, component by component.
func (c *cluster) start(ctx context.Context, record func()) error {
	chk, err := newChecker(c.dir, c.plan, c.labDNSAddr, c.bins)
	if err != nil {
		return err
	}
	chk.agentPods = c.agentPods
	c.checker = chk
	c.record = record
	cfg := state.RESTConfig(c.dir, c.plan, state.Admin)
	admin, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		if runc, err = findSbin("runc"); err != nil {
			return fmt.Errorf("cluster %s: the node's containerd runs containers with runc (Debian package runc): %w", c.plan.Name, err)
		}
	}
	if err := writeNodeFiles(c.dir, c.plan, c.bins, runc); err != nil {
		return fmt.Errorf("cluster %s: node configuration: %w", c.plan.Name, err)
	}
	if err := c.startProcess(ctx, Etcd, chk.etcd, record); err != nil {
		return err
	}
	egress, err := listenEgress(c.dir.EgressSocket())
	if err != nil {
		return fmt.Errorf("cluster %s: egress proxy: %w", c.plan.Name, err)
	}
	c.startTask(EgressProxy, runs(func(ctx context.Context) error {
		return serveEgress(ctx, egress, egressDialer(c.plan.Namespace))
	}))
	if err := c.startProcess(ctx, APIServer, chk.apiServer, record); err != nil {
		return err
	}
	if err := bootstrap(ctx, admin, c.plan); err != nil {
		return fmt.Errorf("cluster %s: %w", c.plan.Name, err)
	}
	// CoreDNS's multicluster option needs the ServiceImport type before it starts.
	if err := clusterset.InstallCRDs(ctx, cfg, c.plan.Name); err != nil {
		return fmt.Errorf("cluster %s: %w", c.plan.Name, err)
	}
	if err := c.startProcess(ctx, ControllerManager, chk.controllerManager, record); err != nil {
		return err
	}
	if err := c.startProcess(ctx, Scheduler, chk.scheduler, record); err != nil {
		return err
	}
	fwd, err := netns.Listen(c.plan.Namespace, "tcp", net.JoinHostPort(c.plan.NodeIP, fmt.Sprint(c.plan.Ports.APIServer)))
	if err != nil {
		return fmt.Errorf("cluster %s: API forwarder: %w", c.plan.Name, err)
	}
	target := net.JoinHostPort("127.0.0.1", fmt.Sprint(c.plan.Ports.APIServer))
	c.startTask(APIForwarder, runs(func(ctx context.Context) error { return forward(ctx, fwd, target) }))
	reg, err := netns.Listen(c.plan.Namespace, "tcp", registryAddr)
	if err != nil {
		return fmt.Errorf("cluster %s: image registry: %w", c.plan.Name, err)
	}
	c.startTask(ImageRegistry, runs(func(ctx context.Context) error { return serveHTTP(ctx, reg, c.registry) }))
	if err := c.startNode(ctx, record); err != nil {
		return err
	}
	if err := c.startProcess(ctx, KubeProxy, chk.kubeProxy, record); err != nil {
		return err
	}
	corefile := &corefileSync{client: admin, path: c.dir.Corefile()}
	if err := corefile.ensure(ctx); err != nil {
		return fmt.Errorf("cluster %s: CoreDNS configuration: %w", c.plan.Name, err)
	}
	c.mu.Lock()
	c.corefile = corefile
	c.mu.Unlock()
	c.startTask(CoreDNSConfig, runs(corefile.run))
	if err := c.startProcess(ctx, CoreDNS, chk.coreDNS, record); err != nil {
		return err
	}
	// The end-to-end check: a pod's DNS query to the kube-dns ClusterIP, routed by kube-proxy
	// to CoreDNS, answered from the API.
	c.mu.Lock()
	dns := c.procs[CoreDNS]
	c.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := dns.WaitFor(wctx, "answering on the kube-dns Service "+c.plan.DNSServiceIP, chk.clusterDNS); err != nil {
		return err
	}
	if err := waitServiceAccount(wctx, admin); err != nil {
		return fmt.Errorf("cluster %s: the default service account did not appear: %w", c.plan.Name, err)
	}
	c.event(c.plan.Name, "cluster %s is ready (API %s, node %s)", c.plan.Name, state.APIServerURL(c.plan), c.plan.NodeIP)
	return nil
}

// startNode starts the node: its cgroup, containerd with the lab's images loaded, and the
// kubelet, waited for until its Node is Ready.
func (c *cluster) startNode(ctx context.Context, record func()) error {
	if err := createCgroupRoot(CgroupRoot(c.plan)); err != nil {
		return fmt.Errorf("cluster %s: node cgroup: %w", c.plan.Name, err)
	}
	if err := c.startProcess(ctx, Containerd, c.checker.containerd, record); err != nil {
		return err
	}
	t0 := time.Now()
	if err := loadNodeImages(ctx, c.dir, c.bins, c.images); err != nil {
		return fmt.Errorf("cluster %s: loading the lab images into node %s: %w", c.plan.Name, c.plan.NodeName, err)
	}
	c.event(c.plan.Name, "lab images loaded into node %s (%s)", c.plan.NodeName, time.Since(t0).Round(100*time.Millisecond))
	return c.startProcess(ctx, Kubelet, c.checker.kubelet, record)
}

// pids returns the process group of each running external component.
func (c *cluster) pids() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]int{}
	for name, p := range c.procs {
		if p.Running() {
			out[name] = p.Pid()
		}
	}
	return out
}

// stop stops every started component, last started first.
func (c *cluster) stop() error {
	c.stopping.Store(true)
	c.mu.Lock()
	order := append([]string(nil), c.order...)
	c.mu.Unlock()
	var errs []error
	for i := len(order) - 1; i >= 0; i-- {
		name := order[i]
		c.mu.Lock()
		p, t := c.procs[name], c.inproc[name]
		c.mu.Unlock()
		switch {
		case p != nil:
			if err := p.Stop(stopGrace); err != nil {
				errs = append(errs, err)
			}
		case t != nil:
			if err := c.stopTask(name, t); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// The pods, containerd's shims, their mounts and cgroups: what stopping the kubelet and
	// containerd leaves, as deleting a kind node's container would remove it.
	if err := cleanupNode(c.dir, c.plan); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checks returns the health check of each component with one.
func (c *cluster) checks() map[string]func(context.Context) error {
	h := c.checker
	if h == nil {
		return nil
	}
	return map[string]func(context.Context) error{
		Etcd: h.etcd, EgressProxy: h.egress, APIServer: h.apiServer, ControllerManager: h.controllerManager,
		Scheduler: h.scheduler, APIForwarder: h.forwarder, ImageRegistry: h.registry, Containerd: h.containerd,
		Kubelet: h.kubelet, KubeProxy: h.kubeProxy, CoreDNS: h.clusterDNS, Agent: h.agent, StraitDNS: h.labDNS,
		CoreDNSConfig: c.corefileCheck,
	}
}

// corefileCheck is the health of the Corefile sync (not started yet: not healthy).
func (c *cluster) corefileCheck(ctx context.Context) error {
	c.mu.Lock()
	s := c.corefile
	c.mu.Unlock()
	if s == nil {
		return errors.New("not started")
	}
	return s.check(ctx)
}

// hasComponent fails for a name that is not one of this cluster's components, such as
// strait-dns asked of a cluster other than the broker.
func (c *cluster) hasComponent(name string) error {
	if !slices.Contains(c.components, name) {
		return fmt.Errorf("cluster %s has no component %q; its components are %s", c.plan.Name, name, strings.Join(c.components, ", "))
	}
	return nil
}

// stopComponent stops one running component, for tests of failures (a stopped agent, a
// broker that is down).
func (c *cluster) stopComponent(name string) error {
	if err := c.hasComponent(name); err != nil {
		return err
	}
	c.mu.Lock()
	p, t := c.procs[name], c.inproc[name]
	c.mu.Unlock()
	switch {
	case p != nil:
		return p.Stop(stopGrace)
	case t != nil:
		return c.stopTask(name, t)
	}
	return fmt.Errorf("cluster %s has no started component %q", c.plan.Name, name)
}

// stopTask stops an in-process component and waits, within its stop time, until it has
// returned. One that had already ended is stopped.
func (c *cluster) stopTask(name string, t *task) error {
	if !t.running() {
		return nil
	}
	t.cancel()
	select {
	case <-t.done:
		if t.err != nil {
			return fmt.Errorf("stopping %s of cluster %s: %w", name, c.plan.Name, t.err)
		}
		return nil
	case <-time.After(t.stopWithin()):
		return fmt.Errorf("%s of cluster %s did not stop in %s", name, c.plan.Name, t.stopWithin())
	}
}

// startComponent starts a stopped component again and waits until it is healthy.
func (c *cluster) startComponent(ctx context.Context, name string) error {
	if err := c.hasComponent(name); err != nil {
		return err
	}
	c.mu.Lock()
	p, t := c.procs[name], c.inproc[name]
	c.mu.Unlock()
	switch {
	case p != nil:
		if p.Running() {
			return fmt.Errorf("%s of cluster %s is already running", name, c.plan.Name)
		}
		return c.startProcess(ctx, name, c.checks()[name], c.record)
	case t != nil:
		if t.running() {
			return fmt.Errorf("%s of cluster %s is already running", name, c.plan.Name)
		}
		c.startTask(name, t.spec)
		if check := c.checks()[name]; check != nil {
			wctx, cancel := context.WithTimeout(ctx, startTimeout)
			defer cancel()
			return wait.PollUntilContextCancel(wctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
				return check(ctx) == nil, nil
			})
		}
		return nil
	}
	return fmt.Errorf("cluster %s has no component %q that was started before", c.plan.Name, name)
}

// serveHTTP serves h on l until ctx ends.
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && ctx.Err() == nil {
		return err
	}
	return nil
}

// findSbin finds a program in the sbin directories, which a non-login root shell may lack.
func findSbin(bin string) (string, error) {
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		if p, err := exec.LookPath(dir + "/" + bin); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin directories", bin)
}
