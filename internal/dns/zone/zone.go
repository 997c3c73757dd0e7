// Package zone is the pure model of the federation DNS hierarchy that strait dns serves and
// publishes: from federated Services and the health of their shards it derives, for every
// name, what an authoritative server answers. It imports neither client-go nor a DNS
// library, so the rules (which level answers addresses, which one is a CNAME, NXDOMAIN
// versus NODATA, short names seen from one cluster) are table-tested on their own.
//
// Names, for domain D, service s in namespace n of federation f:
//
//	s.n.f.svc.D          global: the healthy shards of every cluster
//	s.n.f.svc.R.D        region R: its healthy shards, else CNAME to the global name
//	s.n.f.svc.Z.R.D      zone Z of region R: its healthy shards, else CNAME to the region name
//	s.n.f.               in-cluster short name (apex f.): the querying cluster's own shard
//	                     when healthy, else CNAME to that cluster's zone name (or the nearest
//	                     enclosing level the service has)
//
// A global name without healthy shards exists but has no addresses (NODATA, SOA in the
// authority section with the negative TTL): the service exists, so NXDOMAIN would be
// wrong, and a short negative TTL makes recovery visible quickly.
package zone

import (
	"fmt"
	"net/netip"
	"time"
)

// DefaultTTL is the TTL of service records when neither the Config nor the Service sets one,
// as in the Kubernetes federation (v1) that this hierarchy reproduces.
const DefaultTTL = 180 * time.Second

// DefaultNegativeTTL is how long resolvers cache NXDOMAIN and NODATA (the SOA MINIMUM and
// the SOA record's own TTL, RFC 2308).
const DefaultNegativeTTL = 30 * time.Second

// SOA timers. Secondaries are not expected (publishing goes through RFC 2136 or
// ExternalDNS), so they only need to be sane.
const (
	soaRefresh = 3600
	soaRetry   = 600
	soaExpire  = 86400
)

// maxTTL is the largest TTL RFC 2181 section 8 allows.
const maxTTL = 1<<31 - 1

// Service is one federated Service and its shards, one per member cluster it is placed in.
type Service struct {
	Namespace  string
	Name       string
	Federation string
	// TTL of the service's records; 0 means Config.DefaultTTL.
	TTL    time.Duration
	Shards []Shard
}

// Shard is the Service in one member cluster. Only a healthy shard with at least one address
// contributes to the records. List a shard for every cluster the service is placed in, healthy
// or not: the zone and region names of a location exist only where the service has a shard.
type Shard struct {
	Cluster string
	// Region and Zone locate the cluster. Either may be empty (the shard then only counts at
	// the enclosing levels); a Zone needs a Region.
	Region string
	Zone   string
	// Healthy: the member's lease is fresh and the shard has a ready endpoint.
	Healthy bool
	// Addresses are the shard's ingress addresses, answered from outside the cluster.
	Addresses []netip.Addr
	// LocalAddresses, when set, are answered instead of Addresses for the short name queried
	// from the shard's own cluster (typically the Service's ClusterIPs).
	LocalAddresses []netip.Addr
}

// ServiceKey identifies a federated service.
type ServiceKey struct {
	Namespace  string
	Name       string
	Federation string
}

// String returns federation/namespace/name.
func (k ServiceKey) String() string { return k.Federation + "/" + k.Namespace + "/" + k.Name }

// Key returns the service's identity.
func (s Service) Key() ServiceKey {
	return ServiceKey{Namespace: s.Namespace, Name: s.Name, Federation: s.Federation}
}

// Nameserver is an NS record of the zone, with the addresses answered for its name when the
// name is inside the zone (glue).
type Nameserver struct {
	Name      string
	Addresses []netip.Addr
}

// Config describes the zone.
type Config struct {
	// Domain is the federation domain (e.g. "example.com"); a trailing dot is allowed.
	Domain string
	// DefaultTTL of service records; 0 means DefaultTTL.
	DefaultTTL time.Duration
	// NegativeTTL for NXDOMAIN and NODATA; 0 means DefaultNegativeTTL.
	NegativeTTL time.Duration
	// Nameservers of the zone; empty means one, "ns.<Domain>", without addresses.
	Nameservers []Nameserver
	// Hostmaster is the SOA RNAME; empty means "hostmaster.<Domain>".
	Hostmaster string
	// Federations whose short-name apex (<federation>.) is served even while they have no
	// services, so member clusters forwarding that domain get NXDOMAIN rather than REFUSED.
	Federations []string
}

// Location is where a client cluster is, for short names.
type Location struct {
	Cluster string
	Region  string
	Zone    string
}

// Type is a DNS RR type (the IANA number).
type Type uint16

// The RR types the model produces or distinguishes.
const (
	TypeA     Type = 1
	TypeNS    Type = 2
	TypeCNAME Type = 5
	TypeSOA   Type = 6
	TypeTXT   Type = 16
	TypeAAAA  Type = 28
	TypeANY   Type = 255
)

// String returns the mnemonic of the types above, TYPEn otherwise (RFC 3597).
func (t Type) String() string {
	switch t {
	case TypeA:
		return "A"
	case TypeNS:
		return "NS"
	case TypeCNAME:
		return "CNAME"
	case TypeSOA:
		return "SOA"
	case TypeTXT:
		return "TXT"
	case TypeAAAA:
		return "AAAA"
	case TypeANY:
		return "ANY"
	}
	return fmt.Sprintf("TYPE%d", uint16(t))
}

// SOA is the data of an SOA record.
type SOA struct {
	MName, RName                            string
	Serial, Refresh, Retry, Expire, Minimum uint32
}

// Record is one resource record. Names are absolute, lower case, with the trailing dot.
type Record struct {
	Name string
	Type Type
	TTL  uint32
	// Addr is the data of A and AAAA records.
	Addr netip.Addr
	// Target is the data of CNAME and NS records.
	Target string
	// SOA is the data of SOA records.
	SOA SOA
	// Service is the federated service a service record belongs to (zero for SOA, NS, glue).
	Service ServiceKey
}

// String formats the record in zone-file presentation format.
func (r Record) String() string {
	switch r.Type {
	case TypeA, TypeAAAA:
		return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, r.TTL, r.Type, r.Addr)
	case TypeCNAME, TypeNS:
		return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, r.TTL, r.Type, r.Target)
	case TypeSOA:
		s := r.SOA
		return fmt.Sprintf("%s\t%d\tIN\tSOA\t%s %s %d %d %d %d %d", r.Name, r.TTL, s.MName, s.RName,
			s.Serial, s.Refresh, s.Retry, s.Expire, s.Minimum)
	}
	return fmt.Sprintf("%s\t%d\tIN\t%s", r.Name, r.TTL, r.Type)
}

// Rcode is the response code of an answer.
type Rcode int

// The response codes of answers.
const (
	RcodeSuccess   Rcode = 0 // NOERROR, with data or NODATA
	RcodeNameError Rcode = 3 // NXDOMAIN
	RcodeRefused   Rcode = 5 // the name is outside every zone served
)

// AnswerKind says what answered a question: which level of the hierarchy gave the
// addresses, or why there are none. strait dns counts queries by it.
type AnswerKind uint8

// The kinds of answers. A CNAME chain is classified by where it ends.
const (
	// AnswerRefused: the name is outside every zone served.
	AnswerRefused AnswerKind = iota
	// AnswerNXDomain: the name does not exist.
	AnswerNXDomain
	// AnswerNoData: the name exists without records of the type asked (a global name
	// without healthy shards among them).
	AnswerNoData
	// AnswerLocal: a short name answered with the asking cluster's own healthy shard.
	AnswerLocal
	// AnswerZone, AnswerRegion and AnswerGlobal: the addresses of a zone, region or global
	// name's healthy shards.
	AnswerZone
	AnswerRegion
	AnswerGlobal
	// AnswerCNAME: a CNAME and nothing after it (a question for the CNAME itself, or for
	// ANY).
	AnswerCNAME
	// AnswerApex: SOA, NS or a nameserver's addresses.
	AnswerApex
	// NumAnswerKinds is the number of kinds.
	NumAnswerKinds
)

var answerKinds = [NumAnswerKinds]string{"refused", "nxdomain", "nodata", "local", "zone", "region", "global", "cname", "apex"}

// String is the kind's name in strait dns's metrics.
func (k AnswerKind) String() string {
	if k < NumAnswerKinds {
		return answerKinds[k]
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

// Result is the answer to one question. Its slices may share the zone's memory, and
// other Results': read them, never write to them.
type Result struct {
	// Kind says what answered.
	Kind AnswerKind
	// Failover is set when the answer moved up the hierarchy because a level had no healthy
	// shard: it followed the CNAME of a zone or region name, or the asking cluster has a
	// shard of the service, but not a healthy one, and its short name was a CNAME.
	Failover bool
	Rcode    Rcode
	// Authoritative is set for every name inside a served zone.
	Authoritative bool
	Answer        []Record
	// Authority holds the SOA of the zone for NXDOMAIN and NODATA.
	Authority []Record
	// Additional holds the addresses of in-zone nameservers for NS answers.
	Additional []Record
}
