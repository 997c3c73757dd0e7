package root

import (
	"bytes"
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/version"
)

// execute runs the strait command line in the test process.
func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// resetLogging undoes what a run applied, before and after a test.
func resetLogging(t *testing.T) {
	t.Helper()
	reset := func() {
		if err := logsapi.ResetForTest(nil); err != nil {
			t.Fatal(err)
		}
	}
	reset()
	t.Cleanup(reset)
}

func TestHelpShowsTheSharedFlags(t *testing.T) {
	logging := []string{"-v, --v Level", "--vmodule", "--logging-format", "--log-flush-frequency"}
	kube := []string{"--kubeconfig", "--context", "--cluster", "--user", "--token", "--as ", "--as-group", "--request-timeout", "-s, --server", "--insecure-skip-tls-verify"}
	for _, tc := range []struct {
		args []string
		want []string
		not  []string
	}{
		{[]string{"--help"}, logging, []string{"--kubeconfig"}},
		{[]string{"status", "--help"}, append(append([]string{"Global Flags:"}, logging...), kube...), []string{"--namespace"}},
		{[]string{"join", "--help"}, append(kube, "--broker-context"), nil},
		{[]string{"leave", "--help"}, append(kube, "--broker-context"), nil},
		{[]string{"map", "--help"}, append(kube, "-n, --namespace"), nil},
		{[]string{"doctor", "--help"}, append(kube, "-n, --namespace", "-A, --all-namespaces"), nil},
		{[]string{"federation", "status", "--help"}, kube, nil},
		{[]string{"federation", "controller", "--help"}, kube, nil},
		{[]string{"dns", "serve", "--help"}, append(kube, "--broker-context", "--broker-kubeconfig"), nil},
	} {
		out, err := execute(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("strait %s does not show %q:\n%s", strings.Join(tc.args, " "), w, out)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(out, n) {
				t.Errorf("strait %s shows %q", strings.Join(tc.args, " "), n)
			}
		}
	}
}

func TestVerbositySetsKlog(t *testing.T) {
	resetLogging(t)
	if klog.V(4).Enabled() {
		t.Fatal("V(4) enabled before any flag")
	}
	// The command fails on its kubeconfig, after the logging flags were applied.
	_, err := execute(t, "-v", "4", "status", "--kubeconfig", "/nonexistent/kubeconfig")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Fatalf("error %v, want the kubeconfig named", err)
	}
	if !klog.V(4).Enabled() || klog.V(5).Enabled() {
		t.Errorf("after -v 4: V(4) %v, V(5) %v", klog.V(4).Enabled(), klog.V(5).Enabled())
	}
	// The same configuration again (tests run the command line many times) is fine.
	if _, err := execute(t, "-v", "4", "status", "--kubeconfig", "/nonexistent/kubeconfig"); err == nil || strings.Contains(err.Error(), "logging") {
		t.Errorf("second run: %v", err)
	}
}

func TestLoggingFormat(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"--logging-format", "json", "-v", "2", "status", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
		{[]string{"--logging-format", "text", "--vmodule", "status=3", "status", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
		{[]string{"--logging-format", "xml", "status", "--kubeconfig", "/nonexistent/kubeconfig"}, `logging flags: format: Invalid value: "xml": Unsupported log format`},
		{[]string{"--logging-format", "json", "--vmodule", "status=3", "status", "--kubeconfig", "/nonexistent/kubeconfig"}, "vmodule: Forbidden: Only supported for text log format"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			resetLogging(t)
			_, err := execute(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	resetLogging(t)
	old := version.Version
	version.Version = "v1.2.3"
	t.Cleanup(func() { version.Version = old })
	// The root command takes its --version when it is built.
	out, err := execute(t, "--version")
	if err != nil || out != "strait v1.2.3\n" {
		t.Errorf("strait --version: %q, %v; want \"strait v1.2.3\"", out, err)
	}
	out, err = execute(t, "version", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]string
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("strait version -o json: %v\n%s", err, out)
	}
	if info["version"] != "v1.2.3" || info["goVersion"] != runtime.Version() || info["platform"] != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("strait version -o json: %s", out)
	}
	if _, ok := info["gitCommit"]; !ok {
		t.Errorf("strait version -o json has no gitCommit: %s", out)
	}
	out, err = execute(t, "version")
	if err != nil || !strings.HasPrefix(out, "strait v1.2.3 (commit ") {
		t.Errorf("strait version: %q, %v", out, err)
	}
	if _, err := execute(t, "version", "-o", "xml"); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("strait version -o xml: %v, want an error naming xml", err)
	}
}
