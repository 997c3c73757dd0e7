// Package federation implements `strait federation`: `status` shows each federated Service
// with its shards per cluster, zone and region, their health, the DNS records they make and
// where those are published; `controller` writes the federated Services' status on a
// dedicated broker (a broker that is also a member gets it from its agent).
package federation

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/publish/dnsendpoint"
	"github.com/strait-io/strait/internal/dns/zone"
	fedpkg "github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/federation/brokerstatus"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// New returns the `federation` command group.
func New() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Federated Services: one Service on the broker, a shard in every selected member, DNS by health",
		Long: "A Service applied to the broker's federation namespace (default " + fedpkg.DefaultNamespace + ") is\n" +
			"created by every selected member's agent under the same namespace and name; annotate it\n" +
			fedpkg.AnnotationClusters + ": a,b to select clusters. The broker Service's status lists\n" +
			"every shard's ingress and, per cluster, whether its shard exists and is healthy.",
	}
	cmd.AddCommand(newStatus(), newController())
	return cmd
}

// Report is what `strait federation status` shows.
type Report struct {
	Broker     string          `json:"broker"`
	Namespace  string          `json:"namespace"`
	Federation string          `json:"federation"`
	Domain     string          `json:"domain,omitempty"`
	Services   []ServiceReport `json:"services"`
}

// ServiceReport is one federated Service.
type ServiceReport struct {
	fedpkg.ServiceStatus `json:",inline"`
	// Records are the DNS records strait dns serves and publishes for it (with --domain).
	Records []string `json:"records,omitempty"`
	// DNSEndpoints are the DNSEndpoint objects strait dns wrote for it on the broker, for
	// ExternalDNS.
	DNSEndpoints []string `json:"dnsEndpoints,omitempty"`
}

func newStatus() *cobra.Command {
	var (
		kube           *kubeconfig.Flags
		format, domain string
	)
	ttl := zone.DefaultTTL
	cfg := fedpkg.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show each federated Service, its shards per cluster, zone and region, their health and DNS records",
		Args:  cobra.NoArgs,
		Example: "  strait federation status --context cluster01\n" +
			"  strait federation status --context cluster01 --domain example.com -o yaml",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format); err != nil {
				return err
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			zcfg := zone.Config{Domain: domain, DefaultTTL: ttl, Federations: []string{cfg.Name}}
			if domain != "" {
				if err := zcfg.Validate(); err != nil {
					return fmt.Errorf("--domain %s --ttl %s: %w", domain, ttl, err)
				}
			}
			rc, name, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			broker, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			dyn, err := dynamic.NewForConfig(rc)
			if err != nil {
				return err
			}
			ctx, cancel := contextWithTimeout(cmd.Context())
			defer cancel()
			snap, err := fedpkg.ReadSnapshot(ctx, broker, cfg)
			if err != nil {
				return fmt.Errorf("context %s: %w", name, err)
			}
			rep := &Report{Broker: name, Namespace: cfg.Namespace, Federation: cfg.Name, Domain: domain}
			for _, st := range fedpkg.AggregateAll(snap) {
				sr := ServiceReport{ServiceStatus: st}
				if domain != "" {
					recs, err := zone.Records(zcfg, []zone.Service{fedpkg.ZoneService(st)})
					if err != nil {
						sr.Problems = append(sr.Problems, "DNS: "+err.Error())
					}
					for _, r := range recs {
						if r.Service == (zone.ServiceKey{Namespace: st.Namespace, Name: st.Name, Federation: st.Federation}) {
							sr.Records = append(sr.Records, r.String())
						}
					}
				}
				sr.DNSEndpoints = dnsEndpoints(ctx, dyn, zone.ServiceKey{Namespace: st.Namespace, Name: st.Name, Federation: st.Federation})
				rep.Services = append(rep.Services, sr)
			}
			w := cmd.OutOrStdout()
			if ok, err := output.Structured(w, format, rep); ok {
				return err
			}
			Print(w, rep, format == output.Wide)
			return nil
		},
	}
	kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Cluster: "the broker"})
	cmd.Flags().StringVar(&domain, "domain", "", "federation DNS domain: also show the records strait dns serves for each Service")
	cmd.Flags().DurationVar(&ttl, "ttl", ttl, "default TTL of the records shown, as given to strait dns serve --ttl")
	cfg.AddFlags(cmd.Flags())
	cmd.Flags().DurationVar(&cfg.Grace, "member-grace-period", cfg.Grace, "how long after a member's lease expired its shards still count as healthy")
	output.AddFlag(cmd, &format, true)
	return cmd
}

func contextWithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

var dnsEndpointGVR = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

// dnsEndpoints finds the DNSEndpoint objects strait dns wrote for a service on the broker.
// A broker without the CRD, or a credential that may not read them, shows none.
func dnsEndpoints(ctx context.Context, dyn dynamic.Interface, k zone.ServiceKey) []string {
	list, err := dyn.Resource(dnsEndpointGVR).Namespace(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue}).String(),
	})
	if err != nil {
		if !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err) {
			fmt.Fprintf(os.Stderr, "Warning: listing DNSEndpoints: %v\n", err)
		}
		return nil
	}
	var out []string
	want := dnsendpoint.ObjectName(k)
	for _, o := range list.Items {
		if o.GetName() == want {
			out = append(out, fmt.Sprintf("DNSEndpoint %s/%s (owner %s)", o.GetNamespace(), o.GetName(), o.GetLabels()[dnsendpoint.OwnerLabel]))
		}
	}
	return out
}

// Print writes the report as tables.
func Print(w io.Writer, rep *Report, wide bool) {
	fmt.Fprintf(w, "Federation %q: Services in namespace %s on %s\n", rep.Federation, rep.Namespace, rep.Broker)
	if len(rep.Services) == 0 {
		fmt.Fprintln(w, "No federated Services.")
		return
	}
	for _, s := range rep.Services {
		healthy := 0
		for _, sh := range s.Shards {
			if sh.Healthy {
				healthy++
			}
		}
		ttl := "default"
		if s.TTL > 0 {
			ttl = s.TTL.String()
		}
		fmt.Fprintf(w, "\n%s/%s: %d of %d shards healthy, DNS TTL %s\n", s.Namespace, s.Name, healthy, len(s.Shards), ttl)
		for _, p := range s.Problems {
			fmt.Fprintf(w, "  problem: %s\n", p)
		}
		if len(s.Unknown) > 0 {
			fmt.Fprintf(w, "  unknown clusters in %s (nothing placed there): %s\n", fedpkg.AnnotationClusters, strings.Join(s.Unknown, ", "))
		}
		t := output.NewTable(w)
		header := "  CLUSTER\tREGION\tZONE\tSHARD\tHEALTHY\tREADY\tINGRESS\tREASON"
		if wide {
			header += "\tPORTS\tCLUSTER-IPS\tMESSAGE"
		}
		fmt.Fprintln(t, header)
		for _, sh := range s.Shards {
			line := fmt.Sprintf("  %s\t%s\t%s\t%s\t%s\t%d\t%s\t%s", sh.Cluster, orDash(sh.Region), orDash(sh.Zone), orDash(string(sh.State)),
				yesNo(sh.Healthy), sh.ReadyEndpoints, ingress(sh.Ingress), sh.Reason)
			if wide {
				line += fmt.Sprintf("\t%s\t%s\t%s", ports(sh.Ingress), orDash(addrs(sh.ClusterIPs)), sh.Message)
			}
			fmt.Fprintln(t, line)
		}
		t.Flush()
		if len(s.Records) > 0 {
			fmt.Fprintf(w, "  DNS records (%s):\n", rep.Domain)
			for _, r := range s.Records {
				fmt.Fprintf(w, "    %s\n", r)
			}
		}
		for _, d := range s.DNSEndpoints {
			fmt.Fprintf(w, "  published as %s\n", d)
		}
	}
}

func ingress(in fedpkg.Ingress) string {
	parts := []string{}
	if a := addrs(in.IPs); a != "" {
		parts = append(parts, a)
	}
	parts = append(parts, in.Hostnames...)
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",") + " (" + string(in.Source) + ")"
}

func ports(in fedpkg.Ingress) string {
	var out []string
	for _, p := range in.Ports {
		out = append(out, strconv.Itoa(int(p.Port))+"/"+string(p.Protocol))
	}
	return orDash(strings.Join(out, ","))
}

func addrs(in []netip.Addr) string {
	s := make([]string, len(in))
	for i, a := range in {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newController() *cobra.Command {
	var (
		kube                    *kubeconfig.Flags
		identity                string
		metricsAddr, healthAddr = ":9090", ":8081"
	)
	leaderElect := true
	workers := 2
	cfg := fedpkg.DefaultConfig()
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Write the federated Services' status on a dedicated broker (ingress union, per-cluster shard conditions)",
		Long: "Members report their shards in their own broker namespaces; the status of the federated\n" +
			"Services is written by the agent of the member cluster that hosts the broker. A broker\n" +
			"that is not a member runs this instead, with credentials that may update services/status\n" +
			"in the federation namespace. Replicas elect a leader through a Lease there.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := cfg.Validate(); err != nil {
				return err
			}
			rc, _, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			rc.UserAgent = "strait-federation-controller" // its field manager on what it writes
			broker, err := kubernetes.NewForConfig(rc)
			if err != nil {
				return err
			}
			if leaderElect && identity == "" {
				host, _ := os.Hostname()
				identity = fmt.Sprintf("%s_%d", host, os.Getpid())
			}
			if !leaderElect {
				identity = ""
			}
			brokerMCS, err := mcsclient.NewForConfig(rc)
			if err != nil {
				return err
			}
			return brokerstatus.Run(cmd.Context(), brokerstatus.Options{
				Config: cfg, Broker: broker, BrokerMCS: brokerMCS, Workers: workers, Identity: identity, Component: "strait-federation-controller",
				MetricsAddress: metricsAddr, HealthAddress: healthAddr,
			})
		},
	}
	kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Cluster: "the broker"})
	cmd.Flags().BoolVar(&leaderElect, "leader-elect", leaderElect, "elect a leader among replicas through the Lease "+brokerstatus.LeaseName+" in the federation namespace")
	cmd.Flags().StringVar(&identity, "identity", "", "this replica's identity in the leader lease (default: hostname_pid)")
	cmd.Flags().IntVar(&workers, "workers", workers, "reconcile workers")
	cmd.Flags().StringVar(&metricsAddr, "metrics-bind-address", metricsAddr, "address of the Prometheus /metrics endpoint; 0 disables it")
	cmd.Flags().StringVar(&healthAddr, "health-probe-bind-address", healthAddr, "address of /healthz and /readyz; 0 disables them")
	cfg.AddFlags(cmd.Flags())
	cmd.Flags().DurationVar(&cfg.Grace, "member-grace-period", cfg.Grace, "how long after a member's lease expired its shards still count as healthy")
	return cmd
}
