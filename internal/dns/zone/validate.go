package zone

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Name limits of RFC 1035 (the 253 of a name is its presentation length without the
// trailing dot: 255 octets on the wire).
const (
	MaxLabelLength = 63
	MaxNameLength  = 253
)

// checkLabel reports whether s is a DNS label of letters, digits and dashes that neither
// starts nor ends with a dash (RFC 1123 host name rules), naming what and s in the error.
func checkLabel(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > MaxLabelLength {
		return fmt.Errorf("%s %q is %d characters; a DNS label has at most %d", what, s, len(s), MaxLabelLength)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return fmt.Errorf("%s %q is not a DNS label: only letters, digits and '-' are allowed, and it must start and end with a letter or digit", what, s)
		}
	}
	return nil
}

// checkName reports whether the absolute name (trailing dot) fits the 253-character limit.
func checkName(what, fqdn string) error {
	if n := len(fqdn) - 1; n > MaxNameLength {
		return fmt.Errorf("%s %q is %d characters; a DNS name has at most %d", what, fqdn, n, MaxNameLength)
	}
	return nil
}

// normalizeDomain validates a domain name and returns it lower case without trailing dot.
func normalizeDomain(what, d string) (string, error) {
	s := strings.TrimSuffix(d, ".")
	if s == "" {
		return "", fmt.Errorf("invalid %s %q: empty", what, d)
	}
	if len(s) > MaxNameLength {
		return "", fmt.Errorf("invalid %s %q: %d characters; a DNS name has at most %d", what, d, len(s), MaxNameLength)
	}
	for _, l := range strings.Split(s, ".") {
		if err := checkLabel("label", l); err != nil {
			return "", fmt.Errorf("invalid %s %q: %w", what, d, err)
		}
	}
	return strings.ToLower(s), nil
}

func checkTTL(what string, d time.Duration) error {
	if d == 0 {
		return nil
	}
	if d < time.Second || d > maxTTL*time.Second {
		return fmt.Errorf("%s %s is out of range: a TTL is between 1s and %ds", what, d, maxTTL)
	}
	if d%time.Second != 0 {
		return fmt.Errorf("%s %s is not a whole number of seconds", what, d)
	}
	return nil
}

// normalized is a validated Config with defaults applied: domain lower case without dot.
type normalized struct {
	domain      string
	ttl         uint32
	negTTL      uint32
	nameservers []Nameserver // names absolute, lower case
	hostmaster  string       // absolute
	federations []string
}

// Validate checks the configuration: the domain, TTLs, nameserver names and federations.
func (c Config) Validate() error {
	_, err := c.normalize()
	return err
}

func (c Config) normalize() (*normalized, error) {
	domain, err := normalizeDomain("domain", c.Domain)
	if err != nil {
		return nil, err
	}
	n := &normalized{domain: domain, ttl: uint32(DefaultTTL / time.Second), negTTL: uint32(DefaultNegativeTTL / time.Second)}
	if err := checkTTL("default TTL", c.DefaultTTL); err != nil {
		return nil, err
	}
	if c.DefaultTTL != 0 {
		n.ttl = uint32(c.DefaultTTL / time.Second)
	}
	if err := checkTTL("negative TTL", c.NegativeTTL); err != nil {
		return nil, err
	}
	if c.NegativeTTL != 0 {
		n.negTTL = uint32(c.NegativeTTL / time.Second)
	}
	if len(c.Nameservers) == 0 {
		n.nameservers = []Nameserver{{Name: "ns." + domain + "."}}
	}
	for _, ns := range c.Nameservers {
		name, err := normalizeDomain("nameserver name", ns.Name)
		if err != nil {
			return nil, err
		}
		for _, a := range ns.Addresses {
			if !a.IsValid() {
				return nil, fmt.Errorf("nameserver %s: invalid address", ns.Name)
			}
		}
		n.nameservers = append(n.nameservers, Nameserver{Name: name + ".", Addresses: unmapAll(ns.Addresses)})
	}
	n.hostmaster = "hostmaster." + domain + "."
	if c.Hostmaster != "" {
		h, err := normalizeDomain("hostmaster", c.Hostmaster)
		if err != nil {
			return nil, err
		}
		n.hostmaster = h + "."
	}
	for _, f := range c.Federations {
		if err := checkFederation(domain, f); err != nil {
			return nil, err
		}
		n.federations = append(n.federations, strings.ToLower(f))
	}
	return n, nil
}

// checkFederation validates a federation name: a label whose short-name apex (<f>.) must not
// contain the domain, or the short-name zone would swallow the federation domain.
func checkFederation(domain, f string) error {
	if err := checkLabel("federation name", f); err != nil {
		return err
	}
	lf := strings.ToLower(f)
	if lf == domain || strings.HasSuffix(domain, "."+lf) {
		return fmt.Errorf("federation name %q is a suffix of the domain %q: its short names (<svc>.<ns>.%s) would overlap the federation domain", f, domain, f)
	}
	return nil
}

// ValidateService checks one service against the configuration: every label, the length of
// every name derived from it, TTL, shard clusters and locations and addresses.
// Build rejects a set that contains an invalid service; a caller that wants to serve the
// valid rest filters with this first (and reports the error on the service).
func (c Config) ValidateService(s Service) error {
	n, err := c.normalize()
	if err != nil {
		return err
	}
	_, err = n.service(s)
	return err
}

func unmapAll(addrs []netip.Addr) []netip.Addr {
	if len(addrs) == 0 {
		return nil
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = a.Unmap()
	}
	return out
}
