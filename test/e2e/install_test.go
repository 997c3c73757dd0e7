package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/strait-io/strait/internal/coredns"
	"github.com/strait-io/strait/internal/install"
	labpkg "github.com/strait-io/strait/internal/lab"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

const installImageTag = "e2e-install"

// strait runs the strait binary with the lab's kubeconfig and returns its output.
func strait(ctx context.Context, lab *labtest.Lab, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, straitBin, append(args, "--kubeconfig", lab.Kubeconfig())...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// leaderHolder is the holder of a cluster's agent leader lease.
func leaderHolder(ctx context.Context, lab *labtest.Lab, cluster string) string {
	l, err := lab.Client(cluster).CoordinationV1().Leases("strait-system").Get(ctx, "strait-agent", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// TestJoinInstall installs the agent as pods with `strait join --install`, runs the
// Multi-Cluster Services path through them (the lab's own agent of that cluster stopped),
// fails over between the two replicas, refuses bad input without leaving anything, and
// uninstalls with `strait leave --uninstall`, CoreDNS's Corefile restored.
func TestJoinInstall(t *testing.T) {
	// The test installs the chart itself, on clusters whose agents run in the supervisor.
	lab, err := labtest.Try(t, labtest.Options{Names: plan.DefaultNames(2), AgentsInSupervisor: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	broker, member := lab.Names()[0], lab.Names()[1]
	kube := lab.Client(member)
	cs := mcsClusters(t, lab)
	if err := labpkg.LoadImage(ctx, labpkg.LoadImageOptions{Dir: lab.Dir, Image: "strait.io/strait:" + installImageTag, StraitBinary: straitBin}); err != nil {
		t.Fatal(err)
	}

	// The member's CoreDNS without clusterset.local, as on a fresh cluster.
	cms := kube.CoreV1().ConfigMaps(metav1.NamespaceSystem)
	cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := coredns.RemoveMulticluster(cm.Data[supervisor.CorefileKey])
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[supervisor.CorefileKey] = fresh
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Pods reach the broker at its node address (the lab's API forwarder), not at the
	// host's loopback the lab's own agents use.
	b := lab.Cluster(broker)
	brokerServer := fmt.Sprintf("https://%s:%d", b.NodeIP, b.Ports.APIServer)
	joinArgs := []string{"join", "--context", member, "--broker-context", broker, "--broker-server", brokerServer, "--install"}
	good := "image.tag=" + installImageTag

	t.Run("UnreachableCluster", func(t *testing.T) {
		cfg, err := clientcmd.LoadFromFile(lab.Kubeconfig())
		if err != nil {
			t.Fatal(err)
		}
		dead := cfg.Clusters[cfg.Contexts[member].Cluster].DeepCopy()
		dead.Server = "https://127.0.0.1:1"
		cfg.Clusters["dead"] = dead
		ctxCopy := cfg.Contexts[member].DeepCopy()
		ctxCopy.Cluster = "dead"
		cfg.Contexts["dead"] = ctxCopy
		path := filepath.Join(t.TempDir(), "kubeconfig")
		if err := clientcmd.WriteToFile(*cfg, path); err != nil {
			t.Fatal(err)
		}
		out, err := exec.CommandContext(ctx, straitBin, "join", "--kubeconfig", path, "--context", "dead", "--broker-context", broker, "--install", "--set", good).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "cluster dead (https://127.0.0.1:1) cannot be reached, so nothing was installed") {
			t.Errorf("join --install to an unreachable cluster: %v\n%s", err, out)
		}
	})

	t.Run("InvalidValue", func(t *testing.T) {
		out, err := strait(ctx, lab, append(joinArgs, "--set", "agent.replicas=-1")...)
		if err == nil || !strings.Contains(out, "replicas") {
			t.Errorf("an invalid chart value: %v\n%s", err, out)
		}
		if _, err := kube.AppsV1().Deployments("strait-system").Get(ctx, "strait-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after an invalid value, Deployment strait-agent: %v; want none", err)
		}
	})

	t.Run("ImageThatDoesNotExist", func(t *testing.T) {
		out, err := strait(ctx, lab, append(joinArgs, "--set", "image.tag=does-not-exist", "--install-timeout", "2m")...)
		if err == nil || !strings.Contains(out, "cannot pull the image strait.io/strait:does-not-exist") || !strings.Contains(out, "nothing of this install is left") {
			t.Errorf("an image the nodes do not have: %v\n%s", err, out)
		}
		poll(t, 60*time.Second, "the failed install's Deployment is deleted", func(ctx context.Context) (bool, error) {
			_, err := kube.AppsV1().Deployments("strait-system").Get(ctx, "strait-agent", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil || cm.Data[supervisor.CorefileKey] != fresh {
			t.Errorf("after the failed install, the Corefile is not as before (%v):\n%s", err, cm.Data[supervisor.CorefileKey])
		}
	})

	t.Run("Install", func(t *testing.T) {
		out, err := strait(ctx, lab, append(joinArgs, "--set", good)...)
		if err != nil {
			t.Fatalf("join --install: %v\n%s", err, out)
		}
		t.Logf("join --install:\n%s", out)
		cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := coredns.Configured(cm.Data[supervisor.CorefileKey]); !ok || err != nil {
			t.Errorf("the Corefile after join --install is not configured (%v):\n%s", err, cm.Data[supervisor.CorefileKey])
		}
		if _, err := kube.CoreV1().ConfigMaps("strait-system").Get(ctx, install.BackupConfigMap, metav1.GetOptions{}); err != nil {
			t.Errorf("no backup of the Corefile: %v", err)
		}
		// Again: idempotent.
		if out, err := strait(ctx, lab, append(joinArgs, "--set", good)...); err != nil {
			t.Fatalf("join --install again: %v\n%s", err, out)
		}
	})

	t.Run("AgentPodsServeMCS", func(t *testing.T) {
		// The lab's own agent of the member stops for good: the credential now names the
		// broker's node address, which pods reach and the host does not.
		lab.StopComponent(member, supervisor.Agent)
		poll(t, 90*time.Second, "an agent pod leads in "+member, func(ctx context.Context) (bool, error) {
			return strings.HasPrefix(leaderHolder(ctx, lab, member), "strait-agent-"), nil
		})
		createNamespace(t, cs[0].kube, "inst")
		createNamespace(t, kube, "inst")
		serve := func(name string) {
			if _, err := cs[0].kube.AppsV1().Deployments("inst").Create(ctx, deployment("inst", name, 1, 8080), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if _, err := cs[0].kube.CoreV1().Services("inst").Create(ctx, service("inst", name, 80), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			export(t, cs[0], "inst", name)
			poll(t, 90*time.Second, member+"'s agent pods import inst/"+name, func(ctx context.Context) (bool, error) {
				_, ips, ok, err := importedFrom(ctx, cs[1], "inst", name)
				return ok && len(ips) == 1, err
			})
		}
		serve("one")

		// Failover: the leader's pod deleted, the other replica leads and imports.
		leader := leaderHolder(ctx, lab, member)
		pod, _, _ := strings.Cut(leader, "_")
		if err := kube.CoreV1().Pods("strait-system").Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
			t.Fatalf("deleting the leader's pod %s: %v", pod, err)
		}
		poll(t, 90*time.Second, "another agent pod leads", func(ctx context.Context) (bool, error) {
			h := leaderHolder(ctx, lab, member)
			return strings.HasPrefix(h, "strait-agent-") && !strings.HasPrefix(h, pod+"_"), nil
		})
		serve("two")
	})

	t.Run("Uninstall", func(t *testing.T) {
		out, err := strait(ctx, lab, "leave", "--context", member, "--broker-context", broker, "--uninstall")
		if err != nil {
			t.Fatalf("leave --uninstall: %v\n%s", err, out)
		}
		if _, err := kube.AppsV1().Deployments("strait-system").Get(ctx, "strait-agent", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("after leave --uninstall, Deployment strait-agent: %v; want none", err)
		}
		cm, err := cms.Get(ctx, supervisor.CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil || cm.Data[supervisor.CorefileKey] != fresh {
			t.Errorf("after leave --uninstall, the Corefile is not restored (%v):\n%s", err, cm.Data[supervisor.CorefileKey])
		}
	})
}
