// Package lab implements `strait lab`: a local lab of real Kubernetes clusters (etcd,
// kube-apiserver, kube-controller-manager, kube-proxy, CoreDNS) joined by a lab network.
package lab

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/cli/output"
	labpkg "github.com/strait-io/strait/internal/lab"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// ExitError is returned when a command run by `lab exec` fails, carrying its exit status.
// It is output.ExitError, so that commands need not import the lab to use it.
type ExitError = output.ExitError

// options shared by the lab commands.
type options struct {
	lab string
}

func (o *options) dir() (state.Dir, error) {
	if err := plan.ValidateLabName(o.lab); err != nil {
		return "", err
	}
	return state.ForLab(o.lab)
}

// New returns the `lab` command group.
func New() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Run a local lab of real Kubernetes clusters (needs root)",
		Long: "The lab runs real etcd, kube-apiserver, kube-controller-manager, kube-proxy (nftables)\n" +
			"and CoreDNS per cluster on this machine. Each cluster's node is a network namespace\n" +
			"joined to the others by a lab router; a node simulator stands in for the kubelet and\n" +
			"answers HTTP on pod addresses. Binaries are built from source the first time.",
	}
	def := os.Getenv("STRAIT_LAB")
	if def == "" {
		def = labpkg.DefaultName
	}
	cmd.PersistentFlags().StringVar(&o.lab, "lab", def, "name of the lab (env STRAIT_LAB)")
	cmd.AddCommand(newUp(o), newDown(o), newStatus(o), newExec(o), newEnv(o), newBinaries(), newImages(), newLoadImage(o), newComponent(o, "stop"), newComponent(o, "start"), newSupervise())
	return cmd
}

func newUp(o *options) *cobra.Command {
	var clusters, portBase int
	var names []string
	var agentPods bool
	cmd := &cobra.Command{
		Use:     "up",
		Short:   "Start the lab (default: clusters cluster01 and cluster02)",
		Example: "  strait lab up\n  strait lab up --clusters 3\n  strait lab up --names east,west",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("clusters") && cmd.Flags().Changed("names") {
				return errors.New("give either --clusters or --names, not both")
			}
			if cmd.Flags().Changed("clusters") && (clusters < 1 || clusters > plan.MaxClusters) {
				return fmt.Errorf("--clusters %d: the lab needs between 1 and %d clusters", clusters, plan.MaxClusters)
			}
			if cmd.Flags().Changed("names") {
				if err := validateNames(names); err != nil {
					return err
				}
			}
			dir, err := o.dir()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			agentBinary := ""
			if agentPods {
				if agentBinary, err = os.Executable(); err != nil {
					return err
				}
			}
			l, err := labpkg.Up(cmd.Context(), labpkg.Options{
				Dir: dir, Names: names, Clusters: clusters, APIPortBase: portBase,
				Builder:     &binaries.Builder{Progress: buildProgress(out)},
				AgentBinary: agentBinary,
				Out:         out,
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "\nLab %s is up with %d clusters: %s.\n", l.Name, len(l.Clusters), strings.Join(l.Names(), ", "))
			fmt.Fprintf(out, "Use it with:\n")
			printEnv(out, dir)
			fmt.Fprintf(out, "Then e.g.: kubectl --context %s get nodes; strait lab exec %s -- dig kubernetes.default.svc.cluster.local\n",
				l.Clusters[0].Name, l.Clusters[0].Name)
			return nil
		},
	}
	cmd.Flags().IntVar(&clusters, "clusters", 0, fmt.Sprintf("number of clusters, named cluster01..clusterNN (1-%d; default 2)", plan.MaxClusters))
	cmd.Flags().StringSliceVar(&names, "names", nil, "cluster names (DNS-1123 labels), comma-separated")
	cmd.Flags().BoolVar(&agentPods, "agent-pods", false, "run each cluster's Strait agent as pods of the Helm chart, installed as strait join --install installs it, "+
		"from an image of this strait binary that every node loads (default: inside the lab's supervisor, with the chart's RBAC)")
	cmd.Flags().IntVar(&portBase, "api-port-base", plan.DefaultAPIPortBase,
		"cluster i's API server listens on 127.0.0.1:<base+i>; etcd on base+100+i and base+200+i, the controller manager on base+300+i, the strait agent's metrics and health on base+400+i and base+500+i")
	return cmd
}

// validateNames checks --names before anything else happens.
func validateNames(names []string) error {
	spec := plan.Spec{Lab: "lab", APIPortBase: plan.DefaultAPIPortBase}
	for _, n := range names {
		spec.Clusters = append(spec.Clusters, plan.ClusterSpec{Name: n})
	}
	return spec.Validate()
}

// buildProgress prints one line per module and a line every 10% of a module's packages.
func buildProgress(w io.Writer) func(binaries.Progress) {
	lastPct := map[string]int{}
	return func(p binaries.Progress) {
		switch p.Step {
		case "build":
			if p.Total == 0 {
				return
			}
			pct := p.Done * 100 / p.Total / 10 * 10
			if pct > lastPct[p.Module] || p.Done == 1 {
				lastPct[p.Module] = pct
				fmt.Fprintf(w, "  building %s: %d%% (%d/%d packages)\n", p.Module, pct, p.Done, p.Total)
			}
		default:
			msg := p.Message
			if msg == "" {
				msg = p.Module
			}
			fmt.Fprintf(w, "  %s: %s\n", p.Step, msg)
		}
	}
}

func printEnv(w io.Writer, dir state.Dir) {
	fmt.Fprintf(w, "export KUBECONFIG=%s\n", dir.Kubeconfig())
	fmt.Fprintf(w, "export PATH=%s:$PATH\n", dir.BinDir())
}

func newEnv(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "env",
		Short: "Print the export lines that point kubectl at the lab (eval \"$(strait lab env)\")",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := o.dir()
			if err != nil {
				return err
			}
			if _, err := state.Load(dir); err != nil {
				return fmt.Errorf("lab %s does not exist; start it with `strait lab up`", o.lab)
			}
			printEnv(cmd.OutOrStdout(), dir)
			return nil
		},
	}
}

func newDown(o *options) *cobra.Command {
	var purge bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Stop everything the lab started; --purge also removes its state (certificates, etcd data)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := o.dir()
			if err != nil {
				return err
			}
			return labpkg.Down(cmd.Context(), dir, purge, cmd.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the lab's state directory")
	return cmd
}

func newStatus(o *options) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's clusters, addresses, processes and health",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format); err != nil {
				return err
			}
			dir, err := o.dir()
			if err != nil {
				return err
			}
			st, err := labpkg.Status(cmd.Context(), dir)
			if err != nil {
				return err
			}
			st.Events = nil
			w := cmd.OutOrStdout()
			if ok, err := output.Structured(w, format, st); ok {
				return err
			}
			printStatus(w, st, format == output.Wide)
			return nil
		},
	}
	output.AddFlag(cmd, &format, true)
	return cmd
}

func printStatus(w io.Writer, st supervisor.Status, wide bool) {
	fmt.Fprintf(w, "Lab %s: %s", st.Lab, st.Phase)
	if st.Error != "" {
		fmt.Fprintf(w, " (%s)", st.Error)
	}
	fmt.Fprintf(w, "\nKUBECONFIG=%s\n\n", st.Kubeconfig)
	t := output.NewTable(w)
	fmt.Fprintln(t, "CLUSTER\tREGION\tZONE\tAPI SERVER\tNODE IP\tPOD CIDR\tSERVICE CIDR\tDNS\tHEALTHY")
	for _, c := range st.Clusters {
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Region, c.Zone, c.APIServer, c.NodeIP,
			c.PodCIDR, c.ServiceCIDR, c.DNSServiceIP, yesNo(c.Healthy, st.Phase))
	}
	t.Flush()
	if st.Phase == supervisor.PhaseStopped {
		return
	}
	fmt.Fprintln(w)
	t = output.NewTable(w)
	header := "CLUSTER\tCOMPONENT\tSTATE\tPID\tHEALTHY\tDETAIL"
	if wide {
		header += "\tLOG"
	}
	fmt.Fprintln(t, header)
	for _, c := range st.Clusters {
		for _, comp := range c.Components {
			pid := "-"
			if comp.PID > 0 {
				pid = fmt.Sprint(comp.PID)
			}
			line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", c.Name, comp.Name, comp.State, pid, yesNo(comp.Healthy, st.Phase), oneLine(comp.Detail))
			if wide {
				line += "\t" + comp.Log
			}
			fmt.Fprintln(t, line)
		}
	}
	t.Flush()
}

func yesNo(ok bool, phase string) string {
	if phase == supervisor.PhaseStopped {
		return "-"
	}
	if ok {
		return "yes"
	}
	return "no"
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

func newExec(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "exec CLUSTER -- COMMAND [ARGS...]",
		Short: "Run a command as a pod of the cluster would: in its network, with its DNS",
		Example: "  strait lab exec cluster01 -- dig kubernetes.default.svc.cluster.local\n" +
			"  strait lab exec cluster01 -- curl -s http://rebel-base.default/",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 && len(args) > 1 {
				return errors.New("put the command after --, e.g. strait lab exec cluster01 -- dig kubernetes.default")
			}
			dir, err := o.dir()
			if err != nil {
				return err
			}
			c, err := labpkg.ExecCommand(cmd.Context(), dir, args[0], args[1:])
			if err != nil {
				return err
			}
			c.Stdin, c.Stdout, c.Stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
			if err := c.Run(); err != nil {
				var exit *exec.ExitError
				if errors.As(err, &exit) {
					return &output.ExitError{Code: exit.ExitCode()}
				}
				return err
			}
			return nil
		},
	}
}

// newSupervise is the hidden command `lab up` starts in the background.
func newSupervise() *cobra.Command {
	var dir string
	cmd := &cobra.Command{
		Use:    "supervise",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(dir)
			if err != nil {
				return err
			}
			s, err := supervisor.New(state.Dir(abs))
			if err != nil {
				return err
			}
			defer klog.Flush()
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&dir, "state-dir", "", "the lab's state directory")
	_ = cmd.MarkFlagRequired("state-dir")
	return cmd
}

func newBinaries() *cobra.Command {
	return &cobra.Command{
		Use:   "binaries",
		Short: "Build the lab's Kubernetes binaries from source (or find them in the cache) and print where they are",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			b := &binaries.Builder{Progress: buildProgress(cmd.ErrOrStderr())}
			set, err := b.Ensure(cmd.Context())
			if err != nil {
				return err
			}
			versions, err := binaries.Versions()
			if err != nil {
				return err
			}
			for _, k := range binaries.Modules() {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s %s\n", k, versions[k])
			}
			fmt.Fprintln(out, set.Dir)
			return nil
		},
	}
}

// newComponent returns `lab stop` or `lab start`, which stop and start one component of a
// running lab to try how the rest copes (an agent down, the broker's API server down).
func newComponent(o *options, action string) *cobra.Command {
	return &cobra.Command{
		Use:     action + " CLUSTER COMPONENT",
		Short:   strings.ToUpper(action[:1]) + action[1:] + " one component of a running lab cluster (" + strings.Join(supervisor.ComponentNames, ", ") + ")",
		Example: fmt.Sprintf("  strait lab %[1]s cluster02 strait-agent\n  strait lab %[1]s cluster01 kube-apiserver\n  strait lab %[1]s cluster01 strait-dns   # the lab's strait dns, on the broker cluster only", action),
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains(supervisor.ComponentNames, args[1]) {
				return fmt.Errorf("unknown component %q; the components are %s", args[1], strings.Join(supervisor.ComponentNames, ", "))
			}
			dir, err := o.dir()
			if err != nil {
				return err
			}
			if err := supervisor.NewControlClient(dir).Component(cmd.Context(), args[0], args[1], action); err != nil {
				if errors.Is(err, supervisor.ErrNotRunning) {
					return fmt.Errorf("lab %s is not running", o.lab)
				}
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s of %s: %s\n", args[1], args[0], map[string]string{"stop": "stopped", "start": "started"}[action])
			return nil
		},
	}
}

func newImages() *cobra.Command {
	var straitImage bool
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Build the lab's container images as archives (or find them in the cache) and print where they are",
		Long: "Builds strait.io/lab/pause, strait.io/lab/rebel-base (also strait.io/lab/echo) and\n" +
			"strait.io/lab/debug, with --strait also strait.io/strait:<version> of this binary, as\n" +
			"OCI image archives that `ctr images import`, `kind load image-archive` and `docker load`\n" +
			"accept. No container engine or registry is involved.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b := &images.Builder{Progress: func(m string) { fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", m) }}
			built, err := b.BuildAll(cmd.Context())
			if err != nil {
				return err
			}
			if straitImage {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				img, err := b.Strait(cmd.Context(), exe, "")
				if err != nil {
					return err
				}
				built = append(built, img)
			}
			t := output.NewTable(cmd.OutOrStdout())
			fmt.Fprintln(t, "IMAGE\tDIGEST\tARCHIVE")
			for _, img := range built {
				fmt.Fprintf(t, "%s\t%s\t%s\n", strings.Join(img.Refs, ","), img.Digest, img.Path)
			}
			return t.Flush()
		},
	}
	cmd.Flags().BoolVar(&straitImage, "strait", false, "also build strait.io/strait:<version> of this (statically linked) strait binary")
	return cmd
}

func newLoadImage(o *options) *cobra.Command {
	var nodes []string
	cmd := &cobra.Command{
		Use:   "load-image ARCHIVE|IMAGE",
		Short: "Load an image archive, or one of the lab's images, into the lab's nodes (like kind load)",
		Long: "Imports an image archive (an OCI image layout or `docker save` tar) into the containerd of\n" +
			"every node of the lab, or of the nodes --nodes names, in the namespace the kubelet uses.\n" +
			"Instead of a file, name one of the lab's images (strait.io/lab/rebel-base, .../pause,\n" +
			".../debug) or strait.io/strait[:<version>] for this strait binary: it is built first.\n" +
			"Everything is checked before anything is imported: with a node whose containerd does\n" +
			"not answer, no node gets the image.",
		Example: "  strait lab load-image strait.io/lab/debug\n" +
			"  strait lab load-image ./my-app.tar --nodes cluster02-node\n" +
			"  strait lab load-image strait.io/strait",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if os.Geteuid() != 0 {
				return errors.New("strait lab load-image needs root: the nodes' containerd sockets belong to root")
			}
			dir, err := o.dir()
			if err != nil {
				return err
			}
			return labpkg.LoadImage(cmd.Context(), labpkg.LoadImageOptions{
				Dir: dir, Image: args[0], Nodes: nodes, Out: cmd.OutOrStdout(),
				Images: &images.Builder{Progress: func(m string) { fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", m) }},
			})
		},
	}
	cmd.Flags().StringSliceVar(&nodes, "nodes", nil, "nodes to load into (node names like cluster01-node, or cluster names), comma-separated; default: all")
	return cmd
}
