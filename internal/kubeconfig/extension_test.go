package kubeconfig

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// brokerServer runs a command with the shared flags and returns the broker URL it resolves
// for the selected context, given --broker-server override.
func brokerServer(t *testing.T, override string, args ...string) (string, error) {
	t.Helper()
	var (
		kube *Flags
		got  string
	)
	cmd := &cobra.Command{Use: "cmd", RunE: func(*cobra.Command, []string) error {
		_, name, err := kube.RESTConfig()
		if err != nil {
			return err
		}
		got, err = kube.BrokerServer(name, override)
		return err
	}}
	kube = AddFlags(cmd, Options{})
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	cmd.SilenceUsage = true
	return got, cmd.Execute()
}

func TestBrokerServerExtension(t *testing.T) {
	isolate(t)
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://a.example:6443"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	with := &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	if err := SetExtension(with, Extension{BrokerServer: "https://127.0.0.1:16443"}); err != nil {
		t.Fatal(err)
	}
	cfg.Contexts["with"] = with
	cfg.Contexts["without"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "with"
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, kc); err != nil {
		t.Fatal(err)
	}

	// Written and read back through a file, as the lab writes it and a user's kubectl keeps it.
	if got, err := brokerServer(t, "", "--kubeconfig", kc); err != nil || got != "https://127.0.0.1:16443" {
		t.Errorf("the current context's extension: %q, %v; want https://127.0.0.1:16443", got, err)
	}
	if got, err := brokerServer(t, "https://broker.example:6443", "--kubeconfig", kc); err != nil || got != "https://broker.example:6443" {
		t.Errorf("--broker-server given: %q, %v; want it to win over the extension", got, err)
	}
	if got, err := brokerServer(t, "", "--kubeconfig", kc, "--context", "without"); err != nil || got != "" {
		t.Errorf("a context without the extension: %q, %v; want \"\" (the stored URL)", got, err)
	}
	if got, err := brokerServer(t, "", "--server", "https://b.example:6443", "--token", "x"); err != nil || got != "" {
		t.Errorf("--server and no context: %q, %v; want \"\"", got, err)
	}

	// Written by hand, as the package comment shows it; and two mistakes a hand can make.
	for _, tc := range []struct{ name, extension, want, err string }{
		{"by hand", "brokerServer: https://10.0.0.5:6443", "https://10.0.0.5:6443", ""},
		{"not https", "brokerServer: http://10.0.0.5:6443", "", `context "m": extension strait.io, brokerServer: "http://10.0.0.5:6443" is not a broker API URL; give one as https://<host>[:<port>]`},
		{"not an object", "[https://10.0.0.5:6443]", "", `context "m": extension strait.io is not an object like {brokerServer: https://<host>:<port>}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://a.example:6443"}
users:
- name: u
  user: {token: t}
contexts:
- name: m
  context:
    cluster: c
    user: u
    extensions:
    - name: strait.io
      extension:
        ` + tc.extension + `
current-context: m
`
			path := filepath.Join(t.TempDir(), "kubeconfig")
			if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := brokerServer(t, "", "--kubeconfig", path)
			switch {
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
				t.Errorf("got %q, %v; want the error %q", got, err, tc.err)
			}
		})
	}
}
