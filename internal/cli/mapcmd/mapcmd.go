// Package mapcmd implements `strait map`: it maps outside addresses to a local Service name
// by writing an ExternalService, which the agent turns into an ExternalName Service or a
// selector-less Service with EndpointSlices. (The package is not called "map", a Go keyword.)
package mapcmd

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/api/v1alpha1"
	"github.com/strait-io/strait/internal/cli/output"
	es "github.com/strait-io/strait/internal/externalservice"
	"github.com/strait-io/strait/internal/externalservice/esclient"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// FieldManager is the server-side apply field manager of `strait map`.
const FieldManager = "strait-map"

// Dry-run modes of --dry-run.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

type options struct {
	es.MapOptions
	kube    *kubeconfig.Flags
	dryRun  string
	output  string
	wait    bool
	timeout time.Duration
}

// New returns the `map` command.
func New() *cobra.Command {
	o := options{dryRun: dryRunNone}
	cmd := &cobra.Command{
		Use:   "map NAME --to HOST:PORT[,HOST:PORT...] [--port P]",
		Short: "Map outside services (IP addresses or a hostname) to a local Service name",
		Long: "Map writes an ExternalService NAME. The Strait agent turns it into the right standard\n" +
			"objects: one hostname without port remapping becomes an ExternalName Service; IP addresses\n" +
			"become a selector-less Service (ClusterIP, or --headless) with EndpointSlices, their ports\n" +
			"remapped to --port. With --health-check the agent checks every target and takes failing\n" +
			"ones out of the endpoints, so traffic fails over among several targets.\n\n" +
			"A hostname cannot have its port remapped and cannot be mixed with IP addresses: Strait does\n" +
			"not resolve names itself (see docs/externalservice.md).",
		Example: "  # MySQL of the test-1 environment on 192.168.1.10:3307, called as mysql:3306\n" +
			"  strait map mysql -n test-1 --to 192.168.1.10:3307 --port 3306\n" +
			"  # a service behind another cluster's NodePort, called on port 80\n" +
			"  strait map k8s3-s3 -n prod --to 192.168.0.199:30099 --port 80 --port-name http\n" +
			"  # a host behind an Ingress\n" +
			"  strait map k8s2-s2 -n prod --to abc.com:80\n" +
			"  # two replicas, health-checked\n" +
			"  strait map db --to 10.0.0.7:5432,10.0.0.8:5432 --health-check tcp --health-interval 5s\n" +
			"  # print the object without writing it\n" +
			"  strait map mysql --to 192.168.1.10:3307 --port 3306 --dry-run -o yaml",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			return o.run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Namespace: true})
	fl := cmd.Flags()
	fl.StringSliceVar(&o.Targets, "to", nil, "targets, HOST:PORT, comma-separated or repeated (IPv6 as [ADDR]:PORT)")
	fl.Int32Var(&o.Port, "port", 0, "port of the local Service (default: the targets' common port)")
	fl.StringVar(&o.PortName, "port-name", "", "name of the Service port")
	protocol := fl.String("protocol", string(corev1.ProtocolTCP), "protocol: TCP, UDP or SCTP")
	fl.BoolVar(&o.Headless, "headless", false, "a headless Service: DNS returns the target addresses (no port remapping)")
	fl.StringVar(&o.HealthCheck, "health-check", "", "check targets with tcp, http or http:/PATH")
	interval := fl.Duration("health-interval", es.DefaultIntervalSeconds*time.Second, "time between two checks of a target")
	timeout := fl.Duration("health-timeout", es.DefaultTimeoutSeconds*time.Second, "time after which a check fails")
	fl.Int32Var(&o.HealthyThreshold, "healthy-threshold", es.DefaultHealthyThreshold, "passes in a row before a failed target is used again")
	fl.Int32Var(&o.UnhealthyThreshold, "unhealthy-threshold", es.DefaultUnhealthyThreshold, "failures in a row before a target is taken out")
	fl.StringVar(&o.dryRun, "dry-run", dryRunNone, `"client" prints the ExternalService without writing it; "server" has the API server validate it`)
	fl.Lookup("dry-run").NoOptDefVal = dryRunClient
	fl.BoolVar(&o.wait, "wait", false, "wait until the agent reports the ExternalService Ready")
	fl.DurationVar(&o.timeout, "timeout", time.Minute, "how long --wait waits")
	output.AddFlag(cmd, &o.output, false)
	_ = cmd.MarkFlagRequired("to")
	cmd.PreRunE = func(*cobra.Command, []string) error {
		o.Protocol = corev1.Protocol(*protocol)
		o.IntervalSeconds = int32(interval.Seconds())
		o.TimeoutSeconds = int32(timeout.Seconds())
		if o.HealthCheck != "" && (*interval < time.Second || *timeout < time.Second) {
			return fmt.Errorf("--health-interval and --health-timeout must be at least 1s")
		}
		return nil
	}
	return cmd
}

func (o *options) run(ctx context.Context, w io.Writer) error {
	if err := output.Validate(o.output); err != nil {
		return err
	}
	switch o.dryRun {
	case dryRunNone, dryRunClient, dryRunServer:
	default:
		return fmt.Errorf("--dry-run %q: use client or server", o.dryRun)
	}
	o.Namespace, _ = o.kube.Namespace()
	obj, err := es.Map(o.MapOptions)
	if err != nil {
		return err
	}
	if o.dryRun == dryRunClient {
		format := o.output
		if format == output.Table || format == output.Wide {
			format = output.YAML
		}
		_, err := output.Structured(w, format, obj)
		return err
	}
	cfg, _, err := o.kube.RESTConfig()
	if err != nil {
		return err
	}
	client, err := esclient.New(cfg)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: FieldManager, Force: ptr.To(true)}
	if o.dryRun == dryRunServer {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	written, err := client.ExternalServices(o.Namespace).Apply(ctx, obj, opts)
	if err != nil {
		return fmt.Errorf("writing ExternalService %s/%s: %w", o.Namespace, o.Name, err)
	}
	if o.wait && o.dryRun == dryRunNone {
		if written, err = WaitReady(ctx, client, o.Namespace, o.Name, o.timeout); err != nil {
			return err
		}
	}
	written.APIVersion, written.Kind = v1alpha1.GroupVersion.String(), es.Kind
	written.ManagedFields = nil
	if ok, err := output.Structured(w, o.output, written); ok {
		return err
	}
	suffix := ""
	if o.dryRun == dryRunServer {
		suffix = " (server dry run)"
	}
	fmt.Fprintf(w, "externalservice.strait.io/%s written in namespace %s%s\n", o.Name, o.Namespace, suffix)
	if c := meta.FindStatusCondition(written.Status.Conditions, v1alpha1.ConditionReady); c != nil && o.wait {
		fmt.Fprintf(w, "Ready: %s (%s) %s\n", c.Status, c.Reason, c.Message)
	}
	return nil
}

// WaitReady waits until the agent reports the current generation of an ExternalService
// Ready, or fails with the condition's reason when it gives up.
func WaitReady(ctx context.Context, c *esclient.Client, ns, name string, timeout time.Duration) (*v1alpha1.ExternalService, error) {
	var last *v1alpha1.ExternalService
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		obj, err := c.ExternalServices(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = obj
		cond := meta.FindStatusCondition(obj.Status.Conditions, v1alpha1.ConditionReady)
		return cond != nil && cond.ObservedGeneration == obj.Generation && cond.Status == metav1.ConditionTrue, nil
	})
	if err == nil {
		return last, nil
	}
	why := "no status yet: is the strait agent running in this cluster?"
	if last != nil {
		if c := meta.FindStatusCondition(last.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			why = fmt.Sprintf("%s: %s", c.Reason, c.Message)
		}
	}
	return last, fmt.Errorf("ExternalService %s/%s is not Ready after %s (%s)", ns, name, timeout, why)
}
