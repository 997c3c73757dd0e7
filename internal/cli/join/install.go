package join

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"helm.sh/helm/v3/pkg/strvals"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/install"
)

// installFlags are join's --install flags and leave's --uninstall.
type installFlags struct {
	enabled    bool
	dryRun     bool
	coreDNS    bool
	valueFiles []string
	set        []string
	timeout    time.Duration
}

func (f *installFlags) addInstall(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.enabled, "install", false, "also install what the member runs (the agent, from Strait's chart) and configure its CoreDNS for clusterset.local")
	fl.BoolVar(&f.dryRun, "dry-run", false, "with --install: join nothing, install nothing, print the manifests (-o yaml by default, or json) for GitOps")
	fl.BoolVar(&f.coreDNS, "install-coredns", true, "with --install: add clusterset.local to CoreDNS's Corefile (ConfigMap kube-system/coredns) and let CoreDNS read ServiceImports")
	fl.StringArrayVarP(&f.valueFiles, "values", "f", nil, "with --install: a values file of the chart, as helm's --values (repeatable)")
	fl.StringArrayVar(&f.set, "set", nil, "with --install: a chart value, as helm's --set, e.g. image.tag=v0.3.0,agent.replicas=3 (repeatable)")
	fl.DurationVar(&f.timeout, "install-timeout", 3*time.Minute, "with --install: how long to wait for the agent's pods to be available")
}

func (f *installFlags) addUninstall(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.enabled, "uninstall", false, "first delete what strait join --install installed (the chart's objects; not the CRDs) and restore CoreDNS's Corefile")
	f.coreDNS = true
}

// check refuses flags that mean nothing without --install.
func (f *installFlags) check(cmd *cobra.Command) error {
	if f.enabled {
		return nil
	}
	for _, name := range []string{"dry-run", "install-coredns", "values", "set", "install-timeout"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return fmt.Errorf("--%s applies only with --install", name)
		}
	}
	return nil
}

// values reads the values files, then the --set values over them.
func (f *installFlags) values() (map[string]any, error) {
	vals := map[string]any{}
	for _, file := range f.valueFiles {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("--values: %w", err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("--values %s: not a YAML map of chart values: %w", file, err)
		}
		merge(vals, m)
	}
	for _, s := range f.set {
		if err := strvals.ParseInto(s, vals); err != nil {
			return nil, fmt.Errorf("--set %q: %w (the form is key.path=value[,key=value])", s, err)
		}
	}
	return vals, nil
}

// merge copies src into dst, maps merged key by key, as helm merges values files.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

// render renders the chart with the flags' values; an invalid value is refused here,
// before anything is written.
func (f *installFlags) render() ([]*unstructured.Unstructured, error) {
	vals, err := f.values()
	if err != nil {
		return nil, err
	}
	return chart.Render(vals, chart.Namespace)
}

// forBrokerHost renders the chart again with agent.brokerHost=true when the member is the
// broker's own cluster (one kube-system namespace) and the values do not say otherwise:
// the agent there writes the federated Services' status and reads the registry.
func (f *installFlags) forBrokerHost(ctx context.Context, member, broker *rest.Config, objs []*unstructured.Unstructured, progress io.Writer) ([]*unstructured.Unstructured, error) {
	vals, err := f.values()
	if err != nil {
		return nil, err
	}
	agent, _ := vals["agent"].(map[string]any)
	if _, set := agent["brokerHost"]; set {
		return objs, nil
	}
	host, err := sameCluster(ctx, member, broker)
	if err != nil {
		return nil, fmt.Errorf("telling whether the member is the broker's cluster (give --set agent.brokerHost=true or false to skip this): %w", err)
	}
	if !host {
		return objs, nil
	}
	fmt.Fprintln(progress, "The member is also the broker's cluster: its agent writes the federated Services' status and may read the ConfigMaps of "+
		clusterset.ClustersetNamespace+" (agent.brokerHost=true)")
	if agent == nil {
		agent = map[string]any{}
		vals["agent"] = agent
	}
	agent["brokerHost"] = true
	return chart.Render(vals, chart.Namespace)
}

// sameCluster reports whether two client configurations reach one cluster: the uid of its
// kube-system namespace, as join tells clusters apart.
func sameCluster(ctx context.Context, a, b *rest.Config) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var uids []types.UID
	for _, cfg := range []*rest.Config{a, b} {
		kube, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return false, err
		}
		ns, err := kube.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("reading namespace kube-system of %s: %w", cfg.Host, err)
		}
		uids = append(uids, ns.UID)
	}
	return uids[0] == uids[1], nil
}

// everything renders every component the chart can install, for uninstall: whatever
// values the install used, its objects are among these.
func everything() ([]*unstructured.Unstructured, error) {
	return chart.Render(map[string]any{
		"agent":      map[string]any{"brokerHost": true},
		"dns":        map[string]any{"enabled": true, "domain": "uninstall.invalid"},
		"federation": map[string]any{"enabled": true},
	}, chart.Namespace)
}

// printManifests writes the objects as a YAML stream (or a JSON list).
func printManifests(w io.Writer, format string, objs []*unstructured.Unstructured) error {
	if format == "json" {
		list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List"}}
		for _, o := range objs {
			list.Items = append(list.Items, *o)
		}
		_, err := output.Structured(w, format, list)
		return err
	}
	fmt.Fprintf(w, "# Strait's chart as strait join --install would apply it (CRDs first). CoreDNS needs\n"+
		"# `multicluster %s` in its Corefile's kubernetes block, with %s among its zones,\n"+
		"# and the right to list and watch serviceimports.multicluster.x-k8s.io.\n", install.ClusterSetZone, install.ClusterSetZone)
	for _, o := range objs {
		data, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "---\n%s", data)
	}
	return nil
}

func printInstall(w io.Writer, res *install.Result) error {
	t := output.NewTable(w)
	fmt.Fprintln(t, "ACTION\tCLUSTER\tKIND\tNAME")
	for _, a := range res.Actions {
		name := a.Name
		if a.Namespace != "" {
			name = a.Namespace + "/" + a.Name
		}
		fmt.Fprintf(t, "%s\t%s\t%s\t%s\n", a.Verb, res.Cluster, a.Kind, name)
	}
	return t.Flush()
}
