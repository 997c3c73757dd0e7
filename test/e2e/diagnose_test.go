package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/diagnose"
	labpkg "github.com/strait-io/strait/internal/lab"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// diagnoseImage is Strait's image as the test loads it into the lab's nodes.
const diagnoseImage = "strait.io/strait:e2e-diagnose"

// runDiagnose runs `strait diagnose -o json` against the lab and returns its report and
// exit status.
func runDiagnose(t *testing.T, lab *labtest.Lab) (*diagnose.Report, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, straitBin, "diagnose", "--kubeconfig", lab.Kubeconfig(), "--image", diagnoseImage, "--timeout", "75s", "-o", "json")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	code := 0
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("strait diagnose: %v\n%s", err, stderr.String())
	}
	var r diagnose.Report
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("strait diagnose -o json printed %q (%v); stderr:\n%s", out, err, stderr.String())
	}
	t.Logf("strait diagnose: exit %d, %d passed, %d failed, %d skipped; progress:\n%s", code, r.Passed, r.Failed, r.Skipped, stderr.String())
	return &r, code
}

// result finds the result of a check of cluster (peer "" for a member check).
func result(t *testing.T, r *diagnose.Report, check, cluster, peer string) diagnose.Result {
	t.Helper()
	for _, x := range r.Results {
		if x.Check == check && x.Cluster == cluster && x.Peer == peer {
			return x
		}
	}
	t.Fatalf("no result for %q of %s -> %q in %+v", check, cluster, peer, r.Results)
	return diagnose.Result{}
}

// TestDiagnose runs `strait diagnose` on a healthy 2-cluster lab, then breaks one link at
// a time (CoreDNS's multicluster line, an agent, the routes to a member's pods) and checks
// that it names the broken link and its fix.
func TestDiagnose(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	if err := labpkg.LoadImage(ctx, labpkg.LoadImageOptions{Dir: lab.Dir, Image: diagnoseImage, StraitBinary: straitBin}); err != nil {
		t.Fatal(err)
	}
	names := lab.Names()

	t.Run("Healthy", func(t *testing.T) {
		r, code := runDiagnose(t, lab)
		if code != 0 || !r.OK() {
			t.Errorf("exit %d on a healthy lab; failures: %+v", code, failures(r))
		}
		// 2 members × (joined, agent, lease, broker, coredns, workload) + 4 pairs × 4 checks.
		if want := 2*6 + 4*4; r.Passed != want {
			t.Errorf("%d checks passed; want %d: %+v", r.Passed, want, r.Results)
		}
		if x := result(t, r, diagnose.CheckDNS, names[0], names[1]); !strings.Contains(x.Detail, "diag-") {
			t.Errorf("the clusterset name check says %q", x.Detail)
		}
	})

	t.Run("CoreDNSWithoutMulticluster", func(t *testing.T) {
		kube := lab.Client(names[1])
		cms := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem)
		cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		good := cm.Data[supervisor.CorefileKey]
		bad := strings.Replace(good, "multicluster clusterset.local", "", 1)
		if bad == good {
			t.Fatalf("the lab's Corefile has no multicluster line:\n%s", good)
		}
		cm.Data[supervisor.CorefileKey] = bad
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
			if err == nil {
				cm.Data[supervisor.CorefileKey] = good
				_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Errorf("restoring the Corefile: %v", err)
			}
			time.Sleep(10 * time.Second) // CoreDNS's reload
		}()
		time.Sleep(10 * time.Second) // the sync and CoreDNS's reload
		r, code := runDiagnose(t, lab)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
		x := result(t, r, diagnose.CheckCoreDNS, names[1], "")
		if x.Status != diagnose.Failed || !strings.Contains(x.Detail, "multicluster") || !strings.Contains(x.Fix, "edit configmap coredns") {
			t.Errorf("coredns check of %s: %+v; want a failure naming the multicluster line, and the fix", names[1], x)
		}
		if x := result(t, r, diagnose.CheckDNS, names[1], names[0]); x.Status != diagnose.Failed {
			t.Errorf("resolving clusterset.local from a pod of %s without the line: %+v; want a failure", names[1], x)
		}
		if x := result(t, r, diagnose.CheckDNS, names[0], names[1]); x.Status != diagnose.Passed {
			t.Errorf("resolving from %s, whose CoreDNS is fine: %+v", names[0], x)
		}
	})

	t.Run("AgentStopped", func(t *testing.T) {
		lab.StopComponent(names[1], supervisor.Agent)
		defer lab.StartComponent(names[1], supervisor.Agent)
		r, code := runDiagnose(t, lab)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
		x := result(t, r, diagnose.CheckAgent, names[1], "")
		if x.Status != diagnose.Failed || !strings.Contains(x.Detail, "not renewed") || !strings.Contains(x.Fix, "scale strait-agent") {
			t.Errorf("agent check of %s: %+v; want a failure with the fix", names[1], x)
		}
		if x := result(t, r, diagnose.CheckHeartbeat, names[1], ""); x.Status != diagnose.Failed {
			t.Errorf("member lease of %s with its agent stopped: %+v; want a failure", names[1], x)
		}
		if x := result(t, r, diagnose.CheckAgent, names[0], ""); x.Status != diagnose.Passed {
			t.Errorf("agent check of %s, running: %+v", names[0], x)
		}
	})

	t.Run("RoutesCut", func(t *testing.T) {
		target := lab.Cluster(names[1])
		route := []string{"-n", lab.Plan.RouterNS, "route", "del", target.PodCIDR, "via", target.NodeIP}
		if out, err := exec.Command("ip", route...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(route, " "), err, out)
		}
		defer func() {
			route[3] = "add"
			if out, err := exec.Command("ip", route...).CombinedOutput(); err != nil {
				t.Errorf("restoring the route: ip %s: %v: %s", strings.Join(route, " "), err, out)
			}
		}()
		r, code := runDiagnose(t, lab)
		if code != 1 {
			t.Errorf("exit %d; want 1", code)
		}
		x := result(t, r, diagnose.CheckPodIP, names[0], names[1])
		if x.Status != diagnose.Failed || !strings.Contains(x.Fix, "route "+names[1]+"'s pod CIDR") {
			t.Errorf("pod IP check %s -> %s with the route cut: %+v; want a failure with the fix", names[0], names[1], x)
		}
		if x := result(t, r, diagnose.CheckDNS, names[0], names[1]); x.Status != diagnose.Passed {
			t.Errorf("DNS %s -> %s does not need the route: %+v", names[0], names[1], x)
		}
		if x := result(t, r, diagnose.CheckPodIP, names[0], names[0]); x.Status != diagnose.Passed {
			t.Errorf("pod IP within %s: %+v", names[0], x)
		}
	})
}

func failures(r *diagnose.Report) []diagnose.Result {
	var out []diagnose.Result
	for _, x := range r.Results {
		if x.Status == diagnose.Failed {
			out = append(out, x)
		}
	}
	return out
}
