package server

import (
	"testing"

	"github.com/miekg/dns"
)

// TestQueriesAreCountedByAnswer: every query counts once in strait_dns_queries_total under
// what answered it, on the UDP fast path, the slow path and TCP alike, and the answers that
// moved up the hierarchy count as failovers.
func TestQueriesAreCountedByAnswer(t *testing.T) {
	s := start(t, Config{Listeners: []Listener{{Addr: "127.0.0.1:0"}, {Addr: "127.0.0.1:0", Cluster: "c2"}}})
	shared, c2 := s.Addrs()[0].String(), s.Addrs()[1].String()
	const web = "web.shop.fed.svc."
	for _, q := range []struct {
		net, addr, name string
		qtype           uint16
		edns            int
	}{
		{"udp", shared, web + "example.com.", dns.TypeA, 0},
		{"udp", shared, web + "east-a.east.example.com.", dns.TypeA, 1232},
		// east-b's only shard is unhealthy: its name is a CNAME to east.
		{"udp", shared, web + "east-b.east.example.com.", dns.TypeA, 0},
		{"tcp", shared, web + "east-b.east.example.com.", dns.TypeA, 0},
		{"udp", shared, web + "east-b.east.example.com.", dns.TypeCNAME, 0},
		// From c2, whose shard is unhealthy, the short name goes to its zone, then east.
		{"udp", c2, "web.shop.fed.", dns.TypeA, 0},
		{"udp", shared, "nothing.example.com.", dns.TypeA, 0},
		{"udp", shared, "www.example.org.", dns.TypeA, 0},
		{"udp", shared, web + "example.com.", dns.TypeTXT, 0},
		{"udp", shared, "example.com.", dns.TypeSOA, 0},
	} {
		query(t, q.net, q.addr, q.name, q.qtype, q.edns)
	}
	// A query with an EDNS version the server does not speak (slow path).
	m := new(dns.Msg)
	m.SetQuestion(web+"example.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	m.IsEdns0().SetVersion(1)
	if r, err := dns.Exchange(m, shared); err != nil || r.Rcode != dns.RcodeBadVers {
		t.Fatalf("EDNS version 1: %v %v", r, err)
	}

	want := map[[2]string]float64{
		{"NOERROR", "global"}: 1, {"NOERROR", "zone"}: 1, {"NOERROR", "region"}: 3, {"NOERROR", "cname"}: 1,
		{"NXDOMAIN", "nxdomain"}: 1, {"REFUSED", "refused"}: 1, {"NOERROR", "nodata"}: 1, {"NOERROR", "apex"}: 1,
		{"BADVERS", "none"}: 1,
	}
	for k := range numQueryKinds {
		rcode, answer := k.labels()
		if got := value(s.metrics.queries[k]); got != want[[2]string{rcode, answer}] {
			t.Errorf(`strait_dns_queries_total{rcode=%q,answer=%q} = %v, want %v`, rcode, answer, got, want[[2]string{rcode, answer}])
		}
	}
	if got := value(s.metrics.failovers); got != 4 {
		t.Errorf("strait_dns_failover_answers_total = %v, want 4 (east-b over UDP, TCP, its CNAME, c2's short name)", got)
	}
	if got := value(s.metrics.zoneServices); got != 2 {
		t.Errorf("strait_dns_zone_services = %v, want 2", got)
	}
}
