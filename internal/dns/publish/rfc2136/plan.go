package rfc2136

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// ownerPrefix is the label under which a name's ownership TXT record lives. The TXT cannot
// sit at the name itself: a name that is a CNAME may hold no other data.
const ownerPrefix = "_strait."

// managedTypes are the types the publisher writes; at a name it owns it never touches others.
var managedTypes = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME}

// rrsets is a zone's content: lower-case absolute name -> type -> records.
type rrsets map[string]map[uint16][]dns.RR

func (z rrsets) add(rr dns.RR) {
	h := rr.Header()
	name := strings.ToLower(h.Name)
	if z[name] == nil {
		z[name] = map[uint16][]dns.RR{}
	}
	z[name][h.Rrtype] = append(z[name][h.Rrtype], rr)
}

// ownership is the parsed value of an ownership TXT record.
type ownership struct {
	heritage, owner, resource, mac string
}

// macLabel starts the MAC input: it separates these MACs from any other use of the key.
const macLabel = "strait.io/dns-ownership/v1"

// ownerKey is this publisher's identity in ownership records: its owner ID, the key that
// signs its records and the federation domain it keeps to.
type ownerKey struct {
	owner  string
	key    []byte
	domain string // absolute, lower case
}

// mac binds an ownership record to this installation: HMAC-SHA256 with the ownership key
// over the owner, the name the record guards and the resource (federated service). A party
// without the key cannot write a record that verifies, and one record cannot be moved to
// another name, owner or service.
func (k ownerKey) mac(name, resource string) string {
	h := hmac.New(sha256.New, k.key)
	for _, part := range []string{macLabel, k.owner, strings.ToLower(name), resource} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// value is the TXT value marking name as owned by this publisher, for a resource (the
// federated service), in the style of ExternalDNS's registry plus the MAC.
func (k ownerKey) value(name, resource string) string {
	return "heritage=strait,strait/owner=" + k.owner + ",strait/resource=" + resource + ",strait/mac=" + k.mac(name, resource)
}

// verifies reports whether o is this publisher's record for name: heritage, owner and a MAC
// that only the ownership key can produce.
func (k ownerKey) verifies(name string, o ownership) bool {
	if o.heritage != "strait" || o.owner != k.owner || o.mac == "" {
		return false
	}
	return hmac.Equal([]byte(o.mac), []byte(k.mac(name, o.resource)))
}

// mine reports whether name is in this publisher's subtree: a global, region or zone name
// of a service under its federation domain. Nothing else is ever read as ours.
func (k ownerKey) mine(name string) bool { return zone.IsServiceName(k.domain, name) }

func parseOwnership(txt *dns.TXT) ownership {
	var o ownership
	for _, kv := range strings.Split(strings.Join(txt.Txt, ""), ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "heritage":
			o.heritage = v
		case "strait/owner":
			o.owner = v
		case "strait/resource":
			o.resource = v
		case "strait/mac":
			o.mac = v
		}
	}
	return o
}

// ownerOf returns the ownership TXT RRset of name, the record in it that proves that this
// publisher owns the name, and that record's content; ok is false when the name is not
// ours. Other TXT records at the ownership name (someone else's, forged, or written by an
// older version without a MAC) are never ours and never touched, but they are part of the
// RRset the update's prerequisite pins, so an update applies only to the zone as read.
func (z rrsets) ownerOf(name string, k ownerKey) (set []dns.RR, mine *dns.TXT, o ownership, ok bool) {
	if !k.mine(name) {
		return nil, nil, ownership{}, false
	}
	set = z[ownerPrefix+name][dns.TypeTXT]
	for _, rr := range set {
		txt := rr.(*dns.TXT)
		if o := parseOwnership(txt); k.verifies(name, o) {
			return set, txt, o, true
		}
	}
	return nil, nil, ownership{}, false
}

// change is what one UPDATE does to one name, in RFC 2136 section form.
type change struct {
	name     string
	service  string
	prereq   []dns.RR
	remove   []dns.RR
	insert   []dns.RR
	released bool
}

// plan computes the changes that turn the zone's content at the names k owns into desired,
// claiming free names and leaving every name owned by someone else alone. desired is
// validated: service names under k's domain, lower case, types A, AAAA, CNAME. Names
// outside k's subtree are never looked at, whatever ownership records they carry.
func plan(current rrsets, desired map[string][]dns.RR, services map[string]string, k ownerKey) (changes []change, conflicts []string) {
	for _, name := range slices.Sorted(maps.Keys(desired)) {
		want := desired[name]
		txt, _, _, ours := current.ownerOf(name, k)
		c := change{name: name, service: services[name]}
		switch {
		case ours:
			c.prereq = prereqExact(txt)
			byType := map[uint16][]dns.RR{}
			for _, rr := range want {
				byType[rr.Header().Rrtype] = append(byType[rr.Header().Rrtype], rr)
			}
			// Removals first, then additions: an A RRset must be gone before a CNAME can be
			// added at the same name, in the same message.
			for _, t := range managedTypes {
				have := current[name][t]
				if sameSet(have, byType[t]) {
					continue
				}
				if len(have) > 0 {
					c.remove = append(c.remove, deleteRRset(name, t))
				}
				c.insert = append(c.insert, byType[t]...)
			}
			if len(c.remove)+len(c.insert) == 0 {
				continue
			}
		case len(current[name]) == 0 && len(current[ownerPrefix+name]) == 0:
			// A free name is claimed only if it is still free when the update is applied.
			c.prereq = []dns.RR{nameNotUsed(name), nameNotUsed(ownerPrefix + name)}
			c.insert = append([]dns.RR{ownerTXT(name, k.value(name, c.service), want[0].Header().Ttl)}, want...)
		default:
			conflicts = append(conflicts, name)
			continue
		}
		changes = append(changes, c)
	}
	// Names we own that are no longer desired are released.
	for _, name := range slices.Sorted(maps.Keys(current)) {
		if _, ok := desired[name]; ok || strings.HasPrefix(name, ownerPrefix) {
			continue
		}
		txt, mine, o, ours := current.ownerOf(name, k)
		if !ours {
			continue
		}
		c := change{name: name, service: o.resource, prereq: prereqExact(txt), released: true}
		for _, t := range managedTypes {
			if len(current[name][t]) > 0 {
				c.remove = append(c.remove, deleteRRset(name, t))
			}
		}
		c.remove = append(c.remove, deleteRR(mine))
		changes = append(changes, c)
	}
	// Owned ownership names whose name has gone (deleted by hand) are released too.
	for _, oname := range slices.Sorted(maps.Keys(current)) {
		name, ok := strings.CutPrefix(oname, ownerPrefix)
		if !ok || current[name] != nil {
			continue
		}
		if _, ok := desired[name]; ok {
			continue
		}
		txt, mine, o, ours := current.ownerOf(name, k)
		if !ours {
			continue
		}
		changes = append(changes, change{name: name, service: o.resource, prereq: prereqExact(txt), remove: []dns.RR{deleteRR(mine)}, released: true})
	}
	return changes, conflicts
}

// sameSet compares two RRsets by data and TTL, ignoring order and name case.
func sameSet(a, b []dns.RR) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(rr dns.RR) string {
		return fmt.Sprintf("%d %d %s", rr.Header().Rrtype, rr.Header().Ttl, strings.ToLower(rdata(rr)))
	}
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i := range a {
		ka[i], kb[i] = key(a[i]), key(b[i])
	}
	slices.Sort(ka)
	slices.Sort(kb)
	return slices.Equal(ka, kb)
}

func rdata(rr dns.RR) string {
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// prereqExact is "RRset exists (value dependent)", RFC 2136 2.4.2: the set must be exactly rrs.
func prereqExact(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, 0, len(rrs))
	for _, rr := range rrs {
		c := dns.Copy(rr)
		c.Header().Class, c.Header().Ttl = dns.ClassINET, 0
		out = append(out, c)
	}
	return out
}

// nameNotUsed is "Name is not in use", RFC 2136 2.4.5.
func nameNotUsed(name string) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeANY, Class: dns.ClassNONE}}
}

// deleteRRset is "Delete an RRset", RFC 2136 2.5.2.
func deleteRRset(name string, t uint16) dns.RR {
	return &dns.ANY{Hdr: dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassANY}}
}

// deleteRR is "Delete an RR from an RRset", RFC 2136 2.5.4.
func deleteRR(rr dns.RR) dns.RR {
	c := dns.Copy(rr)
	c.Header().Class, c.Header().Ttl = dns.ClassNONE, 0
	return c
}

// ownerTXT is the ownership record of name with value, split into character-strings of at
// most 255 octets (a long owner and resource can exceed one); readers join them again.
func ownerTXT(name, value string, ttl uint32) dns.RR {
	var parts []string
	for len(value) > 255 {
		parts = append(parts, value[:255])
		value = value[255:]
	}
	parts = append(parts, value)
	return &dns.TXT{Hdr: dns.RR_Header{Name: ownerPrefix + name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: ttl}, Txt: parts}
}

// desiredRRs validates records for the zone and converts them, grouped by name.
// It returns the RRs and the resource (federated service) of each name.
func desiredRRs(zoneName string, k ownerKey, records []zone.Record) (map[string][]dns.RR, map[string]string, error) {
	out := map[string][]dns.RR{}
	services := map[string]string{}
	for _, r := range records {
		name := strings.ToLower(dns.Fqdn(r.Name))
		if !dns.IsSubDomain(zoneName, name) || name == zoneName {
			return nil, nil, fmt.Errorf("record %s is not below the zone %s", r.Name, zoneName)
		}
		if !k.mine(name) {
			return nil, nil, fmt.Errorf("record %s is not a service name of the federation domain %s", r.Name, k.domain)
		}
		if strings.HasPrefix(name, ownerPrefix) {
			return nil, nil, fmt.Errorf("record %s: names starting with %q hold ownership records", r.Name, ownerPrefix)
		}
		hdr := dns.RR_Header{Name: name, Rrtype: uint16(r.Type), Class: dns.ClassINET, Ttl: r.TTL}
		var rr dns.RR
		switch {
		case r.Type == zone.TypeA && r.Addr.Is4():
			rr = &dns.A{Hdr: hdr, A: net.IP(r.Addr.AsSlice())}
		case r.Type == zone.TypeAAAA && r.Addr.Is6() && !r.Addr.Is4In6():
			rr = &dns.AAAA{Hdr: hdr, AAAA: net.IP(r.Addr.AsSlice())}
		case r.Type == zone.TypeCNAME && r.Target != "":
			rr = &dns.CNAME{Hdr: hdr, Target: strings.ToLower(dns.Fqdn(r.Target))}
		default:
			return nil, nil, fmt.Errorf("record %s: only A, AAAA and CNAME records with data are published", r)
		}
		out[name] = append(out[name], rr)
		services[name] = r.Service.String()
	}
	for name, rrs := range out {
		cnames := 0
		for _, rr := range rrs {
			if rr.Header().Rrtype == dns.TypeCNAME {
				cnames++
			}
		}
		if cnames > 1 || (cnames == 1 && len(rrs) > 1) {
			return nil, nil, fmt.Errorf("name %s: a CNAME must be the only record of its name", name)
		}
		// Duplicates would make the RRset comparison see a change every time.
		slices.SortFunc(rrs, func(a, b dns.RR) int { return strings.Compare(a.String(), b.String()) })
		out[name] = slices.CompactFunc(rrs, func(a, b dns.RR) bool { return a.String() == b.String() })
	}
	return out, services, nil
}

func addr(ip net.IP) netip.Addr {
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}
