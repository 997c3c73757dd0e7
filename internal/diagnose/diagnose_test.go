package diagnose

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/liveness"
)

func lease(rv, holder string) *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{ResourceVersion: rv}, Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To(holder)}}
}

func TestRenewalIsANewResourceVersionNotAClock(t *testing.T) {
	// A renewTime far in the future or past means nothing: only what the reader saw change.
	old := lease("10", "agent-a")
	old.Spec.RenewTime = &metav1.MicroTime{Time: time.Now().Add(time.Hour)}
	if r := Renewal(CheckAgent, "c1", "the leader lease", old, old, "12s", "fix"); r.Status != Failed || !strings.Contains(r.Detail, "not renewed in 12s (last holder agent-a)") || r.Fix != "fix" {
		t.Errorf("an unchanged lease: %+v; want a failure naming the window and the last holder, with the fix", r)
	}
	if r := Renewal(CheckAgent, "c1", "the leader lease", old, lease("11", "agent-b"), "12s", "fix"); r.Status != Passed || !strings.Contains(r.Detail, "agent-b") {
		t.Errorf("a renewed lease: %+v; want passed, naming the holder", r)
	}
	if r := Renewal(CheckHeartbeat, "c1", "the member lease", nil, nil, "12s", "fix"); r.Status != Failed || !strings.Contains(r.Detail, "does not exist") {
		t.Errorf("a missing lease: %+v", r)
	}
}

func TestCoreDNS(t *testing.T) {
	good := `.:53 {
    kubernetes cluster.local clusterset.local in-addr.arpa {
        multicluster clusterset.local
    }
}
`
	yes, no := true, false
	cases := []struct {
		name     string
		corefile string
		found    bool
		canList  *bool
		status   Status
		detail   string
	}{
		{"configured", good, true, &yes, Passed, "serves clusterset.local"},
		{"rbac unknown", good, true, nil, Passed, ""},
		{"no multicluster line", strings.Replace(good, "        multicluster clusterset.local\n", "", 1), true, &yes, Failed, "no `multicluster clusterset.local`"},
		{"zone not served", strings.Replace(good, " clusterset.local in-addr.arpa", " in-addr.arpa", 1), true, &yes, Failed, "does not serve the zone clusterset.local"},
		{"rbac denies", good, true, &no, Failed, "may not list serviceimports"},
		{"invalid Corefile", ".:53 {\n  kubernetes {\n", true, nil, Failed, "not valid"},
		{"no ConfigMap", "", false, nil, Skipped, "no ConfigMap"},
	}
	for _, c := range cases {
		r := CoreDNS("c1", c.corefile, c.found, c.canList)
		if r.Status != c.status || !strings.Contains(r.Detail, c.detail) {
			t.Errorf("%s: %+v; want %s with %q", c.name, r, c.status, c.detail)
		}
		if r.Status == Failed && !strings.Contains(r.Fix, "kubectl --context c1 -n kube-system edit configmap coredns") {
			t.Errorf("%s: the fix %q does not say how", c.name, r.Fix)
		}
	}
}

func TestBrokerView(t *testing.T) {
	if r := BrokerView("c1", nil); r.Status != Failed || !strings.Contains(r.Fix, "scale strait-agent") {
		t.Errorf("no view: %+v", r)
	}
	down := &liveness.Published{}
	down.Broker.Error = "dial tcp 10.0.0.1:6443: connect: connection refused"
	if r := BrokerView("c1", down); r.Status != Failed || !strings.Contains(r.Detail, "connection refused") {
		t.Errorf("broker down: %+v", r)
	}
	up := &liveness.Published{}
	up.Broker.Reachable = true
	if r := BrokerView("c1", up); r.Status != Passed {
		t.Errorf("broker up: %+v", r)
	}
	up.Frozen, up.FrozenReason = true, "3 of 4 members silent"
	if r := BrokerView("c1", up); r.Status != Failed || !strings.Contains(r.Detail, "3 of 4") {
		t.Errorf("frozen: %+v", r)
	}
}

type fakeResolver map[string][]string

func (f fakeResolver) LookupHost(_ context.Context, host string) ([]string, error) {
	if a, ok := f[host]; ok {
		return a, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// echo serves the echo pod's answer for cluster id on a loopback address; it returns the
// address's IP and port.
func echo(t *testing.T, ip, id string) int {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("listening on %s: %v", ip, err)
	}
	srv := httptest.NewUnstartedServer(Echo(id))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return l.Addr().(*net.TCPAddr).Port
}

func TestProbe(t *testing.T) {
	// The ClusterSet IP and the pod IP are two loopback addresses, both on one port.
	svcIP, podIP := "127.0.0.1", "127.0.0.1"
	port := echo(t, svcIP, "east")
	p := &Prober{Client: &http.Client{Timeout: time.Second}, ServicePort: port, PodPort: port}
	target := Target{Cluster: "cluster02", ID: "east", Name: "diag-east.strait-diagnose.svc.clusterset.local", ClusterSetIP: svcIP, PodIP: podIP}
	ctx := context.Background()

	p.Resolver = fakeResolver{target.Name: {svcIP}}
	a := p.Probe(ctx, target, 1)
	for _, r := range Pair("cluster01", target, a) {
		if r.Status != Passed || r.Peer != "cluster02" {
			t.Errorf("everything works: %+v", r)
		}
	}

	// The name does not resolve: the DNS check fails, the IP is still tried and answers.
	p.Resolver = fakeResolver{}
	a = p.Probe(ctx, target, 1)
	got := Pair("cluster01", target, a)
	if got[0].Status != Failed || !strings.Contains(got[0].Detail, "no such host") || !strings.Contains(got[0].Fix, "CoreDNS of cluster01") {
		t.Errorf("unresolvable name: %+v", got[0])
	}
	if got[1].Status != Passed {
		t.Errorf("the ClusterSet IP answers even without DNS: %+v", got[1])
	}

	// The name resolves to something else, and another cluster answers the Service.
	other := echo(t, "127.0.0.1", "west")
	p.Resolver, p.ServicePort = fakeResolver{target.Name: {"10.9.9.9"}}, other
	got = Pair("cluster01", target, p.Probe(ctx, target, 1))
	if got[0].Status != Failed || !strings.Contains(got[0].Detail, "not to its ClusterSet IP 127.0.0.1") {
		t.Errorf("wrong address: %+v", got[0])
	}
	if got[1].Status != Failed || !strings.Contains(got[1].Detail, `answered by cluster "west", not "east"`) {
		t.Errorf("wrong cluster answering: %+v", got[1])
	}

	// The pod IP does not answer (nothing listens): the pod check fails with a routing fix.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()
	p.Resolver, p.ServicePort, p.PodPort = fakeResolver{target.Name: {svcIP}}, port, closedPort
	got = Pair("cluster01", target, p.Probe(ctx, target, 1))
	if got[2].Status != Failed || !strings.Contains(got[2].Detail, strconv.Itoa(closedPort)) || !strings.Contains(got[2].Fix, "route cluster02's pod CIDR") {
		t.Errorf("unreachable pod IP: %+v", got[2])
	}
}

func TestReport(t *testing.T) {
	var r Report
	r.Add(Joined("c1", "east", nil), Joined("c2", "", errors.New("ClusterProperty not found")), Skip(CheckCoreDNS, "c1", "", "why"))
	if r.OK() || r.Passed != 1 || r.Failed != 1 || r.Skipped != 1 {
		t.Errorf("report %+v; want 1 passed, 1 failed, 1 skipped, not OK", r)
	}
	if !r.Failing("c2", CheckJoined) || r.Failing("c1") {
		t.Errorf("Failing: c2 joined failed, c1 nothing failed")
	}
	if f := r.Results[1].Fix; !strings.Contains(f, "strait join --context c2") {
		t.Errorf("the fix of a member that has not joined: %q", f)
	}
}
