package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/state"
	"github.com/strait-io/strait/internal/lab/supervisor"
)

func TestServedPorts(t *testing.T) {
	ctr := func(image string, ports ...int32) container {
		c := container{Image: image}
		for _, p := range ports {
			c.Ports = append(c.Ports, containerPort{ContainerPort: p})
		}
		return c
	}
	tests := []struct {
		name       string
		containers []container
		init       []container
		want       []int32
	}{
		{"one container", []container{ctr("strait.io/lab/rebel-base", 80)}, nil, []int32{80}},
		{"tag and digest ignored", []container{ctr("strait.io/lab/rebel-base:latest", 80), ctr("strait.io/lab/echo@sha256:abc", 8080, 80)}, nil, []int32{80, 8080}},
		{"tagged with a port-looking tag", []container{ctr("strait.io/lab/echo:5000", 5432)}, nil, []int32{5432}},
		{"only this image's containers", []container{ctr("strait.io/lab/rebel-base", 80), ctr("strait.io/lab/debug", 9090)}, nil, []int32{80}},
		{"retagged: every container's ports", []container{ctr("example.com/mine", 81), ctr("strait.io/lab/debug", 9090)}, nil, []int32{81, 9090}},
		{"sidecar of this image counts", []container{ctr("strait.io/lab/debug", 9090)},
			[]container{{Image: "strait.io/lab/echo", RestartPolicy: "Always", Ports: []containerPort{{ContainerPort: 7000}}}}, []int32{7000}},
		{"plain init container does not", []container{ctr("strait.io/lab/rebel-base", 80)},
			[]container{{Image: "strait.io/lab/echo", Ports: []containerPort{{ContainerPort: 7000}}}}, []int32{80}},
		{"UDP skipped", []container{{Image: "strait.io/lab/rebel-base", Ports: []containerPort{{ContainerPort: 53, Protocol: "UDP"}, {ContainerPort: 53, Protocol: "TCP"}}}}, nil, []int32{53}},
		{"no ports: the default", []container{ctr("strait.io/lab/rebel-base")}, nil, []int32{defaultPort}},
		{"a registry with a port", []container{ctr("localhost:5000/strait.io/lab/echo", 80), ctr("strait.io/lab/echo", 81)}, nil, []int32{81}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p pod
			p.Spec.Containers = tc.containers
			p.Spec.InitContainers = tc.init
			if got := servedPorts(p, imageRepos); !slices.Equal(got, tc.want) {
				t.Errorf("servedPorts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestClusterName(t *testing.T) {
	tests := []struct {
		labels map[string]string
		node   string
		want   string
	}{
		{nil, "cluster01-node", "cluster01"},
		{map[string]string{clusterLabel: "east"}, "cluster01-node", "east"},
		{map[string]string{clusterLabel: ""}, "west-node", "west"},
		{nil, "worker", "worker"},
		{nil, "", ""},
	}
	for _, tc := range tests {
		if got := clusterName(tc.labels, tc.node); got != tc.want {
			t.Errorf("clusterName(%v, %q) = %q, want %q", tc.labels, tc.node, got, tc.want)
		}
	}
}

// The responder's JSON is what the docs, the demo and the tests parse: the field names and
// order the lab's responder has always answered with.
func TestResponseFormat(t *testing.T) {
	ours, err := json.Marshal(response{Cluster: "c", Namespace: "ns", Pod: "p", Node: "n", PodIP: "10.1.0.4", Port: 80, Path: "/x"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"cluster":"c","namespace":"ns","pod":"p","node":"n","podIP":"10.1.0.4","port":80,"path":"/x"}`; string(ours) != want {
		t.Errorf("responder JSON %s, want %s", ours, want)
	}
	if podHeader != "X-Strait-Pod" {
		t.Errorf("pod header %q, want X-Strait-Pod", podHeader)
	}
}

// fakeAPI serves one Pod and, unless nodeForbidden, its Node, to the right token only.
func fakeAPI(t *testing.T, podJSON string, nodeForbidden bool) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer sa-token" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/api/v1/namespaces/demo/pods/rebel-base-7d9f":
			io.WriteString(w, podJSON)
		case "/api/v1/nodes/cluster02-node":
			if nodeForbidden {
				http.Error(w, `{"kind":"Status","reason":"Forbidden"}`, http.StatusForbidden)
				return
			}
			io.WriteString(w, `{"metadata":{"name":"cluster02-node","labels":{"lab.strait.io/cluster":"cluster02"}}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	for name, data := range map[string]string{"ca.crt": string(ca), "token": "sa-token\n", "namespace": "demo"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return srv, dir
}

func freePorts(t *testing.T, n int) []int32 {
	t.Helper()
	var ports []int32
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, int32(l.Addr().(*net.TCPAddr).Port))
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

func TestRunServesEveryDeclaredPort(t *testing.T) {
	for _, nodeForbidden := range []bool{false, true} {
		t.Run(fmt.Sprintf("nodeForbidden=%v", nodeForbidden), func(t *testing.T) {
			ports := freePorts(t, 2)
			podJSON := fmt.Sprintf(`{"metadata":{"name":"rebel-base-7d9f","namespace":"demo"},
				"spec":{"nodeName":"cluster02-node","containers":[
					{"name":"web","image":"strait.io/lab/rebel-base","ports":[{"containerPort":%d},{"containerPort":%d,"protocol":"TCP"}]},
					{"name":"other","image":"busybox","ports":[{"containerPort":1}]}]},
				"status":{"podIP":"10.2.0.7"}}`, ports[0], ports[1])
			srv, dir := fakeAPI(t, podJSON, nodeForbidden)
			e := env{
				apiURL: srv.URL, tokenFile: filepath.Join(dir, "token"), caFile: filepath.Join(dir, "ca.crt"),
				namespaceFile: filepath.Join(dir, "namespace"), podName: "rebel-base-7d9f", listenHost: "127.0.0.1",
				logf: t.Logf,
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- run(ctx, e) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()
			for _, port := range ports {
				url := fmt.Sprintf("http://127.0.0.1:%d/some/path", port)
				var resp *http.Response
				deadline := time.Now().Add(10 * time.Second)
				for {
					var err error
					if resp, err = http.Get(url); err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("GET %s: %v", url, err)
					}
					time.Sleep(50 * time.Millisecond)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				want, _ := json.Marshal(response{Cluster: "cluster02", Namespace: "demo", Pod: "rebel-base-7d9f",
					Node: "cluster02-node", PodIP: "10.2.0.7", Port: port, Path: "/some/path"})
				if string(body) != string(want)+"\n" {
					t.Errorf("GET %s = %s, want %s", url, body, want)
				}
				if h := resp.Header.Get(podHeader); h != "demo/rebel-base-7d9f" {
					t.Errorf("%s = %q, want demo/rebel-base-7d9f", podHeader, h)
				}
			}
		})
	}
}

func TestRunGivesUpWhenCancelledBeforeThePodIsRead(t *testing.T) {
	srv, dir := fakeAPI(t, "", false)
	e := env{
		apiURL: srv.URL, tokenFile: filepath.Join(dir, "token"), caFile: filepath.Join(dir, "ca.crt"),
		namespaceFile: filepath.Join(dir, "namespace"), podName: "no-such-pod", listenHost: "127.0.0.1", logf: t.Logf,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	if err := run(ctx, e); err == nil {
		t.Fatal("run found a pod that does not exist")
	}
}

// Against a real lab cluster, with a real service account token and the lab's RBAC, run
// here answers exactly what the pod's own container (the image, on the real node) answers
// for the same pod and port.
func TestAgainstLabCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a lab cluster")
	}
	lab := labtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := lab.Client("cluster01")
	if err := supervisor.ApplyResponderRBAC(ctx, cs); err != nil {
		t.Fatal(err)
	}
	const ns = "rebel"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 2)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "rebel-base-0", Namespace: ns},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "rebel-base", Image: "strait.io/lab/rebel-base",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: ports[0]}, {ContainerPort: ports[1]}},
		}}},
	}
	var err error
	// The service account appears shortly after the namespace.
	for {
		if _, err = cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("creating the pod: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	var podIP string
	for podIP == "" {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err == nil && p.Spec.NodeName != "" && p.Status.PodIP != "" {
			podIP = p.Status.PodIP
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the pod got no node and IP: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{"token": tr.Status.Token, "namespace": ns}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := lab.Cluster("cluster01")
	e := env{
		apiURL:    lab.RESTConfig("cluster01").Host,
		tokenFile: filepath.Join(dir, "token"), caFile: lab.Dir.Cluster(c.Name).File(state.CACert),
		namespaceFile: filepath.Join(dir, "namespace"), podName: pod.Name, listenHost: "127.0.0.1", logf: t.Logf,
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(runCtx, e) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	for _, port := range ports {
		var ours []byte
		for {
			resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/from/the/test", port))
			if err == nil {
				ours, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("rebel-base never answered on port %d: %v", port, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		theirs, err := lab.Exec(ctx, "cluster01", "curl", "-sS", "--max-time", "5", "--retry", "20", "--retry-connrefused", "--retry-delay", "1",
			fmt.Sprintf("http://%s:%d/from/the/test", podIP, port))
		if err != nil {
			t.Fatalf("curl the pod's container: %v", err)
		}
		if string(ours) != theirs {
			t.Errorf("port %d: run answered\n%s\nthe pod's container\n%s", port, ours, theirs)
		}
		var r response
		if err := json.Unmarshal(ours, &r); err != nil || r.Cluster != "cluster01" || r.Node != c.NodeName || r.PodIP != podIP {
			t.Errorf("port %d: %s (%v), want cluster01 on %s with IP %s", port, ours, err, c.NodeName, podIP)
		}
	}
}
