// Package lab is what the `strait lab` commands do: check the host, plan a lab, build or find
// the binaries, prepare the state directory, start the supervisor and follow its progress,
// and stop, inspect and enter a running lab. The pieces live in the subpackages (plan,
// binaries, state, netns, supervisor, images); this package puts them in order.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// DefaultName is the name of the lab when none is given.
const DefaultName = "strait"

// Options describe the lab to start.
type Options struct {
	// Dir is the lab's state directory; its base name is the lab's name.
	Dir state.Dir
	// Names of the clusters; if empty, Clusters default names are used, and if that is zero
	// too, an existing lab's saved clusters or two clusters.
	Names    []string
	Clusters int
	// APIPortBase: see plan.Spec. Zero picks free ports.
	APIPortBase int
	// Builder builds or finds the binaries.
	Builder *binaries.Builder
	// Images builds or finds the lab's images, which every node loads; nil uses the
	// default cache.
	Images *images.Builder
	// AgentBinary, when set, makes the lab run each cluster's Strait agent as pods of
	// Strait's chart, installed as `strait join --install` installs it, from an image of
	// this (static) strait binary that every node loads. Empty: the agents run inside the
	// lab's supervisor, as the chart's ServiceAccount.
	AgentBinary string
	// Out receives progress for people; may be nil.
	Out io.Writer
}

// Name returns the lab's name.
func (o Options) Name() string { return filepath.Base(string(o.Dir)) }

func (o Options) printf(format string, args ...any) {
	if o.Out != nil {
		fmt.Fprintf(o.Out, format, args...)
	}
}

// hostTool is a command the lab runs from the host, and the Debian package that has it.
type hostTool struct{ bin, pkg, why string }

var (
	networkTools = []hostTool{
		{"ip", "iproute2", "to build the lab network"},
		{"nft", "nftables", "to build the lab network"},
	}
	// runc is the one piece of the nodes' container runtime the lab does not build: the
	// containerd shim runs it to start every container.
	runcTool = hostTool{"runc", "runc", "as its nodes' OCI runtime (containerd's runc shim runs it)"}
)

// CheckHost fails with a clear message when the lab cannot run on this machine.
func CheckHost() error {
	if err := checkHostBasics(); err != nil {
		return err
	}
	_, err := Runc()
	return err
}

// checkHostBasics is what stopping or entering a lab needs: root and the network tools. A
// host that lost runc can still stop its lab.
func checkHostBasics() error {
	if os.Geteuid() != 0 {
		return errors.New("strait lab needs root: it creates network namespaces, veth pairs and nftables rules " +
			"for the clusters' nodes (as kind needs Docker); run it as root, e.g. `sudo strait lab up`")
	}
	for _, tool := range networkTools {
		if _, err := tool.find(); err != nil {
			return err
		}
	}
	return nil
}

func (t hostTool) find() (string, error) {
	p, err := lookPath(t.bin)
	if err != nil {
		return "", fmt.Errorf("strait lab needs the %q command (Debian package %s) %s: %w", t.bin, t.pkg, t.why, err)
	}
	return p, nil
}

// Runc returns the path of the host's runc, or an error naming the package to install.
// containerd's runtime options should name this path: the shim's PATH may lack /usr/sbin.
func Runc() (string, error) { return runcTool.find() }

// lookPath also searches the sbin directories, which a non-login root shell may lack.
func lookPath(bin string) (string, error) {
	if p, err := exec.LookPath(bin); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, bin)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH or the sbin directories", bin)
}

// Prepare does everything before the supervisor starts: it checks the request and the host,
// builds or finds the binaries, checks the ports and writes the state directory. It starts
// nothing, so a failure leaves nothing running.
func Prepare(ctx context.Context, o Options) (*plan.Lab, error) {
	if err := plan.ValidateLabName(o.Name()); err != nil {
		return nil, err
	}
	if o.Clusters < 0 || o.Clusters > plan.MaxClusters {
		return nil, fmt.Errorf("--clusters %d: the number of clusters must be between 1 and %d", o.Clusters, plan.MaxClusters)
	}
	if err := CheckHost(); err != nil {
		return nil, err
	}
	if err := raiseInotifyLimits(o.printf); err != nil {
		return nil, err
	}
	if supervisor.Locked(o.Dir) {
		return nil, fmt.Errorf("lab %s is already running; `strait lab status` shows it, `strait lab down` stops it", o.Name())
	}
	l, err := resolvePlan(o)
	if err != nil {
		return nil, err
	}
	// Zero ports: a plan without a port base, or a saved lab that predates a component.
	if l.UnassignedPorts() {
		if err := assignFreePorts(l); err != nil {
			return nil, err
		}
	}
	if err := checkPorts(l); err != nil {
		return nil, err
	}
	b := o.Builder
	if b == nil {
		b = &binaries.Builder{}
	}
	if _, cached, err := b.Cached(ctx); err == nil && !cached {
		o.printf("Building the lab's Kubernetes binaries from source (first time only, a few minutes)...\n")
	}
	bins, err := b.Ensure(ctx)
	if err != nil {
		return nil, err
	}
	ib := o.Images
	if ib == nil {
		ib = &images.Builder{}
	}
	imgs, err := ib.BuildAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("the lab's images, which its nodes run: %w", err)
	}
	saved := &state.Saved{Lab: l, Binaries: bins.Dir, Created: time.Now()}
	for _, img := range imgs {
		saved.Images = append(saved.Images, img.Path)
	}
	if o.AgentBinary != "" {
		img, err := ib.Strait(ctx, o.AgentBinary, "")
		if err != nil {
			return nil, fmt.Errorf("the strait image the lab's agents run: %w", err)
		}
		saved.Images = append(saved.Images, img.Path)
		saved.AgentPods = true
	}
	if err := state.Save(o.Dir, saved); err != nil {
		return nil, err
	}
	for _, c := range l.Clusters {
		if err := state.EnsureCredentials(o.Dir.Cluster(c.Name), c); err != nil {
			return nil, fmt.Errorf("credentials of cluster %s: %w", c.Name, err)
		}
	}
	if err := state.WriteKubeconfigs(o.Dir, l); err != nil {
		return nil, err
	}
	if err := linkBinaries(o.Dir, bins); err != nil {
		return nil, err
	}
	return l, nil
}

// resolvePlan builds the plan from the options, or reuses the saved one so a lab started
// again keeps its clusters, addresses and data.
func resolvePlan(o Options) (*plan.Lab, error) {
	names := o.Names
	if len(names) == 0 && o.Clusters > 0 {
		names = plan.DefaultNames(o.Clusters)
	}
	saved, err := state.Load(o.Dir)
	switch {
	case err == nil:
		if len(names) > 0 && !slices.Equal(names, saved.Lab.Names()) {
			return nil, fmt.Errorf("lab %s already exists with clusters %s; start it without --clusters/--names, "+
				"or remove it first with `strait lab down --purge`", o.Name(), strings.Join(saved.Lab.Names(), ","))
		}
		l := saved.Lab
		if o.APIPortBase != 0 {
			return rebuild(l, o.APIPortBase)
		}
		return l, nil
	case !errors.Is(err, state.ErrNoLab):
		return nil, err
	}
	if len(names) == 0 {
		names = plan.DefaultNames(2)
	}
	spec := plan.Spec{Lab: o.Name(), APIPortBase: o.APIPortBase}
	for _, n := range names {
		spec.Clusters = append(spec.Clusters, plan.ClusterSpec{Name: n})
	}
	return plan.Build(spec)
}

// rebuild re-plans a saved lab with another port base, keeping its topology.
func rebuild(l *plan.Lab, base int) (*plan.Lab, error) {
	spec := plan.Spec{Lab: l.Name, APIPortBase: base}
	for _, c := range l.Clusters {
		spec.Clusters = append(spec.Clusters, plan.ClusterSpec{Name: c.Name, Region: c.Region, Zone: c.Zone})
	}
	return plan.Build(spec)
}

// assignFreePorts gives every unset port a free one. The listeners stay open until all are
// assigned, so the kernel never hands out the same port twice.
func assignFreePorts(l *plan.Lab) error {
	var held []net.Listener
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	return l.AssignPorts(func() (int, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		held = append(held, ln)
		return ln.Addr().(*net.TCPAddr).Port, nil
	})
}

// checkPorts fails, naming the port and the component that wanted it, when a planned port
// is already taken on 127.0.0.1.
func checkPorts(l *plan.Lab) error {
	if c := l.PortConflicts(); len(c) > 0 {
		return errors.New(strings.Join(c, "; "))
	}
	for _, c := range l.Clusters {
		for _, p := range c.Ports.All() {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port))
			if err != nil {
				return fmt.Errorf("port %d on 127.0.0.1, planned for %s of cluster %s, is already in use; "+
					"stop what listens there or choose other ports with --api-port-base", p.Port, p.Name, c.Name)
			}
			ln.Close()
		}
	}
	return nil
}

// linkBinaries puts kubectl on a path the user can add to PATH.
func linkBinaries(d state.Dir, bins binaries.Set) error {
	if err := os.MkdirAll(d.BinDir(), 0o755); err != nil {
		return err
	}
	link := filepath.Join(d.BinDir(), binaries.Kubectl)
	_ = os.Remove(link)
	return os.Symlink(bins.Path(binaries.Kubectl), link)
}

// Up prepares the lab, starts its supervisor in the background and follows its progress
// until every cluster is ready. If the start fails the supervisor has already stopped what
// it started; Up reports its error.
func Up(ctx context.Context, o Options) (*plan.Lab, error) {
	l, err := Prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(o.Dir.SupervisorLog(), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(self, "lab", "supervise", "--state-dir", string(o.Dir))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = detached()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the lab supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	o.printf("Starting lab %s: %s\n", l.Name, strings.Join(l.Names(), ", "))
	if err := follow(ctx, o, exited); err != nil {
		return nil, err
	}
	return l, nil
}

// follow prints the supervisor's events until the lab runs or fails.
func follow(ctx context.Context, o Options, exited <-chan error) error {
	client := supervisor.NewControlClient(o.Dir)
	shown := 0
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := client.Events(ctx)
		if err == nil {
			for ; shown < len(st.Events); shown++ {
				e := st.Events[shown]
				prefix := ""
				if e.Cluster != "" {
					prefix = e.Cluster + ": "
				}
				o.printf("  %s %s%s\n", e.Time.Format("15:04:05"), prefix, e.Message)
			}
			switch st.Phase {
			case supervisor.PhaseRunning:
				return nil
			case supervisor.PhaseFailed:
				return fmt.Errorf("lab %s failed to start: %s", o.Name(), st.Error)
			}
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the lab supervisor exited (%v); its log %s ends with:\n%s", err, o.Dir.SupervisorLog(), tail(o.Dir.SupervisorLog(), 15))
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Down stops the lab: through its supervisor if it runs, otherwise by cleaning up whatever a
// dead supervisor left. With purge it also removes the state directory.
func Down(ctx context.Context, dir state.Dir, purge bool, out io.Writer) error {
	if err := checkHostBasics(); err != nil {
		return err
	}
	name := filepath.Base(string(dir))
	saved, err := state.Load(dir)
	if errors.Is(err, state.ErrNoLab) {
		fmt.Fprintf(out, "Lab %s does not exist; nothing to stop.\n", name)
		return nil
	}
	if err != nil {
		return err
	}
	if supervisor.Locked(dir) {
		fmt.Fprintf(out, "Stopping lab %s...\n", name)
		if err := supervisor.NewControlClient(dir).Shutdown(ctx); err != nil && !errors.Is(err, supervisor.ErrNotRunning) {
			return err
		}
		deadline := time.Now().Add(2 * time.Minute)
		for supervisor.Locked(dir) {
			if time.Now().After(deadline) {
				return fmt.Errorf("lab %s did not stop within 2 minutes; see %s", name, dir.SupervisorLog())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	// Also after a clean stop: it is cheap, and covers a supervisor that died mid-way.
	if err := supervisor.Cleanup(ctx, dir, saved.Lab); err != nil {
		return err
	}
	fmt.Fprintf(out, "Lab %s is stopped.\n", name)
	if purge {
		if err := state.RemoveAll(dir); err != nil {
			return err
		}
		fmt.Fprintf(out, "Removed its state %s.\n", dir)
	}
	return nil
}

// Status returns the running lab's status, or for a stopped lab its plan with phase Stopped.
func Status(ctx context.Context, dir state.Dir) (supervisor.Status, error) {
	saved, err := state.Load(dir)
	if err != nil {
		if errors.Is(err, state.ErrNoLab) {
			return supervisor.Status{}, fmt.Errorf("lab %s does not exist; start it with `strait lab up`", filepath.Base(string(dir)))
		}
		return supervisor.Status{}, err
	}
	if supervisor.Locked(dir) {
		st, err := supervisor.NewControlClient(dir).Status(ctx)
		if err == nil {
			return st, nil
		}
		if !errors.Is(err, supervisor.ErrNotRunning) {
			return st, err
		}
	}
	st := supervisor.Status{Lab: saved.Lab.Name, Phase: supervisor.PhaseStopped, Kubeconfig: dir.Kubeconfig()}
	for _, c := range saved.Lab.Clusters {
		st.Clusters = append(st.Clusters, supervisor.ClusterStatus{
			Name: c.Name, ID: c.ID, Region: c.Region, Zone: c.Zone, APIServer: state.APIServerURL(c),
			Netns: c.Namespace, NodeIP: c.NodeIP, PodCIDR: c.PodCIDR, ServiceCIDR: c.ServiceCIDR, DNSServiceIP: c.DNSServiceIP,
		})
	}
	return st, nil
}

// ExecCommand returns a command that runs args as a pod of the cluster would: in its
// network namespace, with the cluster's DNS in resolv.conf.
func ExecCommand(ctx context.Context, dir state.Dir, clusterName string, args []string) (*exec.Cmd, error) {
	if len(args) == 0 {
		return nil, errors.New("no command given; usage: strait lab exec <cluster> -- <command> [args...]")
	}
	if err := checkHostBasics(); err != nil {
		return nil, err
	}
	saved, err := state.Load(dir)
	if err != nil {
		return nil, err
	}
	c, err := saved.Lab.Cluster(clusterName)
	if err != nil {
		return nil, err
	}
	if !netns.Exists(c.Namespace) {
		return nil, fmt.Errorf("lab %s is not running (network namespace %s does not exist); start it with `strait lab up`", saved.Lab.Name, c.Namespace)
	}
	ipPath, err := lookPath("ip")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, ipPath, append([]string{"netns", "exec", c.Namespace}, args...)...), nil
}
