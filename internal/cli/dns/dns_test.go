package dns

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/metricstest"
)

const servicesYAML = `services:
- namespace: shop
  name: web
  federation: fed
  ttl: 60s
  shards:
  - cluster: cluster01
    region: east
    zone: east-a
    healthy: %s
    addresses: [192.0.2.1]
  - cluster: cluster02
    region: east
    zone: east-b
    healthy: true
    addresses: [192.0.2.2]
`

func writeServices(t *testing.T, path string, eastAHealthy bool) {
	t.Helper()
	doc := strings.Replace(servicesYAML, "%s", strconv.FormatBool(eastAHealthy), 1)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func exchange(addr, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, addr)
	return r, err
}

// TestServe runs `strait dns serve` from a services file and publishing to a real BIND, then
// fails a zone over by editing the file: the server and BIND both follow.
func TestServe(t *testing.T) {
	b := bindtest.Start(t, bindtest.Options{Records: []string{"www IN A 192.0.2.80"}})
	dir := t.TempDir()
	services := filepath.Join(dir, "services.yaml")
	writeServices(t, services, true)
	secret := filepath.Join(dir, "tsig.key")
	if err := os.WriteFile(secret, []byte(b.Secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ownershipKey := filepath.Join(dir, "ownership.key")
	if err := os.WriteFile(ownershipKey, []byte("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	c1 := freeAddr(t)
	metrics := freeAddr(t)
	cmd := New()
	cmd.SetArgs([]string{"serve", "--domain", "fed.example.com", "--listen", addr, "--cluster-listen", "cluster01=" + c1,
		"--from-file", services, "--interval", "100ms", "--owner", "test-install", "--ownership-key-file", ownershipKey,
		"--metrics-bind-address", metrics,
		"--rfc2136-server", b.Addr, "--rfc2136-zone", "example.com", "--rfc2136-key-name", b.KeyName, "--rfc2136-key-secret-file", secret})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	const zoneA = "web.shop.fed.svc.east-a.east.fed.example.com."
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			select {
			case err := <-done:
				t.Fatalf("serve exited: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	waitFor("A record served", func() bool {
		r, err := exchange(addr, zoneA, dns.TypeA)
		return err == nil && len(r.Answer) == 1 && r.Answer[0].Header().Rrtype == dns.TypeA
	})
	waitFor("A record in BIND", func() bool {
		return slices.Equal(b.Dig(zoneA, "A"), []string{zoneA + " 60 IN A 192.0.2.1"})
	})
	// The short name from cluster01's listener is its healthy local shard.
	if r, err := exchange(c1, "web.shop.fed.", dns.TypeA); err != nil || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("short name from cluster01: %v %v", r, err)
	}

	writeServices(t, services, false)
	waitFor("CNAME served", func() bool {
		r, err := exchange(addr, zoneA, dns.TypeA)
		return err == nil && len(r.Answer) > 0 && r.Answer[0].Header().Rrtype == dns.TypeCNAME
	})
	waitFor("CNAME in BIND", func() bool {
		return slices.Equal(b.Dig(zoneA, "CNAME"), []string{zoneA + " 60 IN CNAME web.shop.fed.svc.east.fed.example.com."})
	})
	if r, err := exchange(c1, "web.shop.fed.", dns.TypeA); err != nil || len(r.Answer) == 0 || r.Answer[0].(*dns.CNAME).Target != zoneA {
		t.Errorf("short name from cluster01 after failover: %v %v", r, err)
	}

	if got := b.Dig("www.example.com.", "A"); !slices.Equal(got, []string{"www.example.com. 300 IN A 192.0.2.80"}) {
		t.Errorf("someone else's record: %v", got)
	}
	if got := b.Dig("_strait."+zoneA, "TXT"); len(got) != 1 || !strings.Contains(got[0], "strait/owner=test-install,") || !strings.Contains(got[0], ",strait/mac=") {
		t.Errorf("ownership record: %v", got)
	}

	// The metrics endpoint serves the server's counters.
	exchange(addr, "www.example.org.", dns.TypeA) // REFUSED
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"strait_dns_refused_queries_total 1", `strait_dns_responses_total{transport="udp"}`, "strait_dns_rrl_limited_responses_total", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestZonefile(t *testing.T) {
	dir := t.TempDir()
	services := filepath.Join(dir, "services.yaml")
	writeServices(t, services, false)
	cmd := New()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"zonefile", "--domain", "fed.example.com", "--from-file", services, "--nameserver", "ns1.fed.example.com=192.0.2.53"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"$ORIGIN fed.example.com.\n",
		"fed.example.com.\t180\tIN\tNS\tns1.fed.example.com.\n",
		"ns1.fed.example.com.\t180\tIN\tA\t192.0.2.53\n",
		"web.shop.fed.svc.east-a.east.fed.example.com.\t60\tIN\tCNAME\tweb.shop.fed.svc.east.fed.example.com.\n",
		"web.shop.fed.svc.east.fed.example.com.\t60\tIN\tA\t192.0.2.2\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("zone file lacks %q:\n%s", want, out.String())
		}
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"zonefile", "--from-file", services}, "--domain is required"},
		{[]string{"zonefile", "--domain", "bad_domain", "--from-file", services}, `invalid domain "bad_domain"`},
		{[]string{"serve", "--domain", "example.com"}, "no source of federated services: give --broker-context (the clusterset's broker) or --from-file"},
		{[]string{"serve", "--domain", "example.com", "--from-file", services, "--broker-context", "b"}, "either --from-file or --broker-context"},
		{[]string{"serve", "--domain", "example.com", "--from-file", services, "--cluster-source", "c1"}, "want CLUSTER=PREFIX"},
		{[]string{"serve", "--domain", "example.com", "--from-file", services, "--rfc2136-server", "127.0.0.1:53"}, "--owner is required with --from-file when publishing"},
		{[]string{"serve", "--domain", "example.com", "--from-file", services, "--rrl-exempt", "10.0.0.1"}, "--rrl-exempt"},
		{[]string{"serve", "--domain", "example.com", "--from-file", services, "--rrl-slip", "20"}, "slip 20"},
	} {
		cmd := New()
		cmd.SetArgs(c.args)
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// TestServeMetricsAndHealth runs `strait dns serve` from a services file, without
// publishers: /healthz and /readyz answer, and /metrics counts the queries by answer (a
// CNAME asked for, a zone failed over to its region) and shows the zone served.
func TestServeMetricsAndHealth(t *testing.T) {
	dir := t.TempDir()
	services := filepath.Join(dir, "services.yaml")
	writeServices(t, services, false) // east-a has no healthy shard
	addr, metrics, health := freeAddr(t), metricstest.FreeAddr(t), metricstest.FreeAddr(t)
	cmd := New()
	cmd.SetArgs([]string{"serve", "--domain", "fed.example.com", "--listen", addr, "--from-file", services, "--interval", "100ms",
		"--metrics-bind-address", metrics, "--health-probe-bind-address", health})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	metricstest.WaitFor(t, health, "/readyz", 10*time.Second, "ok")
	metricstest.WaitFor(t, health, "/healthz", 10*time.Second, "ok")
	const zoneA = "web.shop.fed.svc.east-a.east.fed.example.com."
	if r, err := exchange(addr, zoneA, dns.TypeCNAME); err != nil || len(r.Answer) != 1 {
		t.Fatalf("CNAME of %s: %v %v", zoneA, r, err)
	}
	if r, err := exchange(addr, zoneA, dns.TypeA); err != nil || len(r.Answer) != 2 {
		t.Fatalf("A of %s: %v %v", zoneA, r, err)
	}
	metricstest.WaitFor(t, metrics, "/metrics", 10*time.Second,
		`strait_dns_queries_total{answer="cname",rcode="NOERROR"} 1`,
		`strait_dns_queries_total{answer="region",rcode="NOERROR"} 1`,
		`strait_dns_queries_total{answer="nxdomain",rcode="NXDOMAIN"} 0`,
		"strait_dns_failover_answers_total 2\n",
		"strait_dns_zone_services 1\n",
		"strait_dns_zone_records ",
		`strait_dns_sync_errors_total{stage="source"} 0`,
		"strait_dns_responses_total",
		"go_goroutines")
}
