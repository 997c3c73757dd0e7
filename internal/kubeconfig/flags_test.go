package kubeconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/clusterset"
)

// writeKubeconfig writes a kubeconfig with contexts a (namespace team-a) and b, current
// context current ("" for none).
func writeKubeconfig(t *testing.T, current string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["ca"] = &clientcmdapi.Cluster{Server: "https://a.example:6443"}
	cfg.Clusters["cb"] = &clientcmdapi.Cluster{Server: "https://b.example:6443"}
	cfg.AuthInfos["ua"] = &clientcmdapi.AuthInfo{Token: "token-a"}
	cfg.AuthInfos["ub"] = &clientcmdapi.AuthInfo{Token: "token-b"}
	cfg.Contexts["a"] = &clientcmdapi.Context{Cluster: "ca", AuthInfo: "ua", Namespace: "team-a"}
	cfg.Contexts["b"] = &clientcmdapi.Context{Cluster: "cb", AuthInfo: "ub"}
	cfg.CurrentContext = current
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// isolate keeps the host's kubeconfig and pod environment out of the tests.
func isolate(t *testing.T) {
	t.Helper()
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "none"))
	t.Setenv("HOME", t.TempDir())
	for _, v := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"} {
		if old, ok := os.LookupEnv(v); ok {
			os.Unsetenv(v)
			t.Cleanup(func() { os.Setenv(v, old) })
		}
	}
}

// result is what a command saw of its flags.
type result struct {
	cfg, broker *rest.Config
	name        string
	brokerName  string
	ns          string
	explicit    bool
}

// run executes a command with the shared flags (and a --broker-context) and returns what
// it resolved.
func run(t *testing.T, o Options, args ...string) (result, error) {
	t.Helper()
	var (
		res    result
		kube   *Flags
		broker *Other
	)
	cmd := &cobra.Command{
		Use: "cmd",
		RunE: func(*cobra.Command, []string) error {
			var err error
			if res.cfg, res.name, err = kube.RESTConfig(); err != nil {
				return err
			}
			res.ns, res.explicit = kube.Namespace()
			if broker.Given() {
				res.broker, res.brokerName, err = broker.RESTConfig()
			}
			return err
		},
	}
	kube = AddFlags(cmd, o)
	broker = kube.AddOther(cmd, OtherOptions{ContextFlag: "broker-context", KubeconfigFlag: "broker-kubeconfig"})
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage = true
	return res, cmd.Execute()
}

func TestFlagsRegistered(t *testing.T) {
	for _, tc := range []struct {
		name      string
		o         Options
		namespace bool
	}{
		{"without a namespace", Options{Cluster: "the broker"}, false},
		{"with a namespace", Options{Namespace: true}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &cobra.Command{Use: "cmd"}
			AddFlags(cmd, tc.o)
			fs := cmd.Flags()
			for _, name := range []string{"kubeconfig", "context", "cluster", "user", "token", "as", "as-group", "as-uid",
				"request-timeout", "server", "insecure-skip-tls-verify", "certificate-authority", "client-certificate", "client-key", "tls-server-name"} {
				if fs.Lookup(name) == nil {
					t.Errorf("--%s not registered", name)
				}
			}
			if f := fs.ShorthandLookup("s"); f == nil || f.Name != "server" {
				t.Errorf("-s is %v, want --server", f)
			}
			if fs.Lookup("cache-dir") != nil {
				t.Error("--cache-dir registered; nothing uses a discovery cache")
			}
			n := fs.Lookup("namespace")
			if (n != nil) != tc.namespace {
				t.Errorf("--namespace registered: %v, want %v", n != nil, tc.namespace)
			}
			if n != nil && n.Shorthand != "n" {
				t.Errorf("--namespace shorthand %q", n.Shorthand)
			}
			if tc.o.Cluster != "" && !strings.Contains(fs.Lookup("context").Usage, tc.o.Cluster) {
				t.Errorf("--context usage %q does not name %q", fs.Lookup("context").Usage, tc.o.Cluster)
			}
			if _, ok := cmd.GetFlagCompletionFunc("context"); !ok {
				t.Error("--context has no completion")
			}
		})
	}
}

func TestRESTConfig(t *testing.T) {
	isolate(t)
	kc := writeKubeconfig(t, "a")
	noCurrent := writeKubeconfig(t, "")
	tests := []struct {
		name       string
		o          Options
		kubeconfig string // $KUBECONFIG, if set
		args       []string
		check      func(t *testing.T, r result)
		err        string
	}{
		{
			name: "the current context",
			args: []string{"--kubeconfig", kc},
			check: func(t *testing.T, r result) {
				if r.name != "a" || r.cfg.Host != "https://a.example:6443" || r.cfg.BearerToken != "token-a" {
					t.Errorf("got %s %s %s", r.name, r.cfg.Host, r.cfg.BearerToken)
				}
			},
		},
		{
			name: "--context chooses",
			args: []string{"--kubeconfig", kc, "--context", "b"},
			check: func(t *testing.T, r result) {
				if r.name != "b" || r.cfg.Host != "https://b.example:6443" || r.cfg.BearerToken != "token-b" {
					t.Errorf("got %s %s %s", r.name, r.cfg.Host, r.cfg.BearerToken)
				}
			},
		},
		{
			name:       "$KUBECONFIG is honoured",
			kubeconfig: noCurrent,
			args:       []string{"--context", "b"},
			check: func(t *testing.T, r result) {
				if r.cfg.Host != "https://b.example:6443" {
					t.Errorf("host %s", r.cfg.Host)
				}
			},
		},
		{
			name: "QPS and burst are raised",
			args: []string{"--kubeconfig", kc, "--broker-context", "b"},
			check: func(t *testing.T, r result) {
				for _, c := range []*rest.Config{r.cfg, r.broker} {
					if c.QPS != clusterset.ClientQPS || c.Burst != clusterset.ClientBurst {
						t.Errorf("%s: QPS %v burst %d, want %v %d", c.Host, c.QPS, c.Burst, clusterset.ClientQPS, clusterset.ClientBurst)
					}
				}
			},
		},
		{
			name: "kubectl's overrides apply",
			args: []string{"--kubeconfig", kc, "--context", "b", "--server", "https://c.example:6443", "--token", "t2",
				"--as", "alice", "--as-group", "g1", "--as-group", "g2", "--request-timeout", "7s", "--insecure-skip-tls-verify"},
			check: func(t *testing.T, r result) {
				c := r.cfg
				if c.Host != "https://c.example:6443" || c.BearerToken != "t2" || c.Impersonate.UserName != "alice" ||
					!reflect.DeepEqual(c.Impersonate.Groups, []string{"g1", "g2"}) || c.Timeout != 7*time.Second || !c.Insecure {
					t.Errorf("config %+v", c)
				}
				if r.name != "b" {
					t.Errorf("name %s", r.name)
				}
			},
		},
		{
			name: "the broker shares --kubeconfig and --request-timeout, not the member's credentials",
			args: []string{"--kubeconfig", kc, "--context", "a", "--token", "member-only", "--request-timeout", "3s", "--broker-context", "b"},
			check: func(t *testing.T, r result) {
				b := r.broker
				if r.brokerName != "b" || b.Host != "https://b.example:6443" || b.BearerToken != "token-b" || b.Timeout != 3*time.Second {
					t.Errorf("broker %s: %s %q %s", r.brokerName, b.Host, b.BearerToken, b.Timeout)
				}
			},
		},
		{
			name: "the broker's own kubeconfig",
			args: []string{"--kubeconfig", noCurrent, "--context", "a", "--broker-kubeconfig", kc},
			check: func(t *testing.T, r result) {
				if r.brokerName != "a" || r.broker.Host != "https://a.example:6443" {
					t.Errorf("broker %s %s", r.brokerName, r.broker.Host)
				}
			},
		},
		{
			name: "--server without any context",
			args: []string{"--kubeconfig", noCurrent, "--server", "https://d.example:6443", "--token", "t"},
			check: func(t *testing.T, r result) {
				if r.name != "https://d.example:6443" || r.cfg.BearerToken != "t" {
					t.Errorf("got %s %+v", r.name, r.cfg)
				}
			},
		},
		{
			name: "-n, else the context's namespace, else default",
			o:    Options{Namespace: true},
			args: []string{"--kubeconfig", kc, "-n", "prod"},
			check: func(t *testing.T, r result) {
				if r.ns != "prod" || !r.explicit {
					t.Errorf("namespace %s explicit %v", r.ns, r.explicit)
				}
			},
		},
		{
			name: "the context's namespace",
			o:    Options{Namespace: true},
			args: []string{"--kubeconfig", kc},
			check: func(t *testing.T, r result) {
				if r.ns != "team-a" || r.explicit {
					t.Errorf("namespace %s explicit %v", r.ns, r.explicit)
				}
			},
		},
		{
			name: "default",
			o:    Options{Namespace: true},
			args: []string{"--kubeconfig", kc, "--context", "b"},
			check: func(t *testing.T, r result) {
				if r.ns != "default" || r.explicit {
					t.Errorf("namespace %s explicit %v", r.ns, r.explicit)
				}
			},
		},
		{
			name: "a missing context is named",
			args: []string{"--kubeconfig", kc, "--context", "nope"},
			err:  `context "nope" not found in the kubeconfig (` + kc + `)`,
		},
		{
			name: "a missing broker context is named",
			args: []string{"--kubeconfig", kc, "--broker-context", "gone"},
			err:  `context "gone" not found in the kubeconfig (` + kc + `)`,
		},
		{
			name: "no current context",
			args: []string{"--kubeconfig", noCurrent},
			err:  "no --context given and the kubeconfig (" + noCurrent + ") has no current context",
		},
		{
			name: "the broker's kubeconfig without a current context",
			args: []string{"--kubeconfig", kc, "--broker-kubeconfig", noCurrent},
			err:  "no --broker-context given and the kubeconfig (" + noCurrent + ") has no current context",
		},
		{
			name: "a kubeconfig that does not exist",
			args: []string{"--kubeconfig", "/nonexistent/kubeconfig"},
			err:  "loading kubeconfig: stat /nonexistent/kubeconfig",
		},
		{
			name: "no kubeconfig at all",
			args: nil,
			err:  "no --context given and the kubeconfig (" + os.Getenv("KUBECONFIG") + ") has no current context",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.kubeconfig != "" {
				t.Setenv("KUBECONFIG", tc.kubeconfig)
			}
			r, err := run(t, tc.o, tc.args...)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, r)
		})
	}
}

func TestContextCompletion(t *testing.T) {
	isolate(t)
	kc := writeKubeconfig(t, "a")
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--kubeconfig", kc, "--context", ""}, []string{"a", "b"}},
		{[]string{"--kubeconfig", kc, "--context", "b"}, []string{"b"}},
		{[]string{"--kubeconfig", kc, "--broker-context", ""}, []string{"a", "b"}},
		{[]string{"--kubeconfig", kc, "--cluster", "c"}, []string{"ca", "cb"}},
		{[]string{"--kubeconfig", kc, "--user", "ub"}, []string{"ub"}},
	} {
		cmd := &cobra.Command{Use: "cmd", RunE: func(*cobra.Command, []string) error { return nil }}
		AddFlags(cmd, Options{}).AddOther(cmd, OtherOptions{ContextFlag: "broker-context"})
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&bytes.Buffer{})
		cmd.SetArgs(append([]string{cobra.ShellCompRequestCmd}, tc.args...))
		if err := cmd.Execute(); err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if got := lines[:len(lines)-1]; !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: completions %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestPackageRESTConfig(t *testing.T) {
	isolate(t)
	kc := writeKubeconfig(t, "a")
	cfg, name, err := RESTConfig(Rules(kc), "b")
	if err != nil || name != "b" || cfg.QPS != clusterset.ClientQPS {
		t.Errorf("RESTConfig = %v %s %v", cfg, name, err)
	}
	if _, _, err := RESTConfig(Rules(kc), "nope"); err == nil || !strings.Contains(err.Error(), `context "nope" not found in the kubeconfig (`+kc+`)`) {
		t.Errorf("missing context: %v", err)
	}
}
