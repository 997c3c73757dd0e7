package dns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/metricstest"
)

// fakeBroker holds members c1 (r1/r1a) and c2 (r1/r1b) and a federated Service "web"
// selected for c1 only, whose shard there is healthy: c2 is known from its membership alone.
func fakeBroker() *fake.Clientset {
	var objs []runtime.Object
	for _, m := range []clusterset.Member{{ID: "c1", Region: "r1", Zone: "r1a"}, {ID: "c2", Region: "r1", Zone: "r1b"}} {
		objs = append(objs, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName(m.ID),
			Namespace: clusterset.ClustersetNamespace}, Data: clusterset.MembershipData(m)})
	}
	objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: federation.DefaultNamespace, Name: "web",
		Annotations: map[string]string{federation.AnnotationClusters: "c1"}}})
	shard := federation.Shard{Cluster: "c1", Namespace: federation.DefaultNamespace, Name: "web", State: federation.ShardCreated,
		ReadyEndpoints: 1, ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.1.5")},
		Ingress: federation.Ingress{Source: federation.IngressNodes, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}}
	for _, r := range federation.ToRecords(clusterset.MemberNamespace("c1"), federation.DefaultName, shard) {
		objs = append(objs, r)
	}
	return fake.NewClientset(objs...)
}

func freeLoopback(t *testing.T) string {
	t.Helper()
	port, err := bindtest.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// answers returns the rcode of an A query and its answer section as "type data" strings.
func answers(addr, name string) (int, []string, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	if err != nil {
		return 0, nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.CNAME:
			out = append(out, "CNAME "+rr.Target)
		}
	}
	return r.Rcode, out, nil
}

// TestServeFromTheBroker runs what `strait dns serve --broker-context` and the lab run: the
// short name answers the asking member's own shard (its cluster IP), a member without a
// shard gets the CNAME chain from its zone's region, known from its membership alone, and an
// unknown name of the federation is NXDOMAIN, not REFUSED.
func TestServeFromTheBroker(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c1, c2 := freeLoopback(t), freeLoopback(t)
	cfg := server.Config{Zone: zone.Config{Domain: "example.com"}, UDPSockets: 1,
		Listeners: []server.Listener{{Addr: c1, Cluster: "c1"}, {Addr: c2, Cluster: "c2"}}}
	src, view, err := BrokerSource(ctx, fakeBroker(), mcsfake.NewSimpleClientset(), federation.DefaultConfig(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	bound := 0
	done := make(chan error, 1)
	metrics := metricstest.FreeAddr(t)
	go func() {
		done <- Serve(ctx, ServeConfig{Server: cfg, Source: src, Interval: 50 * time.Millisecond,
			MetricsAddress: metrics, Collectors: []prometheus.Collector{view},
			Bind: func(start func() error) error { bound++; return start() }})
	}()

	const short = "web.strait-federation.federation."
	deadline := time.Now().Add(10 * time.Second)
	for {
		rcode, got, err := answers(c1, short)
		if err == nil && rcode == dns.RcodeSuccess && len(got) == 1 && got[0] == "A 10.96.1.5" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("short name from c1: rcode %d, %v, %v; want its cluster IP", rcode, got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []string{"CNAME web.strait-federation.federation.svc.r1.example.com.", "A 192.0.2.1"}
	if rcode, got, err := answers(c2, short); err != nil || rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
		t.Errorf("short name from c2: rcode %d, %v, %v; want %v", rcode, got, err, want)
	}
	if rcode, got, err := answers(c2, "db.strait-federation.federation."); err != nil || rcode != dns.RcodeNameError {
		t.Errorf("unknown short name: rcode %d, %v, %v; want NXDOMAIN", rcode, got, err)
	}
	// strait dns reports its own view of the broker and the members.
	metricstest.WaitFor(t, metrics, "/metrics", 10*time.Second, "strait_broker_reachable ", "strait_withdrawals_frozen ",
		`strait_member_state{cluster="c1",state=`, `strait_member_state{cluster="c2",state=`, "strait_dns_zone_services 1\n")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if bound != 1 {
		t.Errorf("Bind called %d times, want 1", bound)
	}
	// Nothing is left listening once Serve returned.
	for _, addr := range []string{c1, c2} {
		l, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Errorf("%s still in use after Serve returned: %v", addr, err)
			continue
		}
		l.Close()
	}
}

// TestServeReportsABindFailure: the error of Bind (the lab's network namespace missing, an
// address in use) is Serve's error.
func TestServeReportsABindFailure(t *testing.T) {
	want := errors.New("entering network namespace lab-router: no such file")
	err := Serve(context.Background(), ServeConfig{
		Server: server.Config{Zone: zone.Config{Domain: "example.com"}, Listeners: []server.Listener{{Addr: freeLoopback(t)}}},
		Source: &fakeSource{},
		Bind:   func(func() error) error { return want },
	})
	if !errors.Is(err, want) {
		t.Fatalf("Serve: %v, want %v", err, want)
	}
}
