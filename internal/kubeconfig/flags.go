package kubeconfig

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Options say what a command's connection flags select, for their help texts.
type Options struct {
	// Cluster names the cluster --context selects, e.g. "the member cluster".
	Cluster string
	// KubeconfigUsage replaces the help text of --kubeconfig.
	KubeconfigUsage string
	// Namespace registers -n/--namespace, for commands that work in one namespace; the
	// others do not offer a flag they would ignore.
	Namespace bool
	// NamespaceUsage replaces the help text of -n.
	NamespaceUsage string
}

// Flags are one command's kubectl connection flags.
type Flags struct {
	config *genericclioptions.ConfigFlags
}

// completionTimeout bounds the API request behind `-n <TAB>`.
const completionTimeout = 5 * time.Second

// AddFlags registers the kubectl connection flags on cmd, with kubectl's completion of
// contexts, clusters, users and namespaces.
func AddFlags(cmd *cobra.Command, o Options) *Flags {
	cf := genericclioptions.NewConfigFlags(true)
	// Strait's clients are typed: no discovery cache, so no --cache-dir to offer.
	cf.CacheDir = nil
	if !o.Namespace {
		cf.Namespace = nil
	}
	f := &Flags{config: cf}
	fs := cmd.Flags()
	cf.AddFlags(fs)
	setUsage(fs, "kubeconfig", o.KubeconfigUsage, "path to the kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
	what := "kubeconfig context"
	if o.Cluster != "" {
		what += " of " + o.Cluster
	}
	setUsage(fs, "context", "", what+" (default: the current context)")
	_ = cmd.RegisterFlagCompletionFunc("context", completeNames(cf.ToRawKubeConfigLoader, contextNames))
	_ = cmd.RegisterFlagCompletionFunc("cluster", completeNames(cf.ToRawKubeConfigLoader, clusterNames))
	_ = cmd.RegisterFlagCompletionFunc("user", completeNames(cf.ToRawKubeConfigLoader, userNames))
	if o.Namespace {
		setUsage(fs, "namespace", o.NamespaceUsage, "namespace (default: the context's namespace, else default)")
		_ = cmd.RegisterFlagCompletionFunc("namespace", f.completeNamespaces)
	}
	return f
}

func setUsage(fs *pflag.FlagSet, name, usage, def string) {
	if usage == "" {
		usage = def
	}
	fs.Lookup(name).Usage = usage
}

// RESTConfig resolves the flags to the client configuration of the command's cluster, with
// raised rate limits, and returns the name of the context (or, when --server or --cluster
// stand in for one, of the API server). A --context that is not in the kubeconfig, or no
// context at all, is an error naming it and the files searched.
func (f *Flags) RESTConfig() (*rest.Config, string, error) {
	standalone := *f.config.APIServer != "" || *f.config.ClusterName != ""
	return resolve(f.config.ToRawKubeConfigLoader(), "context", *f.config.Context, standalone)
}

// Namespace is the namespace of -n, else the context's, else "default"; explicit says it
// came from -n.
func (f *Flags) Namespace() (ns string, explicit bool) {
	if f.config.Namespace != nil && *f.config.Namespace != "" {
		return *f.config.Namespace, true
	}
	ns, _, err := f.config.ToRawKubeConfigLoader().Namespace()
	if err != nil || ns == "" {
		return metav1.NamespaceDefault, false
	}
	return ns, false
}

// OtherOptions describe the flags of a second cluster a command names by context.
type OtherOptions struct {
	// ContextFlag names the flag of its context, e.g. "broker-context".
	ContextFlag, ContextUsage string
	// KubeconfigFlag, if set, names a flag for a kubeconfig file of its own, e.g.
	// "broker-kubeconfig"; without it the context is looked up where --context is.
	KubeconfigFlag, KubeconfigUsage string
}

// Other is a second cluster a command talks to, e.g. the broker.
type Other struct {
	flags               *Flags
	flag                string
	context, kubeconfig string
}

// AddOther registers the flags of a second cluster on cmd, with context completion.
func (f *Flags) AddOther(cmd *cobra.Command, o OtherOptions) *Other {
	other := &Other{flags: f, flag: o.ContextFlag}
	fs := cmd.Flags()
	fs.StringVar(&other.context, o.ContextFlag, "", o.ContextUsage)
	if o.KubeconfigFlag != "" {
		fs.StringVar(&other.kubeconfig, o.KubeconfigFlag, "", o.KubeconfigUsage)
	}
	_ = cmd.RegisterFlagCompletionFunc(o.ContextFlag, completeNames(other.loader, contextNames))
	return other
}

// Given reports whether the second cluster's context or kubeconfig was given.
func (o *Other) Given() bool { return o.context != "" || o.kubeconfig != "" }

// RESTConfig resolves the second cluster's context, in its own kubeconfig if it has one,
// else in the files --kubeconfig names (else $KUBECONFIG or ~/.kube/config), with the
// command's --request-timeout and raised rate limits. The other connection flags
// (--cluster, --user, --token, --as, ...) belong to --context and do not apply to it.
func (o *Other) RESTConfig() (*rest.Config, string, error) {
	return resolve(o.loader(), o.flag, o.context, false)
}

func (o *Other) loader() clientcmd.ClientConfig {
	path := o.kubeconfig
	if path == "" {
		path = *o.flags.config.KubeConfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.context, Timeout: *o.flags.config.Timeout}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(Rules(path), overrides)
}

// completeNames completes a flag with names from the kubeconfig the flags select, as
// kubectl completes --context, --cluster and --user.
func completeNames(loader func() clientcmd.ClientConfig, names func(clientcmdapi.Config) []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		raw, err := loader().RawConfig()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return withPrefix(names(raw), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func contextNames(c clientcmdapi.Config) []string { return keys(c.Contexts) }
func clusterNames(c clientcmdapi.Config) []string { return keys(c.Clusters) }
func userNames(c clientcmdapi.Config) []string    { return keys(c.AuthInfos) }

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func withPrefix(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// completeNamespaces lists the cluster's namespaces, as kubectl completes -n.
func (f *Flags) completeNamespaces(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	cfg, _, err := f.RESTConfig()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	return withPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
}

// Contexts returns the names of every context of the kubeconfig the flags select, sorted.
func (f *Flags) Contexts() ([]string, error) {
	loader := f.config.ToRawKubeConfigLoader()
	raw, err := loader.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	if len(raw.Contexts) == 0 {
		return nil, fmt.Errorf("the kubeconfig (%s) has no contexts", where(loader.ConfigAccess()))
	}
	return contextNames(raw), nil
}

// ContextConfig resolves the named context of the kubeconfig the flags select, with the
// --request-timeout of the flags.
func (f *Flags) ContextConfig(name string) (*rest.Config, error) {
	overrides := &clientcmd.ConfigOverrides{CurrentContext: name, Timeout: *f.config.Timeout}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(Rules(*f.config.KubeConfig), overrides)
	cfg, _, err := resolve(loader, "context", name, false)
	return cfg, err
}
