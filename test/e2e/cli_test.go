package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// cli runs the strait binary with its lab state under stateHome.
type cli struct {
	t         *testing.T
	stateHome string
	lab       string
}

func newCLI(t *testing.T) *cli {
	home := t.TempDir()
	return &cli{t: t, stateHome: home, lab: fmt.Sprintf("c%d", os.Getpid()%100000)}
}

func (c *cli) run(args ...string) (stdout, stderr string, err error) {
	// --lab goes right after "lab", so it never lands after an exec command's "--".
	full := append([]string{args[0], "--lab", c.lab}, args[1:]...)
	cmd := exec.Command(straitBin, full...)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+c.stateHome)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *cli) mustRun(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("strait %s: %v\n%s\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func (c *cli) stateDir() string { return filepath.Join(c.stateHome, "strait", "lab", c.lab) }

// assertNothingRunning checks that no network namespace of the lab and no supervisor is left.
func (c *cli) assertNothingRunning(names ...string) {
	c.t.Helper()
	for _, n := range append([]string{"router"}, names...) {
		if netns.Exists(c.lab + "-" + n) {
			c.t.Errorf("network namespace %s-%s is left behind", c.lab, n)
		}
	}
	if supervisor.Locked(state.Dir(c.stateDir())) {
		c.t.Errorf("a supervisor still holds the lab's lock")
	}
	out, _ := exec.Command("pgrep", "-f", c.stateDir()).Output()
	if len(bytes.TrimSpace(out)) > 0 {
		c.t.Errorf("processes of the lab are left behind: %s", out)
	}
}

// TestLabBadInputIsRefusedAndStartsNothing: each bad request fails with a message naming the
// bad value, and leaves no network namespace, process or state behind.
func TestLabBadInputIsRefusedAndStartsNothing(t *testing.T) {
	c := newCLI(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"zero clusters", []string{"lab", "up", "--clusters", "0"}, "--clusters 0: the lab needs between 1 and 50 clusters"},
		{"too many clusters", []string{"lab", "up", "--clusters", "51"}, "--clusters 51"},
		{"bad name", []string{"lab", "up", "--names", "east,West_1"}, `cluster name "West_1" is not a DNS-1123 label`},
		{"duplicate names", []string{"lab", "up", "--names", "east,east"}, `cluster name "east" is given twice`},
		{"both flags", []string{"lab", "up", "--names", "a", "--clusters", "2"}, "either --clusters or --names"},
		{"port in use", []string{"lab", "up", "--clusters", "1", "--api-port-base", fmt.Sprint(busyPort - 1)},
			fmt.Sprintf("port %d on 127.0.0.1, planned for kube-apiserver of cluster cluster01, is already in use", busyPort)},
		{"exec unknown cluster", []string{"lab", "exec", "nope", "--", "true"}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := c.run(tt.args...)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Fatalf("strait %s: err=%v stderr=%q; want failure mentioning %q", strings.Join(tt.args, " "), err, errOut, tt.want)
			}
			c.assertNothingRunning("cluster01", "east")
		})
	}

	// Without root: run as nobody.
	cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", straitBin, "lab", "up", "--lab", c.lab)
	cmd.Env = append(os.Environ(), "XDG_STATE_HOME="+t.TempDir(), "HOME=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "strait lab needs root") {
		t.Errorf("lab up as nobody: err=%v output=%q; want a clear message that root is needed", err, out)
	}
	c.assertNothingRunning("cluster01")
}

// TestLabUpDownLifecycle runs the lab through the command line as a user does: up, a second up
// refused, status, exec, down leaving nothing behind, up again with its data kept, and
// down --purge removing its state.
func TestLabUpDownLifecycle(t *testing.T) {
	c := newCLI(t)
	t.Cleanup(func() { _, _, _ = c.run("lab", "down", "--purge") })

	out := c.mustRun("lab", "up", "--names", "solo", "--api-port-base", "23000")
	for _, want := range []string{"solo: kube-apiserver is up", "export KUBECONFIG=" + filepath.Join(c.stateDir(), "kubeconfig")} {
		if !strings.Contains(out, want) {
			t.Errorf("lab up output lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, err := c.run("lab", "up"); err == nil || !strings.Contains(errOut, "already running") {
		t.Errorf("second lab up: err=%v stderr=%q; want 'already running'", err, errOut)
	}

	var st supervisor.Status
	if err := json.Unmarshal([]byte(c.mustRun("lab", "status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Phase != supervisor.PhaseRunning || len(st.Clusters) != 1 || !st.Clusters[0].Healthy {
		t.Errorf("status = %+v; want one healthy cluster, Running", st)
	}
	if table := c.mustRun("lab", "status"); !strings.Contains(table, "solo") || !strings.Contains(table, "kube-proxy") {
		t.Errorf("status table lacks the cluster or its components:\n%s", table)
	}
	out = c.mustRun("lab", "exec", "solo", "--", "dig", "+short", "kubernetes.default.svc.cluster.local")
	if strings.TrimSpace(out) != st.Clusters[0].ServiceCIDR[:len(st.Clusters[0].ServiceCIDR)-len("0/16")]+"1" {
		t.Errorf("dig kubernetes.default in the lab = %q; want the first address of %s", out, st.Clusters[0].ServiceCIDR)
	}
	kubectl := filepath.Join(c.stateDir(), "bin", "kubectl")
	kc := exec.Command(kubectl, "--kubeconfig", filepath.Join(c.stateDir(), "kubeconfig"), "--context", "solo", "create", "configmap", "kept", "--from-literal=a=b")
	if out, err := kc.CombinedOutput(); err != nil {
		t.Fatalf("kubectl create configmap: %v: %s", err, out)
	}
	if _, errOut, err := c.run("lab", "exec", "solo", "--", "false"); err == nil {
		t.Errorf("lab exec of a failing command succeeded (stderr %q); want its exit status", errOut)
	}

	c.mustRun("lab", "down")
	c.assertNothingRunning("solo")
	if _, err := os.Stat(filepath.Join(c.stateDir(), "lab.json")); err != nil {
		t.Errorf("down without --purge removed the state: %v", err)
	}
	if out := c.mustRun("lab", "status"); !strings.Contains(out, "Stopped") {
		t.Errorf("status after down = %q; want Stopped", out)
	}

	c.mustRun("lab", "up")
	kc = exec.Command(kubectl, "--kubeconfig", filepath.Join(c.stateDir(), "kubeconfig"), "--context", "solo", "get", "configmap", "kept")
	if out, err := kc.CombinedOutput(); err != nil {
		t.Errorf("the ConfigMap created before down is gone after up: %v: %s", err, out)
	}
	c.mustRun("lab", "down", "--purge")
	c.assertNothingRunning("solo")
	if _, err := os.Stat(c.stateDir()); !os.IsNotExist(err) {
		t.Errorf("state directory after down --purge: %v; want it gone", err)
	}
	c.mustRun("lab", "up", "--names", "solo", "--api-port-base", "23000")
	c.mustRun("lab", "down", "--purge")
	c.assertNothingRunning("solo")
}
