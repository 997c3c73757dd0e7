package zone

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

// walkthroughService is the nginx service of the federation (v1) walkthrough: three healthy zones
// and one empty zone in us-central1, two healthy zones and an empty one in asia-east1, and
// europe-west1 with no healthy shard at all.
func walkthroughService() Service {
	return Service{
		Namespace: "mynamespace", Name: "nginx", Federation: "myfederation",
		Shards: []Shard{
			{Cluster: "us-a", Region: "us-central1", Zone: "us-central1-a", Healthy: true, Addresses: addrs("104.197.247.191"), LocalAddresses: addrs("10.0.0.10")},
			{Cluster: "us-b", Region: "us-central1", Zone: "us-central1-b", Healthy: true, Addresses: addrs("104.197.244.180")},
			{Cluster: "us-c", Region: "us-central1", Zone: "us-central1-c", Healthy: true, Addresses: addrs("104.197.245.170")},
			{Cluster: "us-f", Region: "us-central1", Zone: "us-central1-f", Healthy: false, Addresses: addrs("104.197.1.1")},
			{Cluster: "asia-a", Region: "asia-east1", Zone: "asia-east1-a", Healthy: true, Addresses: addrs("130.211.57.243")},
			{Cluster: "asia-b", Region: "asia-east1", Zone: "asia-east1-b"},
			{Cluster: "asia-c", Region: "asia-east1", Zone: "asia-east1-c", Healthy: true, Addresses: addrs("130.211.56.221", "2001:db8::1")},
			{Cluster: "eu-d", Region: "europe-west1", Zone: "europe-west1-d", Healthy: false, Addresses: addrs("104.199.136.89")},
		},
	}
}

func walkthroughZone(t *testing.T, extra ...Service) *Zone {
	t.Helper()
	z, err := Build(Config{Domain: "Example.com.", Nameservers: []Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.53")}}},
		append([]Service{walkthroughService()}, extra...), 7)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

func strs(rs []Record) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

func TestRecordsReproduceTheWalkthroughListing(t *testing.T) {
	z := walkthroughZone(t)
	const p = "nginx.mynamespace.myfederation.svc."
	want := []string{
		p + "asia-east1-a.asia-east1.example.com.	180	IN	A	130.211.57.243",
		p + "asia-east1-b.asia-east1.example.com.	180	IN	CNAME	" + p + "asia-east1.example.com.",
		p + "asia-east1-c.asia-east1.example.com.	180	IN	A	130.211.56.221",
		p + "asia-east1-c.asia-east1.example.com.	180	IN	AAAA	2001:db8::1",
		p + "asia-east1.example.com.	180	IN	A	130.211.56.221",
		p + "asia-east1.example.com.	180	IN	A	130.211.57.243",
		p + "asia-east1.example.com.	180	IN	AAAA	2001:db8::1",
		p + "europe-west1-d.europe-west1.example.com.	180	IN	CNAME	" + p + "europe-west1.example.com.",
		p + "europe-west1.example.com.	180	IN	CNAME	" + p + "example.com.",
		p + "example.com.	180	IN	A	104.197.244.180",
		p + "example.com.	180	IN	A	104.197.245.170",
		p + "example.com.	180	IN	A	104.197.247.191",
		p + "example.com.	180	IN	A	130.211.56.221",
		p + "example.com.	180	IN	A	130.211.57.243",
		p + "example.com.	180	IN	AAAA	2001:db8::1",
		p + "us-central1-a.us-central1.example.com.	180	IN	A	104.197.247.191",
		p + "us-central1-b.us-central1.example.com.	180	IN	A	104.197.244.180",
		p + "us-central1-c.us-central1.example.com.	180	IN	A	104.197.245.170",
		p + "us-central1-f.us-central1.example.com.	180	IN	CNAME	" + p + "us-central1.example.com.",
		p + "us-central1.example.com.	180	IN	A	104.197.244.180",
		p + "us-central1.example.com.	180	IN	A	104.197.245.170",
		p + "us-central1.example.com.	180	IN	A	104.197.247.191",
	}
	if got := strs(z.Records()); !slices.Equal(got, want) {
		t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, r := range z.Records() {
		if r.Service != (ServiceKey{Namespace: "mynamespace", Name: "nginx", Federation: "myfederation"}) {
			t.Errorf("record %s has service %v", r, r.Service)
		}
	}
}

func TestAnswer(t *testing.T) {
	other := Service{Namespace: "ns", Name: "db", Federation: "myfederation", TTL: 30 * time.Second, Shards: []Shard{
		{Cluster: "us-a", Region: "us-central1", Zone: "us-central1-a", Addresses: addrs("192.0.2.1")},
		{Cluster: "solo", Addresses: addrs("192.0.2.9"), Healthy: false},
	}}
	down := Service{Namespace: "ns", Name: "down", Federation: "other", Shards: []Shard{
		{Cluster: "us-b", Region: "us-central1", Zone: "us-central1-b"},
	}}
	z := walkthroughZone(t, other, down)
	const (
		p      = "nginx.mynamespace.myfederation.svc."
		soa    = "example.com.	30	IN	SOA	ns1.example.com. hostmaster.example.com. 7 3600 600 86400 30"
		fedSOA = "myfederation.	30	IN	SOA	ns1.example.com. hostmaster.example.com. 7 3600 600 86400 30"
	)
	usCentral := []string{
		p + "us-central1.example.com.	180	IN	A	104.197.244.180",
		p + "us-central1.example.com.	180	IN	A	104.197.245.170",
		p + "us-central1.example.com.	180	IN	A	104.197.247.191",
	}
	global := []string{
		p + "example.com.	180	IN	A	104.197.244.180",
		p + "example.com.	180	IN	A	104.197.245.170",
		p + "example.com.	180	IN	A	104.197.247.191",
		p + "example.com.	180	IN	A	130.211.56.221",
		p + "example.com.	180	IN	A	130.211.57.243",
	}
	cases := []struct {
		name      string
		q         string
		qtype     Type
		from      Location
		rcode     Rcode
		answer    []string
		authority []string
		extra     []string
	}{
		{name: "zone with a healthy shard", q: p + "us-central1-a.us-central1.example.com.", qtype: TypeA,
			answer: []string{p + "us-central1-a.us-central1.example.com.	180	IN	A	104.197.247.191"}},
		{name: "case and missing dot do not matter", q: "NGINX.mynamespace.myfederation.svc.US-central1-a.us-central1.example.COM", qtype: TypeA,
			answer: []string{p + "us-central1-a.us-central1.example.com.	180	IN	A	104.197.247.191"}},
		{name: "zone without healthy shard is a CNAME to its region, followed", q: p + "us-central1-f.us-central1.example.com.", qtype: TypeA,
			answer: append([]string{p + "us-central1-f.us-central1.example.com.	180	IN	CNAME	" + p + "us-central1.example.com."}, usCentral...)},
		{name: "CNAME question is not followed", q: p + "us-central1-f.us-central1.example.com.", qtype: TypeCNAME,
			answer: []string{p + "us-central1-f.us-central1.example.com.	180	IN	CNAME	" + p + "us-central1.example.com."}},
		{name: "empty region chains to global", q: p + "europe-west1-d.europe-west1.example.com.", qtype: TypeA,
			answer: append([]string{
				p + "europe-west1-d.europe-west1.example.com.	180	IN	CNAME	" + p + "europe-west1.example.com.",
				p + "europe-west1.example.com.	180	IN	CNAME	" + p + "example.com.",
			}, global...)},
		{name: "AAAA at a level with IPv6", q: p + "asia-east1.example.com.", qtype: TypeAAAA,
			answer: []string{p + "asia-east1.example.com.	180	IN	AAAA	2001:db8::1"}},
		{name: "AAAA at a level with only IPv4 is NODATA, not a CNAME", q: p + "us-central1.example.com.", qtype: TypeAAAA,
			authority: []string{soa}},
		{name: "TXT at a service name is NODATA", q: p + "example.com.", qtype: TypeTXT, authority: []string{soa}},
		{name: "ANY at a level lists A and AAAA", q: p + "asia-east1-c.asia-east1.example.com.", qtype: TypeANY,
			answer: []string{
				p + "asia-east1-c.asia-east1.example.com.	180	IN	A	130.211.56.221",
				p + "asia-east1-c.asia-east1.example.com.	180	IN	AAAA	2001:db8::1",
			}},
		{name: "unknown zone of the service is NXDOMAIN", q: p + "us-central1-z.us-central1.example.com.", qtype: TypeA,
			rcode: RcodeNameError, authority: []string{soa}},
		{name: "unknown service is NXDOMAIN", q: "nope.mynamespace.myfederation.svc.example.com.", qtype: TypeA,
			rcode: RcodeNameError, authority: []string{soa}},
		{name: "empty non-terminal is NODATA", q: "mynamespace.myfederation.svc.example.com.", qtype: TypeA, authority: []string{soa}},
		{name: "empty non-terminal of a region", q: "us-central1.example.com.", qtype: TypeA, authority: []string{soa}},
		{name: "global name without healthy shard is NODATA", q: "db.ns.myfederation.svc.example.com.", qtype: TypeA,
			authority: []string{soa}},
		{name: "zone and region without healthy shard chain to a NODATA global name, per-service TTL",
			q: "db.ns.myfederation.svc.us-central1-a.us-central1.example.com.", qtype: TypeA,
			answer: []string{
				"db.ns.myfederation.svc.us-central1-a.us-central1.example.com.	30	IN	CNAME	db.ns.myfederation.svc.us-central1.example.com.",
				"db.ns.myfederation.svc.us-central1.example.com.	30	IN	CNAME	db.ns.myfederation.svc.example.com.",
			},
			authority: []string{soa}},
		{name: "SOA at the apex", q: "example.com.", qtype: TypeSOA, answer: []string{soa}},
		{name: "NS at the apex with glue", q: "example.com.", qtype: TypeNS,
			answer: []string{"example.com.	180	IN	NS	ns1.example.com."},
			extra:  []string{"ns1.example.com.	180	IN	A	127.0.0.53"}},
		{name: "A at the apex is NODATA", q: "example.com.", qtype: TypeA, authority: []string{soa}},
		{name: "nameserver address", q: "ns1.example.com.", qtype: TypeA, answer: []string{"ns1.example.com.	180	IN	A	127.0.0.53"}},
		{name: "outside the zones is REFUSED", q: "example.org.", qtype: TypeA, rcode: RcodeRefused},
		{name: "a sibling suffix is outside", q: "badexample.com.", qtype: TypeA, rcode: RcodeRefused},
		{name: "an escaped dot is not a label boundary", q: `x\.example.com.`, qtype: TypeA, rcode: RcodeRefused},
		{name: "root", q: ".", qtype: TypeNS, rcode: RcodeRefused},

		{name: "short name from a cluster with a healthy local shard: its local addresses",
			q: "nginx.mynamespace.myfederation.", qtype: TypeA, from: Location{Cluster: "us-a"},
			answer: []string{"nginx.mynamespace.myfederation.	180	IN	A	10.0.0.10"}},
		{name: "short name, healthy local shard without local addresses: its ingress",
			q: "nginx.mynamespace.myfederation.", qtype: TypeA, from: Location{Cluster: "us-b", Region: "us-central1", Zone: "us-central1-b"},
			answer: []string{"nginx.mynamespace.myfederation.	180	IN	A	104.197.244.180"}},
		{name: "short name from an unhealthy shard's cluster: CNAME to its zone, chained",
			q: "nginx.mynamespace.myfederation.", qtype: TypeA, from: Location{Cluster: "us-f", Region: "us-central1", Zone: "us-central1-f"},
			answer: append([]string{
				"nginx.mynamespace.myfederation.	180	IN	CNAME	" + p + "us-central1-f.us-central1.example.com.",
				p + "us-central1-f.us-central1.example.com.	180	IN	CNAME	" + p + "us-central1.example.com.",
			}, usCentral...)},
		{name: "short name from a cluster whose zone has no shard: CNAME to the region",
			q: "nginx.mynamespace.myfederation.", qtype: TypeA, from: Location{Cluster: "new", Region: "us-central1", Zone: "us-central1-q"},
			answer: append([]string{"nginx.mynamespace.myfederation.	180	IN	CNAME	" + p + "us-central1.example.com."}, usCentral...)},
		{name: "short name from an unknown client: CNAME to global",
			q: "nginx.mynamespace.myfederation.", qtype: TypeA,
			answer: append([]string{"nginx.mynamespace.myfederation.	180	IN	CNAME	" + p + "example.com."}, global...)},
		{name: "short name, other type from a healthy local cluster: NODATA with the federation SOA",
			q: "nginx.mynamespace.myfederation.", qtype: TypeTXT, from: Location{Cluster: "us-a"}, authority: []string{fedSOA}},
		{name: "short name unknown: NXDOMAIN with the federation SOA",
			q: "nope.mynamespace.myfederation.", qtype: TypeA, from: Location{Cluster: "us-a"}, rcode: RcodeNameError, authority: []string{fedSOA}},
		{name: "federation apex SOA", q: "myfederation.", qtype: TypeSOA, answer: []string{fedSOA}},
		{name: "federation apex NS", q: "myfederation.", qtype: TypeNS,
			answer: []string{"myfederation.	180	IN	NS	ns1.example.com."},
			extra:  []string{"ns1.example.com.	180	IN	A	127.0.0.53"}},
		{name: "short name of a federation where nothing is healthy ends in NODATA",
			q: "down.ns.other.", qtype: TypeA, from: Location{Cluster: "us-b", Region: "us-central1", Zone: "us-central1-b"},
			answer: []string{
				"down.ns.other.	180	IN	CNAME	down.ns.other.svc.us-central1-b.us-central1.example.com.",
				"down.ns.other.svc.us-central1-b.us-central1.example.com.	180	IN	CNAME	down.ns.other.svc.us-central1.example.com.",
				"down.ns.other.svc.us-central1.example.com.	180	IN	CNAME	down.ns.other.svc.example.com.",
			},
			authority: []string{soa}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := z.Answer(c.q, c.qtype, c.from)
			if res.Rcode != c.rcode {
				t.Errorf("rcode %d, want %d", res.Rcode, c.rcode)
			}
			if res.Authoritative != (c.rcode != RcodeRefused) {
				t.Errorf("authoritative %v", res.Authoritative)
			}
			for _, s := range []struct {
				what      string
				got, want []string
			}{{"answer", strs(res.Answer), c.answer}, {"authority", strs(res.Authority), c.authority}, {"additional", strs(res.Additional), c.extra}} {
				if !slices.Equal(s.got, s.want) {
					t.Errorf("%s:\n%s\nwant:\n%s", s.what, strings.Join(s.got, "\n"), strings.Join(s.want, "\n"))
				}
			}
		})
	}
}

func TestConfiguredFederationWithoutServices(t *testing.T) {
	z, err := Build(Config{Domain: "example.com", Federations: []string{"fed"}}, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	res := z.Answer("a.b.fed.", TypeA, Location{})
	if res.Rcode != RcodeNameError || len(res.Authority) != 1 || res.Authority[0].Name != "fed." {
		t.Errorf("got %+v", res)
	}
	if got := z.Answer("example.com.", TypeNS, Location{}); len(got.Answer) != 1 || got.Answer[0].Target != "ns.example.com." || len(got.Additional) != 0 {
		t.Errorf("default nameserver: %+v", got)
	}
}

func TestLocate(t *testing.T) {
	z := walkthroughZone(t)
	if l, ok := z.Locate("US-F"); !ok || l != (Location{Cluster: "us-f", Region: "us-central1", Zone: "us-central1-f"}) {
		t.Errorf("Locate: %v %v", l, ok)
	}
	if _, ok := z.Locate("nope"); ok {
		t.Error("unknown cluster located")
	}
}

func TestValidation(t *testing.T) {
	long := strings.Repeat("a", 64)
	l60 := strings.Repeat("b", 60)
	ok := func(mut func(*Service)) []Service {
		s := walkthroughService()
		s.Shards = slices.Clone(s.Shards)
		mut(&s)
		return []Service{s}
	}
	cases := []struct {
		name     string
		cfg      Config
		services []Service
		want     string // substring of the error; "" means valid
	}{
		{name: "valid", cfg: Config{Domain: "example.com"}, services: ok(func(*Service) {})},
		{name: "empty domain", cfg: Config{Domain: ""}, want: `invalid domain "": empty`},
		{name: "domain with underscore", cfg: Config{Domain: "ex_ample.com"}, want: `invalid domain "ex_ample.com": label "ex_ample" is not a DNS label`},
		{name: "domain with empty label", cfg: Config{Domain: "example..com"}, want: `invalid domain "example..com": label is empty`},
		{name: "domain label too long", cfg: Config{Domain: long + ".com"}, want: "is 64 characters; a DNS label has at most 63"},
		{name: "domain too long", cfg: Config{Domain: strings.Repeat(l60+".", 5) + "com"}, want: "308 characters; a DNS name has at most 253"},
		{name: "domain label with leading dash", cfg: Config{Domain: "-x.com"}, want: `label "-x" is not a DNS label`},
		{name: "negative TTL", cfg: Config{Domain: "example.com", DefaultTTL: -time.Second}, want: "default TTL -1s is out of range"},
		{name: "fractional TTL", cfg: Config{Domain: "example.com", DefaultTTL: 1500 * time.Millisecond}, want: "not a whole number of seconds"},
		{name: "federation is the domain's TLD", cfg: Config{Domain: "example.com", Federations: []string{"com"}}, want: `federation name "com" is a suffix of the domain`},
		{name: "service name too long", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Name = long }),
			want: `service myfederation/mynamespace/` + long + `: service name "` + long + `" is 64 characters; a DNS label has at most 63`},
		{name: "region too long", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[0].Region = long }),
			want: `cluster us-a: region "` + long + `" is 64 characters`},
		{name: "zone invalid", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[0].Zone = "a.b" }),
			want: `zone "a.b" is not a DNS label`},
		{name: "zone name over 253", cfg: Config{Domain: l60 + "." + l60 + ".com"}, services: ok(func(s *Service) {
			s.Name, s.Namespace = l60, l60
			s.Shards[0].Zone, s.Shards[0].Region = "zone", "region"
		}), want: "characters; a DNS name has at most 253"},
		{name: "zone without region", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[0].Region = "" }),
			want: `zone "us-central1-a" without a region`},
		{name: "invalid address", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[0].Addresses = []netip.Addr{{}} }),
			want: "is not a usable IP address"},
		{name: "unspecified address", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[0].Addresses = addrs("0.0.0.0") }),
			want: `address "0.0.0.0" is not a usable IP address`},
		{name: "duplicate cluster", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.Shards[1].Cluster = "us-a" }),
			want: `cluster "us-a" has two shards`},
		{name: "service TTL", cfg: Config{Domain: "example.com"}, services: ok(func(s *Service) { s.TTL = time.Millisecond }),
			want: "TTL 1ms is out of range"},
		{name: "duplicate service", cfg: Config{Domain: "example.com"}, services: append(ok(func(*Service) {}), ok(func(*Service) {})...),
			want: "service myfederation/mynamespace/nginx is listed twice"},
		{name: "cluster in two locations", cfg: Config{Domain: "example.com"}, services: append(ok(func(*Service) {}), ok(func(s *Service) {
			s.Name = "other"
			s.Shards[0].Zone = "us-central1-b"
		})...), want: `cluster us-a has two locations`},
		{name: "federation overlapping domain", cfg: Config{Domain: "myfederation"}, services: ok(func(*Service) {}),
			want: `federation name "myfederation" is a suffix of the domain`},
		{name: "two invalid services are both named", cfg: Config{Domain: "example.com"}, services: append(
			ok(func(s *Service) { s.Name = "Bad_1" }), ok(func(s *Service) { s.Name = "bad_2" })...),
			want: `service name "Bad_1" is not a DNS label: only letters, digits and '-' are allowed, and it must start and end with a letter or digit` + "\n" + `service myfederation/mynamespace/bad_2`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(c.cfg, c.services, 1)
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to contain %q", err, c.want)
			}
			if len(c.services) == 1 {
				if verr := c.cfg.ValidateService(c.services[0]); verr == nil {
					t.Errorf("ValidateService accepted what Build rejects")
				}
			}
		})
	}
}

func TestNameserverCollision(t *testing.T) {
	_, err := Build(Config{Domain: "example.com", Nameservers: []Nameserver{{Name: "nginx.mynamespace.myfederation.svc.example.com", Addresses: addrs("192.0.2.53")}}},
		[]Service{walkthroughService()}, 1)
	if err == nil || !strings.Contains(err.Error(), "already used by a nameserver") {
		t.Fatalf("error %v", err)
	}
}

func TestZoneFile(t *testing.T) {
	z, err := Build(Config{Domain: "example.com", Nameservers: []Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.53")}}},
		[]Service{{Namespace: "n", Name: "s", Federation: "f", Shards: []Shard{{Cluster: "c", Region: "r", Healthy: true, Addresses: addrs("192.0.2.1")}}}}, 9)
	if err != nil {
		t.Fatal(err)
	}
	want := "$ORIGIN example.com.\n" +
		"example.com.\t30\tIN\tSOA\tns1.example.com. hostmaster.example.com. 9 3600 600 86400 30\n" +
		"example.com.\t180\tIN\tNS\tns1.example.com.\n" +
		"ns1.example.com.\t180\tIN\tA\t127.0.0.53\n" +
		"s.n.f.svc.example.com.\t180\tIN\tA\t192.0.2.1\n" +
		"s.n.f.svc.r.example.com.\t180\tIN\tA\t192.0.2.1\n"
	if got := z.ZoneFile(); got != want {
		t.Errorf("zone file:\n%s\nwant:\n%s", got, want)
	}
}

func TestIsServiceName(t *testing.T) {
	z := walkthroughZone(t)
	for _, r := range z.Records() {
		if !IsServiceName("example.com", r.Name) {
			t.Errorf("record name %s is not a service name", r.Name)
		}
	}
	for name, want := range map[string]bool{
		"nginx.mynamespace.myfederation.svc.example.com.":                           true,
		"nginx.mynamespace.myfederation.svc.us-central1.example.com":                true,
		"NGINX.mynamespace.myfederation.svc.us-central1-a.us-central1.Example.com.": true,
		"www.example.com.": false,
		"example.com.":     false,
		"svc.example.com.": false,
		"mynamespace.myfederation.svc.example.com.":               false, // an empty non-terminal
		"nginx.mynamespace.myfederation.svc.a.b.c.example.com.":   false,
		"nginx.mynamespace.myfederation.other.example.com.":       false,
		"_strait.nginx.mynamespace.myfederation.svc.example.com.": false,
		"nginx.mynamespace.myfederation.svc.example.org.":         false,
		"nginx.mynamespace.myfederation.svc.notexample.com.":      false,
		"nginx.mynamespace.myfederation.":                         false, // short names are not published
	} {
		if got := IsServiceName("example.com.", name); got != want {
			t.Errorf("IsServiceName(%s) = %v, want %v", name, got, want)
		}
	}
}

// TestNamesKnowTheirZone: Answer takes the zone of a name that exists from its node; it must
// be the zone apexOf finds, the longest served suffix (zones do not nest).
func TestNamesKnowTheirZone(t *testing.T) {
	z, err := Build(Config{Domain: "example.com", Federations: []string{"other"},
		Nameservers: []Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.53")}, {Name: "ns.example.net"}}},
		[]Service{walkthroughService(), {Namespace: "b", Name: "a", Federation: "x", Shards: []Shard{{Cluster: "c", Region: "r", Zone: "z", Healthy: true, Addresses: addrs("192.0.2.1")}}}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, nd := range z.names {
		if a := z.apexOf(name); a != nd.zone {
			t.Errorf("%s: node zone %s, apexOf %v", name, nd.zone.name, a)
		}
	}
}

// TestClientDependentAndApexes: only the short names depend on the client.
func TestClientDependentAndApexes(t *testing.T) {
	z := walkthroughZone(t)
	for _, name := range z.Names() {
		want := false
		for _, a := range z.Apexes() {
			if a != z.Domain() && strings.HasSuffix(name, "."+a) && z.names[name].short != nil {
				want = true
			}
		}
		if got := z.ClientDependent(name); got != want {
			t.Errorf("%s: ClientDependent %v", name, got)
		}
	}
	if got := z.Apexes(); len(got) != 2 || got[0] != "example.com." {
		t.Errorf("apexes %v", got)
	}
}

// TestAnswerKinds: what strait dns counts per query, for each way a question is answered.
func TestAnswerKinds(t *testing.T) {
	z := walkthroughZone(t)
	const p = "nginx.mynamespace.myfederation.svc."
	for _, tc := range []struct {
		name     string
		qtype    Type
		from     Location
		kind     AnswerKind
		failover bool
	}{
		{p + "us-central1-a.us-central1.example.com.", TypeA, Location{}, AnswerZone, false},
		{p + "us-central1.example.com.", TypeA, Location{}, AnswerRegion, false},
		{p + "example.com.", TypeA, Location{}, AnswerGlobal, false},
		// A zone without a healthy shard fails over to its region.
		{p + "us-central1-f.us-central1.example.com.", TypeA, Location{}, AnswerRegion, true},
		// europe-west1 has no healthy shard: zone -> region -> global.
		{p + "europe-west1-d.europe-west1.example.com.", TypeA, Location{}, AnswerGlobal, true},
		{p + "us-central1-f.us-central1.example.com.", TypeCNAME, Location{}, AnswerCNAME, true},
		{p + "example.com.", TypeTXT, Location{}, AnswerNoData, false},
		{"nothing.example.com.", TypeA, Location{}, AnswerNXDomain, false},
		{"www.example.org.", TypeA, Location{}, AnswerRefused, false},
		{"example.com.", TypeSOA, Location{}, AnswerApex, false},
		{"ns1.example.com.", TypeA, Location{}, AnswerApex, false},
		// Short names: the asking cluster's own healthy shard; a CNAME to its zone when its
		// shard is not healthy (a failover) or when it has none (not one).
		{"nginx.mynamespace.myfederation.", TypeA, Location{Cluster: "us-a", Region: "us-central1", Zone: "us-central1-a"}, AnswerLocal, false},
		{"nginx.mynamespace.myfederation.", TypeA, Location{Cluster: "us-f", Region: "us-central1", Zone: "us-central1-f"}, AnswerRegion, true},
		{"nginx.mynamespace.myfederation.", TypeA, Location{Cluster: "other", Region: "us-central1"}, AnswerRegion, false},
		{"nginx.mynamespace.myfederation.", TypeA, Location{}, AnswerGlobal, false},
	} {
		res := z.Answer(tc.name, tc.qtype, tc.from)
		if res.Kind != tc.kind || res.Failover != tc.failover {
			t.Errorf("%s %s from %q: kind %s, failover %v; want %s, %v", tc.name, tc.qtype, tc.from.Cluster, res.Kind, res.Failover, tc.kind, tc.failover)
		}
	}
}
