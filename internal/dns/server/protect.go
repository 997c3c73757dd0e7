package server

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the protections.
const (
	// DefaultMaxTCPConnections caps concurrent TCP connections over all listeners.
	DefaultMaxTCPConnections = 1000
	// DefaultTCPIdleTimeout closes a TCP connection that sends no query for this long.
	DefaultTCPIdleTimeout = 10 * time.Second
	// DefaultRRLIPv4PrefixLength and DefaultRRLIPv6PrefixLength group clients for response
	// rate limiting, as BIND's ipv4-prefix-length and ipv6-prefix-length do.
	DefaultRRLIPv4PrefixLength = 24
	DefaultRRLIPv6PrefixLength = 56
	// DefaultRRLWindow is how many seconds of the rate a client prefix may send at once.
	DefaultRRLWindow = time.Second
)

// RRLConfig configures response rate limiting (RRL), the defence of authoritative servers
// against being used to reflect and amplify traffic at a spoofed victim, as BIND's
// rate-limit does: UDP responses to each client prefix (/24 for IPv4, /56 for IPv6) are
// limited to a rate; over it, responses are dropped, except every Slip-th, which is sent
// truncated (TC=1, no records), so a real client behind the prefix retries over TCP, which
// a spoofed source cannot. TCP is never limited. The zero value turns RRL off.
type RRLConfig struct {
	// ResponsesPerSecond limits responses per client prefix; 0: no limit on responses.
	ResponsesPerSecond int
	// BytesPerSecond limits the bytes of the responses sent to a client prefix; 0: no limit
	// on bytes. A response is sent when both limits allow it.
	BytesPerSecond int
	// Window is how much of the rate a prefix may spend at once (a bucket of rate x Window,
	// refilled at the rate); 0 means DefaultRRLWindow.
	Window time.Duration
	// Slip: every Slip-th limited response is sent truncated instead of dropped; 0 drops
	// them all, 1 truncates them all. BIND's default, and the flag's, is 2.
	Slip int
	// IPv4PrefixLength and IPv6PrefixLength group client addresses; 0 means /24 and /56.
	IPv4PrefixLength, IPv6PrefixLength int
	// Exempt lists client prefixes never limited. Queries on a member cluster's listener
	// and from Config.Sources (member clusters' CoreDNS, which forward a whole cluster's
	// queries from one address) are exempt too.
	Exempt []netip.Prefix
}

// Enabled reports whether any limit is set.
func (c RRLConfig) Enabled() bool { return c.ResponsesPerSecond > 0 || c.BytesPerSecond > 0 }

// Validate checks the limits.
func (c RRLConfig) Validate() error {
	switch {
	case c.ResponsesPerSecond < 0 || c.BytesPerSecond < 0:
		return fmt.Errorf("RRL rates must not be negative (responses %d/s, bytes %d/s)", c.ResponsesPerSecond, c.BytesPerSecond)
	case c.Window < 0:
		return fmt.Errorf("RRL window %s must not be negative", c.Window)
	case c.Slip < 0 || c.Slip > 10:
		return fmt.Errorf("RRL slip %d is outside 0..10", c.Slip)
	case c.IPv4PrefixLength < 0 || c.IPv4PrefixLength > 32:
		return fmt.Errorf("RRL IPv4 prefix length %d is outside 0..32", c.IPv4PrefixLength)
	case c.IPv6PrefixLength < 0 || c.IPv6PrefixLength > 128:
		return fmt.Errorf("RRL IPv6 prefix length %d is outside 0..128", c.IPv6PrefixLength)
	}
	for _, p := range c.Exempt {
		if !p.IsValid() {
			return fmt.Errorf("RRL exempt prefix %v is invalid", p)
		}
	}
	return nil
}

// verdict is what RRL makes of one response.
type verdict int

const (
	send verdict = iota
	slip
	drop
)

// rrlShards spreads the buckets over locks, so cores rarely wait for each other.
const rrlShards = 64

// maxBucketsPerShard bounds the state a flood of spoofed prefixes can make the server keep.
const maxBucketsPerShard = 1024

// limiter is the RRL state: one token bucket per client prefix.
type limiter struct {
	rate, byteRate  float64 // per second
	maxResp, maxByt float64 // bucket sizes
	slip            uint32
	v4, v6          int
	mask4           uint64
	mask6           [2]uint64
	shards          [rrlShards]limiterShard
}

// prefixKey is a client prefix as the map key: the masked address bits (cheaper to hash
// than a netip.Prefix).
type prefixKey struct {
	hi, lo uint64
	v4     bool
}

type limiterShard struct {
	mu      sync.Mutex
	buckets map[prefixKey]*bucket
	_       [40]byte // keeps neighbouring shards' locks off one cache line
}

// bucket is a prefix's balance. bytes may go below zero: a response is sent while the
// balance is positive, so over time the bytes sent average the rate.
type bucket struct {
	resp, bytes float64
	last        int64 // unix nanoseconds of the last refill
	limited     uint32
}

func newLimiter(c RRLConfig) *limiter {
	l := &limiter{rate: float64(c.ResponsesPerSecond), byteRate: float64(c.BytesPerSecond), slip: uint32(c.Slip),
		v4: c.IPv4PrefixLength, v6: c.IPv6PrefixLength}
	if l.v4 == 0 {
		l.v4 = DefaultRRLIPv4PrefixLength
	}
	if l.v6 == 0 {
		l.v6 = DefaultRRLIPv6PrefixLength
	}
	l.mask4 = ^uint64(0) << (32 - l.v4) & 0xffffffff
	l.mask6 = [2]uint64{^uint64(0) << (64 - min(l.v6, 64)), 0}
	if l.v6 == 0 {
		l.mask6[0] = 0
	}
	if l.v6 > 64 {
		l.mask6[1] = ^uint64(0) << (128 - l.v6)
	}
	w := c.Window
	if w == 0 {
		w = DefaultRRLWindow
	}
	l.maxResp, l.maxByt = max(l.rate*w.Seconds(), 1), max(l.byteRate*w.Seconds(), 1)
	for i := range l.shards {
		l.shards[i].buckets = map[prefixKey]*bucket{}
	}
	return l
}

// key is the client's group: its address masked to the prefix length.
func (l *limiter) key(a netip.Addr) prefixKey {
	if a.Is4() {
		b := a.As4()
		return prefixKey{lo: uint64(binary.BigEndian.Uint32(b[:])) & l.mask4, v4: true}
	}
	b := a.As16()
	return prefixKey{hi: binary.BigEndian.Uint64(b[:8]) & l.mask6[0], lo: binary.BigEndian.Uint64(b[8:]) & l.mask6[1]}
}

// shard spreads keys over the shards (a multiplicative hash's top bits).
func (k prefixKey) shard() int {
	return int((k.hi*0x9E3779B97F4A7C15 ^ k.lo*0xC2B2AE3D27D4EB4F) >> 58 % rrlShards)
}

// take charges one response of size bytes to the client's prefix at now and says whether
// it goes out whole, truncated or not at all.
func (l *limiter) take(a netip.Addr, size int, now time.Time) verdict {
	p := l.key(a)
	sh := &l.shards[p.shard()]
	t := now.UnixNano()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.buckets[p]
	if b == nil {
		if len(sh.buckets) >= maxBucketsPerShard {
			sh.sweep(t, l)
		}
		b = &bucket{resp: l.maxResp, bytes: l.maxByt, last: t}
		sh.buckets[p] = b
	} else if elapsed := float64(t-b.last) / 1e9; elapsed > 0 {
		b.resp = min(b.resp+elapsed*l.rate, l.maxResp)
		b.bytes = min(b.bytes+elapsed*l.byteRate, l.maxByt)
		b.last = t
	}
	if (l.rate == 0 || b.resp >= 1) && (l.byteRate == 0 || b.bytes > 0) {
		b.resp--
		b.bytes -= float64(size)
		return send
	}
	b.limited++
	if l.slip > 0 && b.limited%l.slip == 0 {
		return slip
	}
	return drop
}

// sweep forgets buckets that have refilled (a new bucket is the same), and everything if
// that is not enough: under a flood of spoofed prefixes the state stays bounded.
func (sh *limiterShard) sweep(now int64, l *limiter) {
	for p, b := range sh.buckets {
		elapsed := float64(now-b.last) / 1e9
		if (l.rate == 0 || b.resp+elapsed*l.rate >= l.maxResp) && (l.byteRate == 0 || b.bytes+elapsed*l.byteRate >= l.maxByt) {
			delete(sh.buckets, p)
		}
	}
	if len(sh.buckets) >= maxBucketsPerShard {
		clear(sh.buckets)
	}
}

// tracked counts the prefixes with state (for tests).
func (l *limiter) tracked() int {
	n := 0
	for i := range l.shards {
		l.shards[i].mu.Lock()
		n += len(l.shards[i].buckets)
		l.shards[i].mu.Unlock()
	}
	return n
}

// metrics are the server's Prometheus metrics.
type metrics struct {
	reg                      *prometheus.Registry
	responsesUDP, bytesUDP   prometheus.Counter
	responsesTCP, bytesTCP   prometheus.Counter
	refused                  prometheus.Counter
	limitedDrop, limitedSlip prometheus.Counter
	tcpRefused               prometheus.Counter
	tcpOpen                  prometheus.Gauge
	// queries are resolved once, so counting a query on the fast path is one atomic add.
	queries   [numQueryKinds]prometheus.Counter
	failovers prometheus.Counter
	// The zone served: its services and the records publishers keep (zone.Zone.Records).
	zoneServices, zoneRecords prometheus.Gauge
}

func newMetrics() *metrics {
	responses := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_responses_total",
		Help: "Responses sent whole (not truncated by RRL), by transport."}, []string{"transport"})
	bytes := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_response_bytes_total",
		Help: "Bytes of the responses sent whole, by transport (DNS messages, without the TCP length prefix)."}, []string{"transport"})
	limited := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_rrl_limited_responses_total",
		Help: "UDP responses over their client prefix's rate limit: dropped, or slipped (sent truncated so the client retries over TCP)."}, []string{"action"})
	m := &metrics{
		reg:          prometheus.NewRegistry(),
		responsesUDP: responses.WithLabelValues("udp"), responsesTCP: responses.WithLabelValues("tcp"),
		bytesUDP: bytes.WithLabelValues("udp"), bytesTCP: bytes.WithLabelValues("tcp"),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_dns_refused_queries_total",
			Help: "Queries answered REFUSED: names outside the served zones, zone transfers, classes other than IN."}),
		limitedDrop: limited.WithLabelValues("dropped"), limitedSlip: limited.WithLabelValues("slipped"),
		tcpRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_dns_tcp_connections_refused_total",
			Help: "TCP connections closed at once because the connection cap was reached."}),
		tcpOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_dns_tcp_connections",
			Help: "Open TCP connections."}),
	}
	queries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "strait_dns_queries_total",
		Help: "Queries answered, by response code and what answered: local (the asking cluster's own shard), zone, region, global (that level's healthy shards), cname, apex (SOA, NS, nameservers), nodata, nxdomain, refused; none for a malformed or unsupported query."},
		[]string{"rcode", "answer"})
	for k := range numQueryKinds {
		m.queries[k] = queries.WithLabelValues(k.labels())
	}
	m.failovers = prometheus.NewCounter(prometheus.CounterOpts{Name: "strait_dns_failover_answers_total",
		Help: "Answers that moved up the hierarchy because a level had no healthy shard: a zone or region name's CNAME was followed, or the asking cluster's own shard was unhealthy."})
	m.zoneServices = prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_dns_zone_services",
		Help: "Federated services in the zone served."})
	m.zoneRecords = prometheus.NewGauge(prometheus.GaugeOpts{Name: "strait_dns_zone_records",
		Help: "A, AAAA and CNAME records of the global, region and zone names served (what publishers keep in other DNS servers)."})
	m.reg.MustRegister(responses, bytes, limited, m.refused, m.tcpRefused, m.tcpOpen, queries, m.failovers, m.zoneServices, m.zoneRecords)
	return m
}

// count counts a query answered.
func (m *metrics) count(t tally) {
	m.queries[t.kind].Inc()
	if t.failover {
		m.failovers.Inc()
	}
}

// connCap is the TCP connection cap shared by every listener of a server.
type connCap struct {
	max  int64
	open atomic.Int64
	m    *metrics
}

// capListener closes connections beyond the cap as soon as they are accepted, so they
// neither hold a goroutine nor wait in the backlog; the client sees the connection closed.
type capListener struct {
	net.Listener
	cap *connCap
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.cap.max > 0 && l.cap.open.Add(1) > l.cap.max {
			l.cap.open.Add(-1)
			c.Close()
			l.cap.m.tcpRefused.Inc()
			continue
		}
		if l.cap.max <= 0 {
			l.cap.open.Add(1)
		}
		l.cap.m.tcpOpen.Inc()
		return &capConn{Conn: c, cap: l.cap}, nil
	}
}

// capConn gives its place back when closed, once.
type capConn struct {
	net.Conn
	cap    *connCap
	closed atomic.Bool
}

func (c *capConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.cap.open.Add(-1)
		c.cap.m.tcpOpen.Dec()
	}
	return c.Conn.Close()
}
