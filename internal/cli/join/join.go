// Package join implements `strait join` and `strait leave`: making a cluster a member of a
// clusterset through a broker, and taking it out again. The rules and the API work live in
// internal/clusterset; this package turns flags and kubeconfig contexts into options and
// prints what was done.
package join

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/install"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// kubeFlags select the member and the broker in a kubeconfig.
type kubeFlags struct {
	member  *kubeconfig.Flags
	broker  *kubeconfig.Other
	timeout time.Duration
	output  string
}

func (f *kubeFlags) add(cmd *cobra.Command) {
	f.member = kubeconfig.AddFlags(cmd, kubeconfig.Options{Cluster: "the member cluster"})
	f.broker = f.member.AddOther(cmd, kubeconfig.OtherOptions{
		ContextFlag:  "broker-context",
		ContextUsage: "kubeconfig context of the broker cluster, in the same kubeconfig (required)",
	})
	fl := cmd.Flags()
	fl.DurationVar(&f.timeout, "timeout", clusterset.DefaultTimeout, "how long to wait for the API servers (CRDs, tokens, namespace deletion)")
	output.AddFlag(cmd, &f.output, false)
	_ = cmd.MarkFlagRequired("broker-context")
}

// configs resolves the member and broker contexts to client configurations.
func (f *kubeFlags) configs() (member, broker *rest.Config, memberName, brokerName string, err error) {
	if err := output.Validate(f.output); err != nil {
		return nil, nil, "", "", err
	}
	member, memberName, err = f.member.RESTConfig()
	if err != nil {
		return nil, nil, "", "", err
	}
	broker, brokerName, err = f.broker.RESTConfig()
	if err != nil {
		return nil, nil, "", "", err
	}
	return member, broker, memberName, brokerName, nil
}

// NewJoin returns `strait join`.
func NewJoin() *cobra.Command {
	var (
		f    kubeFlags
		opts clusterset.JoinOptions
		inst installFlags
	)
	cmd := &cobra.Command{
		Use:   "join --context CLUSTER --broker-context BROKER",
		Short: "Make a cluster a member of a clusterset",
		Long: "Join makes a cluster a member of the clusterset held by a broker (any Kubernetes API server,\n" +
			"which may be one of the members). In the member it installs the Multi-Cluster Services CRDs,\n" +
			"the About API ClusterProperty objects cluster.clusterset.k8s.io and clusterset.k8s.io, and\n" +
			"the Secret strait-system/strait-broker with the member's broker credential. On the broker it\n" +
			"creates the member's identity, ServiceAccount strait-clusterset/member-<id>, and its\n" +
			"namespace strait-member-<id>, with least-privilege RBAC: the member writes only its own\n" +
			"namespace, reads the records of every member namespace, the membership registry\n" +
			"(strait-clusterset) and the federation namespace, and may renew its own token. Its\n" +
			"registry record strait-clusterset/member-<id> is written last.\n\n" +
			"The stored credential holds only the broker's URL, its CA and a token of the member's\n" +
			"ServiceAccount that expires after --credential-ttl (the agent renews it); nothing of how you\n" +
			"authenticate to the broker (exec plugins, certificates, files) is copied. A broker context\n" +
			"that skips TLS verification is refused unless --allow-insecure-broker is given.\n\n" +
			"It refuses a cluster ID that is not a DNS-1123 label, an ID used by another cluster, and pod\n" +
			"or service CIDRs that overlap another member's, before writing anything. Running it again is\n" +
			"safe: it repairs what is missing and writes a fresh token; it also moves a member of the old\n" +
			"broker layout (before the registry) to this one.\n\n" +
			"With --install it then installs what the member runs, from Strait's chart (the agent;\n" +
			"--set dns.enabled=true,dns.domain=... adds strait dns), server-side applied after a dry run,\n" +
			"and adds clusterset.local to CoreDNS's Corefile (kube-system/coredns, keeping the rest and a\n" +
			"copy to restore) with the RBAC CoreDNS needs; it waits for the agent's pods. An install that\n" +
			"fails (an invalid value, an image the nodes cannot pull) leaves nothing of itself installed.\n" +
			"--install --dry-run prints the manifests instead, for GitOps.",
		Example: "  strait join --context cluster02 --broker-context cluster01\n" +
			"  strait join --context cluster02 --broker-context cluster01 --install --set image.tag=v0.3.0\n" +
			"  strait join --context cluster02 --broker-context cluster01 --install --dry-run > strait.yaml\n" +
			"  strait join --context prod-eu --broker-context broker --cluster-id eu1 --region europe-west1 --zone europe-west1-b",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := clusterset.ValidateCredentialTTL(opts.CredentialTTL); err != nil {
				return fmt.Errorf("--credential-ttl: %w", err)
			}
			if err := clusterset.ValidateFederationNamespace(opts.FederationNamespace); err != nil {
				return fmt.Errorf("--federation-namespace: %w", err)
			}
			if err := inst.check(cmd); err != nil {
				return err
			}
			var objs []*unstructured.Unstructured
			if inst.enabled {
				// Values are checked, and the chart rendered, before anything is written.
				var err error
				if objs, err = inst.render(); err != nil {
					return err
				}
				if inst.dryRun {
					format := f.output
					if format != "json" {
						format = "yaml"
					}
					return printManifests(cmd.OutOrStdout(), format, objs)
				}
			}
			var err error
			opts.Member, opts.Broker, opts.MemberName, opts.BrokerName, err = f.configs()
			if err != nil {
				return err
			}
			opts.Timeout = f.timeout
			if inst.enabled {
				if err := install.Reachable(cmd.Context(), opts.Member, opts.MemberName); err != nil {
					return err
				}
				if objs, err = inst.forBrokerHost(cmd.Context(), opts.Member, opts.Broker, objs, cmd.ErrOrStderr()); err != nil {
					return err
				}
			}
			res, err := clusterset.Join(cmd.Context(), opts)
			if err != nil {
				return err
			}
			for _, w := range res.Warnings {
				fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s\n", w)
			}
			if !inst.enabled {
				return printJoin(cmd.OutOrStdout(), f.output, res)
			}
			ires, err := install.Install(cmd.Context(), install.Options{
				Config: opts.Member, Cluster: opts.MemberName, Objects: objs, CoreDNS: inst.coreDNS,
				Timeout: inst.timeout, Progress: cmd.ErrOrStderr(),
			})
			if err != nil {
				return fmt.Errorf("%s joined the clusterset, but the install failed: %w", opts.MemberName, err)
			}
			w := cmd.OutOrStdout()
			if ok, err := output.Structured(w, f.output, struct {
				Join    *clusterset.JoinResult `json:"join"`
				Install *install.Result        `json:"install"`
			}{res, ires}); ok {
				return err
			}
			if err := printJoin(w, f.output, res); err != nil {
				return err
			}
			fmt.Fprintln(w, "\nInstalled:")
			return printInstall(w, ires)
		},
	}
	f.add(cmd)
	inst.addInstall(cmd)
	fl := cmd.Flags()
	fl.StringVar(&opts.ClusterID, "cluster-id", "", "cluster ID, a DNS-1123 label (default: the cluster's existing ID, else the context name)")
	fl.StringVar(&opts.ClusterSet, "clusterset", "", `clusterset name (default: the broker's, else "`+clusterset.DefaultClusterSet+`")`)
	fl.StringVar(&opts.Region, "region", "", "region of the cluster (default: the nodes' topology.kubernetes.io/region label)")
	fl.StringVar(&opts.Zone, "zone", "", "zone of the cluster (default: the nodes' topology.kubernetes.io/zone label)")
	fl.StringSliceVar(&opts.PodCIDRs, "pod-cidr", nil, "pod CIDRs of the cluster, comma-separated or repeated (default: the nodes' spec.podCIDRs)")
	fl.StringSliceVar(&opts.ServiceCIDRs, "service-cidr", nil, "service CIDRs of the cluster (default: its ServiceCIDR objects)")
	fl.BoolVar(&opts.AllowOverlappingCIDRs, "allow-overlapping-cidrs", false, "allow CIDRs that overlap other members' (for data planes that translate addresses)")
	fl.StringVar(&opts.BrokerServer, "broker-server", "", "broker API URL the member's agent uses (default: the server of --broker-context)")
	fl.StringVar(&opts.FederationNamespace, "federation-namespace", clusterset.DefaultFederationNamespace,
		"broker namespace whose Services are federated; members may read its Services and EndpointSlices (created if missing)")
	fl.DurationVar(&opts.CredentialTTL, "credential-ttl", clusterset.DefaultCredentialTTL,
		fmt.Sprintf("lifetime of the broker token stored in the member, from %s to %s; the agent renews it", clusterset.MinCredentialTTL, clusterset.MaxCredentialTTL))
	fl.BoolVar(&opts.AllowInsecureBroker, "allow-insecure-broker", false,
		"store a broker credential that skips TLS verification when the broker context does (labs only)")
	return cmd
}

// NewLeave returns `strait leave`.
func NewLeave() *cobra.Command {
	var (
		f    kubeFlags
		id   string
		inst installFlags
	)
	cmd := &cobra.Command{
		Use:   "leave --context CLUSTER --broker-context BROKER",
		Short: "Take a cluster out of its clusterset",
		Long: "Leave undoes join. On the broker it deletes the member's registry record first, so it stops\n" +
			"counting as a member at once, then its ServiceAccount (which voids its tokens) and token Role,\n" +
			"then its namespace, with every record it published, so the other members drop its endpoints.\n" +
			"In the member it deletes the broker credential and the ClusterProperty objects. The CRDs stay\n" +
			"installed; so do the namespace strait-clusterset and the reader roles all members share, even\n" +
			"when the last member leaves.\n\n" +
			"With --uninstall it first deletes what strait join --install installed (the chart's objects;\n" +
			"not the CRDs, which would delete every ServiceExport of the cluster) and restores CoreDNS's\n" +
			"Corefile: as it was before the install when nobody edited it since, else without\n" +
			"clusterset.local.",
		Example: "  strait leave --context cluster02 --broker-context cluster01",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			member, broker, memberName, brokerName, err := f.configs()
			if err != nil {
				return err
			}
			var ires *install.Result
			if inst.enabled {
				objs, err := everything()
				if err != nil {
					return err
				}
				// The agent goes first, so it does not write while the membership goes away.
				ires, err = install.Uninstall(cmd.Context(), install.Options{Config: member, Cluster: memberName, Objects: objs, CoreDNS: true})
				if err != nil {
					return fmt.Errorf("uninstalling from %s (the cluster is still a member): %w", memberName, err)
				}
			}
			res, err := clusterset.Leave(cmd.Context(), clusterset.LeaveOptions{
				Member: member, Broker: broker, MemberName: memberName, BrokerName: brokerName,
				ClusterID: id, Timeout: f.timeout,
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if ires == nil {
				return printLeave(w, f.output, memberName, res)
			}
			if ok, err := output.Structured(w, f.output, struct {
				Uninstall *install.Result         `json:"uninstall"`
				Leave     *clusterset.LeaveResult `json:"leave"`
			}{ires, res}); ok {
				return err
			}
			fmt.Fprintln(w, "Uninstalled:")
			if err := printInstall(w, ires); err != nil {
				return err
			}
			fmt.Fprintln(w)
			return printLeave(w, f.output, memberName, res)
		},
	}
	f.add(cmd)
	inst.addUninstall(cmd)
	cmd.Flags().StringVar(&id, "cluster-id", "", "cluster ID to remove (default: the cluster's ClusterProperty cluster.clusterset.k8s.io)")
	return cmd
}

func printJoin(w io.Writer, format string, res *clusterset.JoinResult) error {
	if ok, err := output.Structured(w, format, res); ok {
		return err
	}
	m := res.Member
	fmt.Fprintf(w, "Cluster %s is a member of clusterset %q (broker %s).\n", m.ID, m.ClusterSet, res.Broker)
	fmt.Fprintf(w, "  region %s, zone %s, pod CIDRs %s, service CIDRs %s\n",
		orNone(m.Region), orNone(m.Zone), strings.Join(m.PodCIDRs, ","), strings.Join(m.ServiceCIDRs, ","))
	fmt.Fprintf(w, "  broker credential: a token of ServiceAccount %s/%s, expires %s\n",
		clusterset.ClustersetNamespace, clusterset.RegistryName(m.ID), res.CredentialExpiry.UTC().Format(time.RFC3339))
	return printActions(w, res.Actions, "Nothing to change.")
}

func printLeave(w io.Writer, format, member string, res *clusterset.LeaveResult) error {
	if ok, err := output.Structured(w, format, res); ok {
		return err
	}
	fmt.Fprintf(w, "Cluster %s (%s) left the clusterset (broker %s).\n", res.ClusterID, member, res.Broker)
	return printActions(w, res.Actions, "Nothing was left to remove.")
}

func printActions(w io.Writer, actions []clusterset.Action, none string) error {
	if len(actions) == 0 {
		_, err := fmt.Fprintln(w, none)
		return err
	}
	t := output.NewTable(w)
	fmt.Fprintln(t, "ACTION\tCLUSTER\tKIND\tNAME")
	for _, a := range actions {
		name := a.Name
		if a.Namespace != "" {
			name = a.Namespace + "/" + a.Name
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", a.Verb, a.Cluster, a.Kind, name)
	}
	return t.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
