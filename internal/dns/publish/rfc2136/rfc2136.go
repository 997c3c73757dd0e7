// Package rfc2136 publishes the federation's records to a DNS server people already run
// (BIND, Knot, PowerDNS, Windows DNS) with TSIG-signed dynamic updates (RFC 2136, RFC 8945).
//
// Ownership works like ExternalDNS's TXT registry, made unforgeable: every name the
// publisher writes has a TXT record at _strait.<name> saying
// "heritage=strait,strait/owner=<owner>,strait/resource=<fed>/<ns>/<svc>,strait/mac=<mac>",
// where the MAC is an HMAC-SHA256, with a key only this installation holds, over the owner,
// the name and the resource. The publisher looks only at the names its zone model produces
// under its federation domain (zone.IsServiceName), never at anything else in the zone; it
// modifies or deletes only names whose ownership record carries its owner and a valid MAC,
// and claims a name only when nothing is there (both checked again by the server through
// RFC 2136 prerequisites, so a record someone adds between our read and our write is never
// overwritten). A key that may only write TXT records (as ACME DNS-01 clients hold) can
// therefore not make it delete anything. It reads the zone with a signed zone transfer. All changes to a zone go in one UPDATE message, which the server
// applies entirely or not at all; only when that message would exceed 64 KiB are the
// changes split, each federated service's names still together in one message.
package rfc2136

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/strait-io/strait/internal/dns/zone"
)

// Algorithms are the TSIG algorithms accepted, by their BIND names.
var algorithms = map[string]string{
	"hmac-sha1":   dns.HmacSHA1,
	"hmac-sha224": dns.HmacSHA224,
	"hmac-sha256": dns.HmacSHA256,
	"hmac-sha384": dns.HmacSHA384,
	"hmac-sha512": dns.HmacSHA512,
}

// Config configures a publisher for one zone on one server.
type Config struct {
	// Server is the primary server's address, host:port.
	Server string
	// Zone is the zone the records go to (e.g. "example.com"); it contains the federation domain.
	Zone string
	// Domain is the federation domain (e.g. "fed.example.com"), Zone or below it. Only the
	// service names the zone model derives under it are ever read as ours or changed.
	Domain string
	// KeyName, Algorithm (BIND name, default hmac-sha256) and Secret (base64) are the TSIG key.
	KeyName   string
	Algorithm string
	Secret    string
	// Owner identifies this publisher in ownership records; two publishers with different
	// owners never touch each other's names.
	Owner string
	// OwnershipKey signs the ownership records (HMAC-SHA256), at least MinOwnershipKeyLength
	// bytes: a record without a valid MAC under this key is never ours. See
	// DeriveOwnershipKey for a key derived from the TSIG secret.
	OwnershipKey []byte
	// Timeout bounds each exchange with the server; 0 means 10s.
	Timeout time.Duration
}

// ErrEmptyDesired is returned when an empty desired set would delete published names.
var ErrEmptyDesired = errors.New("the desired record set is empty")

// ErrPrerequisite is returned when the zone changed between the read and the update: the
// server applied nothing, and the next Publish reads the zone again.
var ErrPrerequisite = errors.New("the zone changed while publishing")

// ErrTSIG is returned when the server rejects the TSIG key.
var ErrTSIG = errors.New("TSIG key rejected")

// Options qualify one Publish.
type Options struct {
	// AllowEmpty lets an empty desired set delete every name published before. Without it
	// an empty set that would delete anything is refused: an empty read from a failing
	// source must never empty the zone.
	AllowEmpty bool
}

// Result tells what a Publish did.
type Result struct {
	// Updates is the number of UPDATE messages the server applied (0 when nothing changed).
	Updates int
	// Changed lists the names whose records were claimed or changed; Released those deleted.
	Changed  []string
	Released []string
	// Conflicts lists desired names that hold records not owned by this publisher; they
	// were left alone.
	Conflicts []string
}

// MinOwnershipKeyLength is the shortest ownership key accepted, in bytes.
const MinOwnershipKeyLength = 16

// ownershipKeyInfo separates the ownership key derived from a TSIG secret from any other
// key derived from it (HKDF "info", RFC 5869).
const ownershipKeyInfo = "strait.io/dns-ownership-key/v1"

// DeriveOwnershipKey derives an ownership key from a base64 TSIG secret with HKDF-SHA256
// (RFC 5869), domain-separated by its info string, so the key that signs ownership records
// is never the TSIG key itself and nothing signed with one verifies with the other. Anyone
// who can compute it already holds the TSIG key, which can change the whole zone anyway.
func DeriveOwnershipKey(tsigSecret string) ([]byte, error) {
	secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(tsigSecret))
	if err != nil || len(secret) == 0 {
		return nil, errors.New("the TSIG secret is not base64")
	}
	return hkdf.Key(sha256.New, secret, nil, ownershipKeyInfo, 32)
}

// Publisher keeps a zone's federation records in line with the desired set.
type Publisher struct {
	cfg       Config
	zone      string
	key       string
	algorithm string
	own       ownerKey
}

// New validates the configuration.
func New(cfg Config) (*Publisher, error) {
	p := &Publisher{cfg: cfg, zone: strings.ToLower(dns.Fqdn(cfg.Zone)), key: strings.ToLower(dns.Fqdn(cfg.KeyName))}
	if _, ok := dns.IsDomainName(cfg.Zone); !ok || cfg.Zone == "" || p.zone == "." {
		return nil, fmt.Errorf("invalid zone %q", cfg.Zone)
	}
	if _, _, err := net.SplitHostPort(cfg.Server); err != nil {
		return nil, fmt.Errorf("invalid server address %q (want host:port): %w", cfg.Server, err)
	}
	if _, ok := dns.IsDomainName(cfg.KeyName); !ok || cfg.KeyName == "" {
		return nil, fmt.Errorf("invalid TSIG key name %q", cfg.KeyName)
	}
	alg := cfg.Algorithm
	if alg == "" {
		alg = "hmac-sha256"
	}
	if p.algorithm = algorithms[strings.TrimSuffix(strings.ToLower(alg), ".")]; p.algorithm == "" {
		return nil, fmt.Errorf("unsupported TSIG algorithm %q (hmac-sha1, hmac-sha224, hmac-sha256, hmac-sha384, hmac-sha512)", cfg.Algorithm)
	}
	if b, err := base64.StdEncoding.DecodeString(cfg.Secret); err != nil || len(b) == 0 {
		return nil, fmt.Errorf("the TSIG secret of key %q is not base64", cfg.KeyName)
	}
	if cfg.Owner == "" || strings.ContainsAny(cfg.Owner, ",=\"\\ ") {
		return nil, fmt.Errorf("invalid owner %q: non-empty, without ',', '=', quotes, backslashes or spaces", cfg.Owner)
	}
	domain := strings.ToLower(dns.Fqdn(cfg.Domain))
	if _, ok := dns.IsDomainName(cfg.Domain); !ok || cfg.Domain == "" || !dns.IsSubDomain(p.zone, domain) {
		return nil, fmt.Errorf("invalid federation domain %q: it must be the zone %s or below it", cfg.Domain, p.zone)
	}
	if len(cfg.OwnershipKey) < MinOwnershipKeyLength {
		return nil, fmt.Errorf("the ownership key is %d bytes; at least %d are needed", len(cfg.OwnershipKey), MinOwnershipKeyLength)
	}
	p.own = ownerKey{owner: cfg.Owner, key: append([]byte(nil), cfg.OwnershipKey...), domain: domain}
	if p.cfg.Timeout == 0 {
		p.cfg.Timeout = 10 * time.Second
	}
	return p, nil
}

// Publish makes the zone's names owned by this publisher hold exactly desired: it claims
// free names, changes owned ones and releases owned names no longer desired. desired must be
// complete and authoritative (never the result of a failed read). Invalid records, an
// unreachable server or a rejected key return an error before anything is changed.
func (p *Publisher) Publish(ctx context.Context, desired []zone.Record, opts Options) (Result, error) {
	want, services, err := desiredRRs(p.zone, p.own, desired)
	if err != nil {
		return Result{}, err
	}
	current, err := p.read(ctx)
	if err != nil {
		return Result{}, err
	}
	changes, conflicts := plan(current, want, services, p.own)
	res := Result{Conflicts: conflicts}
	if len(want) == 0 && !opts.AllowEmpty {
		released := 0
		for _, c := range changes {
			if c.released {
				released++
			}
		}
		if released > 0 {
			return res, fmt.Errorf("%w: refusing to delete the %d names published in %s (allow an empty set explicitly to do that)", ErrEmptyDesired, released, p.zone)
		}
	}
	if len(changes) == 0 {
		return res, nil
	}
	msgs, err := p.messages(changes)
	if err != nil {
		return res, err
	}
	for i, m := range msgs {
		if err := p.update(ctx, m); err != nil {
			if i > 0 {
				return res, fmt.Errorf("update %d of %d (the first %d were applied): %w", i+1, len(msgs), i, err)
			}
			return res, err
		}
		res.Updates++
	}
	for _, c := range changes {
		if c.released {
			res.Released = append(res.Released, c.name)
		} else {
			res.Changed = append(res.Changed, c.name)
		}
	}
	return res, nil
}

// Published returns the records at the names this publisher owns (A, AAAA, CNAME): service
// names of its domain with a valid ownership record of its own, sorted, each with the
// federated service its ownership record names.
func (p *Publisher) Published(ctx context.Context) ([]zone.Record, error) {
	current, err := p.read(ctx)
	if err != nil {
		return nil, err
	}
	var out []zone.Record
	for name, sets := range current {
		_, _, o, ours := current.ownerOf(name, p.own)
		if !ours {
			continue
		}
		var key zone.ServiceKey
		if parts := strings.Split(o.resource, "/"); len(parts) == 3 {
			key = zone.ServiceKey{Federation: parts[0], Namespace: parts[1], Name: parts[2]}
		}
		for _, t := range managedTypes {
			for _, rr := range sets[t] {
				r := zone.Record{Name: name, Type: zone.Type(t), TTL: rr.Header().Ttl, Service: key}
				switch v := rr.(type) {
				case *dns.A:
					r.Addr = addr(v.A)
				case *dns.AAAA:
					r.Addr = addr(v.AAAA)
				case *dns.CNAME:
					r.Target = strings.ToLower(v.Target)
				}
				out = append(out, r)
			}
		}
	}
	zone.SortRecords(out)
	return out, nil
}

// maxMessage is the largest DNS message over TCP.
const maxMessage = dns.MaxMsgSize

// messages puts the changes in one UPDATE message, or, when that would not fit in 64 KiB,
// in as few messages as fit, never splitting one service's names.
func (p *Publisher) messages(changes []change) ([]*dns.Msg, error) {
	if m := p.message(changes); m.Len() <= maxMessage-512 { // 512: room for the TSIG record
		return []*dns.Msg{m}, nil
	}
	var groups [][]change
	index := map[string]int{}
	for _, c := range changes {
		i, ok := index[c.service]
		if !ok {
			i = len(groups)
			index[c.service] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], c)
	}
	var msgs []*dns.Msg
	var batch []change
	for _, g := range groups {
		if p.message(g).Len() > maxMessage-512 {
			return nil, fmt.Errorf("the records of service %s do not fit in one UPDATE message", g[0].service)
		}
		if len(batch) > 0 && p.message(append(batch[:len(batch):len(batch)], g...)).Len() > maxMessage-512 {
			msgs = append(msgs, p.message(batch))
			batch = nil
		}
		batch = append(batch, g...)
	}
	if len(batch) > 0 {
		msgs = append(msgs, p.message(batch))
	}
	return msgs, nil
}

// message builds one UPDATE: every prerequisite, then every removal, then every addition.
func (p *Publisher) message(changes []change) *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(p.zone)
	m.Compress = true
	for _, c := range changes {
		m.Answer = append(m.Answer, c.prereq...)
	}
	for _, c := range changes {
		m.Ns = append(m.Ns, c.remove...)
	}
	for _, c := range changes {
		m.Ns = append(m.Ns, c.insert...)
	}
	return m
}

func (p *Publisher) client() *dns.Client {
	return &dns.Client{Net: "tcp", Timeout: p.cfg.Timeout, TsigSecret: map[string]string{p.key: p.cfg.Secret}}
}

// update sends one signed UPDATE and interprets the reply.
func (p *Publisher) update(ctx context.Context, m *dns.Msg) error {
	m.SetTsig(p.key, p.algorithm, 300, time.Now().Unix())
	r, _, err := p.client().ExchangeContext(ctx, m, p.cfg.Server)
	if err != nil {
		if r != nil && r.Rcode == dns.RcodeNotAuth {
			return p.tsigError(r)
		}
		if errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrTime) {
			return fmt.Errorf("%w by %s for key %q: the reply does not verify (%v); nothing was changed", ErrTSIG, p.cfg.Server, p.cfg.KeyName, err)
		}
		return fmt.Errorf("update of zone %s at %s: %w", p.zone, p.cfg.Server, err)
	}
	switch r.Rcode {
	case dns.RcodeSuccess:
		return nil
	case dns.RcodeNotAuth:
		return p.tsigError(r)
	case dns.RcodeYXDomain, dns.RcodeNXRrset, dns.RcodeYXRrset, dns.RcodeNameError:
		return fmt.Errorf("%w (prerequisite failed: %s); nothing was changed", ErrPrerequisite, dns.RcodeToString[r.Rcode])
	case dns.RcodeRefused:
		return fmt.Errorf("update of zone %s refused by %s: does the zone allow updates with key %q?", p.zone, p.cfg.Server, p.cfg.KeyName)
	case dns.RcodeNotZone:
		return fmt.Errorf("update of zone %s: %s is not authoritative for it (NOTZONE)", p.zone, p.cfg.Server)
	}
	return fmt.Errorf("update of zone %s at %s failed: %s", p.zone, p.cfg.Server, dns.RcodeToString[r.Rcode])
}

// tsigError explains a NOTAUTH reply, with the TSIG error the server put in it.
func (p *Publisher) tsigError(r *dns.Msg) error {
	reason := "not authorized"
	if t := r.IsTsig(); t != nil && t.Error != 0 {
		reason = dns.RcodeToString[int(t.Error)]
	}
	return fmt.Errorf("%w by %s for key %q (%s): check the key name, algorithm and secret; nothing was changed", ErrTSIG, p.cfg.Server, p.cfg.KeyName, reason)
}

// read transfers the zone (signed AXFR). A server that refuses the transfer with our key
// is reported as such: without reading ownership records nothing can be published safely.
func (p *Publisher) read(ctx context.Context) (rrsets, error) {
	// A signed SOA query first turns a bad key into a clear error; the transfer's own
	// errors only say that the first message failed.
	q := new(dns.Msg)
	q.SetQuestion(p.zone, dns.TypeSOA)
	q.SetTsig(p.key, p.algorithm, 300, time.Now().Unix())
	r, _, err := p.client().ExchangeContext(ctx, q, p.cfg.Server)
	switch {
	case r != nil && r.Rcode == dns.RcodeNotAuth:
		return nil, p.tsigError(r)
	case err != nil && (errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrTime)):
		return nil, fmt.Errorf("%w by %s for key %q: the reply does not verify (%v)", ErrTSIG, p.cfg.Server, p.cfg.KeyName, err)
	case err != nil:
		return nil, fmt.Errorf("reading zone %s from %s: %w", p.zone, p.cfg.Server, err)
	case r.Rcode != dns.RcodeSuccess || !r.Authoritative || len(r.Answer) == 0:
		return nil, fmt.Errorf("%s is not authoritative for zone %s (%s)", p.cfg.Server, p.zone, dns.RcodeToString[r.Rcode])
	}

	d := net.Dialer{Timeout: p.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", p.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("reading zone %s from %s: %w", p.zone, p.cfg.Server, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	t := &dns.Transfer{Conn: &dns.Conn{Conn: conn}, ReadTimeout: p.cfg.Timeout, WriteTimeout: p.cfg.Timeout,
		TsigSecret: map[string]string{p.key: p.cfg.Secret}}
	m := new(dns.Msg)
	m.SetAxfr(p.zone)
	m.SetTsig(p.key, p.algorithm, 300, time.Now().Unix())
	envs, err := t.In(m, p.cfg.Server)
	if err != nil {
		return nil, fmt.Errorf("zone transfer of %s from %s: %w", p.zone, p.cfg.Server, err)
	}
	current := rrsets{}
	var xerr error
	for env := range envs {
		if env.Error != nil && xerr == nil {
			xerr = env.Error
		}
		for _, rr := range env.RR {
			if rr.Header().Rrtype != dns.TypeSOA {
				current.add(rr)
			}
		}
	}
	if xerr != nil {
		if ctx.Err() != nil {
			xerr = ctx.Err()
		}
		return nil, fmt.Errorf("zone transfer of %s from %s (does the zone allow transfers with key %q?): %w", p.zone, p.cfg.Server, p.cfg.KeyName, xerr)
	}
	return current, nil
}
