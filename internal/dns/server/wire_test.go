package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// generatedServices is a zone with every shape of answer: services in two federations over
// clusters in two regions (zones, a region without zones, a cluster without location),
// healthy and not (CNAME chains of one, two and three), local addresses for short names,
// IPv6, per-service TTLs, and answers that fit 512 bytes, fit only with EDNS, or fit neither
// (truncated).
func generatedServices() []zone.Service {
	type loc struct{ cluster, region, zone string }
	locs := []loc{{"c1", "r1", "z1"}, {"c2", "r1", "z2"}, {"c3", "r2", "z3"}, {"c4", "r2", "z3"}, {"c5", "r3", ""}, {"c6", "", ""}}
	var out []zone.Service
	for i := range 36 {
		fed := "fed"
		if i%5 == 4 {
			fed = "fed2"
		}
		s := zone.Service{Namespace: fmt.Sprintf("ns%d", i%3), Name: fmt.Sprintf("svc%02d", i), Federation: fed}
		if i%7 == 3 {
			s.TTL = time.Duration(i) * time.Second
		}
		for j, l := range locs {
			if (i+j)%4 == 3 {
				continue // not placed there
			}
			sh := zone.Shard{Cluster: l.cluster, Region: l.region, Zone: l.zone, Healthy: (i>>j)&1 == 0 || i%6 == 0}
			naddr := 1 + (i+j)%2
			switch i {
			case 10:
				naddr = 30 // fits 1232 bytes, not 512
			case 11:
				naddr = 120 // fits neither
			}
			for k := range naddr {
				if (i+k)%5 == 2 {
					sh.Addresses = append(sh.Addresses, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(k), 14: byte(i), 13: byte(j)}))
				} else {
					sh.Addresses = append(sh.Addresses, netip.AddrFrom4([4]byte{10, byte(i), byte(j), byte(k)}))
				}
			}
			if i%3 == 1 {
				sh.LocalAddresses = []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i), byte(j)})}
			}
			s.Shards = append(s.Shards, sh)
		}
		out = append(out, s)
	}
	return out
}

// generatedServer is a server (not started) with listeners for c1 and c2, one for a
// cluster without shards (its static location), a shared one, and source prefixes for c3,
// c4 and an unknown cluster.
func generatedServer(t testing.TB) *Server {
	t.Helper()
	s, err := New(Config{
		Zone: zone.Config{Domain: "example.com", Federations: []string{"empty"}, Nameservers: []zone.Nameserver{
			{Name: "ns1.example.com", Addresses: addrs("127.0.0.1", "::1")}, {Name: "ns.example.net"}}},
		Listeners: []Listener{{Addr: "127.0.0.1:0", Cluster: "c1"}, {Addr: "127.0.0.1:0", Cluster: "C2"},
			{Addr: "127.0.0.1:0", Cluster: "c9"}, {Addr: "127.0.0.1:0"}},
		Sources: []Source{{Prefix: netip.MustParsePrefix("10.3.0.0/16"), Cluster: "c3"},
			{Prefix: netip.MustParsePrefix("10.4.0.0/16"), Cluster: "c4"}, {Prefix: netip.MustParsePrefix("10.4.7.0/24"), Cluster: "c8"}},
		Clusters: []zone.Location{{Cluster: "c9", Region: "r1", Zone: "z2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(generatedServices()); err != nil {
		t.Fatal(err)
	}
	return s
}

// wireClient is where a query comes from: a listener's cluster and a source address.
type wireClient struct {
	cluster string
	src     netip.Addr
}

func (c wireClient) String() string { return fmt.Sprintf("listener %q, source %s", c.cluster, c.src) }

var wireClients = []wireClient{
	{"c1", netip.MustParseAddr("192.0.2.1")},
	{"C2", netip.MustParseAddr("10.3.0.1")}, // the listener wins over the source
	{"c9", netip.MustParseAddr("192.0.2.1")},
	{"", netip.MustParseAddr("192.0.2.1")}, // outside every cluster
	{"", netip.MustParseAddr("10.3.9.9")},  // c3
	{"", netip.MustParseAddr("10.4.0.1")},  // c4
	{"", netip.MustParseAddr("10.4.7.1")},  // c8: the longest prefix, no shards
	{"", netip.MustParseAddr("2001:db8::1")},
}

// ednsVariant is how a query asks for EDNS.
type ednsVariant struct {
	name string
	opt  func(*dns.Msg)
}

func withEDNS(size uint16, do bool, options ...dns.EDNS0) func(*dns.Msg) {
	return func(m *dns.Msg) {
		m.SetEdns0(size, do)
		o := m.IsEdns0()
		o.Option = append(o.Option, options...)
	}
}

var ednsVariants = []ednsVariant{
	{"no EDNS", func(*dns.Msg) {}},
	{"EDNS 1232", withEDNS(1232, false)},
	{"EDNS 4096 DO", withEDNS(4096, true)},
	{"EDNS 512", withEDNS(512, false)},
	{"EDNS 100", withEDNS(100, false)},
	{"EDNS 1000 DO", withEDNS(1000, true)},
	{"EDNS 65535", withEDNS(65535, false)},
	{"EDNS 1232 cookie", withEDNS(1232, false, &dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0123456789abcdef"})},
	{"EDNS 1232 padding NSID", withEDNS(1232, true, &dns.EDNS0_PADDING{Padding: make([]byte, 7)}, &dns.EDNS0_NSID{Code: dns.EDNS0NSID})},
	{"EDNS 1232 subnet", withEDNS(1232, false, &dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(192, 0, 2, 0).To4()})},
	{"EDNS version 1", func(m *dns.Msg) { m.SetEdns0(1232, false); m.IsEdns0().SetVersion(1) }},
}

var wireTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS, dns.TypeANY, dns.TypeMX, dns.TypeTXT,
	dns.TypeSRV, dns.TypePTR, dns.TypeDS, dns.TypeOPT, dns.TypeAXFR, dns.TypeIXFR, 0, 65535}

// spell returns name in the case variation v: as is (lower case), upper case, or mixed.
func spell(name string, v int, rng *rand.Rand) string {
	switch v {
	case 1:
		return strings.ToUpper(name)
	case 2:
		b := []byte(name)
		for i, c := range b {
			if c >= 'a' && c <= 'z' && rng.IntN(2) == 0 {
				b[i] = c - 'a' + 'A'
			}
		}
		return string(b)
	}
	return name
}

// checkSame sends the query to the fast and the slow path and fails unless their bytes
// are the same; it reports whether the fast path answered.
func checkSame(t *testing.T, s *Server, snap *snapshot, q *dns.Msg, c wireClient, what string) bool {
	t.Helper()
	p, err := q.Pack()
	if err != nil {
		t.Fatalf("%s: packing the query: %v", what, err)
	}
	return checkSamePacket(t, s, snap, p, c, what)
}

func checkSamePacket(t *testing.T, s *Server, snap *snapshot, p []byte, c wireClient, what string) bool {
	t.Helper()
	slot := slicesIndex(s.slots, c.cluster)
	fast, q, ok := s.fastAnswer(snap, p, s.clientSlot(slot, c.src), make([]byte, 0, 512))
	if !ok {
		return false
	}
	_, _, slow, slowTally := s.slowReply(snap, p, Client{Addr: c.src, Cluster: c.cluster, UDP: true})
	if !bytes.Equal(fast, slow) {
		t.Errorf("%s from %s: the fast path's response differs from the slow path's\nfast: %s\nslow: %s",
			what, c, unpacked(fast), unpacked(slow))
	}
	if q.tally != slowTally {
		t.Errorf("%s from %s: the fast path counts %+v, the slow path %+v", what, c, q.tally, slowTally)
	}
	return true
}

func slicesIndex(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func unpacked(b []byte) string {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return fmt.Sprintf("%x (%v)", b, err)
	}
	return fmt.Sprintf("%d bytes, compressed %v\n%v", len(b), bytes.Contains(b[12:], []byte{0xc0}), m)
}

// TestFastPathAnswersAsTheSlowPath: for every name of a generated zone (and names that do
// not exist, inside and outside it), every question type, every client slot, EDNS sizes and
// options, case variations of the name and header bits, the fast path's response is byte
// for byte the slow path's (miekg/dns's server with Respond), and the fast path serves
// every plain query.
func TestFastPathAnswersAsTheSlowPath(t *testing.T) {
	s := generatedServer(t)
	snap := s.snap.Load()
	names := snap.zone.Names()
	var unknown []string
	for _, a := range snap.zone.Apexes() {
		unknown = append(unknown, "nope."+a, "a.b.c."+a, "_tcp."+a)
	}
	unknown = append(unknown, "example.org.", ".", "com.", "svc01.ns1.fed.svc.example.com.example.org.",
		"x-y_z.svc00.ns0.fed.svc.example.com.", strings.Repeat("a.", 126), strings.Repeat("b.", 127))
	rng := rand.New(rand.NewPCG(1, 2))
	fast, total, truncated := 0, 0, 0
	for _, name := range append(names, unknown...) {
		for ti, qtype := range wireTypes {
			for ci, c := range wireClients {
				// Every client with a rotating EDNS variant and spelling; the first client
				// with all of them.
				variants := []int{(ti + ci) % len(ednsVariants)}
				cases := []int{(ti + 2*ci) % 3}
				if ci == 0 {
					variants, cases = nil, []int{0, 1, 2}
					for v := range ednsVariants {
						variants = append(variants, v)
					}
				}
				for _, v := range variants {
					for _, cs := range cases {
						q := new(dns.Msg)
						q.SetQuestion(spell(name, cs, rng), qtype)
						q.RecursionDesired = rng.IntN(2) == 0
						q.CheckingDisabled = rng.IntN(4) == 0
						q.AuthenticatedData = rng.IntN(4) == 0
						ednsVariants[v].opt(q)
						what := fmt.Sprintf("%s %s, %s", q.Question[0].Name, dns.Type(qtype), ednsVariants[v].name)
						total++
						if checkSame(t, s, snap, q, c, what) {
							fast++
							continue
						}
						// The fast path must serve every plain query: lower case, no EDNS or
						// EDNS at the server's size or above, no options but cookies, padding
						// and NSID.
						if cs == 0 && (v <= 2 || v == 6 || v == 7 || v == 8) && len(name) < 250 {
							t.Errorf("%s from %s: not served by the fast path", what, c)
						}
					}
				}
			}
		}
	}
	for _, b := range snap.wire.trunc {
		if b != nil {
			truncated++
		}
	}
	if truncated == 0 {
		t.Error("no truncated response was packed: the zone does not test truncation")
	}
	t.Logf("%d queries, %d served by the fast path; %d truncated responses packed", total, fast, truncated)
}

// TestFastPathClass: classes other than IN are REFUSED, on the fast path as on the slow.
func TestFastPathClass(t *testing.T) {
	s := generatedServer(t)
	snap := s.snap.Load()
	for _, class := range []uint16{dns.ClassCHAOS, dns.ClassANY, dns.ClassNONE, 0, 4} {
		for _, name := range []string{"svc00.ns0.fed.svc.example.com.", "example.com.", "nope.example.com.", "example.org."} {
			q := new(dns.Msg)
			q.SetQuestion(name, dns.TypeA)
			q.Question[0].Qclass = class
			if !checkSame(t, s, snap, q, wireClients[0], fmt.Sprintf("%s class %d", name, class)) {
				t.Errorf("%s class %d: not served by the fast path", name, class)
			}
		}
	}
}

// TestFastPathOddPackets: requests the fast path leaves to the slow path (or answers as it
// does): other opcodes, responses, several questions, compressed names, trailing bytes,
// records in the wrong sections, truncated packets.
func TestFastPathOddPackets(t *testing.T) {
	s := generatedServer(t)
	snap := s.snap.Load()
	q := new(dns.Msg)
	q.SetQuestion("svc00.ns0.fed.svc.example.com.", dns.TypeA)
	q.SetEdns0(1232, false)
	base, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	plain := new(dns.Msg)
	plain.SetQuestion("svc00.ns0.fed.svc.example.com.", dns.TypeA)
	plainb, _ := plain.Pack()
	mutate := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	// A name of 256 octets (one too many) and of 255.
	long := func(last int) []byte {
		b := append([]byte(nil), plainb[:12]...)
		for _, l := range []int{63, 63, 63, last} {
			b = append(b, byte(l))
			b = append(b, bytes.Repeat([]byte{'a'}, l)...)
		}
		return append(b, 0, 0, 1, 0, 1)
	}
	badECS := new(dns.Msg)
	badECS.SetQuestion("svc00.ns0.fed.svc.example.com.", dns.TypeA)
	badECS.SetEdns0(1232, false)
	badECSb, _ := badECS.Pack()
	badECSb[len(badECSb)-1] = 8                                            // rdlen: one option of 4 bytes
	badECSb = append(badECSb, 0, byte(dns.EDNS0SUBNET), 0, 4, 0, 3, 24, 0) // family 3
	badECSb[11] = 1
	packets := map[string][]byte{
		"base":             base,
		"response":         mutate(base, func(b []byte) []byte { b[2] |= 0x80; return b }),
		"NOTIFY":           mutate(base, func(b []byte) []byte { b[2] |= 4 << 3; return b }),
		"two questions":    mutate(plainb, func(b []byte) []byte { b[5] = 2; return append(b, b[12:]...) }),
		"trailing bytes":   append(append([]byte(nil), plainb...), 1, 2, 3),
		"trailing on OPT":  append(append([]byte(nil), base...), 0),
		"short":            base[:20],
		"header only":      base[:12],
		"no question type": plainb[:len(plainb)-4],
		"compressed name":  append(append([]byte(nil), plainb[:12]...), 0xc0, 12, 0, 1, 0, 1),
		"answer count":     mutate(plainb, func(b []byte) []byte { b[7] = 1; return b }),
		"OPT, bad rdlen":   mutate(base, func(b []byte) []byte { b[len(b)-1] = 9; return b }),
		"OPT not root":     mutate(base, func(b []byte) []byte { b[len(b)-11] = 1; return b }),
		"OPT class 0":      mutate(base, func(b []byte) []byte { b[len(b)-8], b[len(b)-7] = 0, 0; return b }),
		"zero bit":         mutate(base, func(b []byte) []byte { b[3] |= 0x40; return b }),
		"TC bit":           mutate(base, func(b []byte) []byte { b[2] |= 0x02; return b }),
		"rcode set":        mutate(base, func(b []byte) []byte { b[3] |= 0x05; return b }),
		"label 64":         append(append(append([]byte(nil), plainb[:12]...), 64), make([]byte, 70)...),
		"name of 256":      long(62),
		"name of 255":      long(61),
		"bad ECS option":   badECSb,
		"binary label":     append(append([]byte(nil), plainb[:12]...), 3, 'a', '.', 0xff, 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0, 0, 1, 0, 1),
	}
	for what, p := range packets {
		for _, c := range wireClients[:4] {
			checkSamePacket(t, s, snap, p, c, what)
		}
	}
	if _, _, ok := s.fastAnswer(snap, base, 0, nil); !ok {
		t.Error("the base packet is not served by the fast path")
	}
}

// TestUDPWildcardListener: a socket bound to every address answers from the address the
// query was sent to (a client's socket connected to that address sees no other).
func TestUDPWildcardListener(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "0.0.0.0:0"}}})
	_, port, _ := net.SplitHostPort(s.Addrs()[0].String())
	for _, host := range []string{"127.0.0.1", "127.0.0.2"} {
		r := query(t, "udp", net.JoinHostPort(host, port), "web.shop.fed.svc.example.com.", dns.TypeA, 0)
		if len(r.Answer) != 2 {
			t.Errorf("via %s: %v", host, r.Answer)
		}
	}
	if l, err := net.ListenPacket("udp6", "[::1]:0"); err == nil {
		l.Close()
		s6 := start(t, Config{Listeners: []Listener{{Addr: "[::]:0"}}})
		_, port, _ := net.SplitHostPort(s6.Addrs()[0].String())
		for _, host := range []string{"::1", "127.0.0.1"} {
			r := query(t, "udp", net.JoinHostPort(host, port), "web.shop.fed.svc.example.com.", dns.TypeA, 0)
			if len(r.Answer) != 2 {
				t.Errorf("via %s: %v", host, r.Answer)
			}
		}
	}
}

// TestUDPMetricsAndShortNames: the UDP path counts responses and their bytes, and answers
// short names per cluster, over the network.
func TestUDPMetricsAndShortNames(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0", Cluster: "c1"}, {Addr: "127.0.0.1:0"}}})
	var sent int
	for i, a := range s.Addrs() {
		r := query(t, "udp", a.String(), "web.shop.fed.", dns.TypeA, 1232)
		want := "web.shop.fed. 180 IN CNAME web.shop.fed.svc.example.com."
		if i == 0 {
			want = "web.shop.fed. 180 IN A 10.96.0.10"
		}
		if got := rrs(r.Answer); len(got) == 0 || got[0] != want {
			t.Errorf("listener %d: %v, want %s first", i, got, want)
		}
		b, _ := r.Pack()
		sent += len(b)
	}
	// The server counts a response after sending it: the client may read it first.
	var n, b float64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if n, b = value(s.metrics.responsesUDP), value(s.metrics.bytesUDP); n == 2 {
			break
		}
	}
	if n != 2 || b != float64(sent) {
		t.Errorf("metrics: %v responses, %v bytes; want 2 and %d", n, b, sent)
	}
}

// TestFastPathAllocations: the fast path allocates nothing.
func TestFastPathAllocations(t *testing.T) {
	s := generatedServer(t)
	q := new(dns.Msg)
	q.SetQuestion("svc01.ns1.fed.svc.r1.example.com.", dns.TypeA)
	q.SetEdns0(1232, true)
	p, _ := q.Pack()
	out := make([]byte, 0, dns.MaxMsgSize)
	slip := make([]byte, 0, 512)
	src := netip.MustParseAddr("192.0.2.1")
	if n := testing.AllocsPerRun(1000, func() {
		if b, _ := s.handleUDP(p, src, 0, "", true, out[:0], &slip, time.Now); b == nil {
			t.Fatal("no response")
		}
	}); n != 0 {
		t.Errorf("%v allocations per query", n)
	}
}

// FuzzFastPath: for any packet the fast path answers, its response is the slow path's.
func FuzzFastPath(f *testing.F) {
	s := generatedServer(f)
	snap := s.snap.Load()
	for _, name := range []string{"svc00.ns0.fed.svc.example.com.", "SVC11.ns2.fed.svc.r1.example.com.", "svc01.ns1.fed.", "nope.example.com.", "example.org."} {
		for _, v := range []int{0, 1, 2, 7} {
			q := new(dns.Msg)
			q.SetQuestion(name, dns.TypeA)
			ednsVariants[v].opt(q)
			b, _ := q.Pack()
			f.Add(b, uint8(v))
		}
	}
	f.Fuzz(func(t *testing.T, p []byte, client uint8) {
		if len(p) > dns.MaxMsgSize {
			return
		}
		c := wireClients[int(client)%len(wireClients)]
		if len(p) >= 2 {
			binary.BigEndian.PutUint16(p, 0x1234)
		}
		checkSamePacket(t, s, snap, p, c, fmt.Sprintf("%x", p))
	})
}

// TestConcurrentUpdatesUDP: responses served while snapshots are swapped are each one
// snapshot's (run with -race).
func TestConcurrentUpdatesUDP(t *testing.T) {
	s := generatedServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := s.Update(generatedServices()); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	q := new(dns.Msg)
	q.SetQuestion("svc01.ns1.fed.", dns.TypeA)
	p, _ := q.Pack()
	out := make([]byte, 0, dns.MaxMsgSize)
	var slip []byte
	var first []byte
	for i := range 2000 {
		b, _ := s.handleUDP(p, netip.MustParseAddr("10.3.0.1"), 0, "", false, out[:0], &slip, time.Now)
		if i == 0 {
			first = append([]byte(nil), b...)
		}
		// The SOA serial is not in this answer: every snapshot answers the same bytes.
		if !bytes.Equal(b, first) {
			t.Fatalf("answer %d differs:\n%s\nfirst:\n%s", i, unpacked(b), unpacked(first))
		}
	}
}
