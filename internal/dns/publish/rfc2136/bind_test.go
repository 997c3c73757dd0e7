package rfc2136

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/dns/zone"
)

var zoneCfg = zone.Config{Domain: "fed.example.com"}

func services(eastAHealthy bool) []zone.Service {
	return []zone.Service{
		{Namespace: "shop", Name: "web", Federation: "f", TTL: 60 * time.Second, Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: eastAHealthy, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
			{Cluster: "c2", Region: "east", Zone: "east-b", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
			{Cluster: "c3", Region: "west", Zone: "west-c", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::3")}},
		}},
		{Namespace: "shop", Name: "db", Federation: "f", TTL: 60 * time.Second, Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		}},
	}
}

func records(t *testing.T, svcs []zone.Service) []zone.Record {
	t.Helper()
	rs, err := zone.Records(zoneCfg, svcs)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// testKey is the ownership key of the tests' main publisher.
var testKey = []byte("0123456789abcdef0123456789abcdef")

func newPublisher(t *testing.T, b *bindtest.Server, owner, secret string) *Publisher {
	t.Helper()
	return newKeyedPublisher(t, b, owner, secret, testKey)
}

func newKeyedPublisher(t *testing.T, b *bindtest.Server, owner, secret string, key []byte) *Publisher {
	t.Helper()
	p, err := New(Config{Server: b.Addr, Zone: b.Zone, Domain: zoneCfg.Domain, KeyName: b.KeyName, Algorithm: b.Algorithm,
		Secret: secret, Owner: owner, OwnershipKey: key, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// others are the records placed by someone else; every one must survive every update.
var others = []string{
	"www IN A 192.0.2.80",
	// At a name the publisher will want: it must be left alone (a conflict).
	"web.shop.f.svc.west.fed IN TXT \"hand-made\"",
	// Another publisher's name, with its ownership record.
	"legacy.fed IN A 192.0.2.99",
	"_strait.legacy.fed IN TXT \"heritage=strait,strait/owner=someone-else,strait/resource=f/x/legacy\"",
}

func TestPublishToBIND(t *testing.T) {
	b := bindtest.Start(t, bindtest.Options{Records: others})
	ctx := context.Background()
	p := newPublisher(t, b, "lab", b.Secret)
	const (
		p1   = "web.shop.f.svc."
		east = p1 + "east.fed.example.com."
	)
	foreign := func() {
		t.Helper()
		for _, c := range []struct{ name, qtype, want string }{
			{"www.example.com.", "A", "www.example.com. 300 IN A 192.0.2.80"},
			{p1 + "west.fed.example.com.", "TXT", p1 + `west.fed.example.com. 300 IN TXT "hand-made"`},
			{"legacy.fed.example.com.", "A", "legacy.fed.example.com. 300 IN A 192.0.2.99"},
			{"api.example.com.", "A", "api.example.com. 300 IN A 192.0.2.77"},
		} {
			if c.name == "api.example.com." && !strings.Contains(strings.Join(b.AXFR(), "\n"), "api.example.com.") {
				continue // not placed yet
			}
			if got := b.Dig(c.name, c.qtype); !slices.Equal(got, []string{c.want}) {
				t.Errorf("record placed by someone else changed: %s %s = %v", c.name, c.qtype, got)
			}
		}
	}

	// Create.
	res, err := p.Publish(ctx, records(t, services(true)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updates != 1 || !slices.Equal(res.Conflicts, []string{p1 + "west.fed.example.com."}) {
		t.Errorf("first publish: %+v", res)
	}
	if got := b.Dig(p1+"east-a.east.fed.example.com.", "A"); !slices.Equal(got, []string{p1 + "east-a.east.fed.example.com. 60 IN A 192.0.2.1"}) {
		t.Errorf("zone record: %v", got)
	}
	if got := b.Dig(east, "A"); !slices.Equal(got, []string{east + " 60 IN A 192.0.2.1", east + " 60 IN A 192.0.2.2"}) {
		t.Errorf("region record: %v", got)
	}
	mac := ownerKey{owner: "lab", key: testKey}.mac(east, "f/shop/web")
	if got := b.Dig("_strait."+east, "TXT"); !slices.Equal(got, []string{"_strait." + east + ` 60 IN TXT "heritage=strait,strait/owner=lab,strait/resource=f/shop/web,strait/mac=` + mac + `"`}) {
		t.Errorf("ownership record: %v", got)
	}
	if got := b.Dig(p1+"west.fed.example.com.", "AAAA"); len(got) != 0 {
		t.Errorf("a name held by someone else was written: %v", got)
	}
	foreign()

	// Publishing the same set again changes nothing.
	if res, err := p.Publish(ctx, records(t, services(true)), Options{}); err != nil || res.Updates != 0 {
		t.Errorf("second publish: %+v %v", res, err)
	}

	// Someone else adds a record with nsupdate; then the zone east-a fails over to a CNAME.
	b.NSUpdate("update add api.example.com. 300 IN A 192.0.2.77")
	res, err = p.Publish(ctx, records(t, services(false)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Updates != 1 {
		t.Errorf("failover publish: %+v", res)
	}
	if got := b.Dig(p1+"east-a.east.fed.example.com.", "CNAME"); !slices.Equal(got, []string{p1 + "east-a.east.fed.example.com. 60 IN CNAME " + east}) {
		t.Errorf("zone after failover: %v", got)
	}
	if got := b.Dig(east, "A"); !slices.Equal(got, []string{east + " 60 IN A 192.0.2.2"}) {
		t.Errorf("region after failover: %v", got)
	}
	foreign()
	published, err := p.Published(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := records(t, services(false)); len(published) != len(want)-1 { // less the conflicting name's AAAA
		t.Errorf("Published: %d records, want %d", len(published), len(want)-1)
	}

	// Recovery: A records again.
	if _, err := p.Publish(ctx, records(t, services(true)), Options{}); err != nil {
		t.Fatal(err)
	}
	if got := b.Dig(p1+"east-a.east.fed.example.com.", "A"); !slices.Equal(got, []string{p1 + "east-a.east.fed.example.com. 60 IN A 192.0.2.1"}) {
		t.Errorf("zone after recovery: %v", got)
	}

	// Another owner never touches our names.
	other := newPublisher(t, b, "other", b.Secret)
	res, err = other.Publish(ctx, records(t, services(false)[:1]), Options{})
	// Every name of web (global, two regions, three zones) is ours or hand-made.
	if err != nil || res.Updates != 0 || len(res.Conflicts) != 6 {
		t.Errorf("other owner: %+v %v", res, err)
	}
	if got := b.Dig(p1+"east-a.east.fed.example.com.", "A"); !slices.Equal(got, []string{p1 + "east-a.east.fed.example.com. 60 IN A 192.0.2.1"}) {
		t.Errorf("another owner changed our record: %v", got)
	}

	// A service deleted: its names are released, the rest stays.
	if _, err := p.Publish(ctx, records(t, services(true)[:1]), Options{}); err != nil {
		t.Fatal(err)
	}
	if st := b.Status("db.shop.f.svc.fed.example.com.", "A"); st != "NXDOMAIN" {
		t.Errorf("released name: %s", st)
	}
	if got := b.Dig("_strait.db.shop.f.svc.fed.example.com.", "TXT"); len(got) != 0 {
		t.Errorf("ownership record of a released name: %v", got)
	}
	foreign()

	// An empty desired set never deletes, unless explicitly allowed.
	before := b.AXFR()
	if _, err := p.Publish(ctx, nil, Options{}); !errors.Is(err, ErrEmptyDesired) {
		t.Errorf("empty desired set: %v", err)
	}
	if after := b.AXFR(); !slices.Equal(before, after) {
		t.Errorf("zone changed by a refused empty publish")
	}
	if _, err := p.Publish(ctx, nil, Options{AllowEmpty: true}); err != nil {
		t.Fatal(err)
	}
	for _, l := range b.AXFR() {
		if strings.Contains(l, "owner=lab") || strings.Contains(l, "web.shop.f.svc.east") {
			t.Errorf("left after an allowed empty publish: %s", l)
		}
	}
	foreign()
}

func TestBadKeyChangesNothing(t *testing.T) {
	b := bindtest.Start(t, bindtest.Options{Records: others})
	ctx := context.Background()
	before := b.AXFR()

	wrong := newPublisher(t, b, "lab", "c2VjcmV0IHRoYXQgaXMgbm90IHRoZSBrZXk=")
	_, err := wrong.Publish(ctx, records(t, services(true)), Options{})
	if !errors.Is(err, ErrTSIG) || !strings.Contains(err.Error(), `key "strait-test"`) {
		t.Errorf("wrong secret: %v", err)
	}
	p, err := New(Config{Server: b.Addr, Zone: b.Zone, Domain: zoneCfg.Domain, KeyName: "unknown-key", Secret: b.Secret, Owner: "lab", OwnershipKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(ctx, records(t, services(true)), Options{})
	if !errors.Is(err, ErrTSIG) || !strings.Contains(err.Error(), "BADKEY") {
		t.Errorf("unknown key: %v", err)
	}
	if after := b.AXFR(); !slices.Equal(before, after) {
		t.Errorf("zone changed:\n%s\nwas:\n%s", strings.Join(after, "\n"), strings.Join(before, "\n"))
	}

	// Invalid input is rejected before anything is sent.
	good := newPublisher(t, b, "lab", b.Secret)
	_, err = good.Publish(ctx, []zone.Record{{Name: "x.example.org.", Type: zone.TypeA, TTL: 5, Addr: netip.MustParseAddr("192.0.2.1")}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "not below the zone example.com.") {
		t.Errorf("record outside the zone: %v", err)
	}
	if after := b.AXFR(); !slices.Equal(before, after) {
		t.Error("zone changed by invalid input")
	}
}

// TestPrerequisitesMakeUpdatesAtomic: a name claimed by someone else between the read and
// the update makes the server apply nothing of the message.
func TestPrerequisitesMakeUpdatesAtomic(t *testing.T) {
	b := bindtest.Start(t, bindtest.Options{})
	ctx := context.Background()
	p := newPublisher(t, b, "lab", b.Secret)
	want, svcOf, err := desiredRRs(p.zone, p.own, records(t, services(true)))
	if err != nil {
		t.Fatal(err)
	}
	current, err := p.read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	changes, _ := plan(current, want, svcOf, p.own)
	msgs, err := p.messages(changes)
	if err != nil || len(msgs) != 1 {
		t.Fatalf("messages: %d %v", len(msgs), err)
	}
	b.NSUpdate("update add db.shop.f.svc.fed.example.com. 300 IN A 203.0.113.1")
	before := b.AXFR()
	if err := p.update(ctx, msgs[0]); !errors.Is(err, ErrPrerequisite) {
		t.Fatalf("update after a concurrent claim: %v", err)
	}
	if after := b.AXFR(); !slices.Equal(before, after) {
		t.Errorf("a failed prerequisite changed the zone:\n%s", strings.Join(after, "\n"))
	}
	// The next publish reads again and leaves the claimed name alone.
	res, err := p.Publish(ctx, records(t, services(true)), Options{})
	if err != nil || !slices.Equal(res.Conflicts, []string{"db.shop.f.svc.fed.example.com."}) {
		t.Errorf("publish after the claim: %+v %v", res, err)
	}
	if got := b.Dig("db.shop.f.svc.fed.example.com.", "A"); !slices.Equal(got, []string{"db.shop.f.svc.fed.example.com. 300 IN A 203.0.113.1"}) {
		t.Errorf("someone else's claim was overwritten: %v", got)
	}
}

func TestConfigValidation(t *testing.T) {
	good := Config{Server: "127.0.0.1:53", Zone: "example.com", Domain: "fed.example.com", KeyName: "k", Secret: "c2VjcmV0", Owner: "lab", OwnershipKey: testKey}
	for _, c := range []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Server = "127.0.0.1" }, "invalid server address"},
		{func(c *Config) { c.Zone = "" }, "invalid zone"},
		{func(c *Config) { c.Secret = "not base64!" }, "is not base64"},
		{func(c *Config) { c.Algorithm = "hmac-md4" }, "unsupported TSIG algorithm"},
		{func(c *Config) { c.Owner = "a,b" }, "invalid owner"},
		{func(c *Config) { c.KeyName = "" }, "invalid TSIG key name"},
		{func(c *Config) { c.Domain = "" }, "invalid federation domain"},
		{func(c *Config) { c.Domain = "fed.example.org" }, "invalid federation domain"},
		{func(c *Config) { c.OwnershipKey = []byte("short") }, "at least 16"},
	} {
		cfg := good
		c.mut(&cfg)
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", cfg, err, c.want)
		}
	}
	if _, err := New(good); err != nil {
		t.Error(err)
	}
}

// otherServices belong to a second strait dns installation publishing into the same zone.
func otherServices() []zone.Service {
	return []zone.Service{{Namespace: "pay", Name: "api", Federation: "g", TTL: 30 * time.Second, Shards: []zone.Shard{
		{Cluster: "c9", Region: "east", Zone: "east-a", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("198.51.100.9")}},
	}}}
}

// TestOwnershipCannotBeForgedOrCrossed: ownership records without a valid MAC (forged with
// a key that may only write TXT, or left by an older version), a second installation's
// names in the same zone, and anything outside the federation's service names are left
// untouched through every update, even when their TXT says owner=lab; an instance with
// another owner or another key cannot release ours.
func TestOwnershipCannotBeForgedOrCrossed(t *testing.T) {
	lab := ownerKey{owner: "lab", key: testKey}
	otherKey := []byte("another installation's ownership key")
	fake := ownerKey{owner: "lab", key: []byte("a third key that no publisher here holds")}
	txt := func(k ownerKey, name, resource string) string {
		return `"` + k.value(name, resource) + `"`
	}
	b := bindtest.Start(t, bindtest.Options{Records: []string{
		// Outside the federation domain, with a TXT that even carries a valid MAC of ours.
		"www IN A 192.0.2.80",
		"_strait.www IN TXT " + txt(lab, "www.example.com.", "f/shop/www"),
		// In the domain but not a service name.
		"api.fed IN A 192.0.2.81",
		"_strait.api.fed IN TXT " + txt(lab, "api.fed.example.com.", "f/shop/api"),
		// A desired name under an ownership record without MAC (an older version's, or forged).
		"db.shop.f.svc.fed IN A 203.0.113.9",
		`_strait.db.shop.f.svc.fed IN TXT "heritage=strait,strait/owner=lab,strait/resource=f/shop/db"`,
		// Service names no longer desired, under records with a wrong MAC and another key's MAC.
		"old.shop.f.svc.fed IN A 203.0.113.10",
		`_strait.old.shop.f.svc.fed IN TXT "heritage=strait,strait/owner=lab,strait/resource=f/shop/old,strait/mac=AAAA"`,
		"stale.shop.f.svc.east.fed IN A 203.0.113.11",
		"_strait.stale.shop.f.svc.east.fed IN TXT " + txt(fake, "stale.shop.f.svc.east.fed.example.com.", "f/shop/stale"),
	}})
	ctx := context.Background()
	p := newPublisher(t, b, "lab", b.Secret)
	other := newKeyedPublisher(t, b, "other", b.Secret, otherKey)

	// Our names are those of records(services) but the global db name, held by the forged record.
	ours := map[string]string{}
	for _, r := range records(t, services(true)) {
		if r.Name != "db.shop.f.svc.fed.example.com." {
			ours[r.Name] = r.Service.String()
		}
	}
	// foreign is the zone less our names and our own ownership records (and the SOA, whose
	// serial every update changes): what must never change.
	foreign := func() []string {
		t.Helper()
		var out []string
		for _, l := range b.AXFR() {
			f := strings.Fields(l)
			name := f[0]
			if f[3] == "SOA" || ours[name] != "" {
				continue
			}
			if n, ok := strings.CutPrefix(name, "_strait."); ok && ours[n] != "" && strings.Contains(l, "strait/mac="+lab.mac(n, ours[n])) {
				continue
			}
			out = append(out, l)
		}
		return out
	}

	// A second installation publishes its names first.
	if res, err := other.Publish(ctx, records(t, otherServices()), Options{}); err != nil || res.Updates != 1 || len(res.Conflicts) != 0 {
		t.Fatalf("second installation: %+v %v", res, err)
	}
	want := foreign()

	res, err := p.Publish(ctx, records(t, services(true)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Conflicts, []string{"db.shop.f.svc.fed.example.com."}) || len(res.Released) != 0 {
		t.Errorf("publish: %+v", res)
	}
	if got := foreign(); !slices.Equal(got, want) {
		t.Errorf("first publish changed what is not ours:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := b.Dig("db.shop.f.svc.fed.example.com.", "A"); !slices.Equal(got, []string{"db.shop.f.svc.fed.example.com. 300 IN A 203.0.113.9"}) {
		t.Errorf("a name under a forged ownership record was written: %v", got)
	}

	// A holder of a TXT-only key (an ACME DNS-01 client's) forges ownership records: for a
	// name outside the domain, and a second record at one of our own names.
	const east = "web.shop.f.svc.east.fed.example.com."
	if err := b.NSUpdateTXTOnly("update add ns1.example.com. 300 IN A 192.0.2.66"); err == nil {
		t.Fatal("the TXT-only key could write an A record")
	}
	b.NSUpdateTXTOnly(
		`update add _strait.ns1.example.com. 300 IN TXT "heritage=strait,strait/owner=lab,strait/resource=f/shop/ns1"`,
		`update add _strait.`+east+` 300 IN TXT "heritage=strait,strait/owner=lab,strait/resource=f/shop/web,strait/mac=forged"`)
	want = foreign()
	if !slices.ContainsFunc(want, func(l string) bool { return strings.HasPrefix(l, "_strait."+east) }) {
		t.Fatalf("the forged record is missing: %v", want)
	}

	// Failover and recovery still update our names; nothing else changes.
	for i, healthy := range []bool{false, true, false} {
		res, err := p.Publish(ctx, records(t, services(healthy)), Options{})
		if err != nil || res.Updates != 1 {
			t.Fatalf("round %d: %+v %v", i, res, err)
		}
		if got := foreign(); !slices.Equal(got, want) {
			t.Errorf("round %d changed what is not ours:\n%s\nwant:\n%s", i, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if got := b.Dig(east, "A"); !slices.Equal(got, []string{east + " 60 IN A 192.0.2.2"}) {
		t.Errorf("our name after failover: %v", got)
	}
	ourZone := b.AXFR()

	// Neither our owner ID with another key, nor another owner with our key, releases ours.
	for _, x := range []*Publisher{newKeyedPublisher(t, b, "lab", b.Secret, otherKey), newPublisher(t, b, "other", b.Secret)} {
		res, err := x.Publish(ctx, nil, Options{AllowEmpty: true})
		if err != nil || res.Updates != 0 || len(res.Released) != 0 {
			t.Errorf("owner %s with another key: %+v %v", x.cfg.Owner, res, err)
		}
		if got := x.mustPublished(t); len(got) != 0 {
			t.Errorf("owner %s with another key sees %d records as its own", x.cfg.Owner, len(got))
		}
	}
	if got := b.AXFR(); !slices.Equal(got, ourZone) {
		t.Errorf("another owner or key changed the zone:\n%s", strings.Join(got, "\n"))
	}

	// We release everything of ours, and only that.
	res, err = p.Publish(ctx, nil, Options{AllowEmpty: true})
	if err != nil || len(res.Released) != len(ours) {
		t.Fatalf("release: %d released, want %d: %+v %v", len(res.Released), len(ours), res, err)
	}
	if got := foreign(); !slices.Equal(got, want) {
		t.Errorf("the release changed what is not ours:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for name := range ours {
		if got := b.Dig(name, "A"); len(got) != 0 {
			t.Errorf("released name %s still has %v", name, got)
		}
	}
	// The second installation still owns its names, unchanged.
	if res, err := other.Publish(ctx, records(t, otherServices()), Options{}); err != nil || res.Updates != 0 || len(res.Conflicts) != 0 {
		t.Errorf("second installation after our release: %+v %v", res, err)
	}
}

func (p *Publisher) mustPublished(t *testing.T) []zone.Record {
	t.Helper()
	rs, err := p.Published(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
