package externalservice_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/api/v1alpha1"
	clidoctor "github.com/strait-io/strait/internal/cli/doctor"
	"github.com/strait-io/strait/internal/cli/lab"
	"github.com/strait-io/strait/internal/cli/root"
	"github.com/strait-io/strait/internal/doctor"
	es "github.com/strait-io/strait/internal/externalservice"
	"github.com/strait-io/strait/internal/externalservice/esclient"
	"github.com/strait-io/strait/internal/externalservice/probe"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/netns"
)

const cluster = "cluster01"

// env is one lab cluster shared by the steps of TestExternalServicesOnLab.
type env struct {
	t   *testing.T
	ctx context.Context
	lab *labtest.Lab
	cs  kubernetes.Interface
	es  *esclient.Client
}

// TestExternalServicesOnLab tries ExternalServices, `strait map` and `strait doctor` as a
// new user would, on one real lab cluster whose agent runs the ExternalService reconciler:
// the usual scenarios (a database per environment, a NodePort, an Ingress host, a misused
// externalName) are reproduced with lab addresses and checked with dig and curl run
// inside the cluster.
func TestExternalServicesOnLab(t *testing.T) {
	l := labtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	c, err := esclient.New(l.RESTConfig(cluster))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: ctx, lab: l, cs: l.Client(cluster), es: c}
	e.poll(time.Minute, "the lab serves ExternalServices", func(context.Context) (bool, error) {
		return esclient.Served(e.cs.Discovery())
	})
	for _, ns := range []string{"test-1", "test-2", "prod", "databases", "backend", "legacy", "bad", "failover"} {
		if _, err := e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("bad input is rejected with a clear error and nothing is written", e.badInput)
	t.Run("the same name in two namespaces reaches two databases, 3306 -> 3307", e.databasePerNamespace)
	t.Run("abc.com by ExternalName, an IP:30099 mapped to port 80", e.ingressAndNodePort)
	t.Run("health: a failing target leaves the endpoints and comes back", e.failover)
	t.Run("doctor finds the anti-patterns and --fix converts them without a gap", e.doctor)
	t.Run("no failed lookups in the CoreDNS log", e.coreDNSLog)
}

func (e *env) poll(timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	e.t.Helper()
	pollT(e.t, e.ctx, timeout, what, cond)
}

func pollT(t *testing.T, ctx context.Context, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	var last error
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		ok, err := cond(ctx)
		last = err
		return ok, nil
	})
	if err != nil {
		t.Fatalf("%s: not within %s (last error: %v)", what, timeout, last)
	}
}

// strait runs the strait command line against the lab.
func (e *env) strait(args ...string) (string, error) {
	cmd := root.New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--kubeconfig", e.lab.Kubeconfig(), "--context", cluster))
	err := cmd.ExecuteContext(e.ctx)
	return out.String(), err
}

// pod starts a rebel-base pod that answers HTTP on port, and returns its IP.
func (e *env) pod(ns, name string, port int32) string {
	e.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "strait.io/lab/rebel-base",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: port}},
		}}},
	}
	if _, err := e.cs.CoreV1().Pods(ns).Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
		e.t.Fatal(err)
	}
	var ip string
	e.poll(time.Minute, "pod "+ns+"/"+name+" running", func(ctx context.Context) (bool, error) {
		p, err := e.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		ip = p.Status.PodIP
		return p.Status.Phase == corev1.PodRunning && ip != "", nil
	})
	return ip
}

// reply is what a lab pod (or a test server) answers.
type reply struct {
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Port      int32  `json:"port"`
}

// curl fetches url from inside the cluster.
func (e *env) curl(ctx context.Context, url string) (reply, error) {
	out, err := e.lab.Exec(ctx, cluster, "curl", "-sS", "--max-time", "3", url)
	if err != nil {
		return reply{}, err
	}
	var r reply
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		return reply{}, fmt.Errorf("%s answered %q: %w", url, out, err)
	}
	return r, nil
}

// dig returns the answer lines of a query made inside the cluster.
func (e *env) dig(ctx context.Context, args ...string) ([]string, error) {
	out, err := e.lab.Exec(ctx, cluster, append([]string{"dig", "+short", "+time=2", "+tries=2"}, args...)...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func (e *env) ready(ns, name string) *v1alpha1.ExternalService {
	e.t.Helper()
	var x *v1alpha1.ExternalService
	e.poll(time.Minute, "ExternalService "+ns+"/"+name+" Ready", func(ctx context.Context) (bool, error) {
		var err error
		x, err = e.es.ExternalServices(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(x.Status.Conditions, v1alpha1.ConditionReady)
		if c == nil {
			return false, errors.New("no Ready condition")
		}
		return c.Status == metav1.ConditionTrue && c.ObservedGeneration == x.Generation, fmt.Errorf("%s: %s", c.Reason, c.Message)
	})
	return x
}

func (e *env) badInput(t *testing.T) {
	valid := func() *v1alpha1.ExternalService {
		return &v1alpha1.ExternalService{
			ObjectMeta: metav1.ObjectMeta{Name: "mysql", Namespace: "bad"},
			Spec: v1alpha1.ExternalServiceSpec{
				Ports:   []v1alpha1.ServicePort{{Name: "mysql", Port: 3306, TargetPort: 3307}},
				Targets: []v1alpha1.Target{{IP: "10.20.30.40"}},
			},
		}
	}
	tests := []struct {
		name   string
		change func(x *v1alpha1.ExternalService)
		want   []string
	}{
		{"an IP in a hostname field", func(x *v1alpha1.ExternalService) { x.Spec.Targets = []v1alpha1.Target{{Hostname: "192.168.0.199"}} },
			[]string{"spec.targets[0].hostname", "hostname must be a DNS name, not an IP address"}},
		{"a hostname over 253 characters", func(x *v1alpha1.ExternalService) {
			x.Spec.Targets = []v1alpha1.Target{{Hostname: strings.Repeat("abcdefghi.", 25) + "example.com"}}
		}, []string{"spec.targets[0].hostname", "253"}},
		{"port 0", func(x *v1alpha1.ExternalService) { x.Spec.Ports[0].Port = 0 }, []string{"spec.ports[0].port", "greater than or equal to 1"}},
		{"port 70000", func(x *v1alpha1.ExternalService) { x.Spec.Ports[0].Port = 70000 }, []string{"spec.ports[0].port", "less than or equal to 65535"}},
		{"duplicate port names", func(x *v1alpha1.ExternalService) {
			x.Spec.Ports = []v1alpha1.ServicePort{{Name: "db", Port: 3306}, {Name: "db", Port: 3307}}
		}, []string{"spec.ports", "port names must be unique"}},
		{"an empty target list", func(x *v1alpha1.ExternalService) { x.Spec.Targets = []v1alpha1.Target{} }, []string{"spec.targets", "at least 1 items"}},
		{"a loopback address", func(x *v1alpha1.ExternalService) { x.Spec.Targets = []v1alpha1.Target{{IP: "127.0.0.1"}} }, []string{"spec.targets[0].ip", "loopback"}},
		{"a name the Service cannot take", func(x *v1alpha1.ExternalService) { x.Name = "my.sql" }, []string{"DNS-1035"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := valid()
			tt.change(x)
			_, err := e.es.ExternalServices("bad").Create(e.ctx, x, metav1.CreateOptions{})
			if !apierrors.IsInvalid(err) {
				t.Fatalf("created, or not rejected as invalid: %v", err)
			}
			t.Logf("rejected: %v", err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	t.Run("strait map refuses before writing", func(t *testing.T) {
		for args, want := range map[string]string{
			"--to 127.0.0.1:3307 --port 3306":         "loopback",
			"--to s3.k8s3:30099 --port 80":            "cannot have its port remapped",
			"--to 10.1.2.3:3307 --port 70000":         "65535",
			"--to 10.1.2.3:3307,abc.com:3307":         "cannot be mixed",
			"--to 192.168.0.199. --port 80":           "not an IP address",
			"--to 10.1.2.3:1,10.1.2.4:2":              "give --port",
			"--to 10.1.2.3:80 --headless --port 8080": "headless",
		} {
			out, err := e.strait(append([]string{"map", "mysql", "-n", "bad"}, strings.Fields(args)...)...)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("strait map %s: %v (%s), want an error saying %q", args, err, out, want)
			}
		}
	})
	list, err := e.es.ExternalServices("bad").List(e.ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("ExternalServices written: %v %v", list, err)
	}
	svcs, err := e.cs.CoreV1().Services("bad").List(e.ctx, metav1.ListOptions{})
	if err != nil || len(svcs.Items) != 0 {
		t.Errorf("Services written: %v %v", svcs, err)
	}
}

func (e *env) databasePerNamespace(t *testing.T) {
	// The two environments' databases: lab pods listening on 3307.
	db := map[string]string{
		"test-1": e.pod("databases", "mysql-test-1", 3307),
		"test-2": e.pod("databases", "mysql-test-2", 3307),
	}
	for ns, ip := range db {
		out, err := e.strait("map", "mysql", "-n", ns, "--to", ip+":3307", "--port", "3306", "--port-name", "mysql", "--wait")
		if err != nil {
			t.Fatalf("strait map in %s: %v\n%s", ns, err, out)
		}
		if !strings.Contains(out, "Ready: True") {
			t.Errorf("strait map --wait printed %q", out)
		}
	}
	for ns := range db {
		svc, err := e.cs.CoreV1().Services(ns).Get(e.ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if svc.Spec.Selector != nil || svc.Spec.Ports[0].Port != 3306 {
			t.Errorf("Service %s/mysql: %+v", ns, svc.Spec)
		}
		e.poll(30*time.Second, "mysql."+ns+" resolves to its cluster IP", func(ctx context.Context) (bool, error) {
			ans, err := e.dig(ctx, "mysql."+ns+".svc.cluster.local")
			return err == nil && len(ans) == 1 && ans[0] == svc.Spec.ClusterIP, fmt.Errorf("%v %v", ans, err)
		})
		e.poll(30*time.Second, "mysql."+ns+":3306 reaches the "+ns+" database", func(ctx context.Context) (bool, error) {
			r, err := e.curl(ctx, "http://mysql."+ns+".svc.cluster.local:3306/")
			return err == nil && r.Pod == "mysql-"+ns && r.Port == 3307, fmt.Errorf("%+v %v", r, err)
		})
	}
	// The same short name from a pod of each namespace's search path.
	out, err := e.lab.Exec(e.ctx, cluster, "dig", "+short", "+search", "mysql.test-2")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("short name: %q %v", out, err)
	}
}

func (e *env) ingressAndNodePort(t *testing.T) {
	// Scenario 1: a service behind another cluster's Ingress host abc.com.
	if out, err := e.strait("map", "k8s2-s2", "-n", "prod", "--to", "abc.com:80", "--port-name", "http", "--wait"); err != nil {
		t.Fatalf("strait map: %v\n%s", err, out)
	}
	svc, err := e.cs.CoreV1().Services("prod").Get(e.ctx, "k8s2-s2", metav1.GetOptions{})
	if err != nil || svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "abc.com" {
		t.Fatalf("Service prod/k8s2-s2: %+v %v", svc, err)
	}
	e.poll(30*time.Second, "k8s2-s2.prod is an alias of abc.com", func(ctx context.Context) (bool, error) {
		ans, err := e.dig(ctx, "k8s2-s2.prod.svc.cluster.local", "CNAME")
		return err == nil && len(ans) == 1 && ans[0] == "abc.com.", fmt.Errorf("%v %v", ans, err)
	})
	// abc.com does not exist in the lab; an alias of a name that resolves there is reached
	// end to end (an Ingress host stands in as a Service name of the backend namespace).
	e.pod("backend", "web", 80)
	if _, err := e.cs.CoreV1().Services("backend").Create(e.ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "backend"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(80)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if out, err := e.strait("map", "k8s2-web", "-n", "prod", "--to", "web.backend.svc.cluster.local:80", "--wait"); err != nil {
		t.Fatalf("strait map: %v\n%s", err, out)
	}
	e.poll(time.Minute, "k8s2-web.prod reaches backend/web through the alias", func(ctx context.Context) (bool, error) {
		r, err := e.curl(ctx, "http://k8s2-web.prod/")
		return err == nil && r.Pod == "web" && r.Namespace == "backend", fmt.Errorf("%+v %v", r, err)
	})

	// Scenario 2: 192.168.0.199:30099 mapped to port 80; a lab pod on 30099 stands in.
	ip := e.pod("databases", "s3", 30099)
	if out, err := e.strait("map", "k8s3-s3", "-n", "prod", "--to", ip+":30099", "--port", "80", "--port-name", "http", "--wait"); err != nil {
		t.Fatalf("strait map: %v\n%s", err, out)
	}
	svc, err = e.cs.CoreV1().Services("prod").Get(e.ctx, "k8s3-s3", metav1.GetOptions{})
	if err != nil || svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalName != "" {
		t.Fatalf("Service prod/k8s3-s3: %+v %v", svc, err)
	}
	slices, err := e.cs.DiscoveryV1().EndpointSlices("prod").List(e.ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=k8s3-s3"})
	if err != nil || len(slices.Items) != 1 || slices.Items[0].Labels[discoveryv1.LabelManagedBy] != es.EndpointSliceManagedBy || *slices.Items[0].Ports[0].Port != 30099 {
		t.Fatalf("EndpointSlices of k8s3-s3: %+v %v", slices, err)
	}
	e.poll(time.Minute, "k8s3-s3.prod:80 reaches the pod on 30099", func(ctx context.Context) (bool, error) {
		r, err := e.curl(ctx, "http://k8s3-s3.prod/")
		return err == nil && r.Pod == "s3" && r.Port == 30099, fmt.Errorf("%+v %v", r, err)
	})
	// --dry-run -o yaml prints the object and writes nothing.
	out, err := e.strait("map", "dry", "-n", "prod", "--to", ip+":30099", "--port", "80", "--dry-run", "-o", "yaml")
	if err != nil || !strings.Contains(out, "kind: ExternalService") || !strings.Contains(out, "targetPort: 30099") {
		t.Errorf("dry run printed %q (%v)", out, err)
	}
	if _, err := e.es.ExternalServices("prod").Get(e.ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run wrote the ExternalService: %v", err)
	}
}

// server is an HTTP server the test starts and stops on a lab address.
type server struct {
	ns, addr, name string
	mu             sync.Mutex
	srv            *http.Server
}

func (s *server) start(t *testing.T) {
	t.Helper()
	// The address is the node's own (on its loopback), as an outside service's would be
	// reachable from it: pods get their addresses from the node's CNI, not this one.
	host, _, _ := net.SplitHostPort(s.addr)
	if out, err := exec.Command("ip", "-n", s.ns, "addr", "replace", host+"/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("adding %s to the node: %v: %s", host, err, out)
	}
	l, err := netns.Listen(s.ns, "tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(reply{Namespace: "failover", Pod: s.name})
	})}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(l) }()
}

func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
		s.srv = nil
	}
}

// freeAddress is an address of the cluster's pod CIDR that no pod gets in this test.
func (e *env) freeAddress(n int) string {
	p := netip.MustParsePrefix(e.lab.Cluster(cluster).PodCIDR)
	b := p.Addr().As4()
	b[2], b[3] = 250, byte(n)
	return netip.AddrFrom4(b).String()
}

func (e *env) failover(t *testing.T) {
	ns := e.lab.Cluster(cluster).Namespace
	a := &server{ns: ns, addr: net.JoinHostPort(e.freeAddress(1), "8080"), name: "a"}
	b := &server{ns: ns, addr: net.JoinHostPort(e.freeAddress(2), "8080"), name: "b"}
	a.start(t)
	b.start(t)
	t.Cleanup(a.stop)
	t.Cleanup(b.stop)
	const interval, unhealthy = 1, 2
	if out, err := e.strait("map", "db", "-n", "failover", "--to", a.addr+","+b.addr, "--port", "80",
		"--health-check", "http:/healthz", "--health-interval", "1s", "--health-timeout", "1s",
		"--unhealthy-threshold", fmt.Sprint(unhealthy), "--healthy-threshold", "1", "--wait"); err != nil {
		t.Fatalf("strait map: %v\n%s", err, out)
	}
	served := func(ctx context.Context, n int) (map[string]int, error) {
		seen := map[string]int{}
		for range n {
			r, err := e.curl(ctx, "http://db.failover/")
			if err != nil {
				return seen, err
			}
			seen[r.Pod]++
		}
		return seen, nil
	}
	readyOf := func(ctx context.Context) (map[string]bool, error) {
		list, err := e.cs.DiscoveryV1().EndpointSlices("failover").List(ctx, metav1.ListOptions{
			LabelSelector: labels.SelectorFromSet(labels.Set{es.LabelName: "db"}).String()})
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, s := range list.Items {
			for _, ep := range s.Endpoints {
				out[ep.Addresses[0]] = *ep.Conditions.Ready
			}
		}
		return out, nil
	}
	e.poll(time.Minute, "both targets serve", func(ctx context.Context) (bool, error) {
		seen, err := served(ctx, 12)
		return err == nil && seen["a"] > 0 && seen["b"] > 0, fmt.Errorf("%v %v", seen, err)
	})

	a.stop()
	stopped := time.Now()
	budget := time.Duration(interval*unhealthy)*time.Second + 3*time.Second
	e.poll(budget, "a's endpoint not ready within interval x unhealthyThreshold", func(ctx context.Context) (bool, error) {
		r, err := readyOf(ctx)
		return err == nil && !r[e.freeAddress(1)] && r[e.freeAddress(2)], fmt.Errorf("%v %v", r, err)
	})
	t.Logf("a taken out %s after it stopped", time.Since(stopped).Round(100*time.Millisecond))
	e.poll(30*time.Second, "all traffic on b", func(ctx context.Context) (bool, error) {
		seen, err := served(ctx, 10)
		return err == nil && seen["b"] == 10, fmt.Errorf("%v %v", seen, err)
	})
	x, err := e.es.ExternalServices("failover").Get(e.ctx, "db", metav1.GetOptions{})
	if err != nil || x.Status.ReadyTargets != 1 || x.Status.Targets[0].Health != v1alpha1.HealthUnhealthy {
		t.Errorf("status %+v %v", x.Status, err)
	}

	a.start(t)
	e.poll(budget, "a's endpoint ready again", func(ctx context.Context) (bool, error) {
		r, err := readyOf(ctx)
		return err == nil && r[e.freeAddress(1)] && r[e.freeAddress(2)], fmt.Errorf("%v %v", r, err)
	})
	e.poll(time.Minute, "both targets serve again", func(ctx context.Context) (bool, error) {
		seen, err := served(ctx, 12)
		return err == nil && seen["a"] > 0 && seen["b"] > 0, fmt.Errorf("%v %v", seen, err)
	})
}

func (e *env) doctor(t *testing.T) {
	ctx := e.ctx
	const ns = "legacy"
	backend := e.pod(ns, "legacy-db", 3307)
	nodePort := e.pod(ns, "legacy-nodeport", 30099)
	dead := e.freeAddress(9)
	create := func(objs ...any) {
		t.Helper()
		for _, o := range objs {
			var err error
			switch o := o.(type) {
			case *corev1.Service:
				_, err = e.cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
			case *corev1.Endpoints:
				_, err = e.cs.CoreV1().Endpoints(o.Namespace).Create(ctx, o, metav1.CreateOptions{}) //nolint:staticcheck // a hand-written object, as users write them
			case *corev1.ConfigMap:
				// The lab's CoreDNS reads kube-system/coredns, as on kubeadm: the planted
				// hosts block goes into its live Corefile, at the start of the first server
				// block, and CoreDNS serves it.
				cms := e.cs.CoreV1().ConfigMaps(o.Namespace)
				live, gerr := cms.Get(ctx, o.Name, metav1.GetOptions{})
				if gerr != nil {
					t.Fatal(gerr)
				}
				first, rest, _ := strings.Cut(live.Data["Corefile"], "\n")
				live.Data["Corefile"] = first + "\n" + o.Data["Corefile"] + rest
				_, err = cms.Update(ctx, live, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	svc := func(name string, spec corev1.ServiceSpec) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: spec}
	}
	port := func(name string, p, target int32) []corev1.ServicePort {
		return []corev1.ServicePort{{Name: name, Port: p, TargetPort: intstr.FromInt32(target)}}
	}
	endpoints := func(name, portName string, ips ...string) *corev1.Endpoints {
		var addrs []corev1.EndpointAddress
		for _, ip := range ips {
			addrs = append(addrs, corev1.EndpointAddress{IP: ip})
		}
		return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Subsets: []corev1.EndpointSubset{{
			Addresses: addrs, Ports: []corev1.EndpointPort{{Name: portName, Port: 3307}}}}}
	}
	create(
		// An IP in externalName, and a name invented in CoreDNS's hosts block.
		svc("ipname", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: nodePort, Ports: port("http", 80, 30099)}),
		svc("hostsname", corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "s3.k8s3", Ports: port("http", 80, 30099)}),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "coredns", Namespace: metav1.NamespaceSystem}, Data: map[string]string{"Corefile": "" +
			"    hosts {\n        " + nodePort + " s3.k8s3\n        10.9.9.9 shadow.legacy.svc.cluster.local\n        fallthrough\n    }\n"}},
		// A remapped database gone wrong: port names that do not match, a dead address, no endpoints.
		svc("mysql", corev1.ServiceSpec{Ports: port("mysql", 3306, 3307)}),
		endpoints("mysql", "db", backend),
		svc("db2", corev1.ServiceSpec{Ports: port("", 3306, 3307)}),
		endpoints("db2", "", backend, dead),
		svc("empty", corev1.ServiceSpec{Ports: port("", 3306, 3306)}),
	)
	opts := clidoctor.Options{
		Namespace: ns, Probe: true, ProbeTimeout: 2 * time.Second, FixTimeout: time.Minute,
		Prober: probe.Prober{Dialer: netns.Dialer{Namespace: e.lab.Cluster(cluster).Namespace}},
	}
	rep, err := clidoctor.Run(ctx, e.lab.RESTConfig(cluster), opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ExternalNameHostsName legacy/hostsname",
		"ExternalNameIP legacy/ipname",
		"HostsShadowsService kube-system/coredns",
		"NoEndpoints legacy/empty",
		"PortNameMismatch legacy/mysql",
		"UnreachableEndpoints legacy/db2",
	}
	if got := codes(rep.Findings); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var text bytes.Buffer
	if err := clidoctor.Print(&text, "", rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("strait doctor -n legacy:\n%s", text.String())
	// The usual complaint: the IP in externalName does not resolve, and the lookups fail.
	if r, err := e.curl(ctx, "http://ipname."+ns+"/"); err == nil {
		t.Errorf("the IP in externalName answered before the fix: %+v", r)
	}
	// The command's exit status tells scripts problems were found.
	if _, err := e.strait("doctor", "-n", ns, "--probe=false"); !isExit(err, clidoctor.ExitProblems) {
		t.Errorf("strait doctor exit: %v, want status %d", err, clidoctor.ExitProblems)
	}

	clusterIPs := map[string]string{}
	for _, n := range []string{"mysql", "db2"} {
		s, err := e.cs.CoreV1().Services(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		clusterIPs[n] = s.Spec.ClusterIP
	}

	// While --fix runs, a pod keeps resolving every converted name: a name that resolves
	// must never stop resolving (ipname, the IP in externalName, resolves only once fixed).
	names := []string{"ipname", "hostsname", "mysql", "db2"}
	stop := filepath.Join(t.TempDir(), "stop")
	script := fmt.Sprintf(`while [ ! -e %s ]; do for n in %s; do a=$(dig +short +time=2 +tries=1 $n.%s.svc.cluster.local); if [ -z "$a" ]; then echo "EMPTY $n"; else echo "OK $n"; fi; done; done`,
		stop, strings.Join(names, " "), ns)
	var watch string
	var watchErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch, watchErr = e.lab.Exec(ctx, cluster, "sh", "-c", script)
	}()
	time.Sleep(2 * time.Second) // a few rounds before the fix starts
	opts.Fix = true
	rep, err = clidoctor.Run(ctx, e.lab.RESTConfig(cluster), opts)
	if err != nil {
		t.Fatal(err)
	}
	e.poll(time.Minute, "ipname resolves", func(ctx context.Context) (bool, error) {
		ans, err := e.dig(ctx, "ipname."+ns+".svc.cluster.local")
		return err == nil && len(ans) > 0, err
	})
	time.Sleep(2 * time.Second)
	if err := os.WriteFile(stop, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	<-done
	if watchErr != nil {
		t.Fatalf("resolver loop: %v", watchErr)
	}
	resolved := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(watch), "\n") {
		state, name, _ := strings.Cut(line, " ")
		switch {
		case state == "OK":
			resolved[name] = true
		case resolved[name]:
			t.Errorf("%s stopped resolving during the fix:\n%s", name, watch)
		case name != "ipname":
			t.Errorf("%s did not resolve before the fix:\n%s", name, watch)
		}
	}
	for _, n := range names {
		if !resolved[n] {
			t.Errorf("%s never resolved while the watcher ran:\n%s", n, watch)
		}
	}
	text.Reset()
	_ = clidoctor.Print(&text, "", rep)
	t.Logf("strait doctor -n legacy --fix:\n%s", text.String())
	converted := map[string]bool{}
	for _, f := range rep.Fixes {
		if !f.Converted {
			t.Errorf("%s not converted: %s (%v)", f.Service, f.Error, f.Steps)
		}
		converted[f.Service] = true
	}
	for _, n := range names {
		if !converted[ns+"/"+n] {
			t.Errorf("%s/%s was not converted", ns, n)
		}
	}
	if rep.Remaining != 2 {
		t.Errorf("%d problems remain, want 2 (no endpoints; the hosts entry)", rep.Remaining)
	}

	// Every name now reaches the right backend, in place.
	for _, n := range []string{"mysql", "db2"} {
		s, err := e.cs.CoreV1().Services(ns).Get(ctx, n, metav1.GetOptions{})
		if err != nil || s.Spec.ClusterIP != clusterIPs[n] {
			t.Errorf("Service %s: cluster IP %s, was %s (%v)", n, s.Spec.ClusterIP, clusterIPs[n], err)
		}
		if _, err := e.cs.CoreV1().Endpoints(ns).Get(ctx, n, metav1.GetOptions{}); !apierrors.IsNotFound(err) { //nolint:staticcheck // checking the hand-written object is gone
			t.Errorf("the hand-written Endpoints %s are still there: %v", n, err)
		}
	}
	for url, pod := range map[string]string{
		"http://ipname." + ns + "/":         "legacy-nodeport",
		"http://hostsname." + ns + "/":      "legacy-nodeport",
		"http://mysql." + ns + ":3306/":     "legacy-db",
		"http://db2." + ns + ":3306/":       "legacy-db",
		"http://db2." + ns + ":3306/again":  "legacy-db",
		"http://db2." + ns + ":3306/thrice": "legacy-db",
	} {
		// CoreDNS may serve the old alias from its cache for its TTL (30s).
		e.poll(90*time.Second, url+" reaches "+pod, func(ctx context.Context) (bool, error) {
			r, err := e.curl(ctx, url)
			return err == nil && r.Pod == pod, fmt.Errorf("%+v %v", r, err)
		})
	}
	// The dead address is taken out by the health check the conversion added.
	e.poll(time.Minute, "db2's dead address out of use", func(ctx context.Context) (bool, error) {
		x := e.ready(ns, "db2")
		return x.Status.ReadyTargets == 1 && x.Spec.HealthCheck != nil, fmt.Errorf("%+v", x.Status)
	})

	// Running the doctor again finds only what it cannot fix.
	out, err := e.strait("doctor", "-n", ns, "--probe=false", "-o", "json")
	if !isExit(err, clidoctor.ExitProblems) {
		t.Errorf("strait doctor exit: %v", err)
	}
	var again clidoctor.Report
	if err := json.Unmarshal([]byte(out), &again); err != nil {
		t.Fatalf("doctor -o json: %v\n%s", err, out)
	}
	if got := codes(again.Findings); strings.Join(got, ",") != "HostsShadowsService kube-system/coredns,NoEndpoints legacy/empty" {
		t.Errorf("after --fix: %v", got)
	}
}

func isExit(err error, code int) bool {
	var exit *lab.ExitError
	return errors.As(err, &exit) && exit.Code == code
}

func codes(fs []doctor.Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, fmt.Sprintf("%s %s/%s", f.Code, f.Object.Namespace, f.Object.Name))
	}
	sort.Strings(out)
	return out
}

// coreDNSLog checks the usual complaint: an IP in externalName floods the logs with failed
// lookups (the doctor step planted one), while names mapped by ExternalServices log none.
func (e *env) coreDNSLog(t *testing.T) {
	data, err := os.ReadFile(e.lab.Dir.Cluster(cluster).Log("coredns"))
	if err != nil {
		t.Fatal(err)
	}
	planted := 0
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, "ERROR") {
			continue
		}
		if strings.Contains(line, "ipname.legacy.") {
			planted++
		}
		for _, ns := range []string{"test-1", "test-2", "prod", "failover"} {
			if strings.Contains(line, "."+ns+".") {
				t.Errorf("CoreDNS logged a failed lookup of a mapped name: %s", line)
			}
		}
	}
	if planted == 0 {
		t.Error("the planted IP in externalName logged no failed lookup; the check above proves nothing")
	}
}
