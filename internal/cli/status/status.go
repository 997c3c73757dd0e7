// Package status implements `strait status`: the clusterset as one member sees it, like
// `cilium clustermesh status`.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
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
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/records"
	statuspkg "github.com/strait-io/strait/internal/status"
)

// New returns the `status` command.
func New() *cobra.Command {
	var (
		kube          *kubeconfig.Flags
		format        string
		allowInsecure bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the clusterset as a member sees it: members, broker, leases, exports, imports and conflicts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(format, true); err != nil {
				return err
			}
			cfg, name, err := kube.RESTConfig()
			if err != nil {
				return err
			}
			ctx, cancel := contextWithTimeout(cmd.Context())
			defer cancel()
			st, err := gather(ctx, cfg, name, allowInsecure)
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
	return cmd
}

func contextWithTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

// gather reads the member cluster and, with the member's own broker credential, the broker.
// A broker that cannot be reached is reported, not an error: the member keeps working.
func gather(ctx context.Context, cfg *rest.Config, contextName string, allowInsecure bool) (*statuspkg.Status, error) {
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
	id, err := clusterset.LocalClusterID(ctx, dyn)
	switch {
	case errors.Is(err, clusterset.ErrNoClusterID):
		return nil, fmt.Errorf("context %s has not joined a clusterset (run strait join): %w", contextName, err)
	case err != nil:
		return nil, fmt.Errorf("context %s: reading its cluster ID: %w", contextName, err)
	}
	bc, err := clusterset.BrokerRESTConfig(ctx, local, allowInsecure)
	if err != nil {
		return nil, fmt.Errorf("context %s: %w", contextName, err)
	}
	st := &statuspkg.Status{Cluster: contextName, ClusterID: id, Broker: bc.Host}
	view, err := agentView(ctx, local)
	if err != nil {
		return nil, fmt.Errorf("reading the agent's view in %s: %w", contextName, err)
	}
	st.Agent = statuspkg.View(view)
	sel := metav1.ListOptions{LabelSelector: labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue}).String()}
	imports, err := localMCS.MulticlusterV1beta1().ServiceImports(metav1.NamespaceAll).List(ctx, sel)
	if err != nil {
		return nil, fmt.Errorf("listing ServiceImports in %s: %w", contextName, err)
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
		return nil, fmt.Errorf("listing Services in %s: %w", contextName, err)
	}
	st.GlobalServices = statuspkg.GlobalServices(id, services.Items, globalRecs)
	st.Members, st.Conflicts = statuspkg.Build(members, view, ptrs)
	return st, nil
}

// agentView reads the view the member's agent publishes (nil when it published none).
func agentView(ctx context.Context, local kubernetes.Interface) (*liveness.Published, error) {
	cm, err := local.CoreV1().ConfigMaps(clusterset.SystemNamespace).Get(ctx, liveness.ViewConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p liveness.Published
	if err := json.Unmarshal([]byte(cm.Data[liveness.ViewKey]), &p); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s: %w", cm.Namespace, cm.Name, err)
	}
	return &p, nil
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
