// Package status implements `strait status`: the clusterset as one member sees it, like
// `cilium clustermesh status`.
package status

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/kubeconfig"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
	"github.com/strait-io/strait/internal/records"
	statuspkg "github.com/strait-io/strait/internal/status"
)

// New returns the `status` command.
func New() *cobra.Command {
	var (
		kube          *kubeconfig.Flags
		format        string
		allowInsecure bool
		brokerServer  string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the clusterset as a member sees it: members, broker, leases, exports, imports and conflicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format); err != nil {
				return err
			}
			if brokerServer != "" {
				if err := clusterset.ValidateBrokerServer(brokerServer); err != nil {
					return fmt.Errorf("--broker-server: %w", err)
				}
			}
			cfg, name, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			if brokerServer, err = kube.BrokerServer(name, brokerServer); err != nil {
				return err
			}
			ctx, cancel := contextWithTimeout(cmd.Context())
			defer cancel()
			st, err := gather(ctx, cfg, name, allowInsecure, brokerServer)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if ok, err := output.Structured(w, format, st); ok {
				return err
			}
			print(w, st, format == output.Wide)
			if !st.BrokerReachable {
				return fmt.Errorf("the broker is not reachable: %s", st.BrokerError)
			}
			return nil
		},
	}
	kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Cluster: "the member cluster"})
	output.AddFlag(cmd, &format, true)
	cmd.Flags().BoolVar(&allowInsecure, "allow-insecure-broker", false, "accept a stored broker credential that skips TLS verification (labs only), as the agent's flag of that name")
	cmd.Flags().StringVar(&brokerServer, "broker-server", "", clusterset.BrokerServerOverrideUsage)
	return cmd
}

func contextWithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

// gather reads the member cluster and, with the member's own broker credential, the broker.
// A broker that cannot be reached is reported, not an error: the member keeps working.
func gather(ctx context.Context, cfg *rest.Config, contextName string, allowInsecure bool, brokerServer string) (*statuspkg.Status, error) {
	local, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	localMCS, err := mcsclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Only an API server that answers, and has no ClusterProperty or no broker credential,
	// says the cluster has not joined; one that cannot be reached or refuses the user says so.
	id, err := clusterset.LocalClusterID(ctx, dyn)
	switch {
	case errors.Is(err, clusterset.ErrNoClusterID):
		return nil, fmt.Errorf("context %s has not joined a clusterset (run strait join): %w", contextName, err)
	case err != nil:
		return nil, apiError(err, contextName, cfg.Host, "reading its cluster ID")
	}
	bc, err := clusterset.BrokerRESTConfig(ctx, local, allowInsecure)
	if err != nil {
		return nil, apiError(err, contextName, cfg.Host, "reading its broker credential")
	}
	if brokerServer != "" {
		bc.Host = brokerServer
	}
	st := &statuspkg.Status{Cluster: contextName, ClusterID: id, Broker: bc.Host}
	view, err := leasewatch.ReadView(ctx, local)
	if err != nil {
		return nil, apiError(err, contextName, cfg.Host, "reading the agent's view")
	}
	st.Agent = statuspkg.View(view)
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue}).String()}
	imports, err := localMCS.MulticlusterV1beta1().ServiceImports(metav1.NamespaceAll).List(ctx, sel)
	if err != nil {
		return nil, apiError(err, contextName, cfg.Host, "listing ServiceImports")
	}
	for _, si := range imports.Items {
		if _, isRecord := records.Key(&si); !isRecord {
			st.Imports++
		}
	}
	brokerErr := func(err error) (*statuspkg.Status, error) {
		st.BrokerError = err.Error()
		return st, nil
	}
	broker, err := kubernetes.NewForConfig(bc)
	if err != nil {
		return nil, err
	}
	brokerMCS, err := mcsclient.NewForConfig(bc)
	if err != nil {
		return nil, err
	}
	members, err := clusterset.ReadMembers(ctx, broker)
	if err != nil {
		return brokerErr(err)
	}
	// A member may read only the registered members' namespaces: read them one by one.
	var ptrs []*mcsv1beta1.ServiceImport
	var globalRecs []discoveryv1.EndpointSlice
	for _, m := range members {
		recs, err := brokerMCS.MulticlusterV1beta1().ServiceImports(m.Namespace).List(ctx, sel)
		if err != nil {
			return brokerErr(err)
		}
		for i := range recs.Items {
			ptrs = append(ptrs, &recs.Items[i])
		}
		slices, err := broker.DiscoveryV1().EndpointSlices(m.Namespace).List(ctx, sel)
		if err != nil {
			return brokerErr(err)
		}
		globalRecs = append(globalRecs, slices.Items...)
	}
	st.BrokerReachable = true
	services, err := local.CoreV1().Services(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, apiError(err, contextName, cfg.Host, "listing Services")
	}
	st.GlobalServices = statuspkg.GlobalServices(id, services.Items, globalRecs)
	st.Members, st.Conflicts = statuspkg.Build(members, view, ptrs)
	return st, nil
}

// apiError explains a failed request to the member's API server: for a server that cannot
// be reached, does not answer in time, does not accept the user or its certificate, it names
// the server and what to check; other errors say what was being read.
func apiError(err error, contextName, server, doing string) error {
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		host    x509.HostnameError
	)
	hint := ""
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		hint = "the connection was refused: is the cluster running, and is the server address of the context right (kubectl config view --minify)?"
	case errors.As(err, &dnsErr):
		hint = fmt.Sprintf("its host name %q does not resolve: check the server address of the context (kubectl config view --minify) and your DNS", dnsErr.Name)
	case errors.Is(err, context.DeadlineExceeded), apierrors.IsTimeout(err), apierrors.IsServerTimeout(err),
		errors.As(err, &netErr) && netErr.Timeout():
		hint = "it did not answer in time: check that the cluster is running and that a firewall, VPN or proxy lets you reach it (--request-timeout sets how long to wait)"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		hint = "there is no route to it: check your network, VPN or proxy"
	case errors.As(err, &unknown), errors.As(err, &invalid), errors.As(err, &host):
		hint = "its TLS certificate was not accepted: check the certificate-authority data of the context's cluster in the kubeconfig"
	case apierrors.IsUnauthorized(err):
		hint = "it did not accept the credentials (401 Unauthorized): check the user of the context (token, client certificate or exec plugin) and that it has not expired"
	case apierrors.IsForbidden(err):
		hint = "the user of the context is not allowed to read this (403 Forbidden): strait status needs to read ClusterProperties, the Secret and ConfigMaps of " + clusterset.SystemNamespace + ", Services and ServiceImports"
	default:
		return fmt.Errorf("context %s (API server %s): %s: %w", contextName, server, doing, err)
	}
	return fmt.Errorf("context %s, API server %s: %s\n  (%s: %w)", contextName, server, hint, doing, err)
}

func print(w io.Writer, st *statuspkg.Status, wide bool) {
	reach := "reachable"
	if !st.BrokerReachable {
		reach = "NOT reachable: " + st.BrokerError
	}
	fmt.Fprintf(w, "Cluster %s (ID %s), broker %s: %s\n", st.Cluster, st.ClusterID, st.Broker, reach)
	switch a := st.Agent; {
	case a == nil:
		fmt.Fprintln(w, "Agent: has published no view (is it running? see `kubectl -n strait-system get pods`)")
	default:
		fmt.Fprintf(w, "Agent %s, view as of its last change (%s):", a.Identity, a.WrittenAt.UTC().Format(time.RFC3339))
		if a.BrokerReachable {
			fmt.Fprint(w, " broker reachable")
		} else {
			fmt.Fprintf(w, " broker UNREACHABLE since %s (%s)", a.BrokerSince.UTC().Format(time.RFC3339), a.BrokerError)
		}
		if a.Frozen {
			fmt.Fprintf(w, "; withdrawals FROZEN: %s", a.FrozenReason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "ServiceImports in %s: %d\n\n", st.Cluster, st.Imports)
	t := output.NewTable(w)
	if wide {
		fmt.Fprintln(t, "MEMBER\tREGION\tZONE\tSTATE\tEXPORTS\tCONFLICTS\tRENEWAL SEEN\tREASON")
	} else {
		fmt.Fprintln(t, "MEMBER\tREGION\tZONE\tSTATE\tEXPORTS\tCONFLICTS\tREASON")
	}
	for _, m := range st.Members {
		if wide {
			// How long before the agent's view was written it last saw the member renew.
			fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", m.ID, m.Region, m.Zone, m.State, m.Exports, m.Conflicts, m.LastRenewal, orDash(m.Reason))
			continue
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\t%d\t%d\t%s\n", m.ID, m.Region, m.Zone, m.State, m.Exports, m.Conflicts, orDash(m.Reason))
	}
	t.Flush()
	if len(st.GlobalServices) > 0 {
		fmt.Fprintln(w, "\nGlobal Services:")
		t := output.NewTable(w)
		fmt.Fprintln(t, "  SERVICE\tSHARED\tAFFINITY\tREMOTE CLUSTERS\tPROBLEMS")
		for _, g := range st.GlobalServices {
			fmt.Fprintf(t, "  %s/%s\t%v\t%s\t%s\t%s\n", g.Namespace, g.Name, g.Shared, g.Affinity,
				orDash(strings.Join(g.Clusters, ",")), orDash(strings.Join(g.Problems, "; ")))
		}
		t.Flush()
	}
	if len(st.Conflicts) == 0 {
		return
	}
	fmt.Fprintln(w, "\nConflicts (the oldest export wins):")
	for _, c := range st.Conflicts {
		var parts []string
		for cluster, reasons := range c.Conflicts {
			parts = append(parts, cluster+": "+strings.Join(reasons, ","))
		}
		sort.Strings(parts)
		fmt.Fprintf(w, "  %s/%s (winner %s) %s\n", c.Namespace, c.Name, c.Winner, strings.Join(parts, "; "))
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
