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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/lab/labtest"
)

// run executes a command like the strait binary would and returns its output.
func run(t *testing.T, cmd *cobra.Command, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := execute(cmd, &out, &out, args)
	return out.String(), err
}

// runSplit is run with standard output and standard error apart.
func runSplit(t *testing.T, cmd *cobra.Command, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = execute(cmd, &out, &errOut, args)
	return out.String(), errOut.String(), err
}

func execute(cmd *cobra.Command, out, errOut *bytes.Buffer, args []string) error {
	cmd.SetOut(out)
	cmd.SetErr(errOut)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return cmd.ExecuteContext(ctx)
}

// hasRow reports whether a line of a printed table has exactly these fields.
func hasRow(out string, fields ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if slices.Equal(strings.Fields(line), fields) {
			return true
		}
	}
	return false
}

// writeKubeconfig writes a kubeconfig with contexts that point nowhere reachable: the
// commands must fail on flags and contexts before they talk to any server.
func writeKubeconfig(t *testing.T) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", CertificateAuthorityData: []byte("not a real CA")}
	cfg.Clusters["insecure"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1", InsecureSkipTLSVerify: true}
	cfg.Clusters["no-ca"] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1"}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: "t"}
	cfg.Contexts["member"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.Contexts["insecure"] = &clientcmdapi.Context{Cluster: "insecure", AuthInfo: "u"}
	cfg.Contexts["no-ca"] = &clientcmdapi.Context{Cluster: "no-ca", AuthInfo: "u"}
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
		// -o wide is accepted, as kubectl users type it: the command goes on to its next check.
		{"wide output accepted by join", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "-o", "wide", "--cluster-id", "Foo_1"}, `cluster ID "Foo_1" is not a DNS-1123 label`},
		{"wide output accepted by leave", NewLeave, []string{"--kubeconfig", kc, "--context", "insecure", "--broker-context", "insecure", "-o", "wide"}, "127.0.0.1:1"},
		{"bad cluster ID before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--cluster-id", "Foo_1"}, `cluster ID "Foo_1" is not a DNS-1123 label`},
		{"bad CIDR before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--pod-cidr", "10.1.0.1/16"}, "pod CIDR 10.1.0.1/16 has host bits set; did you mean 10.1.0.0/16?"},
		{"no arguments", NewJoin, []string{"cluster02"}, `unknown command "cluster02"`},
		{"credential TTL too short", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--credential-ttl", "5m"},
			"--credential-ttl: credential TTL 5m0s is too short: the TokenRequest API issues tokens for at least 10m0s"},
		{"credential TTL zero", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--credential-ttl", "0s"},
			"--credential-ttl: credential TTL 0s is too short"},
		{"credential TTL too long", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--credential-ttl", "9000h"},
			"--credential-ttl: credential TTL 9000h0m0s is too long: at most 8760h0m0s (one year) is allowed"},
		{"credential TTL not a duration", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--credential-ttl", "1d"},
			`invalid argument "1d" for "--credential-ttl" flag`},
		{"bad federation namespace", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--federation-namespace", "Fed"},
			`--federation-namespace: federation namespace "Fed" is not a DNS-1123 label`},
		{"reserved federation namespace", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--federation-namespace", "strait-clusterset"},
			`--federation-namespace: federation namespace "strait-clusterset" is reserved`},
		{"insecure broker before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "insecure"},
			"the broker context insecure skips TLS verification (insecure-skip-tls-verify), and a member's agent would then accept any server as its broker; give the context the broker's CA, or pass --allow-insecure-broker"},
		{"broker without a CA before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "no-ca"},
			"the broker context no-ca names no CA"},
		{"broker not https before any request", NewJoin, []string{"--kubeconfig", kc, "--context", "member", "--broker-context", "member", "--broker-server", "http://broker"},
			`the broker credential a member would get from the context member: refused: clusters["broker"].server "http://broker" is not an https:// URL`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := run(t, tc.cmd(), tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestWideIsTheTable: join and leave have no wider table; -o wide prints the usual one.
func TestWideIsTheTable(t *testing.T) {
	join := &clusterset.JoinResult{Broker: "https://127.0.0.1:16443",
		Member:  clusterset.Member{ID: "cluster02", ClusterSet: "clusterset.local", PodCIDRs: []string{"10.2.0.0/16"}, ServiceCIDRs: []string{"10.102.0.0/16"}},
		Actions: []clusterset.Action{{Verb: "created", Cluster: "cluster01", Kind: "Namespace", Name: "strait-member-cluster02"}}}
	leave := &clusterset.LeaveResult{ClusterID: "cluster02", Broker: "https://127.0.0.1:16443"}
	for name, print := range map[string]func(format string, w *bytes.Buffer) error{
		"join":  func(format string, w *bytes.Buffer) error { return printJoin(w, format, join) },
		"leave": func(format string, w *bytes.Buffer) error { return printLeave(w, format, "cluster02", leave) },
	} {
		var table, wide bytes.Buffer
		if err := print("", &table); err != nil {
			t.Fatal(err)
		}
		if err := print("wide", &wide); err != nil {
			t.Fatal(err)
		}
		if wide.String() != table.String() || !strings.Contains(wide.String(), "cluster02") {
			t.Errorf("%s -o wide printed:\n%s\nwant the table:\n%s", name, wide.String(), table.String())
		}
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

	step("join prints what it did; again, that only the token changed", func(t *testing.T) {
		for _, c := range lab.Names() {
			if _, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", c, "--broker-context", "cluster01"); err != nil {
				t.Fatalf("joining %s: %v", c, err)
			}
		}
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster02", "--broker-context", "cluster01")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("strait join:\n%s", out)
		plan := lab.Cluster("cluster02")
		for _, want := range []string{
			`Cluster cluster02 is a member of clusterset "clusterset" (broker cluster01).`,
			"region " + plan.Region + ", zone " + plan.Zone + ", pod CIDRs " + plan.PodCIDR + ", service CIDRs " + plan.ServiceCIDR,
			"broker credential: a token of ServiceAccount strait-clusterset/member-cluster02, expires ",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if !hasRow(out, "updated", "cluster02", "Secret", "strait-system/strait-broker") || strings.Count(out, "\n") != 5 {
			t.Errorf("a second join must only rotate the token:\n%s", out)
		}
	})

	step("join --credential-ttl, and --allow-insecure-broker warns on standard error", func(t *testing.T) {
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster02", "--broker-context", "cluster01", "--credential-ttl", "15m", "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var res clusterset.JoinResult
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatalf("output is not JSON: %v\n%s", err, out)
		}
		if d := time.Until(res.CredentialExpiry); d < 14*time.Minute || d > 16*time.Minute {
			t.Errorf("the token expires in %s, want about 15m", d)
		}
		cred := storedCredential(t, lab, "cluster02", false)
		if !cred.Expiry.Equal(res.CredentialExpiry) {
			t.Errorf("stored token expires %s, result says %s", cred.Expiry, res.CredentialExpiry)
		}

		insecure := insecureKubeconfig(t, kc, "cluster01")
		_, err = run(t, NewJoin(), "--kubeconfig", insecure, "--context", "cluster02", "--broker-context", "cluster01")
		if err == nil || !strings.Contains(err.Error(), "--allow-insecure-broker") {
			t.Errorf("joining through an insecure broker context: %v", err)
		}
		stdout, stderr, err := runSplit(t, NewJoin(), "--kubeconfig", insecure, "--context", "cluster02", "--broker-context", "cluster01", "--allow-insecure-broker")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stderr, "Warning: the broker credential stored in cluster02 skips TLS verification (--allow-insecure-broker)") || strings.Contains(stdout, "Warning") {
			t.Errorf("standard error:\n%s\nstandard output:\n%s", stderr, stdout)
		}
		if c := storedCredential(t, lab, "cluster02", true); !c.Insecure {
			t.Errorf("stored credential %+v, want it insecure", c)
		}
		if _, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster02", "--broker-context", "cluster01"); err != nil {
			t.Fatal(err)
		}
		storedCredential(t, lab, "cluster02", false)
	})

	step("leave through KUBECONFIG, then leave again", func(t *testing.T) {
		t.Setenv("KUBECONFIG", kc)
		out, err := run(t, NewLeave(), "--context", "cluster03", "--broker-context", "cluster01")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("strait leave:\n%s", out)
		if !strings.Contains(out, "Cluster cluster03 (cluster03) left the clusterset (broker cluster01).") {
			t.Errorf("output:\n%s", out)
		}
		for _, row := range [][]string{
			{"ACTION", "CLUSTER", "KIND", "NAME"},
			{"deleted", "cluster01", "ConfigMap", "strait-clusterset/member-cluster03"},
			{"deleted", "cluster01", "ServiceAccount", "strait-clusterset/member-cluster03"},
			{"deleted", "cluster01", "Namespace", "strait-member-cluster03"},
			{"deleted", "cluster03", "Secret", "strait-system/strait-broker"},
		} {
			if !hasRow(out, row...) {
				t.Errorf("output lacks the row %q:\n%s", row, out)
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
		if !slices.Contains(actions, "created ConfigMap strait-clusterset/member-cluster03 in cluster01") {
			t.Errorf("actions %q", actions)
		}
		members, err := clusterset.ReadMembers(context.Background(), lab.Client("cluster01"))
		if err != nil || len(members) != 3 {
			t.Errorf("members %v, %v", members, err)
		}
	})

	step("join -o yaml when only the token changes", func(t *testing.T) {
		out, err := run(t, NewJoin(), "--kubeconfig", kc, "--context", "cluster03", "--broker-context", "cluster01", "-o", "yaml")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"id: cluster03", "credentialExpiry:", "- action: updated", "kind: Secret", "name: strait-broker"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
		if strings.Count(out, "- action:") != 1 || strings.Contains(out, "warnings") {
			t.Errorf("output:\n%s", out)
		}
	})
}

// storedCredential reads the broker credential join stored in a member, as its agent does.
func storedCredential(t *testing.T, lab *labtest.Lab, member string, allowInsecure bool) clusterset.BrokerCredential {
	t.Helper()
	s, err := lab.Client(member).CoreV1().Secrets(clusterset.SystemNamespace).Get(context.Background(), clusterset.BrokerSecretName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := clusterset.ParseBrokerCredential(s.Data[clusterset.BrokerSecretKey], allowInsecure)
	if err != nil {
		t.Fatalf("the credential stored in %s is refused: %v", member, err)
	}
	return c
}

// insecureKubeconfig copies a kubeconfig with the cluster of one context told to skip TLS
// verification, as some lab and development setups are.
func insecureKubeconfig(t *testing.T, kc, context string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clusters[cfg.Contexts[context].Cluster]
	c.InsecureSkipTLSVerify, c.CertificateAuthorityData, c.CertificateAuthority = true, nil, ""
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMain(m *testing.M) {
	// The commands honour KUBECONFIG; tests must not pick up the host's.
	os.Unsetenv("KUBECONFIG")
	os.Exit(m.Run())
}
