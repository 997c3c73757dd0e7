package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

// kubectl runs the lab's kubectl with the lab's kubeconfig.
func kubectl(ctx context.Context, lab *labtest.Lab, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(lab.Dir.BinDir(), "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+lab.Kubeconfig())
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// TestLabNodesAreReal checks what a user of kind expects of a node: a real kubelet on
// containerd, real probes, and kubectl exec, logs and port-forward, all served by the
// kubelet; and that `lab status` checks the kubelet and containerd.
func TestLabNodesAreReal(t *testing.T) {
	lab := labtest.Start(t, 2)
	ctx := context.Background()
	cs := lab.Client("cluster02")

	out, err := kubectl(ctx, lab, "--context", "cluster02", "get", "nodes", "-o", "wide")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^cluster02-node\s+Ready\s.*\sv1\.34\.4\s+` + regexp.QuoteMeta(lab.Cluster("cluster02").NodeIP) + `\s.*\scontainerd://2\.`).MatchString(out) {
		t.Errorf("kubectl get nodes -o wide:\n%s\nwant cluster02-node Ready, kubelet v1.34.4, the node address and a containerd:// runtime", out)
	}

	createNamespace(t, cs, "real")
	if _, err := cs.AppsV1().Deployments("real").Create(ctx, deployment("real", "rebel-base", 2, 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("real").Create(ctx, service("real", "rebel-base", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	debug := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "debug", Namespace: "real"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "debug", Image: "strait.io/lab/debug"}},
			TerminationGracePeriodSeconds: new(int64)},
	}
	if _, err := cs.CoreV1().Pods("real").Create(ctx, debug, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "rollout", "status", "deployment/rebel-base", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	if _, err := kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "wait", "--for=condition=Ready", "pod/debug", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods("real").List(ctx, metav1.ListOptions{LabelSelector: "app=rebel-base"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if len(p.Status.ContainerStatuses) != 1 || !strings.HasPrefix(p.Status.ContainerStatuses[0].ContainerID, "containerd://") ||
			!strings.HasPrefix(p.Status.ContainerStatuses[0].ImageID, "strait.io/lab/rebel-base@sha256:") {
			t.Errorf("pod %s container statuses %+v; want a containerd container of strait.io/lab/rebel-base", p.Name, p.Status.ContainerStatuses)
		}
	}

	// kubectl exec: DNS and HTTP from inside a pod, through the cluster's CoreDNS and
	// kube-proxy (the Service's pods share the node's bridge with the debug pod).
	out, err = kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "exec", "debug", "--", "nslookup", "rebel-base.real.svc.cluster.local")
	svc, _ := cs.CoreV1().Services("real").Get(ctx, "rebel-base", metav1.GetOptions{})
	if err != nil || svc == nil || !strings.Contains(out, svc.Spec.ClusterIP) {
		t.Errorf("nslookup in the debug pod: %s (%v); want the ClusterIP", out, err)
	}
	poll(t, 30*time.Second, "curl from the debug pod reaches rebel-base", func(ctx context.Context) (bool, error) {
		out, err := kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "exec", "debug", "--", "curl", "-sS", "--max-time", "3", "http://rebel-base/from-debug")
		var r reply
		if err == nil {
			err = json.Unmarshal([]byte(out), &r)
		}
		return err == nil && r.Cluster == "cluster02" && r.Namespace == "real", err
	})
	out, err = kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "exec", "debug", "--", "cat", "/etc/resolv.conf")
	if err != nil || !strings.Contains(out, "nameserver "+lab.Cluster("cluster02").DNSServiceIP) || !strings.Contains(out, "search real.svc.cluster.local") {
		t.Errorf("the debug pod's resolv.conf:\n%s (%v); want the cluster DNS and the pod's search path", out, err)
	}

	// kubectl logs: the container's own output, kept by the kubelet.
	pod := pods.Items[0].Name
	out, err = kubectl(ctx, lab, "--context", "cluster02", "-n", "real", "logs", pod)
	if err != nil || !strings.Contains(out, "Serving real/"+pod) {
		t.Errorf("kubectl logs %s: %q (%v)", pod, out, err)
	}

	// kubectl port-forward: from the host's loopback into the pod, through the API server,
	// the egress proxy and the kubelet.
	pfCtx, stopPF := context.WithCancel(ctx)
	defer stopPF()
	pf := exec.CommandContext(pfCtx, filepath.Join(lab.Dir.BinDir(), "kubectl"), "--context", "cluster02", "-n", "real",
		"port-forward", "--address", "127.0.0.1", "pod/"+pod, ":80")
	pf.Env = append(os.Environ(), "KUBECONFIG="+lab.Kubeconfig())
	stdout, err := pf.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stopPF(); _ = pf.Wait() }()
	local := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 80`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				local <- m[1]
			}
		}
	}()
	select {
	case addr := <-local:
		resp, err := http.Get("http://" + addr + "/forwarded")
		if err != nil {
			t.Fatalf("port-forward: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var r reply
		if err := json.Unmarshal(body, &r); err != nil || r.Pod != pod {
			t.Errorf("through port-forward: %s (%v); want pod %s", body, err, pod)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl port-forward did not start forwarding within 30s")
	}

	st := lab.Sup.Status(ctx)
	for _, c := range st.Clusters {
		for _, want := range []string{supervisor.Containerd, supervisor.Kubelet, supervisor.Scheduler, supervisor.EgressProxy, supervisor.ImageRegistry} {
			found := false
			for _, comp := range c.Components {
				if comp.Name == want {
					found = true
					if comp.State != supervisor.StateRunning || !comp.Healthy {
						t.Errorf("%s of %s: %s healthy=%v %s", want, c.Name, comp.State, comp.Healthy, comp.Detail)
					}
				}
			}
			if !found {
				t.Errorf("lab status of %s has no %s", c.Name, want)
			}
		}
	}
}

// TestLabNodeThatFailsToStart: a kubelet that cannot start (its serving key is garbage) fails
// the start with an error naming the kubelet, its cluster and its log, and leaves nothing:
// no process, namespace, mount or cgroup (labtest checks when the test ends).
func TestLabNodeThatFailsToStart(t *testing.T) {
	_, err := labtest.Try(t, labtest.Options{Names: []string{"cluster01", "cluster02"}, BeforeStart: func(dir state.Dir, l *plan.Lab) {
		if err := os.WriteFile(dir.Cluster("cluster02").File(state.KubeletServingKey), []byte("not a key\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}})
	if err == nil {
		t.Fatal("the lab started with a broken kubelet")
	}
	for _, want := range []string{"kubelet of cluster cluster02", "kubelet.log"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
}
