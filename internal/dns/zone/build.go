package zone

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// zoneKey is a zone within its region.
type zoneKey struct{ region, zone string }

// service is a validated, normalized Service with its derived names.
type service struct {
	key    ServiceKey // lower case
	ttl    uint32
	shards []Shard // lower case, addresses unmapped, deduplicated and sorted

	global  string
	short   string
	regions map[string]string  // region -> region name
	zones   map[zoneKey]string // zone -> zone name

	// local holds, per cluster with a healthy shard that has addresses, the records of the
	// short name queried from that cluster.
	local map[string]addrRecords
}

type addrRecords struct{ v4, v6 []Record }

// service validates s and derives its names.
func (n *normalized) service(s Service) (*service, error) {
	key := s.Key()
	for _, c := range []struct{ what, v string }{
		{"service name", s.Name}, {"namespace", s.Namespace}, {"federation name", s.Federation},
	} {
		if err := checkLabel(c.what, c.v); err != nil {
			return nil, fmt.Errorf("service %s: %w", key, err)
		}
	}
	if err := checkFederation(n.domain, s.Federation); err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	if err := checkTTL("TTL", s.TTL); err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	lower := strings.ToLower
	sv := &service{
		key:     ServiceKey{Namespace: lower(s.Namespace), Name: lower(s.Name), Federation: lower(s.Federation)},
		ttl:     n.ttl,
		regions: map[string]string{},
		zones:   map[zoneKey]string{},
		local:   map[string]addrRecords{},
	}
	if s.TTL != 0 {
		sv.ttl = uint32(s.TTL / time.Second)
	}
	prefix := sv.key.Name + "." + sv.key.Namespace + "." + sv.key.Federation + "."
	sv.short = prefix
	sv.global = prefix + "svc." + n.domain + "."
	if err := checkName("name", sv.global); err != nil {
		return nil, fmt.Errorf("service %s: %w", key, err)
	}
	seen := map[string]bool{}
	for _, sh := range s.Shards {
		if err := checkLabel("cluster name", sh.Cluster); err != nil {
			return nil, fmt.Errorf("service %s: %w", key, err)
		}
		c := Shard{Cluster: lower(sh.Cluster), Region: lower(sh.Region), Zone: lower(sh.Zone), Healthy: sh.Healthy}
		if seen[c.Cluster] {
			return nil, fmt.Errorf("service %s: cluster %q has two shards", key, sh.Cluster)
		}
		seen[c.Cluster] = true
		if c.Region != "" {
			if err := checkLabel("region", sh.Region); err != nil {
				return nil, fmt.Errorf("service %s, cluster %s: %w", key, sh.Cluster, err)
			}
			name := prefix + "svc." + c.Region + "." + n.domain + "."
			if err := checkName("name", name); err != nil {
				return nil, fmt.Errorf("service %s, cluster %s: %w", key, sh.Cluster, err)
			}
			sv.regions[c.Region] = name
		}
		if c.Zone != "" {
			if c.Region == "" {
				return nil, fmt.Errorf("service %s, cluster %s: zone %q without a region", key, sh.Cluster, sh.Zone)
			}
			if err := checkLabel("zone", sh.Zone); err != nil {
				return nil, fmt.Errorf("service %s, cluster %s: %w", key, sh.Cluster, err)
			}
			name := prefix + "svc." + c.Zone + "." + c.Region + "." + n.domain + "."
			if err := checkName("name", name); err != nil {
				return nil, fmt.Errorf("service %s, cluster %s: %w", key, sh.Cluster, err)
			}
			sv.zones[zoneKey{c.Region, c.Zone}] = name
		}
		var err error
		if c.Addresses, err = cleanAddrs(sh.Addresses); err != nil {
			return nil, fmt.Errorf("service %s, cluster %s: %w", key, sh.Cluster, err)
		}
		if c.LocalAddresses, err = cleanAddrs(sh.LocalAddresses); err != nil {
			return nil, fmt.Errorf("service %s, cluster %s: local %w", key, sh.Cluster, err)
		}
		sv.shards = append(sv.shards, c)
		if c.Healthy {
			addrs := c.LocalAddresses
			if len(addrs) == 0 {
				addrs = c.Addresses
			}
			if len(addrs) > 0 {
				sv.local[c.Cluster] = sv.addrRecords(sv.short, addrs)
			}
		}
	}
	slices.SortFunc(sv.shards, func(a, b Shard) int { return strings.Compare(a.Cluster, b.Cluster) })
	return sv, nil
}

// cleanAddrs unmaps, sorts and deduplicates addresses, rejecting invalid ones.
func cleanAddrs(in []netip.Addr) ([]netip.Addr, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]netip.Addr, 0, len(in))
	for _, a := range in {
		if !a.IsValid() || a.IsUnspecified() {
			return nil, fmt.Errorf("address %q is not a usable IP address", a)
		}
		out = append(out, a.Unmap().WithZone(""))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}

// addrRecords returns the A and AAAA records of name for addrs.
func (sv *service) addrRecords(name string, addrs []netip.Addr) addrRecords {
	var r addrRecords
	for _, a := range addrs {
		rec := Record{Name: name, TTL: sv.ttl, Addr: a, Service: sv.key}
		if a.Is4() {
			rec.Type = TypeA
			r.v4 = append(r.v4, rec)
		} else {
			rec.Type = TypeAAAA
			r.v6 = append(r.v6, rec)
		}
	}
	return r
}

// healthy returns the union of the addresses of the healthy shards that match.
func (sv *service) healthy(match func(Shard) bool) []netip.Addr {
	var out []netip.Addr
	for _, sh := range sv.shards {
		if sh.Healthy && match(sh) {
			out = append(out, sh.Addresses...)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// level is the data of one hierarchy name: addresses, or a CNAME target, or neither
// (a global name without healthy shards).
type level struct {
	kind   AnswerKind // AnswerGlobal, AnswerRegion or AnswerZone
	name   string
	addrs  addrRecords
	target string
}

// levels lists the service's global, region and zone names (in that order, regions and
// zones sorted) with their data.
func (sv *service) levels() []level {
	var out []level
	add := func(kind AnswerKind, name string, addrs []netip.Addr, target string) {
		l := level{kind: kind, name: name}
		if len(addrs) > 0 {
			l.addrs = sv.addrRecords(name, addrs)
		} else {
			l.target = target
		}
		out = append(out, l)
	}
	add(AnswerGlobal, sv.global, sv.healthy(func(Shard) bool { return true }), "")
	regions := make([]string, 0, len(sv.regions))
	for r := range sv.regions {
		regions = append(regions, r)
	}
	slices.Sort(regions)
	for _, r := range regions {
		add(AnswerRegion, sv.regions[r], sv.healthy(func(s Shard) bool { return s.Region == r }), sv.global)
	}
	zones := make([]zoneKey, 0, len(sv.zones))
	for z := range sv.zones {
		zones = append(zones, z)
	}
	slices.SortFunc(zones, func(a, b zoneKey) int {
		return cmp.Or(strings.Compare(a.region, b.region), strings.Compare(a.zone, b.zone))
	})
	for _, z := range zones {
		add(AnswerZone, sv.zones[z], sv.healthy(func(s Shard) bool { return s.Region == z.region && s.Zone == z.zone }), sv.regions[z.region])
	}
	return out
}

// shortTarget is the CNAME target of the short name for a client that has no healthy local
// shard: its zone name, else its region name, else the global name.
func (sv *service) shortTarget(from Location) string {
	if from.Region != "" {
		if from.Zone != "" {
			if name, ok := sv.zones[zoneKey{from.Region, from.Zone}]; ok {
				return name
			}
		}
		if name, ok := sv.regions[from.Region]; ok {
			return name
		}
	}
	return sv.global
}

// placedIn reports whether the service has a shard in cluster (lower case), healthy or not.
func (sv *service) placedIn(cluster string) bool {
	for _, sh := range sv.shards {
		if sh.Cluster == cluster {
			return true
		}
	}
	return false
}

// apex is a zone served: the federation domain or a federation's short-name apex.
type apex struct {
	name   string
	soa    Record
	soaSet []Record // soa alone, shared by the answers that carry it
	ns     []Record
}

// node is one name that exists. A node with neither data nor apex is an empty non-terminal.
type node struct {
	zone  *apex // the zone the name belongs to
	apex  bool  // the name is zone.name: SOA and NS
	addrs addrRecords
	cname *Record
	short *service // in-cluster short name: the answer depends on the client
	// kind is what the node's addresses answer: a level of a service, or AnswerApex for a
	// nameserver's name.
	kind AnswerKind
}

// Zone is an immutable snapshot of everything served, built by Build. Its methods are safe
// for concurrent use.
type Zone struct {
	cfg      *normalized
	serial   uint32
	names    map[string]*node
	apexes   map[string]*apex
	clusters map[string]Location
	services []*service
}

// Build validates the configuration and every service and derives the zone. It fails, and
// builds nothing, when any service is invalid, two services share a name, or a cluster is
// given two locations; the errors name every offending value. serial is the SOA serial.
func Build(cfg Config, services []Service, serial uint32) (*Zone, error) {
	n, err := cfg.normalize()
	if err != nil {
		return nil, err
	}
	z := &Zone{cfg: n, serial: serial, names: map[string]*node{}, apexes: map[string]*apex{}, clusters: map[string]Location{}}
	var errs []error
	seen := map[ServiceKey]bool{}
	for _, s := range services {
		sv, err := n.service(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[sv.key] {
			errs = append(errs, fmt.Errorf("service %s is listed twice", sv.key))
			continue
		}
		seen[sv.key] = true
		z.services = append(z.services, sv)
		for _, sh := range sv.shards {
			loc := Location{Cluster: sh.Cluster, Region: sh.Region, Zone: sh.Zone}
			if prev, ok := z.clusters[sh.Cluster]; ok && prev != loc {
				errs = append(errs, fmt.Errorf("cluster %s has two locations: region %q zone %q, and region %q zone %q in service %s",
					sh.Cluster, prev.Region, prev.Zone, loc.Region, loc.Zone, sv.key))
				continue
			}
			z.clusters[sh.Cluster] = loc
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(z.services, func(a, b *service) int { return strings.Compare(a.global, b.global) })

	domain := z.addApex(n.domain + ".")
	for _, f := range n.federations {
		z.addApex(f + ".")
	}
	for _, ns := range n.nameservers {
		if len(ns.Addresses) == 0 || !inZone(ns.Name, domain.name) {
			continue
		}
		sv := &service{ttl: n.ttl}
		nd := z.addNode(ns.Name, domain)
		nd.addrs, nd.kind = sv.addrRecords(ns.Name, ns.Addresses), AnswerApex
	}
	for _, sv := range z.services {
		short := z.addApex(sv.key.Federation + ".")
		if nd := z.addNode(sv.short, short); nd.short == nil {
			nd.short = sv
		}
		for _, l := range sv.levels() {
			nd := z.addNode(l.name, domain)
			if nd.apex || nd.cname != nil || len(nd.addrs.v4)+len(nd.addrs.v6) > 0 {
				return nil, fmt.Errorf("service %s: name %s is already used by a nameserver", sv.key, l.name)
			}
			nd.addrs, nd.kind = l.addrs, l.kind
			if l.target != "" {
				nd.cname = &Record{Name: l.name, Type: TypeCNAME, TTL: sv.ttl, Target: l.target, Service: sv.key}
			}
		}
	}
	return z, nil
}

func (z *Zone) addApex(name string) *apex {
	if a, ok := z.apexes[name]; ok {
		return a
	}
	n := z.cfg
	a := &apex{name: name}
	a.soa = Record{Name: name, Type: TypeSOA, TTL: n.negTTL, SOA: SOA{
		MName: n.nameservers[0].Name, RName: n.hostmaster, Serial: z.serial,
		Refresh: soaRefresh, Retry: soaRetry, Expire: soaExpire, Minimum: n.negTTL,
	}}
	a.soaSet = []Record{a.soa}
	for _, ns := range n.nameservers {
		a.ns = append(a.ns, Record{Name: name, Type: TypeNS, TTL: n.ttl, Target: ns.Name})
	}
	z.apexes[name] = a
	z.names[name] = &node{zone: a, apex: true}
	return a
}

// addNode returns the node of name, creating it and its missing ancestors (empty
// non-terminals) up to the apex.
func (z *Zone) addNode(name string, a *apex) *node {
	nd, ok := z.names[name]
	if !ok {
		nd = &node{zone: a}
		z.names[name] = nd
	}
	for p := parent(name); p != "" && inZone(p, a.name); p = parent(p) {
		if _, ok := z.names[p]; ok {
			break
		}
		z.names[p] = &node{zone: a}
	}
	return nd
}

// parent strips the first label of an absolute LDH name; "" for the root.
func parent(name string) string {
	i := strings.IndexByte(name, '.')
	if i < 0 || i == len(name)-1 {
		return ""
	}
	return name[i+1:]
}

// inZone reports whether the absolute name is apex or below it.
func inZone(name, apex string) bool {
	return name == apex || (strings.HasSuffix(name, apex) && name[len(name)-len(apex)-1] == '.')
}

// NumServices is the number of services in the zone.
func (z *Zone) NumServices() int { return len(z.services) }

// Serial is the SOA serial of the snapshot.
func (z *Zone) Serial() uint32 { return z.serial }

// Domain is the federation domain, absolute and lower case.
func (z *Zone) Domain() string { return z.cfg.domain + "." }

// Locate returns the location of a member cluster, as its shards give it.
func (z *Zone) Locate(cluster string) (Location, bool) {
	l, ok := z.clusters[strings.ToLower(cluster)]
	return l, ok
}

// Names returns every name that exists (data, apexes and empty non-terminals), sorted.
func (z *Zone) Names() []string {
	out := make([]string, 0, len(z.names))
	for n := range z.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Apexes returns the zones served (the federation domain and the federations' short-name
// apexes), absolute and lower case, sorted.
func (z *Zone) Apexes() []string {
	out := make([]string, 0, len(z.apexes))
	for n := range z.apexes {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// ClientDependent reports whether the answers for name (absolute, lower case) depend on
// the querying client's Location: true for the in-cluster short names only. Every other
// name answers alike for every client, the CNAME chains a short name starts included.
func (z *Zone) ClientDependent(name string) bool {
	nd, ok := z.names[name]
	return ok && nd.short != nil
}
