package server

import (
	"context"
	"fmt"
	"net"
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

// nullWriter is a dns.ResponseWriter that discards what it is given, from a UDP client.
type nullWriter struct{ remote *net.UDPAddr }

func (w *nullWriter) LocalAddr() net.Addr         { return &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53} }
func (w *nullWriter) RemoteAddr() net.Addr        { return w.remote }
func (w *nullWriter) WriteMsg(m *dns.Msg) error   { _, err := m.Pack(); return err }
func (w *nullWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nullWriter) Close() error                { return nil }
func (w *nullWriter) TsigStatus() error           { return nil }
func (w *nullWriter) TsigTimersOnly(bool)         {}
func (w *nullWriter) Hijack()                     {}

// BenchmarkServeRRL measures the cost of response rate limiting on the UDP path (answer,
// pack, RRL decision, write), with RRL off and on. "on" has a limit no client reaches, so
// every response is sent and the difference is the bookkeeping alone: from one client
// prefix, and from 4096 prefixes in turn. hack/bench-dns.sh measures the same in QPS under
// dnsperf, and the limit itself.
func BenchmarkServeRRL(b *testing.B) {
	q := new(dns.Msg)
	q.SetQuestion("svc0500.bench.fed.svc.region1.fed.example.com.", dns.TypeA)
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
			h := &handler{s: s}
			writers := make([]*nullWriter, c.prefixes)
			for i := range writers {
				writers[i] = &nullWriter{remote: &net.UDPAddr{IP: net.IPv4(10, byte(i>>8), byte(i), 7), Port: 5353}}
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					h.ServeDNS(writers[i%len(writers)], q)
					i++
				}
			})
			if n := value(s.metrics.limitedDrop) + value(s.metrics.limitedSlip); n > 0 {
				b.Fatalf("%v responses limited", n)
			}
		})
	}
}
