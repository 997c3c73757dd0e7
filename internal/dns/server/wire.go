package server

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// The UDP fast path. Every answer of a snapshot is packed once, when the snapshot is built,
// into the wire format of its sections (wireTable). A query is then served without
// unpacking it into a dns.Msg or packing a response: parse the header, the question and the
// OPT record in place, look the lower-cased name up, and write header + the query's own
// question + the packed sections + the OPT. The bytes are those Respond's response packs
// into (the equivalence tests check every name, type, EDNS size, case and cluster of a
// generated zone): responses that fit their size limit are packed uncompressed by Respond
// too (dns.Msg.Truncate packs uncompressed whatever fits), so the sections do not depend
// on the question; the few that do not fit are packed by Respond itself at build time for
// the lower-case question, at the two sizes real clients ask with (512 bytes without EDNS,
// the server's maximum with it). Anything else, every query the fast path does not
// recognise included, takes the slow path, which is exactly what miekg/dns's server did:
// unpack, Respond, pack.

// Question types whose answers differ; every other type has the answers of typeOther.
const (
	tcA = iota
	tcAAAA
	tcCNAME
	tcSOA
	tcNS
	tcANY
	tcOther
	numTypeClasses
)

// classTypes are the question types the answers of each class are built for.
var classTypes = [numTypeClasses]uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeSOA, dns.TypeNS, dns.TypeANY, dns.TypeTXT}

func typeClass(t uint16) int {
	switch t {
	case dns.TypeA:
		return tcA
	case dns.TypeAAAA:
		return tcAAAA
	case dns.TypeCNAME:
		return tcCNAME
	case dns.TypeSOA:
		return tcSOA
	case dns.TypeNS:
		return tcNS
	case dns.TypeANY:
		return tcANY
	}
	return tcOther
}

// optLen is the size of the OPT record of a response: root name, type, class (the payload
// size), TTL (extended rcode, version, flags) and an empty RDATA.
const optLen = 11

// wireAnswer is one answer packed: the header fields it sets and its answer, authority and
// additional sections (without the OPT), uncompressed. Identical answers are shared.
type wireAnswer struct {
	flags2, flags3 byte // AA, and the rcode
	an, ns, ar     uint16
	body           string
	tally          tally // what a query answered with it counts
}

// refusedAnswer is the answer to names outside every zone, other classes than IN and zone
// transfers: REFUSED, not authoritative, no records.
var refusedAnswer = &wireAnswer{flags3: dns.RcodeRefused, tally: tally{kind: queryKind(zone.AnswerRefused)}}

// truncated variants: the responses to the lower-case question that do not fit, packed and
// truncated by Respond.
const (
	truncPlain = iota // UDP without EDNS: 512 bytes
	truncEDNS         // UDP with EDNS at the server's maximum payload size
)

// wireTable is the packed answers of a snapshot.
type wireTable struct {
	// names maps a lower-case wire-format name to its answers: numTypeClasses of them for
	// every client slot when they depend on the client (short names), else numTypeClasses.
	names  map[string][]*wireAnswer
	apexes map[string]*wireAnswer // apex wire name -> NXDOMAIN answer for names below it
	// trunc maps truncKey to a whole response (header, question, sections, OPT) for the
	// lower-case question.
	trunc map[string][]byte
}

// truncKey is the trunc map's key: name, type class, slot and variant.
func truncKey(buf []byte, name []byte, tc, slot, variant int) []byte {
	buf = append(buf[:0], name...)
	return append(buf, byte(tc), byte(slot), byte(slot>>8), byte(variant))
}

// buildWire packs every answer of snap's zone, for every client slot.
func (s *Server) buildWire(snap *snapshot) *wireTable {
	z, locs := snap.zone, snap.locs
	names := z.Names()
	w := &wireTable{names: make(map[string][]*wireAnswer, len(names)), apexes: map[string]*wireAnswer{}, trunc: map[string][]byte{}}
	b := &wireBuilder{intern: map[string]*wireAnswer{}}
	// One array for all the names' answers: fewer allocations, less memory.
	n := 0
	for _, name := range names {
		if z.ClientDependent(name) {
			n += numTypeClasses * len(locs)
		} else {
			n += numTypeClasses
		}
	}
	all := make([]*wireAnswer, 0, n)
	var key []byte
	for _, name := range names {
		wn, ok := wireName2(name, b.nameBuf[:0])
		if !ok {
			continue // not a name the fast path parses; the slow path answers it
		}
		slots := locs[:1]
		if z.ClientDependent(name) {
			slots = locs
		}
		start := len(all)
		for slot, loc := range slots {
			for tc := range numTypeClasses {
				// The slow path answers what the model answers for the name, the type and
				// the location (snapshot.lookup): the same records.
				a := b.answer(z.Answer(name, zone.Type(classTypes[tc]), loc), all[start:])
				all = append(all, a)
				qlen := len(wn) + 4
				if 12+qlen+len(a.body) > dns.MinMsgSize {
					w.trunc[string(truncKey(key, wn, tc, slot, truncPlain))] = s.packedResponse(snap, name, classTypes[tc], slot, 0)
				}
				if 12+qlen+len(a.body)+optLen > s.maxUDP {
					w.trunc[string(truncKey(key, wn, tc, slot, truncEDNS))] = s.packedResponse(snap, name, classTypes[tc], slot, s.maxUDP)
				}
			}
		}
		w.names[string(wn)] = all[start:len(all):len(all)]
	}
	for _, apex := range z.Apexes() {
		wn, ok := wireName2(apex, b.nameBuf[:0])
		if !ok {
			continue
		}
		// A name that cannot exist in the zone (zone names are LDH): the model's NXDOMAIN.
		res := z.Answer(`\000.`+apex, zone.TypeA, zone.Location{})
		if res.Rcode != zone.RcodeNameError {
			continue
		}
		w.apexes[string(wn)] = b.answer(res, nil)
	}
	return w
}

// wireBuilder packs answers, sharing identical ones.
type wireBuilder struct {
	intern  map[string]*wireAnswer
	buf     []byte
	nameBuf [256]byte
}

// answer packs res the way Respond's response packs it when it fits: uncompressed. An
// answer equal to one of the name's others (siblings) is shared, and so are the answers
// without records in the answer section (NXDOMAIN and NODATA: the zone's SOA), the only
// ones different names have in common.
func (b *wireBuilder) answer(res zone.Result, siblings []*wireAnswer) *wireAnswer {
	a := wireAnswer{flags3: byte(rcodes[res.Rcode]), an: uint16(len(res.Answer)), ns: uint16(len(res.Authority)), ar: uint16(len(res.Additional)),
		tally: tallyOf(res)}
	if res.Authoritative {
		a.flags2 = 0x04
	}
	var failover byte
	if a.tally.failover {
		failover = 1
	}
	// The key: the tally, the header fields, then the body.
	buf := append(b.buf[:0], byte(a.tally.kind), failover, a.flags2, a.flags3, byte(a.an>>8), byte(a.an), byte(a.ns>>8), byte(a.ns), byte(a.ar>>8), byte(a.ar))
	for _, sec := range [][]zone.Record{res.Answer, res.Authority, res.Additional} {
		for _, r := range sec {
			buf = appendRecord(buf, r)
		}
	}
	b.buf = buf
	if a.an > 0 {
		for _, o := range siblings {
			if o.tally == a.tally && o.flags2 == a.flags2 && o.flags3 == a.flags3 && o.an == a.an && o.ns == a.ns && o.ar == a.ar && o.body == string(buf[10:]) {
				return o
			}
		}
		a.body = string(buf[10:])
		return &a
	}
	if shared, ok := b.intern[string(buf)]; ok {
		return shared
	}
	key := string(buf)
	a.body = key[10:]
	shared := &a
	b.intern[key] = shared
	return shared
}

// appendRecord appends r in wire format, uncompressed, as dns.Msg.Pack packs the record
// toRR makes of it.
func appendRecord(buf []byte, r zone.Record) []byte {
	buf = appendName(buf, r.Name)
	buf = binary.BigEndian.AppendUint16(buf, uint16(r.Type))
	buf = binary.BigEndian.AppendUint16(buf, dns.ClassINET)
	buf = binary.BigEndian.AppendUint32(buf, r.TTL)
	rdlen := len(buf)
	buf = append(buf, 0, 0)
	switch r.Type {
	case zone.TypeA:
		a := r.Addr.As4()
		buf = append(buf, a[:]...)
	case zone.TypeAAAA:
		a := r.Addr.As16()
		buf = append(buf, a[:]...)
	case zone.TypeCNAME, zone.TypeNS:
		buf = appendName(buf, r.Target)
	case zone.TypeSOA:
		buf = appendName(buf, r.SOA.MName)
		buf = appendName(buf, r.SOA.RName)
		for _, v := range []uint32{r.SOA.Serial, r.SOA.Refresh, r.SOA.Retry, r.SOA.Expire, r.SOA.Minimum} {
			buf = binary.BigEndian.AppendUint32(buf, v)
		}
	}
	binary.BigEndian.PutUint16(buf[rdlen:], uint16(len(buf)-rdlen-2))
	return buf
}

// appendName appends an absolute presentation-format name in wire format, uncompressed.
func appendName(buf []byte, name string) []byte {
	if name == "." {
		return append(buf, 0)
	}
	start, lenAt := len(buf), len(buf)
	buf = append(buf, 0)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch c {
		case '\\':
			// Escapes are not in zone names; miekg/dns packs them.
			var tmp [256]byte
			off, err := dns.PackDomainName(name, tmp[:], 0, nil, false)
			if err != nil {
				panic("packing " + name + ": " + err.Error())
			}
			return append(buf[:start], tmp[:off]...)
		case '.':
			buf[lenAt] = byte(len(buf) - lenAt - 1)
			lenAt = len(buf)
			buf = append(buf, 0)
		default:
			buf = append(buf, c)
		}
	}
	return buf
}

// packedResponse packs the slow path's response from snap to the lower-case question over
// UDP from a client of slot, with an OPT offering size when size > 0, for the trunc map.
func (s *Server) packedResponse(snap *snapshot, name string, qtype uint16, slot, size int) []byte {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = false
	if size > 0 {
		q.SetEdns0(uint16(size), false)
	}
	m, _ := s.respond(snap, q, Client{Cluster: s.slots[slot], UDP: true})
	out, err := m.Pack()
	if err != nil {
		return nil // never served: the slow path answers
	}
	return out
}

// wireName2 appends the wire format of an absolute presentation name, lower case, when it
// is one the fast path parses (letters, digits, '-' and '_' only; see parseQuestion).
func wireName2(name string, buf []byte) ([]byte, bool) {
	if name == "." {
		return append(buf, 0), true
	}
	start := len(buf)
	buf = append(buf, 0)
	lenAt := start
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c == '.' {
			l := len(buf) - lenAt - 1
			if l == 0 || l > 63 {
				return nil, false
			}
			buf[lenAt] = byte(l)
			lenAt = len(buf)
			buf = append(buf, 0)
			continue
		}
		if !nameByte(c) {
			return nil, false
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf = append(buf, c)
	}
	if len(buf)-start > 255 || buf[len(buf)-1] != 0 {
		return nil, false
	}
	return buf, true
}

// nameByte reports whether c may appear in a name label on the fast path: bytes that
// miekg/dns's presentation format writes as themselves, and that zone names use.
func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// wireQuery is what the fast path reads of a request.
type wireQuery struct {
	qend    int  // end of the question (12 + name + type + class)
	nameEnd int  // end of the name
	upper   bool // the name has upper-case letters
	qtype   uint16
	qclass  uint16
	edns    bool
	do      bool
	size    int // the response's size limit
	// tally is what the query counts once answered (fastAnswer).
	tally tally
}

// parseQuery reads a request the fast path serves, writing the lower-case name to key; ok
// is false for anything else (the slow path then decides, as miekg/dns's server did): a
// response, another opcode or section count than one question and at most an OPT, a
// compressed or malformed name or bytes in it the fast path does not handle, an OPT that is
// not a plain version-0 OPT with no options but cookies, NSID and padding, trailing bytes.
func (s *Server) parseQuery(p []byte, key *[256]byte) (q wireQuery, name []byte, ok bool) {
	if len(p) < 12+5 || p[2]&0xF8 != 0 || // QR, opcode
		binary.BigEndian.Uint32(p[4:]) != 1<<16 || binary.BigEndian.Uint16(p[8:]) != 0 {
		return q, nil, false
	}
	ar := binary.BigEndian.Uint16(p[10:])
	if ar > 1 {
		return q, nil, false
	}
	off, n := 12, 0
	for {
		if off >= len(p) {
			return q, nil, false
		}
		l := int(p[off])
		if l == 0 {
			key[n] = 0
			n++
			off++
			break
		}
		if l > 63 || off+1+l > len(p) || n+1+l > 254 {
			return q, nil, false
		}
		key[n] = byte(l)
		n++
		for _, c := range p[off+1 : off+1+l] {
			if !nameByte(c) {
				return q, nil, false
			}
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
				q.upper = true
			}
			key[n] = c
			n++
		}
		off += 1 + l
	}
	q.nameEnd = off
	if off+4 > len(p) {
		return q, nil, false
	}
	q.qtype = binary.BigEndian.Uint16(p[off:])
	q.qclass = binary.BigEndian.Uint16(p[off+2:])
	off += 4
	q.qend = off
	q.size = dns.MinMsgSize
	if ar == 1 {
		// OPT: root name, type 41, class = payload size, TTL = extended rcode, version,
		// flags; RDATA.
		if off+11 > len(p) || p[off] != 0 || binary.BigEndian.Uint16(p[off+1:]) != dns.TypeOPT || p[off+6] != 0 {
			return q, nil, false
		}
		q.edns = true
		q.do = p[off+7]&0x80 != 0
		q.size = min(max(int(binary.BigEndian.Uint16(p[off+3:])), dns.MinMsgSize), s.maxUDP)
		rdlen := int(binary.BigEndian.Uint16(p[off+9:]))
		off += 11
		if off+rdlen != len(p) {
			return q, nil, false
		}
		for o := off; o < len(p); {
			if o+4 > len(p) {
				return q, nil, false
			}
			switch binary.BigEndian.Uint16(p[o:]) {
			case dns.EDNS0NSID, dns.EDNS0COOKIE, dns.EDNS0PADDING:
			default:
				return q, nil, false
			}
			o += 4 + int(binary.BigEndian.Uint16(p[o+2:]))
			if o > len(p) {
				return q, nil, false
			}
		}
		off = len(p)
	}
	if off != len(p) {
		return q, nil, false
	}
	return q, key[:n], true
}

// fastAnswer writes to out the response to the query p from a client of slot, when the fast
// path can; q.tally is then what the query counts in the metrics.
func (s *Server) fastAnswer(snap *snapshot, p []byte, slot int, out []byte) (resp []byte, q wireQuery, ok bool) {
	var key [256]byte
	q, name, ok := s.parseQuery(p, &key)
	if !ok {
		return nil, q, false
	}
	w := snap.wire
	tc := typeClass(q.qtype)
	var a *wireAnswer
	eslot := 0 // the slot of the answer: the client's for short names, else 0
	switch {
	case q.qclass != dns.ClassINET || q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR:
		a = refusedAnswer
	default:
		if answers := w.names[string(name)]; answers != nil {
			if len(answers) > numTypeClasses {
				eslot = slot
			}
			a = answers[eslot*numTypeClasses+tc]
			break
		}
		// NXDOMAIN from the closest enclosing apex, else REFUSED.
		a = refusedAnswer
		for o := 0; name[o] != 0; o += 1 + int(name[o]) {
			if nx := w.apexes[string(name[o+1+int(name[o]):])]; nx != nil {
				a = nx
				break
			}
		}
	}
	q.tally = a.tally
	qlen := q.qend - 12
	total := 12 + qlen + len(a.body)
	if q.edns {
		total += optLen
	}
	if total > q.size {
		// Truncated: packed at build time for the lower-case question, at two sizes.
		if a == refusedAnswer || q.upper {
			return nil, q, false
		}
		variant := truncPlain
		if q.edns {
			variant = truncEDNS
			if q.size != s.maxUDP {
				return nil, q, false
			}
		}
		var kb [260]byte
		full := w.trunc[string(truncKey(kb[:0], name, tc, eslot, variant))]
		if full == nil {
			return nil, q, false
		}
		out = append(out[:0], full...)
		out[0], out[1] = p[0], p[1]
		out[2] = out[2]&^0x01 | p[2]&0x01
		out[3] = out[3]&^0x10 | p[3]&0x10
		copy(out[12:q.qend], p[12:q.qend]) // the question type of typeOther
		if q.edns && q.do {
			out[len(out)-4] |= 0x80
		}
		return out, q, true
	}
	ar := a.ar
	if q.edns {
		ar++
	}
	out = append(out[:0], p[0], p[1], 0x80|a.flags2|p[2]&0x01, a.flags3|p[3]&0x10,
		0, 1, byte(a.an>>8), byte(a.an), byte(a.ns>>8), byte(a.ns), byte(ar>>8), byte(ar))
	out = append(out, p[12:q.qend]...)
	out = append(out, a.body...)
	if q.edns {
		out = appendOPT(out, s.maxUDP, q.do)
	}
	return out, q, true
}

// appendOPT appends the OPT record of a response: the payload size offered, version 0,
// the DO bit echoed.
func appendOPT(out []byte, size int, do bool) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	return append(out, 0, 0, byte(dns.TypeOPT), byte(size>>8), byte(size), 0, 0, flags, 0, 0, 0)
}

// slipAnswer writes to out the truncated response RRL sends instead of resp (see slipped):
// resp's header with TC set and no records, the question, the OPT.
func slipAnswer(resp []byte, qend int, edns bool, maxUDP int, do bool, out []byte) []byte {
	var ar byte
	if edns {
		ar = 1
	}
	out = append(out[:0], resp[0], resp[1], resp[2]|0x02, resp[3], 0, 1, 0, 0, 0, 0, 0, ar)
	out = append(out, resp[12:qend]...)
	if edns {
		out = appendOPT(out, maxUDP, do)
	}
	return out
}

// clientSlot returns the client slot of a UDP query from src on a listener of slot ls.
func (s *Server) clientSlot(ls int, src netip.Addr) int {
	if ls != 0 {
		return ls
	}
	for _, sr := range s.sources {
		if sr.Prefix.Contains(src) {
			return sr.slot
		}
	}
	return 0
}
