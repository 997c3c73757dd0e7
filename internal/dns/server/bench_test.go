package server

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// benchServices is the benchmark's federation: n services, each with a shard in four
// clusters over two regions and three zones (the acceptance lab).
func benchServices(n int) []zone.Service {
	locs := []zone.Shard{
		{Cluster: "cluster01", Region: "region1", Zone: "zone-a"},
		{Cluster: "cluster02", Region: "region1", Zone: "zone-b"},
		{Cluster: "cluster03", Region: "region2", Zone: "zone-c"},
		{Cluster: "cluster04", Region: "region2", Zone: "zone-c"},
	}
	var out []zone.Service
	for i := range n {
		s := zone.Service{Namespace: "bench", Name: fmt.Sprintf("svc%04d", i), Federation: "fed"}
		for j, l := range locs {
			l.Healthy = true
			l.Addresses = []netip.Addr{netip.AddrFrom4([4]byte{10, byte(j), byte(i / 256), byte(i % 256)})}
			s.Shards = append(s.Shards, l)
		}
		out = append(out, s)
	}
	return out
}

// BenchmarkFailover measures the server's part of a failover: from the call of Update with
// one zone's only shard down until a client querying that zone's name over UDP without pause
// gets the CNAME instead of the A record (and back). It reports the median and the 99th
// percentile; `make bench` (hack/bench-dns.sh) quotes them.
func BenchmarkFailover(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			s, err := New(Config{Zone: zone.Config{Domain: "fed.example.com"}, Listeners: []Listener{{Addr: "127.0.0.1:0"}}})
			if err != nil {
				b.Fatal(err)
			}
			up := benchServices(n)
			down := benchServices(n)
			down[0].Shards[0].Healthy = false
			if err := s.Update(up); err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer func() {
				cancel()
				s.Wait()
			}()
			if err := s.Start(ctx); err != nil {
				b.Fatal(err)
			}
			conn, err := dns.Dial("udp", s.Addrs()[0].String())
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			q := new(dns.Msg)
			q.SetQuestion("svc0000.bench.fed.svc.zone-a.region1.fed.example.com.", dns.TypeA)
			isCNAME := func() bool {
				q.Id = dns.Id()
				if err := conn.WriteMsg(q); err != nil {
					b.Fatal(err)
				}
				conn.SetReadDeadline(time.Now().Add(time.Second))
				r, err := conn.ReadMsg()
				if err != nil {
					b.Fatal(err)
				}
				return len(r.Answer) > 0 && r.Answer[0].Header().Rrtype == dns.TypeCNAME
			}
			var times []time.Duration
			b.ResetTimer()
			for i := range b.N {
				set, want := up, false
				if i%2 == 0 {
					set, want = down, true
				}
				start := time.Now()
				if err := s.Update(set); err != nil {
					b.Fatal(err)
				}
				for isCNAME() != want {
				}
				times = append(times, time.Since(start))
			}
			b.StopTimer()
			slices.Sort(times)
			b.ReportMetric(float64(times[len(times)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(times[len(times)*99/100].Microseconds()), "p99-µs")
		})
	}
}

// BenchmarkUpdate measures building a snapshot (the zone, and every answer packed) of n
// services, each with 4 shards: the bulk of the server's share of a failover.
func BenchmarkUpdate(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			s, err := New(Config{Zone: zone.Config{Domain: "fed.example.com"}})
			if err != nil {
				b.Fatal(err)
			}
			services := benchServices(n)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Update(services); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRespond measures the handler alone (cached answer, packing excluded).
func BenchmarkRespond(b *testing.B) {
	s, err := New(Config{Zone: zone.Config{Domain: "fed.example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Update(benchServices(1000)); err != nil {
		b.Fatal(err)
	}
	q := new(dns.Msg)
	q.SetQuestion("svc0500.bench.fed.svc.region1.fed.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		s.Respond(q, Client{UDP: true})
	}
}

// BenchmarkServeUDP measures the UDP path without the sockets: a query's bytes in, the
// response's bytes out (parse, look up, copy), RRL off; the A record of a region name and
// the CNAME chain of a short name, without and with EDNS. ns/op is the server's own share of
// a query's cost; the rest is the kernel's (BENCHMARKS.md).
func BenchmarkServeUDP(b *testing.B) {
	s, err := New(Config{Zone: zone.Config{Domain: "fed.example.com"}})
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Update(benchServices(1000)); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		q    string
		edns bool
	}{
		{"A", "svc0500.bench.fed.svc.region1.fed.example.com.", false},
		{"A/edns", "svc0500.bench.fed.svc.region1.fed.example.com.", true},
		{"short-name", "svc0500.bench.fed.", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			q := new(dns.Msg)
			q.SetQuestion(c.q, dns.TypeA)
			if c.edns {
				q.SetEdns0(1232, false)
			}
			p, err := q.Pack()
			if err != nil {
				b.Fatal(err)
			}
			out := make([]byte, 0, dns.MaxMsgSize)
			var slip []byte
			src := netip.MustParseAddr("192.0.2.1")
			b.ReportAllocs()
			for b.Loop() {
				if r, _ := s.handleUDP(p, src, 0, "", true, out[:0], &slip, time.Now); r == nil {
					b.Fatal("no response")
				}
			}
		})
	}
}

// BenchmarkServeRRL measures the cost of response rate limiting on the UDP path (query bytes
// in, response bytes out, RRL decision), with RRL off and on. "on" has a limit no client
// reaches, so every response is sent and the difference is the bookkeeping alone: from one
// client prefix, and from 4096 prefixes in turn. hack/bench-dns.sh measures the same in QPS
// under dnsperf, and the limit itself.
func BenchmarkServeRRL(b *testing.B) {
	q := new(dns.Msg)
	q.SetQuestion("svc0500.bench.fed.svc.region1.fed.example.com.", dns.TypeA)
	p, err := q.Pack()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		rrl      RRLConfig
		prefixes int
	}{
		{"rrl=off", RRLConfig{}, 1},
		{"rrl=on/prefixes=1", RRLConfig{ResponsesPerSecond: 1 << 30, BytesPerSecond: 1 << 30, Slip: 2}, 1},
		{"rrl=on/prefixes=4096", RRLConfig{ResponsesPerSecond: 1 << 30, BytesPerSecond: 1 << 30, Slip: 2}, 4096},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := New(Config{Zone: zone.Config{Domain: "fed.example.com"}, RRL: c.rrl})
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Update(benchServices(1000)); err != nil {
				b.Fatal(err)
			}
			srcs := make([]netip.Addr, c.prefixes)
			for i := range srcs {
				srcs[i] = netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 7})
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				out := make([]byte, 0, dns.MaxMsgSize)
				var slip []byte
				i := 0
				for pb.Next() {
					s.handleUDP(p, srcs[i%len(srcs)], 0, "", true, out[:0], &slip, s.clock)
					i++
				}
			})
			if n := value(s.metrics.limitedDrop) + value(s.metrics.limitedSlip); n > 0 {
				b.Fatalf("%v responses limited", n)
			}
		})
	}
}
