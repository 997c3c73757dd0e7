// Package doctor implements `strait doctor`: it reads a cluster's Services, endpoints,
// ExternalServices, CoreDNS configuration and ServiceExports, probes hand-written endpoint
// addresses, prints what internal/doctor finds, and with --fix converts hand-made mappings
// into ExternalServices without a moment where the name does not resolve.
package doctor

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/internal/cli/output"
	findings "github.com/strait-io/strait/internal/doctor"
	"github.com/strait-io/strait/internal/externalservice/esclient"
	"github.com/strait-io/strait/internal/externalservice/probe"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// ExitProblems is the exit status when problems were found (and, with --fix, not all
// were fixed). Errors exit with 1.
const ExitProblems = 2

// Prober checks that something answers at an address.
type Prober interface {
	TCP(ctx context.Context, address string) error
}

// Options configure one run.
type Options struct {
	// Namespace is the namespace examined; "" examines all.
	Namespace string
	// Fix converts what can be converted.
	Fix bool
	// Probe probes hand-written endpoint addresses, each for at most ProbeTimeout.
	Probe        bool
	ProbeTimeout time.Duration
	// Prober dials the addresses; nil dials directly from where the doctor runs.
	Prober Prober
	// FixTimeout bounds the wait for one ExternalService to become Ready.
	FixTimeout time.Duration
}

// Report is what a run found and did.
type Report struct {
	Context   string             `json:"context,omitempty"`
	Namespace string             `json:"namespace"`
	Findings  []findings.Finding `json:"findings"`
	Fixes     []FixResult        `json:"fixes,omitempty"`
	Notes     []string           `json:"notes,omitempty"`
	Remaining int                `json:"remaining"`
	fixed     map[string]struct{}
}

// FixResult is the outcome of one conversion.
type FixResult struct {
	Service   string   `json:"service"`
	Converted bool     `json:"converted"`
	Steps     []string `json:"steps"`
	Error     string   `json:"error,omitempty"`
	After     string   `json:"after,omitempty"`
}

// New returns the `doctor` command.
func New() *cobra.Command {
	var (
		kube   *kubeconfig.Flags
		format string
		all    bool
	)
	o := Options{Probe: true, ProbeTimeout: 2 * time.Second, FixTimeout: 2 * time.Minute}
	cmd := &cobra.Command{
		Use:   "doctor [-n NS | -A] [--fix]",
		Short: "Find hand-made service mappings that go wrong, and convert them to ExternalServices",
		Long: "Doctor looks for the ways outside services get mapped by hand and break: ExternalName\n" +
			"Services holding an IP address or a name invented in CoreDNS's hosts block, targetPorts an\n" +
			"ExternalName ignores, selector-less Services without endpoints or whose port names do not\n" +
			"match their endpoints, hand-written endpoints nothing answers at (probed with a TCP connect\n" +
			"from where doctor runs), CoreDNS hosts entries that shadow Service names, conflicting\n" +
			"exports and ExternalServices that are not Ready. For each it prints the problem, why it\n" +
			"hurts and the fix.\n\n" +
			"--fix converts what it can: it creates the ExternalService, hands the existing Service over\n" +
			"to it (the Service is converted in place, never deleted) and deletes hand-written endpoints\n" +
			"only once the new ones are ready, so the name resolves and connects throughout.\n\n" +
			"Exit status: 0 nothing found (or everything fixed), 2 problems remain, 1 error.",
		Example: "  strait doctor -A\n  strait doctor -n prod --fix\n  strait doctor -n test-1 -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format); err != nil {
				return err
			}
			cfg, name, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			ns, explicit := kube.Namespace()
			switch {
			case all && explicit:
				return fmt.Errorf("give either -n or -A")
			case all:
				o.Namespace = ""
			default:
				o.Namespace = ns
			}
			rep, err := Run(cmd.Context(), cfg, o)
			if err != nil {
				return err
			}
			rep.Context = name
			if err := Print(cmd.OutOrStdout(), format, rep); err != nil {
				return err
			}
			if rep.Remaining > 0 {
				return &output.ExitError{Code: ExitProblems}
			}
			return nil
		},
	}
	kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Namespace: true, NamespaceUsage: "namespace to examine (default: the context's namespace)"})
	fl := cmd.Flags()
	fl.BoolVarP(&all, "all-namespaces", "A", false, "examine every namespace")
	fl.BoolVar(&o.Fix, "fix", false, "convert what can be converted into ExternalServices")
	fl.BoolVar(&o.Probe, "probe", o.Probe, "probe hand-written endpoint addresses with a TCP connect")
	fl.DurationVar(&o.ProbeTimeout, "probe-timeout", o.ProbeTimeout, "how long one probe waits for an answer")
	fl.DurationVar(&o.FixTimeout, "fix-timeout", o.FixTimeout, "how long --fix waits for one ExternalService to become Ready")
	output.AddFlag(cmd, &format, false)
	return cmd
}

// Run examines a cluster and, with o.Fix, converts.
func Run(ctx context.Context, cfg *rest.Config, o Options) (*Report, error) {
	c, err := newClients(cfg)
	if err != nil {
		return nil, err
	}
	in, notes, err := c.gather(ctx, o.Namespace)
	if err != nil {
		return nil, err
	}
	if o.Probe {
		in.Probed = probeAll(ctx, o, findings.ProbeTargets(in))
	} else {
		notes = append(notes, "endpoint addresses were not probed (--probe=false)")
	}
	rep := &Report{Namespace: o.Namespace, Findings: findings.Analyze(in), Notes: notes, fixed: map[string]struct{}{}}
	if o.Fix {
		done := map[string]bool{}
		for _, f := range rep.Findings {
			conv := f.Conversion
			if conv == nil {
				continue
			}
			k := conv.ExternalService.Namespace + "/" + conv.ExternalService.Name
			if done[k] {
				continue
			}
			done[k] = true
			if c.es == nil {
				rep.Fixes = append(rep.Fixes, FixResult{Service: k, Error: "ExternalServices are not served by this cluster: install the CRD (config/crd) and the strait agent"})
				continue
			}
			res := c.convert(ctx, conv, o.FixTimeout)
			if res.Converted {
				rep.fixed[k] = struct{}{}
			}
			rep.Fixes = append(rep.Fixes, res)
		}
	}
	for _, f := range rep.Findings {
		if f.Conversion != nil {
			if _, ok := rep.fixed[f.Conversion.ExternalService.Namespace+"/"+f.Conversion.ExternalService.Name]; ok {
				continue
			}
		}
		rep.Remaining++
	}
	return rep, nil
}

// clients are the API clients of one run.
type clients struct {
	kube kubernetes.Interface
	disc discovery.DiscoveryInterface
	mcs  mcsclient.Interface
	es   *esclient.Client // nil when ExternalServices are not served
}

func newClients(cfg *rest.Config) (*clients, error) {
	cfg = rest.CopyConfig(cfg)
	// Reading v1 Endpoints (deprecated for writing, still what people hand-write) warns.
	cfg.WarningHandler = rest.NoWarnings{}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	c := &clients{kube: kube, disc: kube.Discovery()}
	if c.mcs, err = mcsclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	served, err := esclient.Served(c.disc)
	if err != nil {
		return nil, err
	}
	if served {
		if c.es, err = esclient.New(cfg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// gather lists what the analysis reads. Optional sources (CoreDNS's ConfigMap, MCS) that
// cannot be read are noted, not errors.
func (c *clients) gather(ctx context.Context, ns string) (findings.Inputs, []string, error) {
	in := findings.Inputs{Namespace: ns}
	var notes []string
	opts := metav1.ListOptions{}
	svcs, err := c.kube.CoreV1().Services(ns).List(ctx, opts)
	if err != nil {
		return in, nil, fmt.Errorf("listing Services: %w", err)
	}
	for i := range svcs.Items {
		in.Services = append(in.Services, &svcs.Items[i])
	}
	eps, err := c.kube.CoreV1().Endpoints(ns).List(ctx, opts) //nolint:staticcheck // hand-written Endpoints are what doctor looks for
	if err != nil {
		return in, nil, fmt.Errorf("listing Endpoints: %w", err)
	}
	for i := range eps.Items {
		in.Endpoints = append(in.Endpoints, &eps.Items[i])
	}
	slices, err := c.kube.DiscoveryV1().EndpointSlices(ns).List(ctx, opts)
	if err != nil {
		return in, nil, fmt.Errorf("listing EndpointSlices: %w", err)
	}
	for i := range slices.Items {
		in.Slices = append(in.Slices, &slices.Items[i])
	}
	if c.es != nil {
		list, err := c.es.ExternalServices(ns).List(ctx, opts)
		if err != nil {
			return in, nil, fmt.Errorf("listing ExternalServices: %w", err)
		}
		for i := range list.Items {
			in.ExternalServices = append(in.ExternalServices, &list.Items[i])
		}
	} else {
		notes = append(notes, "this cluster does not serve ExternalServices (strait.io/v1alpha1); --fix needs the CRD and the strait agent")
	}
	cm, err := c.kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{})
	switch {
	case err == nil:
		cf, err := findings.ReadCorefile(cm.Data["Corefile"], cm.Data)
		if err != nil {
			notes = append(notes, fmt.Sprintf("cannot read the Corefile of ConfigMap kube-system/coredns (%v): CoreDNS hosts entries were not checked", err))
			break
		}
		in.Corefile = &cf
		notes = append(notes, cf.Notes...)
	case apierrors.IsNotFound(err):
		notes = append(notes, "no ConfigMap kube-system/coredns: CoreDNS hosts entries were not checked")
	default:
		notes = append(notes, fmt.Sprintf("cannot read ConfigMap kube-system/coredns (%v): CoreDNS hosts entries were not checked", err))
	}
	if ok, _ := servesResource(c.disc, "multicluster.x-k8s.io/v1beta1", "serviceexports"); ok {
		list, err := c.mcs.MulticlusterV1beta1().ServiceExports(ns).List(ctx, opts)
		if err != nil {
			notes = append(notes, fmt.Sprintf("cannot list ServiceExports (%v): exports were not checked", err))
		} else {
			for _, e := range list.Items {
				in.Exports = append(in.Exports, findings.Export{Namespace: e.Namespace, Name: e.Name, Conditions: e.Status.Conditions})
			}
		}
	}
	return in, notes, nil
}

func servesResource(d discovery.DiscoveryInterface, gv, resource string) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(gv)
	if err != nil {
		return false, err
	}
	for _, r := range list.APIResources {
		if r.Name == resource {
			return true, nil
		}
	}
	return false, nil
}

// probeAll probes addresses concurrently, each for at most o.ProbeTimeout.
func probeAll(ctx context.Context, o Options, addresses []string) map[string]error {
	p := o.Prober
	if p == nil {
		p = probe.Prober{}
	}
	out := make(map[string]error, len(addresses))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for _, a := range addresses {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			pctx, cancel := context.WithTimeout(ctx, o.ProbeTimeout)
			defer cancel()
			err := p.TCP(pctx, a)
			mu.Lock()
			out[a] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// Print writes the report as a table for people or as JSON/YAML.
func Print(w io.Writer, format string, rep *Report) error {
	if rep.Findings == nil {
		rep.Findings = []findings.Finding{}
	}
	if ok, err := output.Structured(w, format, rep); ok {
		return err
	}
	scope := "namespace " + rep.Namespace
	if rep.Namespace == "" {
		scope = "all namespaces"
	}
	if rep.Context != "" {
		scope += " of " + rep.Context
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(rep.Findings) == 0 {
		fmt.Fprintf(w, "No problems found in %s.\n", scope)
		return nil
	}
	fmt.Fprintf(w, "%d problem(s) in %s:\n", len(rep.Findings), scope)
	shown := map[*findings.Conversion]bool{}
	for i, f := range rep.Findings {
		fmt.Fprintf(w, "\n%d. %s: %s\n", i+1, f.Code, f.Object)
		fmt.Fprintf(w, "   Problem: %s\n", f.Problem)
		fmt.Fprintf(w, "   Why:     %s\n", f.Why)
		fmt.Fprintf(w, "   Fix:     %s\n", f.Fix)
		if f.Conversion != nil && !shown[f.Conversion] {
			shown[f.Conversion] = true
			data, err := yaml.Marshal(f.Conversion.ExternalService)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "   ExternalService:\n%s", indent(string(data), "     "))
		}
	}
	if len(rep.Fixes) > 0 {
		fmt.Fprintln(w, "\nFixes:")
		for _, f := range rep.Fixes {
			state := "converted"
			if !f.Converted {
				state = "NOT converted: " + f.Error
			}
			fmt.Fprintf(w, "  %s: %s\n", f.Service, state)
			for _, s := range f.Steps {
				fmt.Fprintf(w, "    - %s\n", s)
			}
			if f.After != "" && f.Converted {
				fmt.Fprintf(w, "    - left to do: %s\n", f.After)
			}
		}
	}
	if rep.Remaining == 0 {
		fmt.Fprintln(w, "\nEverything found was fixed.")
	} else {
		fmt.Fprintf(w, "\n%d problem(s) remain.\n", rep.Remaining)
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
