package server

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpSocket is one of a listener's SO_REUSEPORT UDP sockets, read by one goroutine.
type udpSocket struct {
	conn    *net.UDPConn
	cluster string // the listener's
	slot    int    // the listener's client slot; 0: by source address
	// pktinfo: the socket is bound to every address; replies are sent from the address
	// the query was sent to.
	pktinfo bool
	closed  atomic.Bool
}

// enablePacketInfo asks for the destination address of every packet, as miekg/dns's server
// does: for both families, failing only when both fail.
func (u *udpSocket) enablePacketInfo() error {
	rc, err := u.conn.SyscallConn()
	if err != nil {
		return err
	}
	var err4, err6 error
	if err := rc.Control(func(fd uintptr) {
		err4 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		err6 = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
	}); err != nil {
		return err
	}
	if err4 != nil && err6 != nil {
		return err4
	}
	u.pktinfo = true
	return nil
}

// serveUDP answers the queries of one socket until it is closed. One goroutine per socket
// and no allocation per query on the fast path: the buffers are the goroutine's own.
func (s *Server) serveUDP(u *udpSocket) error {
	in := make([]byte, dns.MaxMsgSize)
	out := make([]byte, 0, dns.MaxMsgSize)
	slipBuf := make([]byte, 0, 512)
	var oob, oobOut []byte
	if u.pktinfo {
		oob = make([]byte, 256)
		oobOut = make([]byte, 0, 64)
	}
	limitable := u.cluster == ""
	for {
		var (
			n, oobn int
			from    netip.AddrPort
			err     error
		)
		if u.pktinfo {
			n, oobn, _, from, err = u.conn.ReadMsgUDPAddrPort(in, oob)
		} else {
			n, from, err = u.conn.ReadFromUDPAddrPort(in)
		}
		if err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// As miekg/dns's server: go on after a temporary error, stop on any other.
			if ne, ok := err.(net.Error); ok && ne.Temporary() { //nolint:staticcheck // what miekg/dns does
				continue
			}
			return err
		}
		src := from.Addr().Unmap().WithZone("")
		resp, count := s.handleUDP(in[:n], src, u.slot, u.cluster, limitable, out[:0], &slipBuf, s.clock)
		if resp == nil {
			continue
		}
		if u.pktinfo {
			_, _, err = u.conn.WriteMsgUDPAddrPort(resp, replySource(oobOut[:0], oob[:oobn]), from)
		} else {
			_, err = u.conn.WriteToUDPAddrPort(resp, from)
		}
		if err == nil && count {
			s.metrics.responsesUDP.Inc()
			s.metrics.bytesUDP.Add(float64(len(resp)))
		}
	}
}

// handleUDP answers the UDP packet p from src on a listener of the slot and cluster given
// (limitable: RRL applies to the listener), writing to out when it can, and says whether the
// response counts in the response metrics (not when slipped or rejected unread). nil: no
// response. slipBuf is a buffer for a slipped response; now is RRL's clock.
func (s *Server) handleUDP(p []byte, src netip.Addr, slot int, cluster string, limitable bool, out []byte, slipBuf *[]byte, now func() time.Time) ([]byte, bool) {
	snap := s.snap.Load()
	limit := limitable && s.rrl != nil && src.IsValid() && !s.exempt(src)
	resp, q, ok := s.fastAnswer(snap, p, s.clientSlot(slot, src), out)
	if ok {
		s.metrics.count(q.tally)
		if resp[3]&0xF == dns.RcodeRefused {
			s.metrics.refused.Inc()
		}
		if limit {
			switch s.rrl.take(src, len(resp), now()) {
			case drop:
				s.metrics.limitedDrop.Inc()
				return nil, false
			case slip:
				s.metrics.limitedSlip.Inc()
				*slipBuf = slipAnswer(resp, q.qend, q.edns, s.maxUDP, q.do, *slipBuf)
				return *slipBuf, false
			}
		}
		return resp, true
	}
	r, m, reply, t := s.slowReply(snap, p, Client{Addr: src, Cluster: cluster, UDP: true})
	if m != nil || reply != nil {
		s.metrics.count(t)
	}
	if m == nil {
		return reply, false // ignored, or rejected before it was read (miekg/dns's FORMERR, NOTIMP)
	}
	if m.Rcode == dns.RcodeRefused {
		s.metrics.refused.Inc()
	}
	if reply == nil {
		return nil, false
	}
	if limit {
		switch s.rrl.take(src, len(reply), now()) {
		case drop:
			s.metrics.limitedDrop.Inc()
			return nil, false
		case slip:
			s.metrics.limitedSlip.Inc()
			b, err := slipped(r, m).Pack()
			if err != nil {
				return nil, false
			}
			return b, false
		}
	}
	return reply, true
}

// slowReply answers p as miekg/dns's server and handler did: a header too short for one
// gets nothing, the accept function (acceptFunc) ignores or rejects (FORMERR, NOTIMP, with
// what unpacked of the request), a request that does not unpack is a format error, any
// other is answered by Respond and packed. r and m are the request and the response when
// Respond answered (reply nil if m does not pack); t is what the query counts in the
// metrics when it was answered (m or reply not nil).
func (s *Server) slowReply(snap *snapshot, p []byte, c Client) (r, m *dns.Msg, reply []byte, t tally) {
	if len(p) < 12 {
		return nil, nil, nil, t
	}
	dh := dns.Header{
		Id: binary.BigEndian.Uint16(p), Bits: binary.BigEndian.Uint16(p[2:]),
		Qdcount: binary.BigEndian.Uint16(p[4:]), Ancount: binary.BigEndian.Uint16(p[6:]),
		Nscount: binary.BigEndian.Uint16(p[8:]), Arcount: binary.BigEndian.Uint16(p[10:]),
	}
	req := new(dns.Msg)
	action := acceptFunc(dh)
	switch action {
	case dns.MsgIgnore:
		return nil, nil, nil, t
	case dns.MsgAccept:
		if err := req.Unpack(p); err == nil {
			m, t := s.respond(snap, req, c)
			b, err := m.Pack()
			if err != nil {
				return req, m, nil, t
			}
			return req, m, b, t
		}
	default:
		// The header only, as miekg/dns's server has it when it rejects.
		req = new(dns.Msg)
		req.Id = dh.Id
		req.Response = dh.Bits&(1<<15) != 0
		req.Opcode = int(dh.Bits>>11) & 0xF
		req.Authoritative = dh.Bits&(1<<10) != 0
		req.Truncated = dh.Bits&(1<<9) != 0
		req.RecursionDesired = dh.Bits&(1<<8) != 0
		req.RecursionAvailable = dh.Bits&(1<<7) != 0
		req.Zero = dh.Bits&(1<<6) != 0
		req.AuthenticatedData = dh.Bits&(1<<5) != 0
		req.CheckingDisabled = dh.Bits&(1<<4) != 0
		req.Rcode = int(dh.Bits & 0xF)
	}
	opcode := req.Opcode
	req.SetRcodeFormatError(req)
	req.Zero = false
	t.kind = kindFormErr
	if action == dns.MsgRejectNotImplemented {
		req.Opcode = opcode
		req.Rcode = dns.RcodeNotImplemented
		t.kind = kindNotImp
	}
	req.Ns, req.Answer, req.Extra = nil, nil, nil
	b, err := req.Pack()
	if err != nil {
		return nil, nil, nil, t
	}
	return nil, nil, b, t
}

// replySource appends to out the control message that sends a reply from the address the
// query was sent to, as read from the query's control messages in oob (IPV6_PKTINFO first,
// then IP_PKTINFO, as miekg/dns's server); none when oob has neither.
func replySource(out, oob []byte) []byte {
	var dst netip.Addr
	for len(oob) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafePointer(oob))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(oob) {
			break
		}
		data := oob[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.IPPROTO_IPV6 && h.Type == unix.IPV6_PKTINFO && len(data) >= unix.SizeofInet6Pktinfo:
			dst = netip.AddrFrom16([16]byte(data[:16]))
		case h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && len(data) >= unix.SizeofInet4Pktinfo && !dst.IsValid():
			dst = netip.AddrFrom4([4]byte(data[8:12])) // ipi_addr, the packet's destination
		}
		oob = oob[min(unix.CmsgSpace(l-unix.CmsgLen(0)), len(oob)):]
	}
	switch {
	case !dst.IsValid():
		return out
	case dst.Is4In6() || dst.Is4():
		// struct in_pktinfo: ifindex 0, ipi_spec_dst (the source to use), ipi_addr.
		a := dst.Unmap().As4()
		out = appendCmsg(out, unix.IPPROTO_IP, unix.IP_PKTINFO, unix.SizeofInet4Pktinfo)
		d := out[len(out)-unix.CmsgSpace(unix.SizeofInet4Pktinfo)+unix.CmsgLen(0):]
		copy(d[4:8], a[:])
	default:
		// struct in6_pktinfo: the source address, ifindex 0.
		a := dst.As16()
		out = appendCmsg(out, unix.IPPROTO_IPV6, unix.IPV6_PKTINFO, unix.SizeofInet6Pktinfo)
		d := out[len(out)-unix.CmsgSpace(unix.SizeofInet6Pktinfo)+unix.CmsgLen(0):]
		copy(d[:16], a[:])
	}
	return out
}

// appendCmsg appends a zeroed control message of datalen bytes with its header set.
func appendCmsg(out []byte, level, typ int32, datalen int) []byte {
	start := len(out)
	for range unix.CmsgSpace(datalen) {
		out = append(out, 0)
	}
	h := (*unix.Cmsghdr)(unsafePointer(out[start:]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(datalen))
	return out
}

func unsafePointer(b []byte) unsafe.Pointer { return unsafe.Pointer(&b[0]) }
