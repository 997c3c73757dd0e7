package zone

import (
	"cmp"
	"slices"
	"strings"
)

// maxChain bounds how many CNAMEs one answer follows. The hierarchy needs at most three
// (short name -> zone -> region -> global); the bound only guards against a loop.
const maxChain = 8

// Answer answers one question (class IN) the way an authoritative server does: the records
// of qname, following CNAMEs inside the served zones (RFC 1034 4.3.2, the rcode that of the
// last name, RFC 6604); NXDOMAIN for a name that does not exist and NODATA for a name without
// records of qtype, both with the zone's SOA in the authority section; REFUSED outside the
// zones. from is the querying client's cluster and matters only for short names; the zero
// Location is a client outside every member cluster, which gets the global name.
// qname is in presentation format; case does not matter, a missing trailing dot is assumed.
func (z *Zone) Answer(qname string, qtype Type, from Location) Result {
	name := canonical(qname)
	// A name that exists knows its zone (the zones do not nest, so it is apexOf's).
	nd, ok := z.names[name]
	var a *apex
	if ok {
		a = nd.zone
	} else if a = z.apexOf(name); a == nil {
		return Result{Rcode: RcodeRefused, Kind: AnswerRefused}
	}
	res := Result{Authoritative: true}
	for hops := 0; ; hops++ {
		if !ok {
			res.Rcode, res.Kind = RcodeNameError, AnswerNXDomain
			res.Authority = a.soaSet
			return res
		}
		addrs, cname, kind := nd.addrs, nd.cname, nd.kind
		if nd.short != nil {
			cluster := strings.ToLower(from.Cluster)
			if local, ok := nd.short.local[cluster]; ok {
				addrs, kind = local, AnswerLocal
			} else {
				cname = &Record{Name: name, Type: TypeCNAME, TTL: nd.short.ttl, Target: nd.short.shortTarget(from), Service: nd.short.key}
				res.Failover = res.Failover || cluster != "" && nd.short.placedIn(cluster)
			}
		} else if cname != nil {
			// Only a zone or region name without healthy shards is a CNAME.
			res.Failover = true
		}
		if cname != nil {
			res.Answer = append(res.Answer, *cname)
			if qtype == TypeCNAME || qtype == TypeANY || hops == maxChain {
				res.Kind = AnswerCNAME
				return res
			}
			name = cname.Target
			if nd, ok = z.names[name]; ok {
				a = nd.zone
			} else if a = z.apexOf(name); a == nil {
				res.Kind = AnswerCNAME
				return res
			}
			continue
		}
		n := len(res.Answer)
		switch qtype {
		case TypeA:
			res.Answer = add(res.Answer, addrs.v4)
		case TypeAAAA:
			res.Answer = add(res.Answer, addrs.v6)
		case TypeANY:
			res.Answer = add(res.Answer, addrs.v4)
			res.Answer = add(res.Answer, addrs.v6)
		}
		res.Kind = kind
		if nd.apex {
			switch qtype {
			case TypeSOA:
				res.Answer = add(res.Answer, a.soaSet)
			case TypeNS:
				res.Answer = add(res.Answer, a.ns)
				res.Additional = z.glue(a)
			case TypeANY:
				res.Answer = add(res.Answer, a.soaSet)
				res.Answer = add(res.Answer, a.ns)
			}
			res.Kind = AnswerApex
		}
		if len(res.Answer) == n {
			res.Authority = a.soaSet
			res.Kind = AnswerNoData
		}
		return res
	}
}

// add appends rs to answer. An empty answer becomes rs itself, clipped, so that the next
// add copies rather than writes into the zone's array.
func add(answer, rs []Record) []Record {
	if len(answer) == 0 {
		return rs[:len(rs):len(rs)]
	}
	return append(answer, rs...)
}

// glue returns the addresses of the apex's nameservers that are inside a served zone.
func (z *Zone) glue(a *apex) []Record {
	var out []Record
	for _, ns := range a.ns {
		if nd, ok := z.names[ns.Target]; ok {
			out = append(out, nd.addrs.v4...)
			out = append(out, nd.addrs.v6...)
		}
	}
	return out
}

// apexOf returns the served zone that contains the absolute lower-case name, nil if none.
// Label boundaries honour the presentation format's escapes ("a\.b" is one label).
func (z *Zone) apexOf(name string) *apex {
	for s := name; s != ""; s = nextLabel(s) {
		if a, ok := z.apexes[s]; ok {
			return a
		}
	}
	return nil
}

// nextLabel strips the first label of a presentation-format name; "" at the root.
func nextLabel(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++ // the escaped character, or the first digit of \DDD (digits are no dots)
		case '.':
			if i == len(s)-1 {
				return ""
			}
			return s[i+1:]
		}
	}
	return ""
}

// canonical lower-cases a name and makes it absolute.
func canonical(name string) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= 'A' && c <= 'Z' {
			name = strings.ToLower(name)
			break
		}
	}
	if !absolute(name) {
		name += "."
	}
	return name
}

// absolute reports whether a presentation-format name ends with an unescaped dot.
func absolute(name string) bool {
	if !strings.HasSuffix(name, ".") {
		return false
	}
	backslashes := 0
	for i := len(name) - 2; i >= 0 && name[i] == '\\'; i-- {
		backslashes++
	}
	return backslashes%2 == 0
}

// Records lists the records of the federation domain that a publisher keeps in another DNS
// server: A, AAAA and CNAME of every global, region and zone name (not the SOA and NS, which
// belong to the zone there, nor the in-cluster short names), sorted by name, type and value.
func (z *Zone) Records() []Record {
	var out []Record
	for _, sv := range z.services {
		for _, l := range sv.levels() {
			out = append(out, l.addrs.v4...)
			out = append(out, l.addrs.v6...)
			if l.target != "" {
				out = append(out, Record{Name: l.name, Type: TypeCNAME, TTL: sv.ttl, Target: l.target, Service: sv.key})
			}
		}
	}
	SortRecords(out)
	return out
}

// Records validates the configuration and services like Build and returns the records a
// publisher keeps; see (*Zone).Records.
func Records(cfg Config, services []Service) ([]Record, error) {
	z, err := Build(cfg, services, 0)
	if err != nil {
		return nil, err
	}
	return z.Records(), nil
}

// SortRecords sorts records by name, type, then value.
func SortRecords(rs []Record) {
	slices.SortFunc(rs, func(a, b Record) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), cmp.Compare(a.Type, b.Type),
			a.Addr.Compare(b.Addr), strings.Compare(a.Target, b.Target))
	})
}

// ZoneFile renders the federation domain as a zone file (RFC 1035 master format): SOA, NS,
// nameserver addresses and Records. Other DNS servers load it to serve the same answers
// (without the health-aware short names), e.g. CoreDNS's file plugin in the benchmark.
func (z *Zone) ZoneFile() string {
	var b strings.Builder
	a := z.apexes[z.Domain()]
	b.WriteString("$ORIGIN " + a.name + "\n")
	b.WriteString(a.soa.String() + "\n")
	for _, ns := range a.ns {
		b.WriteString(ns.String() + "\n")
	}
	for _, g := range z.glue(a) {
		b.WriteString(g.String() + "\n")
	}
	for _, r := range z.Records() {
		b.WriteString(r.String() + "\n")
	}
	return b.String()
}

// IsServiceName reports whether name (absolute or not, any case) is one of the names the
// model derives for a service under domain: <svc>.<ns>.<fed>.svc.<domain> (global),
// ...svc.<region>.<domain> and ...svc.<zone>.<region>.<domain>. Publishers use it to keep
// to their own subtree: a name of any other shape, or outside the domain, is never theirs,
// whatever records it holds. The domain must be valid (see Config.Validate).
func IsServiceName(domain, name string) bool {
	d, err := normalizeDomain("domain", domain)
	if err != nil {
		return false
	}
	n := strings.ToLower(strings.TrimSuffix(name, "."))
	rel, ok := strings.CutSuffix(n, "."+d)
	if !ok || checkName("name", n+".") != nil {
		return false
	}
	labels := strings.Split(rel, ".")
	if len(labels) < 4 || len(labels) > 6 || labels[3] != "svc" {
		return false
	}
	for _, l := range labels {
		if checkLabel("label", l) != nil {
			return false
		}
	}
	return true
}
