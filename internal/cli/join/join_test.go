package join

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/labtest"
)

// run executes a command like the strait binary would and returns its output.
func run(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	return out.String(), err
}

// writeKubeconfig writes a kubeconfig with contexts that point nowhere reachable: the
// commands must fail on flags and contexts before they talk to any server.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestFlagAndContextErrors(t *testing.T) {
	kc := writeKubeconfig(t)
	for _, tc := range []struct {
		name string
		cmd  func() *cobra.Command
		args []string
		want string
	}{
		{"join needs a broker", NewJoin, []string{"--kubeconfig", kc, "--context", "member"}, `required flag(s) "broker-context" not set`},
		{"leave needs a broker", NewLeave, []string{"--kubeconfig", kc, "--context", "member"}, `required flag(s) "broker-context" not set`},
		{"unknown broker context", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "nope"}, `context "nope" not found in the kubeconfig (` + kc + `)`},
		{"no current context", NewJoin, []string{"--kubeconfig", kc, "--broker-context", "member"}, "no --context given and the kubeconfig (" + kc + ") has no current context"},
		{"bad output format", NewLeave, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "-o", "xml"}, `--output "xml" is not supported`},
		{"bad cluster ID before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--cluster-id", "Foo_1"}, `cluster ID "Foo_1" is not a DNS-1123 label`},
		{"bad CIDR before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--pod-cidr", "10.1.0.1/16"}, "pod CIDR 10.1.0.1/16 has host bits set; did you mean 10.1.0.0/16?"},
		{"no arguments", NewJoin, []string{"cluster02"}, `unknown command "cluster02"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.cmd(), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestJoinAndLeaveCommands drives the commands against one lab of three clusters, whose
// kubeconfig has a context per cluster; cluster01 is the broker.
func TestJoinAndLeaveCommands(t *testing.T) {
	lab := labtest.Start(t, 3)
	kc := lab.Kubeconfig()
	step := func(name string, f func(t *testing.T)) {
		if !t.Run(name, f) {
			t.FailNow()
		}
	}

	step("join prints what it did, or that nothing changed", func(t *testing.T) {
		for _, c := range lab.Names() {
			if _, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", c, "--broker-context", "cluster01"); err != nil {
				t.Fatalf("joining %s: %v", c, err)
			}
		}
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster02", "--broker-context", "cluster01")
		if err != nil {
			t.Fatal(err)
		}
		plan := lab.Cluster("cluster02")
		for _, want := range []string{
			`Cluster cluster02 is a member of clusterset "clusterset" (broker cluster01).`,
			"region " + plan.Region + ", zone " + plan.Zone + ", pod CIDRs " + plan.PodCIDR + ", service CIDRs " + plan.ServiceCIDR,
			"Nothing to change.",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	step("leave through KUBECONFIG, then leave again", func(t *testing.T) {
		t.Setenv("KUBECONFIG", kc)
		out, err := run(t, NewLeave(), "--context", "cluster03", "--broker-context", "cluster01")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("strait leave:\n%s", out)
		for _, want := range []string{
			"Cluster cluster03 (cluster03) left the clusterset (broker cluster01).",
			"ACTION", "deleted  cluster01  Namespace           strait-member-cluster03",
			"deleted  cluster03  Secret              strait-system/strait-broker",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		_, err = run(t, NewLeave(), "--context", "cluster03", "--broker-context", "cluster01")
		if err == nil || !strings.Contains(err.Error(), "cluster03 is not a member of the clusterset on cluster01") {
			t.Errorf("leaving again: %v", err)
		}
	})

	step("join refuses overlapping CIDRs and a taken ID", func(t *testing.T) {
		_, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster03", "--broker-context", "cluster01", "--pod-cidr", "10.1.0.0/16")
		want := "pod CIDR 10.1.0.0/16 of cluster03 overlaps 10.1.0.0/16 of cluster01; pass --allow-overlapping-cidrs if your data plane translates addresses"
		if err == nil || err.Error() != want {
			t.Errorf("error %v\nwant %s", err, want)
		}
		_, err = run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster03", "--broker-context", "cluster01", "--cluster-id", "cluster01")
		if err == nil || !strings.Contains(err.Error(), `cluster ID "cluster01" is already used by another cluster of the clusterset`) {
			t.Errorf("error %v", err)
		}
	})

	step("join -o json, the cluster ID taken from the context name", func(t *testing.T) {
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster03", "--broker-context", "cluster01", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("strait join -o json:\n%s", out)
		var res clusterset.JoinResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		plan := lab.Cluster("cluster03")
		if res.Member.ID != "cluster03" || res.Broker != "cluster01" || !slices.Equal(res.Member.PodCIDRs, []string{plan.PodCIDR}) {
			t.Errorf("result %+v", res)
		}
		var actions []string
		for _, a := range res.Actions {
			actions = append(actions, a.String())
		}
		if !slices.Contains(actions, "created ConfigMap strait-member-cluster03/strait-membership in cluster01") {
			t.Errorf("actions %q", actions)
		}
		members, err := clusterset.ReadMembers(context.Background(), lab.Client("cluster01"))
		if err != nil || len(members) != 3 {
			t.Errorf("members %v, %v", members, err)
		}
	})

	step("join -o yaml when nothing changes", func(t *testing.T) {
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster03", "--broker-context", "cluster01", "-o", "yaml")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "id: cluster03") || !strings.Contains(out, "actions: []") {
			t.Errorf("output:\n%s", out)
		}
	})
}

func TestMain(m *testing.M) {
	// The commands honour KUBECONFIG; tests must not pick up the host's.
	os.Unsetenv("KUBECONFIG")
	os.Exit(m.Run())
}
