package server

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// FuzzServe feeds arbitrary bytes to the server the way miekg/dns's serve loop does (header,
// accept function, unpack, handler) over UDP and TCP, from a cluster and from outside:
// nothing panics, every reply packs within the transport's limit, keeps the query ID, and
// unpacks again. The replies' size bound is what keeps memory bounded: nothing the server
// builds grows with the query beyond one question name.
func FuzzServe(f *testing.F) {
	s, err := New(Config{
		Zone:    zone.Config{Domain: "example.com", Nameservers: []zone.Nameserver{{Name: "ns1.example.com", Addresses: addrs("127.0.0.1")}}},
		Sources: []Source{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Cluster: "c2"}},
	})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Update(services()); err != nil {
		f.Fatal(err)
	}
	for _, q := range []struct {
		name  string
		qtype uint16
		edns  uint16
	}{
		{"web.shop.fed.svc.east-b.east.example.com.", dns.TypeA, 0},
		{"big.shop.fed.svc.example.com.", dns.TypeA, 4096},
		{"big.shop.fed.svc.example.com.", dns.TypeANY, 0},
		{"web.shop.fed.", dns.TypeAAAA, 1232},
		{"example.com.", dns.TypeNS, 512},
		{"nope.example.com.", dns.TypeTXT, 0},
		{"example.org.", dns.TypeA, 0},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		if q.edns > 0 {
			m.SetEdns0(q.edns, true)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}) // compression loop
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0, 1, 0, 1, 0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, packet []byte) {
		if len(packet) > dns.MaxMsgSize {
			return
		}
		for _, c := range []Client{
			{UDP: true},
			{UDP: true, Addr: netip.MustParseAddr("10.1.2.3")},
			{Cluster: "c1"},
		} {
			reply := serve(s, packet, c)
			if reply == nil {
				continue
			}
			limit := dns.MaxMsgSize
			if c.UDP {
				limit = DefaultMaxUDPSize
			}
			if len(reply) > limit {
				t.Fatalf("reply of %d bytes over %d", len(reply), limit)
			}
			if binary.BigEndian.Uint16(reply) != binary.BigEndian.Uint16(packet) {
				t.Fatal("reply ID differs from the query's")
			}
			if err := new(dns.Msg).Unpack(reply); err != nil {
				t.Fatalf("reply does not unpack: %v", err)
			}
		}
	})
}

// serve mirrors miekg/dns's Server.serveDNS for one packet and returns the packed reply,
// nil when the server sends none.
func serve(s *Server, packet []byte, c Client) []byte {
	if len(packet) < 12 {
		return nil // a short header gets no reply
	}
	dh := dns.Header{
		Id: binary.BigEndian.Uint16(packet), Bits: binary.BigEndian.Uint16(packet[2:]),
		Qdcount: binary.BigEndian.Uint16(packet[4:]), Ancount: binary.BigEndian.Uint16(packet[6:]),
		Nscount: binary.BigEndian.Uint16(packet[8:]), Arcount: binary.BigEndian.Uint16(packet[10:]),
	}
	req := new(dns.Msg)
	var reply *dns.Msg
	switch action := acceptFunc(dh); action {
	case dns.MsgIgnore:
		return nil
	case dns.MsgAccept:
		if err := req.Unpack(packet); err == nil {
			reply = s.Respond(req, c)
			break
		}
		fallthrough
	default:
		req.Id, req.Opcode = dh.Id, int(dh.Bits>>11)&0xF
		reply = new(dns.Msg)
		reply.SetRcodeFormatError(req)
		if action == dns.MsgRejectNotImplemented {
			reply.Rcode = dns.RcodeNotImplemented
		}
	}
	b, err := reply.Pack()
	if err != nil {
		panic("reply does not pack: " + err.Error())
	}
	return b
}
