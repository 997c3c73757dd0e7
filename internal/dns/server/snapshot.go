package server

import (
	"net"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// maxCached bounds the answers one snapshot caches. Only names that exist are cached, and
// their count is fixed by the zone, but the number of question-type and cluster
// combinations is not, so the bound keeps a query flood from growing memory.
const maxCached = 1 << 16

// snapshot is a zone with its answers: every answer packed for the UDP fast path (wire.go),
// built with the snapshot, and the slow path's answers as miekg/dns records, built once per
// (name, type, cluster) on first use and shared by every response: responses only reslice
// them.
type snapshot struct {
	zone *zone.Zone
	// locs is the location of every client slot (Server.slots) in this zone.
	locs   []zone.Location
	wire   *wireTable
	cache  sync.Map // cacheKey -> *answer
	cached atomic.Int64
}

// newSnapshot builds the snapshot of z, packing every answer.
func (s *Server) newSnapshot(z *zone.Zone) *snapshot {
	snap := &snapshot{zone: z, locs: make([]zone.Location, len(s.slots))}
	for i, c := range s.slots {
		snap.locs[i] = s.locate(snap, c)
	}
	snap.wire = s.buildWire(snap)
	return snap
}

type cacheKey struct {
	name    string
	qtype   uint16
	cluster string
	region  string
	zone    string
}

// answer is a response's sections; the slices are shared and must not be written.
type answer struct {
	rcode         int
	authoritative bool
	answer, ns    []dns.RR
	extra         []dns.RR
	tally         tally
}

// lookup answers a question from the cache or the zone.
func (s *snapshot) lookup(qname string, qtype uint16, from zone.Location) *answer {
	key := cacheKey{name: strings.ToLower(qname), qtype: normalType(qtype), cluster: from.Cluster, region: from.Region, zone: from.Zone}
	if a, ok := s.cache.Load(key); ok {
		return a.(*answer)
	}
	res := s.zone.Answer(key.name, zone.Type(qtype), from)
	a := &answer{
		rcode:         rcodes[res.Rcode],
		authoritative: res.Authoritative,
		answer:        toRRs(res.Answer),
		ns:            toRRs(res.Authority),
		extra:         toRRs(res.Additional),
		tally:         tallyOf(res),
	}
	// A name that does not exist is not cached (random names would fill the cache), nor a
	// type outside normalType's list.
	exists := res.Rcode == zone.RcodeSuccess || len(res.Answer) > 0
	if exists && key.qtype == qtype && s.cached.Load() < maxCached {
		if _, loaded := s.cache.LoadOrStore(key, a); !loaded {
			s.cached.Add(1)
		}
	}
	return a
}

// normalType keeps the types whose answers differ and maps every other type to 0, which
// is then not cached (its NODATA answer is cheap to build, and caching it per type would let
// 65536 types multiply the cache).
func normalType(t uint16) uint16 {
	switch t {
	case dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS, dns.TypeANY:
		return t
	}
	return 0
}

var rcodes = map[zone.Rcode]int{
	zone.RcodeSuccess:   dns.RcodeSuccess,
	zone.RcodeNameError: dns.RcodeNameError,
	zone.RcodeRefused:   dns.RcodeRefused,
}

// toRRs converts records to miekg/dns RRs. The result has no spare capacity, so an append
// by a response copies rather than writing into the shared array.
func toRRs(rs []zone.Record) []dns.RR {
	if len(rs) == 0 {
		return nil
	}
	out := make([]dns.RR, 0, len(rs))
	for _, r := range rs {
		out = append(out, toRR(r))
	}
	return out[:len(out):len(out)]
}

func toRR(r zone.Record) dns.RR {
	hdr := dns.RR_Header{Name: r.Name, Rrtype: uint16(r.Type), Class: dns.ClassINET, Ttl: r.TTL}
	switch r.Type {
	case zone.TypeA:
		return &dns.A{Hdr: hdr, A: net.IP(r.Addr.AsSlice())}
	case zone.TypeAAAA:
		return &dns.AAAA{Hdr: hdr, AAAA: net.IP(r.Addr.AsSlice())}
	case zone.TypeCNAME:
		return &dns.CNAME{Hdr: hdr, Target: r.Target}
	case zone.TypeNS:
		return &dns.NS{Hdr: hdr, Ns: r.Target}
	case zone.TypeSOA:
		s := r.SOA
		return &dns.SOA{Hdr: hdr, Ns: s.MName, Mbox: s.RName, Serial: s.Serial, Refresh: s.Refresh,
			Retry: s.Retry, Expire: s.Expire, Minttl: s.Minimum}
	}
	// The zone model produces no other types.
	return &dns.RFC3597{Hdr: hdr}
}
