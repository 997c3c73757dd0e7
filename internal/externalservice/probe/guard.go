package probe

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
)

// ErrRefused marks a check the guard did not run; errors.Is(err, ErrRefused) finds it.
var ErrRefused = errors.New("health check refused")

// Reasons for refusing an address, as the status says them.
const (
	KindLoopback    = "loopback"
	KindLinkLocal   = "link-local"
	KindMetadata    = "cloud metadata"
	KindUnspecified = "unspecified (this host)"
)

// refused lists what the guard refuses, most specific first. Connecting to 0.0.0.0 or ::
// reaches the local host on Linux, so they count as loopback.
var refused = []struct {
	prefix netip.Prefix
	kind   string
}{
	{netip.MustParsePrefix("169.254.169.254/32"), KindMetadata}, // AWS, GCP, Azure, OpenStack, ...
	{netip.MustParsePrefix("fd00:ec2::254/128"), KindMetadata},  // AWS over IPv6
	{netip.MustParsePrefix("127.0.0.0/8"), KindLoopback},
	{netip.MustParsePrefix("::1/128"), KindLoopback},
	{netip.MustParsePrefix("0.0.0.0/8"), KindUnspecified},
	{netip.MustParsePrefix("::/128"), KindUnspecified},
	{netip.MustParsePrefix("169.254.0.0/16"), KindLinkLocal},
	{netip.MustParsePrefix("fe80::/10"), KindLinkLocal},
}

// Guard decides which addresses health checks may connect to: anything but loopback,
// link-local (169.254.0.0/16, fe80::/10) and cloud metadata addresses (169.254.169.254,
// fd00:ec2::254), unless Allow contains the address. IPv4-mapped IPv6 addresses are
// judged as the IPv4 address they carry.
type Guard struct {
	Allow []netip.Prefix
}

// RefusedError says why a check was not run.
type RefusedError struct {
	// Host is the name that resolved to Addr; empty when the target is an address.
	Host string
	Addr netip.Addr
	// Kind is one of the Kind constants.
	Kind string
}

func (e *RefusedError) Error() string {
	what := e.Addr.String()
	if e.Host != "" {
		what = fmt.Sprintf("%s resolves to %s, which", e.Host, e.Addr)
	}
	return fmt.Sprintf("not probed: %s is a %s address; the agent checks loopback, link-local and metadata addresses only in ranges its --allow-health-check-cidrs allows", what, e.Kind)
}

// Unwrap makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Unwrap() error { return ErrRefused }

func (e *RefusedError) forHost(host string) *RefusedError {
	c := *e
	c.Host = host
	return &c
}

// Check returns a *RefusedError when checks must not connect to a.
func (g Guard) Check(a netip.Addr) error {
	a = a.Unmap().WithZone("")
	for _, p := range g.Allow {
		if p.Contains(a) {
			return nil
		}
	}
	for _, r := range refused {
		if r.prefix.Contains(a) {
			return &RefusedError{Addr: a, Kind: r.kind}
		}
	}
	return nil
}

// control is a net.Dialer Control function: it checks the address the socket is about to
// connect to, after every resolution, so nothing reaches a refused address whatever
// resolved it.
func (g Guard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// Only IP sockets are dialled here; anything else is not a health check.
		if !strings.HasPrefix(network, "tcp") && !strings.HasPrefix(network, "udp") {
			return fmt.Errorf("health checks dial TCP, not %s", network)
		}
		return fmt.Errorf("unexpected socket address %q", address)
	}
	return g.Check(ap.Addr())
}

// CIDRs is a flag value (pflag.Value) holding prefixes, comma-separated and repeatable,
// for the agent's --allow-health-check-cidrs.
type CIDRs struct{ P *[]netip.Prefix }

func (c CIDRs) String() string {
	if c.P == nil {
		return ""
	}
	var s []string
	for _, p := range *c.P {
		s = append(s, p.String())
	}
	return strings.Join(s, ",")
}

// Set parses a comma-separated list of prefixes (a bare address is its /32 or /128) and
// adds them.
func (c CIDRs) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			a, aerr := netip.ParseAddr(f)
			if aerr != nil {
				return fmt.Errorf("%q is not a CIDR such as 127.0.0.0/8 or fd00:ec2::254/128", f)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		*c.P = append(*c.P, p.Masked())
	}
	return nil
}

// Type names the value in help texts.
func (CIDRs) Type() string { return "cidrs" }
