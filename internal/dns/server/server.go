// Package server is the authoritative DNS server of strait dns: it answers, over UDP and TCP,
// from an immutable zone.Zone snapshot that Update swaps atomically, so a health change is
// served from the next query on without locks on the query path.
//
// In-cluster short names (<svc>.<ns>.<federation>.) depend on which member cluster asks.
// The member's CoreDNS forwards the federation's domain to strait dns; the server tells the
// clusters apart either by the address the query arrives on (one Listener per member, its
// Cluster set) or by the query's source address (Sources, a prefix per member, for a shared
// listener). A query matching neither is answered as from outside every cluster.
//
// Over UDP, each listener has one SO_REUSEPORT socket per core, each read by one goroutine
// that answers in place from answers packed when the snapshot was built (wire.go); TCP is
// served by miekg/dns's server.
//
// Protections (protect.go): response rate limiting per client prefix over UDP with slip,
// as BIND's RRL; a cap on concurrent TCP connections and an idle timeout on them; and
// Prometheus metrics of refused and limited queries (Metrics).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/strait-io/strait/internal/dns/zone"
)

// DefaultMaxUDPSize is the EDNS(0) UDP payload size the server offers and the largest UDP
// response it sends: the DNS Flag Day 2020 value, which avoids IP fragmentation.
const DefaultMaxUDPSize = 1232

// Listener is an address (host:port) served over UDP and TCP.
type Listener struct {
	Addr string
	// Cluster is the member cluster whose CoreDNS forwards here; empty for a listener shared
	// by several clusters (see Config.Sources) or by clients outside them.
	Cluster string
}

// Source maps the source addresses of queries to the member cluster that sends them.
type Source struct {
	Prefix  netip.Prefix
	Cluster string
}

// Config configures the server.
type Config struct {
	Zone      zone.Config
	Listeners []Listener
	// Sources map query source addresses to clusters on listeners without a Cluster; the
	// longest matching prefix wins.
	Sources []Source
	// Clusters are static locations of member clusters, used for clusters that have no
	// shard in the current services (the shards' own locations win otherwise).
	Clusters []zone.Location
	// MaxUDPSize is the EDNS(0) UDP payload size offered (512..65535); 0 means DefaultMaxUDPSize.
	MaxUDPSize int
	// UDPSockets is how many SO_REUSEPORT sockets serve each UDP listener (the kernel spreads
	// clients across them); 0 means GOMAXPROCS.
	UDPSockets int
	// RRL limits UDP responses per client prefix; the zero value turns it off.
	RRL RRLConfig
	// MaxTCPConnections caps the concurrent TCP connections of all listeners together;
	// connections beyond it are closed as soon as they are accepted. 0 means
	// DefaultMaxTCPConnections; negative: no cap.
	MaxTCPConnections int
	// TCPIdleTimeout closes a TCP connection that sends no query for this long (the wait
	// for its first query included); 0 means DefaultTCPIdleTimeout.
	TCPIdleTimeout time.Duration
}

// Server is the authoritative server.
type Server struct {
	cfg     Config
	maxUDP  int
	sources []source // longest prefix first
	static  map[string]zone.Location
	// slots are the clusters a UDP query can come from (listeners' and sources'), as the
	// configuration spells them; slot 0 is "", a client outside every cluster. Answers
	// that depend on the client are packed once per slot.
	slots []string

	rrl       *limiter       // nil: RRL off
	rrlExempt []netip.Prefix // Exempt and the Sources' prefixes
	metrics   *metrics
	conns     *connCap
	idle      time.Duration
	clock     func() time.Time // RRL's clock; tests freeze it

	mu     sync.Mutex // serialises Update
	serial uint32
	snap   atomic.Pointer[snapshot]

	addrs   []net.Addr
	servers []*dns.Server // TCP
	udp     []*udpSocket
	done    chan error
	started atomic.Bool
}

// source is a Source with its client slot.
type source struct {
	Source
	slot int
}

// New validates the configuration and returns a server answering from an empty zone.
func New(cfg Config) (*Server, error) {
	if err := cfg.Zone.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, maxUDP: cfg.MaxUDPSize, static: map[string]zone.Location{}, metrics: newMetrics(), idle: cfg.TCPIdleTimeout, clock: time.Now}
	if s.maxUDP == 0 {
		s.maxUDP = DefaultMaxUDPSize
	}
	if err := cfg.RRL.Validate(); err != nil {
		return nil, err
	}
	if cfg.RRL.Enabled() {
		s.rrl = newLimiter(cfg.RRL)
		s.rrlExempt = append(s.rrlExempt, cfg.RRL.Exempt...)
		for _, src := range cfg.Sources {
			s.rrlExempt = append(s.rrlExempt, src.Prefix)
		}
	}
	if cfg.TCPIdleTimeout < 0 {
		return nil, fmt.Errorf("TCP idle timeout %s must not be negative", cfg.TCPIdleTimeout)
	}
	if s.idle == 0 {
		s.idle = DefaultTCPIdleTimeout
	}
	s.conns = &connCap{max: int64(cfg.MaxTCPConnections), m: s.metrics}
	if s.conns.max == 0 {
		s.conns.max = DefaultMaxTCPConnections
	}
	if s.maxUDP < dns.MinMsgSize || s.maxUDP > dns.MaxMsgSize {
		return nil, fmt.Errorf("UDP payload size %d is outside %d..%d", s.maxUDP, dns.MinMsgSize, dns.MaxMsgSize)
	}
	s.slots = []string{""}
	slot := func(cluster string) int {
		if i := slices.Index(s.slots, cluster); i >= 0 {
			return i
		}
		s.slots = append(s.slots, cluster)
		return len(s.slots) - 1
	}
	for _, l := range cfg.Listeners {
		slot(l.Cluster)
	}
	for _, src := range cfg.Sources {
		if !src.Prefix.IsValid() || src.Cluster == "" {
			return nil, fmt.Errorf("cluster source %v=%q: need a prefix and a cluster", src.Prefix, src.Cluster)
		}
		s.sources = append(s.sources, source{Source: Source{Prefix: src.Prefix.Masked(), Cluster: src.Cluster}, slot: slot(src.Cluster)})
	}
	if len(s.slots) > 1<<16 {
		return nil, fmt.Errorf("%d clusters: at most %d", len(s.slots)-1, 1<<16-1)
	}
	// Longest prefix first, so the first match is the most specific.
	for i := 1; i < len(s.sources); i++ {
		for j := i; j > 0 && s.sources[j].Prefix.Bits() > s.sources[j-1].Prefix.Bits(); j-- {
			s.sources[j], s.sources[j-1] = s.sources[j-1], s.sources[j]
		}
	}
	for _, l := range cfg.Clusters {
		s.static[l.Cluster] = l
	}
	if err := s.Update(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Update builds a new zone from services and serves it from the next query on. An invalid
// set is rejected whole and the previous zone stays served.
func (s *Server) Update(services []zone.Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	serial := uint32(time.Now().Unix())
	if serial <= s.serial {
		serial = s.serial + 1
	}
	z, err := zone.Build(s.cfg.Zone, services, serial)
	if err != nil {
		return err
	}
	s.serial = serial
	s.snap.Store(s.newSnapshot(z))
	s.metrics.zoneServices.Set(float64(z.NumServices()))
	s.metrics.zoneRecords.Set(float64(len(z.Records())))
	return nil
}

// Zone returns the zone being served.
func (s *Server) Zone() *zone.Zone { return s.snap.Load().zone }

// Start binds every listener (UDP and TCP) and serves until ctx ends; Wait returns then.
// It returns once the server answers, or with the first bind error.
func (s *Server) Start(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		return errors.New("server already started")
	}
	if len(s.cfg.Listeners) == 0 {
		return errors.New("no listen address")
	}
	n := s.cfg.UDPSockets
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	// Only the UDP sockets share their port: a TCP bind still fails when another process
	// serves the address.
	var tcp net.ListenConfig
	udp := net.ListenConfig{Control: reusePort}
	fail := func(err error) error {
		for _, srv := range s.servers {
			srv.Listener.Close()
		}
		for _, u := range s.udp {
			u.conn.Close()
		}
		s.servers, s.udp = nil, nil
		return err
	}
	for _, l := range s.cfg.Listeners {
		h := &handler{s: s, cluster: l.Cluster}
		tl, err := tcp.Listen(ctx, "tcp", l.Addr)
		if err != nil {
			return fail(fmt.Errorf("listening on %s/tcp: %w", l.Addr, err))
		}
		idle := s.idle
		s.servers = append(s.servers, &dns.Server{Listener: &capListener{Listener: tl, cap: s.conns}, Handler: h, MsgAcceptFunc: acceptFunc,
			ReadTimeout: idle, IdleTimeout: func() time.Duration { return idle }})
		// The UDP sockets share the port the TCP listener got (it may have been :0).
		addr := tl.Addr().String()
		s.addrs = append(s.addrs, tl.Addr())
		for i := 0; i < n; i++ {
			pc, err := udp.ListenPacket(ctx, "udp", addr)
			if err != nil {
				return fail(fmt.Errorf("listening on %s/udp: %w", addr, err))
			}
			u := &udpSocket{conn: pc.(*net.UDPConn), cluster: l.Cluster, slot: slices.Index(s.slots, l.Cluster)}
			s.udp = append(s.udp, u)
			// A socket bound to every address must answer from the address the query
			// was sent to, which only the packet's control message tells.
			if a, ok := pc.LocalAddr().(*net.UDPAddr); ok && a.IP.IsUnspecified() {
				if err := u.enablePacketInfo(); err != nil {
					return fail(fmt.Errorf("listening on %s/udp: %w", addr, err))
				}
			}
		}
	}
	s.done = make(chan error, 1)
	var wg sync.WaitGroup
	errs := make(chan error, len(s.servers)+len(s.udp))
	for _, srv := range s.servers {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				errs <- err
			}
		}()
		select {
		case <-started:
		case err := <-errs:
			return fail(err)
		}
	}
	for _, u := range s.udp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.serveUDP(u); err != nil {
				errs <- err
			}
		}()
	}
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-errs:
		}
		for _, u := range s.udp {
			u.closed.Store(true)
			u.conn.Close()
		}
		for _, srv := range s.servers {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.ShutdownContext(sctx)
			cancel()
		}
		wg.Wait()
		s.done <- err
	}()
	return nil
}

// Wait blocks until the server stopped and returns the error that stopped it, if any.
func (s *Server) Wait() error { return <-s.done }

// Addrs returns the bound addresses of the listeners (one per Listener, in order).
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Metrics is the registry of the server's metrics: responses and their bytes by transport,
// REFUSED queries, responses limited by RRL (dropped or slipped), refused and open TCP
// connections. `strait dns serve --metrics-bind-address` serves it on /metrics.
func (s *Server) Metrics() *prometheus.Registry { return s.metrics.reg }

// reusePort lets several UDP sockets share one port, so reads are spread across cores.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

// acceptFunc is the miekg/dns default with NOTIFY answered with NOTIMP: the server
// has no secondaries' role to play.
func acceptFunc(dh dns.Header) dns.MsgAcceptAction {
	if dh.Bits&(1<<15) != 0 { // QR: a response; answering could feed a reflection loop
		return dns.MsgIgnore
	}
	if opcode := int(dh.Bits>>11) & 0xF; opcode != dns.OpcodeQuery {
		return dns.MsgRejectNotImplemented
	}
	if dh.Qdcount != 1 || dh.Ancount > 0 || dh.Nscount > 0 || dh.Arcount > 2 {
		return dns.MsgReject
	}
	return dns.MsgAccept
}

// handler serves one listener over TCP.
type handler struct {
	s       *Server
	cluster string
}

func (h *handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	var src netip.Addr
	udp := false
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		src, _ = netip.AddrFromSlice(a.IP)
		udp = true
	case *net.TCPAddr:
		src, _ = netip.AddrFromSlice(a.IP)
	}
	src = src.Unmap()
	m, t := h.s.respond(h.s.snap.Load(), r, Client{Addr: src, Cluster: h.cluster, UDP: udp})
	h.s.metrics.count(t)
	h.s.write(w, r, m, src, udp && h.cluster == "", h.s.clock)
}

// write sends m, unless RRL limits it (UDP queries on a shared listener only, limitable),
// and counts it. now is only called when RRL needs the time.
func (s *Server) write(w dns.ResponseWriter, r, m *dns.Msg, src netip.Addr, limitable bool, now func() time.Time) {
	mt := s.metrics
	if m.Rcode == dns.RcodeRefused {
		mt.refused.Inc()
	}
	buf, err := m.Pack()
	if err != nil {
		return
	}
	if limitable && s.rrl != nil && src.IsValid() && !s.exempt(src) {
		switch s.rrl.take(src, len(buf), now()) {
		case drop:
			mt.limitedDrop.Inc()
			return
		case slip:
			mt.limitedSlip.Inc()
			w.WriteMsg(slipped(r, m))
			return
		}
	}
	if _, err := w.Write(buf); err != nil {
		return
	}
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		mt.responsesTCP.Inc()
		mt.bytesTCP.Add(float64(len(buf)))
	} else {
		mt.responsesUDP.Inc()
		mt.bytesUDP.Add(float64(len(buf)))
	}
}

func (s *Server) exempt(a netip.Addr) bool {
	for _, p := range s.rrlExempt {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// slipped is the truncated response RRL sends instead of m: the header and question with
// TC set and no records but the OPT, as BIND's slip; a real client retries over TCP.
func slipped(r, m *dns.Msg) *dns.Msg {
	tc := new(dns.Msg)
	tc.SetReply(r)
	tc.Authoritative, tc.Rcode, tc.Truncated = m.Authoritative, m.Rcode, true
	for _, rr := range m.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			tc.Extra = append(tc.Extra, rr)
		}
	}
	return tc
}

// Client describes where a query came from.
type Client struct {
	// Addr is the source address; it selects the cluster through Config.Sources.
	Addr netip.Addr
	// Cluster, when set, is the cluster the query is from (the listener's).
	Cluster string
	// UDP responses are truncated to the negotiated payload size; TCP ones to 64 KiB.
	UDP bool
}

// Respond answers a request. It never returns nil and never panics on a request that
// unpacked; the response always packs within the size limit of the transport. It is the
// slow path: UDP queries are answered from packed answers (wire.go), whose bytes are those
// of Respond's response.
func (s *Server) Respond(r *dns.Msg, c Client) *dns.Msg {
	m, _ := s.respond(s.snap.Load(), r, c)
	return m
}

// respond answers r from snap, and says what the query counts in the metrics.
func (s *Server) respond(snap *snapshot, r *dns.Msg, c Client) (*dns.Msg, tally) {
	m := new(dns.Msg)
	m.SetReply(r)
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m, tally{kind: kindNotImp}
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m, tally{kind: kindFormErr}
	}
	// EDNS(0), RFC 6891: at most one OPT; a version we do not speak gets BADVERS.
	var opt *dns.OPT
	for _, rr := range r.Extra {
		if o, ok := rr.(*dns.OPT); ok {
			if opt != nil {
				m.Rcode = dns.RcodeFormatError
				return m, tally{kind: kindFormErr}
			}
			opt = o
		}
	}
	size := dns.MinMsgSize
	if opt != nil {
		ro := &dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		ro.SetUDPSize(uint16(s.maxUDP))
		if opt.Do() {
			ro.SetDo()
		}
		m.Extra = []dns.RR{ro}
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m, tally{kind: kindBadVers}
		}
		size = min(max(int(opt.UDPSize()), dns.MinMsgSize), s.maxUDP)
	}
	if !c.UDP {
		size = dns.MaxMsgSize
	}
	q := r.Question[0]
	t := tally{kind: queryKind(zone.AnswerRefused)}
	switch {
	case q.Qclass != dns.ClassINET:
		m.Rcode = dns.RcodeRefused
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		// Zone transfers are not offered: publishers push to the DNS servers people run.
		m.Rcode = dns.RcodeRefused
	default:
		t = s.answer(snap, m, q, s.clientLocation(snap, c))
	}
	m.Compress = true
	m.Truncate(size)
	return m, t
}

// clientLocation resolves the client's cluster (listener, else source prefix) to a location.
func (s *Server) clientLocation(snap *snapshot, c Client) zone.Location {
	cluster := c.Cluster
	if cluster == "" && c.Addr.IsValid() {
		for _, src := range s.sources {
			if src.Prefix.Contains(c.Addr) {
				cluster = src.Cluster
				break
			}
		}
	}
	return s.locate(snap, cluster)
}

// locate returns the location of a cluster: its shards', else its static one.
func (s *Server) locate(snap *snapshot, cluster string) zone.Location {
	if cluster == "" {
		return zone.Location{}
	}
	if l, ok := snap.zone.Locate(cluster); ok {
		return l
	}
	if l, ok := s.static[cluster]; ok {
		return l
	}
	return zone.Location{Cluster: cluster}
}

func (s *Server) answer(snap *snapshot, m *dns.Msg, q dns.Question, from zone.Location) tally {
	a := snap.lookup(q.Name, q.Qtype, from)
	m.Rcode = a.rcode
	m.Authoritative = a.authoritative
	m.Answer = a.answer
	m.Ns = a.ns
	if len(a.extra) > 0 {
		m.Extra = append(append(make([]dns.RR, 0, len(a.extra)+len(m.Extra)), a.extra...), m.Extra...)
	}
	return a.tally
}
