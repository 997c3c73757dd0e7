package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strait-io/strait/internal/dns/zone"
)

// startFrozen starts a server whose RRL clock stands still until the test moves it.
func startFrozen(t *testing.T, cfg Config) (*Server, *atomic.Int64) {
	t.Helper()
	cfg.Zone = zone.Config{Domain: "example.com", Nameservers: []zone.Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.1")}}}
	if len(cfg.Listeners) == 0 {
		cfg.Listeners = []Listener{{Addr: "127.0.0.1:0"}}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(services()); err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_800_000_000, 0)
	var offset atomic.Int64
	s.clock = func() time.Time { return base.Add(time.Duration(offset.Load())) }
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Start(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := s.Wait(); err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	return s, &offset
}

// outcome is what a client sees of one query: a whole answer, a truncated one (slip), or
// nothing (dropped).
type outcome string

const (
	answered  outcome = "answer"
	truncated outcome = "TC"
	dropped   outcome = "dropped"
)

// ask sends one UDP query from the local address from (an address of 127/8, so each test
// client can be in a prefix of its own) and classifies the reply.
func ask(t *testing.T, server, from, name string) outcome {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond,
		Dialer: &net.Dialer{Timeout: time.Second, LocalAddr: &net.UDPAddr{IP: net.ParseIP(from)}}}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.Exchange(m, server)
	var nerr net.Error
	switch {
	case errors.As(err, &nerr) && nerr.Timeout():
		return dropped
	case err != nil:
		t.Fatalf("query from %s: %v", from, err)
	case r.Truncated && len(r.Answer) == 0 && len(r.Question) == 1 && r.Question[0].Name == name:
		return truncated
	case !r.Truncated && len(r.Answer) > 0:
		return answered
	}
	t.Fatalf("unexpected reply to %s: %v", from, r)
	return ""
}

func TestRRL(t *testing.T) {
	const name = "web.shop.fed.svc.east-a.east.example.com."
	s, clock := startFrozen(t, Config{
		RRL:     RRLConfig{ResponsesPerSecond: 3, Slip: 2},
		Sources: []Source{{Prefix: netip.MustParsePrefix("127.0.9.0/24"), Cluster: "c1"}},
	})
	addr := s.Addrs()[0].String()
	cases := []struct {
		from string
		want outcome
		note string
	}{
		{"127.0.0.1", answered, "within the rate (3 per second, a bucket of 1 s)"},
		{"127.0.0.2", answered, "same /24"},
		{"127.0.0.1", answered, ""},
		{"127.0.0.3", dropped, "over the rate: 1st limited response dropped"},
		{"127.0.0.1", truncated, "2nd limited response slips: TC=1, no records"},
		{"127.0.0.1", dropped, ""},
		{"127.0.1.1", answered, "another /24 is unaffected"},
		{"127.0.0.2", truncated, ""},
		{"127.0.9.1", answered, "a member cluster's source prefix is exempt"},
		{"127.0.9.1", answered, ""},
		{"127.0.9.1", answered, ""},
		{"127.0.9.1", answered, ""},
		{"127.0.0.1", dropped, ""},
	}
	for i, c := range cases {
		if got := ask(t, addr, c.from, name); got != c.want {
			t.Errorf("query %d from %s: %s, want %s (%s)", i, c.from, got, c.want, c.note)
		}
	}
	// TCP is never limited: the client the slip sent there gets its answer.
	if r := query(t, "tcp", addr, name, dns.TypeA, 0); len(r.Answer) == 0 || r.Truncated {
		t.Errorf("TCP answer: %v", r)
	}
	// A second later the bucket has refilled by the rate.
	clock.Add(int64(time.Second))
	for i, want := range []outcome{answered, answered, answered, truncated} {
		if got := ask(t, addr, "127.0.0.1", name); got != want {
			t.Errorf("after a second, query %d: %s, want %s", i, got, want)
		}
	}
	m := s.metrics
	if d, sl := value(m.limitedDrop), value(m.limitedSlip); d != 3 || sl != 3 {
		t.Errorf("metrics: %v dropped, %v slipped; want 3 and 3", d, sl)
	}
}

func TestRRLBytes(t *testing.T) {
	const name = "web.shop.fed.svc.east-a.east.example.com."
	s, _ := startFrozen(t, Config{RRL: RRLConfig{BytesPerSecond: 200, Slip: 1}})
	addr := s.Addrs()[0].String()
	size := query(t, "udp", addr, name, dns.TypeA, 0).Len() // one answer, from 127.0.0.1
	// A balance of 200 bytes: answers go out while it is positive.
	var want []outcome
	for balance := 200 - size; balance > 0; balance -= size {
		want = append(want, answered)
	}
	want = append(want, truncated, truncated) // slip 1: every limited response is truncated
	for i, w := range want {
		if got := ask(t, addr, "127.0.0.1", name); got != w {
			t.Errorf("query %d (answer %d bytes): %s, want %s", i, size, got, w)
		}
	}
	if got := ask(t, addr, "127.0.5.5", name); got != answered {
		t.Errorf("another prefix: %s", got)
	}
	// The bytes sent whole stay within the limit plus the one response that overdrew it.
	if b := value(s.metrics.bytesUDP); b > float64(200+2*size) {
		t.Errorf("%v bytes sent whole", b)
	}
}

func TestRRLIPv6Prefix(t *testing.T) {
	l := newLimiter(RRLConfig{ResponsesPerSecond: 1, Slip: 0})
	now := time.Unix(1, 0)
	for _, c := range []struct {
		addr string
		want verdict
	}{
		{"2001:db8:0:100::1", send},
		{"2001:db8:0:1ff::2", drop}, // same /56
		{"2001:db8:0:200::1", send}, // the next /56
		{"192.0.2.1", send},
		{"192.0.2.200", drop},
		{"192.0.3.1", send},
	} {
		if got := l.take(netip.MustParseAddr(c.addr), 100, now); got != c.want {
			t.Errorf("%s: %v, want %v", c.addr, got, c.want)
		}
	}
}

// TestRRLStateIsBounded: a flood of spoofed prefixes never grows the state past its bound.
func TestRRLStateIsBounded(t *testing.T) {
	l := newLimiter(RRLConfig{ResponsesPerSecond: 10})
	now := time.Unix(1, 0)
	for i := range 1 << 20 {
		l.take(netip.AddrFrom4([4]byte{byte(i >> 16), byte(i >> 8), byte(i), 1}), 100, now)
	}
	if n := l.tracked(); n > rrlShards*maxBucketsPerShard {
		t.Errorf("%d prefixes tracked", n)
	}
}

func TestTCPConnectionCap(t *testing.T) {
	s, _ := startFrozen(t, Config{MaxTCPConnections: 2})
	addr := s.Addrs()[0].String()
	open := func() *dns.Conn {
		t.Helper()
		c, err := dns.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	exchange := func(c *dns.Conn) error {
		m := new(dns.Msg)
		m.SetQuestion("web.shop.fed.svc.example.com.", dns.TypeA)
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if err := c.WriteMsg(m); err != nil {
			return err
		}
		_, err := c.ReadMsg()
		return err
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	for _, c := range []*dns.Conn{a, b} {
		if err := exchange(c); err != nil {
			t.Fatalf("a connection within the cap: %v", err)
		}
	}
	// The third is closed by the server as soon as it is accepted.
	third := open()
	if err := exchange(third); err == nil {
		t.Error("a connection beyond the cap was served")
	}
	third.Close()
	if n := value(s.metrics.tcpRefused); n != 1 {
		t.Errorf("refused connections: %v", n)
	}
	if n := value(s.metrics.tcpOpen); n != 2 {
		t.Errorf("open connections: %v", n)
	}
	// Closing one makes room.
	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for value(s.metrics.tcpOpen) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection was not given back")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := open()
	defer c.Close()
	if err := exchange(c); err != nil {
		t.Errorf("a connection after one closed: %v", err)
	}
}

func TestTCPIdleTimeout(t *testing.T) {
	s, _ := startFrozen(t, Config{TCPIdleTimeout: 200 * time.Millisecond})
	addr := s.Addrs()[0].String()
	for _, queries := range []int{0, 1} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		dc := &dns.Conn{Conn: c}
		if queries > 0 {
			m := new(dns.Msg)
			m.SetQuestion("web.shop.fed.svc.example.com.", dns.TypeA)
			if err := dc.WriteMsg(m); err != nil {
				t.Fatal(err)
			}
			if _, err := dc.ReadMsg(); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = c.Read(make([]byte, 1))
		if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) && !strings.Contains(fmtErr(err), "reset") {
			t.Errorf("after %d queries: read %v", queries, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("after %d queries: the idle connection was not closed within 5s", queries)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("after %d queries: closed after %s", queries, d)
		}
		c.Close()
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRefusedMetric(t *testing.T) {
	s, _ := startFrozen(t, Config{})
	addr := s.Addrs()[0].String()
	if r := query(t, "udp", addr, "www.example.org.", dns.TypeA, 0); r.Rcode != dns.RcodeRefused {
		t.Fatalf("rcode %d", r.Rcode)
	}
	query(t, "tcp", addr, "example.com.", dns.TypeAXFR, 0)
	if n := value(s.metrics.refused); n != 2 {
		t.Errorf("refused: %v", n)
	}
	mfs, err := s.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"strait_dns_refused_queries_total", "strait_dns_responses_total", "strait_dns_tcp_connections"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("metric %s missing from %v", want, names)
		}
	}
}

func TestProtectionValidation(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{RRL: RRLConfig{ResponsesPerSecond: -1}}, "must not be negative"},
		{Config{RRL: RRLConfig{ResponsesPerSecond: 1, Slip: 11}}, "slip 11"},
		{Config{RRL: RRLConfig{ResponsesPerSecond: 1, IPv4PrefixLength: 33}}, "IPv4 prefix length 33"},
		{Config{TCPIdleTimeout: -time.Second}, "TCP idle timeout"},
	} {
		c.cfg.Zone = zone.Config{Domain: "example.com"}
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}
