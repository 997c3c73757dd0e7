package server

import (
	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// queryKind is what a query got, for strait_dns_queries_total: a kind of answer of the zone
// model, or a response to a query the model never saw. It indexes metrics.queries.
type queryKind uint8

// The kinds beyond the zone model's kinds (which come first, with the same values).
const (
	kindFormErr queryKind = queryKind(zone.NumAnswerKinds) + iota
	kindNotImp
	kindBadVers
	numQueryKinds
)

// labels returns the rcode and answer labels of k.
func (k queryKind) labels() (rcode, answer string) {
	switch k {
	case kindFormErr:
		return dns.RcodeToString[dns.RcodeFormatError], "none"
	case kindNotImp:
		return dns.RcodeToString[dns.RcodeNotImplemented], "none"
	case kindBadVers:
		return "BADVERS", "none" // RcodeToString has BADSIG, which shares the value
	}
	a := zone.AnswerKind(k)
	switch a {
	case zone.AnswerRefused:
		return dns.RcodeToString[dns.RcodeRefused], a.String()
	case zone.AnswerNXDomain:
		return dns.RcodeToString[dns.RcodeNameError], a.String()
	}
	return dns.RcodeToString[dns.RcodeSuccess], a.String()
}

// tally is what a query adds to the metrics: its kind, and whether its answer failed over.
type tally struct {
	kind     queryKind
	failover bool
}

// tallyOf is the tally of an answer of the zone model.
func tallyOf(res zone.Result) tally {
	return tally{kind: queryKind(res.Kind), failover: res.Failover}
}
