package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// services: web in two regions (east with zones a and b, west with zone c), and big, whose
// 300 addresses do not fit a UDP response.
func services() []zone.Service {
	var many []netip.Addr
	for i := range 300 {
		many = append(many, netip.AddrFrom4([4]byte{10, 1, byte(i / 256), byte(i % 256)}))
	}
	return []zone.Service{
		{Namespace: "shop", Name: "web", Federation: "fed", Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: true, Addresses: addrs("192.0.2.1"), LocalAddresses: addrs("10.96.0.10")},
			{Cluster: "c2", Region: "east", Zone: "east-b", Healthy: false, Addresses: addrs("192.0.2.2")},
			{Cluster: "c3", Region: "west", Zone: "west-c", Healthy: true, Addresses: addrs("198.51.100.3", "2001:db8::3")},
		}},
		{Namespace: "shop", Name: "big", Federation: "fed", TTL: 5 * time.Second, Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: true, Addresses: many},
		}},
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Zone.Domain == "" {
		cfg.Zone = zone.Config{Domain: "example.com", Nameservers: []zone.Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.1")}}}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(services()); err != nil {
		t.Fatal(err)
	}
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
	return s
}

func query(t *testing.T, net, server, name string, qtype uint16, edns int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	if edns > 0 {
		m.SetEdns0(uint16(edns), false)
	}
	c := &dns.Client{Net: net, Timeout: 5 * time.Second, UDPSize: dns.MaxMsgSize}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatalf("%s %s %s: %v", net, name, dns.TypeToString[qtype], err)
	}
	if r.Id != m.Id || !r.Response {
		t.Fatalf("bad reply header %v", r.MsgHdr)
	}
	return r
}

func rrs(rs []dns.RR) []string {
	var out []string
	for _, r := range rs {
		if r.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(r.String(), "\t", " "))
	}
	return out
}

func TestQueries(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	addr := s.Addrs()[0].String()
	serial := s.Zone().Serial()
	soa := fmt.Sprintf("example.com. 30 IN SOA ns1.example.com. hostmaster.example.com. %d 3600 600 86400 30", serial)
	const p = "web.shop.fed.svc."
	cases := []struct {
		q         string
		qtype     uint16
		rcode     int
		aa        bool
		answer    []string
		authority []string
		extra     []string
	}{
		{q: p + "east-a.east.example.com.", qtype: dns.TypeA, aa: true,
			answer: []string{p + "east-a.east.example.com. 180 IN A 192.0.2.1"}},
		{q: "WEB.shop.fed.svc.East-B.east.example.com.", qtype: dns.TypeA, aa: true,
			answer: []string{
				p + "east-b.east.example.com. 180 IN CNAME " + p + "east.example.com.",
				p + "east.example.com. 180 IN A 192.0.2.1",
			}},
		{q: p + "west.example.com.", qtype: dns.TypeAAAA, aa: true,
			answer: []string{p + "west.example.com. 180 IN AAAA 2001:db8::3"}},
		{q: p + "east.example.com.", qtype: dns.TypeAAAA, aa: true, authority: []string{soa}},
		{q: p + "example.com.", qtype: dns.TypeA, aa: true, answer: []string{
			p + "example.com. 180 IN A 192.0.2.1",
			p + "example.com. 180 IN A 198.51.100.3",
		}},
		{q: p + "example.com.", qtype: dns.TypeMX, aa: true, authority: []string{soa}},
		{q: "nope.shop.fed.svc.example.com.", qtype: dns.TypeA, rcode: dns.RcodeNameError, aa: true, authority: []string{soa}},
		{q: "shop.fed.svc.example.com.", qtype: dns.TypeA, aa: true, authority: []string{soa}},
		{q: "example.com.", qtype: dns.TypeSOA, aa: true, answer: []string{soa}},
		{q: "example.com.", qtype: dns.TypeNS, aa: true,
			answer: []string{"example.com. 180 IN NS ns1.example.com."},
			extra:  []string{"ns1.example.com. 180 IN A 127.0.0.1"}},
		{q: "example.org.", qtype: dns.TypeA, rcode: dns.RcodeRefused},
		{q: "web.shop.fed.", qtype: dns.TypeA, aa: true, answer: []string{
			"web.shop.fed. 180 IN CNAME " + p + "example.com.",
			p + "example.com. 180 IN A 192.0.2.1",
			p + "example.com. 180 IN A 198.51.100.3",
		}},
	}
	for _, c := range cases {
		for _, proto := range []string{"udp", "tcp"} {
			t.Run(proto+" "+c.q+" "+dns.TypeToString[c.qtype], func(t *testing.T) {
				r := query(t, proto, addr, c.q, c.qtype, 0)
				if r.Rcode != c.rcode || r.Authoritative != c.aa || r.Truncated || r.RecursionAvailable {
					t.Errorf("rcode %s aa %v tc %v ra %v", dns.RcodeToString[r.Rcode], r.Authoritative, r.Truncated, r.RecursionAvailable)
				}
				if r.Question[0].Name != c.q {
					t.Errorf("question %s, want the client's spelling %s", r.Question[0].Name, c.q)
				}
				for _, sec := range []struct {
					what      string
					got, want []string
				}{{"answer", rrs(r.Answer), c.answer}, {"authority", rrs(r.Ns), c.authority}, {"additional", rrs(r.Extra), c.extra}} {
					if !slices.Equal(sec.got, sec.want) {
						t.Errorf("%s:\n%s\nwant:\n%s", sec.what, strings.Join(sec.got, "\n"), strings.Join(sec.want, "\n"))
					}
				}
			})
		}
	}
}

func TestTruncationAndEDNS(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	addr := s.Addrs()[0].String()
	const big = "big.shop.fed.svc.example.com."

	r := query(t, "udp", addr, big, dns.TypeA, 0)
	r.Compress = true
	if !r.Truncated || len(r.Answer) >= 300 || r.Len() > 512 {
		t.Errorf("plain UDP: tc %v, %d answers, %d bytes", r.Truncated, len(r.Answer), r.Len())
	}
	if r.IsEdns0() != nil {
		t.Error("OPT in the reply to a query without one")
	}
	r = query(t, "udp", addr, big, dns.TypeA, 4096)
	opt := r.IsEdns0()
	if !r.Truncated || opt == nil || opt.UDPSize() != DefaultMaxUDPSize {
		t.Errorf("EDNS UDP 4096: tc %v opt %v", r.Truncated, opt)
	}
	r.Compress = true
	if n, _ := r.Pack(); len(n) > DefaultMaxUDPSize {
		t.Errorf("EDNS UDP reply is %d bytes, over %d", len(n), DefaultMaxUDPSize)
	}
	r = query(t, "tcp", addr, big, dns.TypeA, 0)
	if r.Truncated || len(r.Answer) != 300 {
		t.Errorf("TCP: tc %v, %d answers", r.Truncated, len(r.Answer))
	}
	if r.Answer[0].Header().Ttl != 5 {
		t.Errorf("per-service TTL: %v", r.Answer[0])
	}

	// A version other than 0 gets BADVERS, with an OPT.
	m := new(dns.Msg)
	m.SetQuestion(big, dns.TypeA)
	m.SetEdns0(1232, true)
	m.IsEdns0().SetVersion(1)
	r, _, err := (&dns.Client{Net: "udp"}).Exchange(m, addr)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeBadVers || r.IsEdns0() == nil || len(r.Answer) != 0 {
		t.Errorf("BADVERS: rcode %s opt %v", dns.RcodeToString[r.Rcode], r.IsEdns0())
	}
	// The DO bit is echoed.
	m.IsEdns0().SetVersion(0)
	r, _, err = (&dns.Client{Net: "udp"}).Exchange(m, addr)
	if err != nil || !r.IsEdns0().Do() {
		t.Errorf("DO bit not echoed: %v %v", err, r)
	}
	// Two OPT records are a format error.
	m.Extra = append(m.Extra, &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}})
	r, _, err = (&dns.Client{Net: "udp"}).Exchange(m, addr)
	if err != nil || r.Rcode != dns.RcodeFormatError {
		t.Errorf("two OPTs: %v %v", err, r)
	}
}

func TestRejects(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	addr := s.Addrs()[0].String()
	for _, c := range []struct {
		name  string
		msg   func(*dns.Msg)
		rcode int
	}{
		{"NOTIFY", func(m *dns.Msg) { m.Opcode = dns.OpcodeNotify }, dns.RcodeNotImplemented},
		{"UPDATE", func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }, dns.RcodeNotImplemented},
		{"CHAOS class", func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, dns.RcodeRefused},
		{"AXFR", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeAXFR }, dns.RcodeRefused},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, dns.RcodeFormatError},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("example.com.", dns.TypeSOA)
			c.msg(m)
			r, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, addr)
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != c.rcode || len(r.Answer) != 0 {
				t.Errorf("rcode %s, %d answers", dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		})
	}
}

// TestShortNamesPerCluster: each member cluster's CoreDNS forwards to its own listener, or
// to a shared one from its own source prefix.
func TestShortNamesPerCluster(t *testing.T) {
	s := start(t, Config{
		Listeners: []Listener{
			{Addr: "127.0.0.1:0", Cluster: "c1"},
			{Addr: "127.0.0.1:0", Cluster: "c2"},
			{Addr: "127.0.0.1:0"},
		},
		Sources:  []Source{{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Cluster: "c3"}, {Prefix: netip.MustParsePrefix("127.0.0.2/32"), Cluster: "c4"}},
		Clusters: []zone.Location{{Cluster: "c4", Region: "east", Zone: "east-b"}},
	})
	const p = "web.shop.fed.svc."
	a := s.Addrs()
	cases := []struct {
		name   string
		addr   string
		local  string
		answer []string
	}{
		{"healthy local shard: its ClusterIP", a[0].String(), "", []string{"web.shop.fed. 180 IN A 10.96.0.10"}},
		{"unhealthy local shard: its zone, chained", a[1].String(), "", []string{
			"web.shop.fed. 180 IN CNAME " + p + "east-b.east.example.com.",
			p + "east-b.east.example.com. 180 IN CNAME " + p + "east.example.com.",
			p + "east.example.com. 180 IN A 192.0.2.1",
		}},
		{"shared listener, source prefix of c3", a[2].String(), "127.0.0.1", []string{"web.shop.fed. 180 IN A 198.51.100.3"}},
		{"shared listener, longest prefix c4 without shard, static location", a[2].String(), "127.0.0.2", []string{
			"web.shop.fed. 180 IN CNAME " + p + "east-b.east.example.com.",
			p + "east-b.east.example.com. 180 IN CNAME " + p + "east.example.com.",
			p + "east.example.com. 180 IN A 192.0.2.1",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("web.shop.fed.", dns.TypeA)
			cl := &dns.Client{Net: "udp", Timeout: 5 * time.Second}
			if c.local != "" {
				cl.Dialer = &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(c.local)}}
			}
			r, _, err := cl.Exchange(m, c.addr)
			if err != nil {
				t.Fatal(err)
			}
			if got := rrs(r.Answer); !slices.Equal(got, c.answer) {
				t.Errorf("answer:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.answer, "\n"))
			}
		})
	}
}

func TestUpdateSwapsAnswers(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	addr := s.Addrs()[0].String()
	const name = "web.shop.fed.svc.east-a.east.example.com."
	if r := query(t, "udp", addr, name, dns.TypeA, 0); len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != dns.TypeA {
		t.Fatalf("before: %v", r.Answer)
	}
	before := s.Zone().Serial()
	svcs := services()
	svcs[0].Shards[0].Healthy = false
	if err := s.Update(svcs); err != nil {
		t.Fatal(err)
	}
	r := query(t, "udp", addr, name, dns.TypeA, 0)
	want := []string{
		name + " 180 IN CNAME web.shop.fed.svc.east.example.com.",
		"web.shop.fed.svc.east.example.com. 180 IN CNAME web.shop.fed.svc.example.com.",
		"web.shop.fed.svc.example.com. 180 IN A 198.51.100.3",
	}
	if got := rrs(r.Answer); !slices.Equal(got, want) {
		t.Fatalf("after the zone and its region went down:\n%s", strings.Join(got, "\n"))
	}
	if s.Zone().Serial() <= before {
		t.Errorf("serial %d not above %d", s.Zone().Serial(), before)
	}
	// An invalid set is rejected and the served zone stays.
	bad := services()
	bad[0].Name = strings.Repeat("x", 64)
	if err := s.Update(bad); err == nil || !strings.Contains(err.Error(), "at most 63") {
		t.Fatalf("Update accepted an invalid service: %v", err)
	}
	if r := query(t, "udp", addr, name, dns.TypeA, 0); !slices.Equal(rrs(r.Answer), want) {
		t.Errorf("invalid update changed the answer: %v", r.Answer)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Zone: zone.Config{Domain: "bad_domain"}}, `invalid domain "bad_domain"`},
		{Config{Zone: zone.Config{Domain: "example.com"}, MaxUDPSize: 100}, "UDP payload size 100"},
		{Config{Zone: zone.Config{Domain: "example.com"}, Sources: []Source{{Cluster: "x"}}}, "need a prefix and a cluster"},
	} {
		if _, err := New(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v): %v, want %q", c.cfg, err, c.want)
		}
	}
	s, err := New(Config{Zone: zone.Config{Domain: "example.com"}, Listeners: []Listener{{Addr: "127.0.0.1:99999"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Error("Start on an invalid port succeeded")
	}
}

// TestConcurrentUpdates queries while the zone is swapped: every answer is one of the two
// zones' answers, never a mix (run with -race).
func TestConcurrentUpdates(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
	addr := s.Addrs()[0].String()
	down := services()
	down[0].Shards[0].Healthy = false
	stop := make(chan struct{})
	done := make(chan error)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			set := services()
			if i%2 == 0 {
				set = down
			}
			if err := s.Update(set); err != nil {
				done <- err
				return
			}
		}
	}()
	for range 200 {
		r := query(t, "udp", addr, "web.shop.fed.svc.east-a.east.example.com.", dns.TypeA, 0)
		got := rrs(r.Answer)
		switch {
		case len(got) == 1 && strings.HasSuffix(got[0], "IN A 192.0.2.1"):
		case len(got) == 3 && strings.Contains(got[0], "CNAME") && strings.HasSuffix(got[2], "IN A 198.51.100.3"):
		default:
			t.Fatalf("mixed answer: %v", got)
		}
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
