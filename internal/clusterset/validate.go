package clusterset

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// MaxClusterIDLength keeps MemberNamespace(id) a valid namespace name: a DNS-1123 label of
// at most 63 characters, 14 of which are the prefix.
const MaxClusterIDLength = validation.DNS1123LabelMaxLength - len(MemberNamespacePrefix)

// ValidateClusterID checks that id can be a cluster ID: a DNS-1123 label (KEP-2149) short
// enough for its broker namespace.
func ValidateClusterID(id string) error {
	if errs := validation.IsDNS1123Label(id); len(errs) > 0 {
		return fmt.Errorf("cluster ID %q is not a DNS-1123 label: %s", id, strings.Join(errs, "; "))
	}
	if len(id) > MaxClusterIDLength {
		return fmt.Errorf("cluster ID %q is %d characters long: at most %d are allowed, so that its broker namespace %s%s is a valid namespace name",
			id, len(id), MaxClusterIDLength, MemberNamespacePrefix, id)
	}
	return nil
}

// ValidateClusterSetName checks the value of the clusterset.k8s.io ClusterProperty.
func ValidateClusterSetName(name string) error {
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return fmt.Errorf("clusterset name %q is not a DNS-1123 subdomain: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// ValidateTopology checks a region or zone name (what is "region" or "zone"): empty, or a
// DNS-1123 label, because it becomes part of DNS names in the federation hierarchy.
func ValidateTopology(what, value string) error {
	if value == "" {
		return nil
	}
	if errs := validation.IsDNS1123Label(value); len(errs) > 0 {
		return fmt.Errorf("%s %q is not a DNS-1123 label: %s", what, value, strings.Join(errs, "; "))
	}
	return nil
}

// NormalizeCIDRs parses CIDRs (what is "pod" or "service", for messages), rejects host bits
// and returns them sorted without duplicates or prefixes contained in another of the list.
// Entries may themselves be comma-separated lists.
func NormalizeCIDRs(what string, cidrs []string) ([]string, error) {
	var prefixes []netip.Prefix
	for _, entry := range cidrs {
		for s := range strings.SplitSeq(entry, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s CIDR %q is not a CIDR (like 10.1.0.0/16 or fd00:1::/64)", what, s)
			}
			if p.Masked() != p {
				return nil, fmt.Errorf("%s CIDR %s has host bits set; did you mean %s?", what, s, p.Masked())
			}
			prefixes = append(prefixes, p)
		}
	}
	slices.SortFunc(prefixes, comparePrefixes)
	var out []string
	var kept []netip.Prefix
	for _, p := range prefixes {
		if slices.ContainsFunc(kept, func(k netip.Prefix) bool { return k.Bits() <= p.Bits() && k.Contains(p.Addr()) }) {
			continue
		}
		kept = append(kept, p)
		out = append(out, p.String())
	}
	return out, nil
}

// comparePrefixes orders IPv4 before IPv6, then by address, wider prefixes first, so a
// containing prefix always comes before what it contains.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Overlap is one pair of overlapping CIDRs between a joining member and another member.
type Overlap struct {
	Kind      string `json:"kind"`
	CIDR      string `json:"cidr"`
	Other     string `json:"otherCluster"`
	OtherKind string `json:"otherKind"`
	OtherCIDR string `json:"otherCIDR"`
}

// OverlapError lists every CIDR of a joining member that overlaps another member's.
type OverlapError struct {
	Cluster  string
	Overlaps []Overlap
}

func (e *OverlapError) Error() string {
	parts := make([]string, 0, len(e.Overlaps))
	for _, o := range e.Overlaps {
		other := o.OtherCIDR
		if o.OtherKind != o.Kind {
			other = o.OtherKind + " CIDR " + o.OtherCIDR
		}
		parts = append(parts, fmt.Sprintf("%s CIDR %s of %s overlaps %s of %s", o.Kind, o.CIDR, e.Cluster, other, o.Other))
	}
	return strings.Join(parts, "; ") + "; pass --allow-overlapping-cidrs if your data plane translates addresses"
}

// CheckOverlaps returns an *OverlapError if any pod or service CIDR of joining overlaps any
// pod or service CIDR of another member. The joining member's own earlier record (same ID) is
// not another member. CIDRs must be valid (see NormalizeCIDRs).
func CheckOverlaps(joining Member, members []Member) error {
	type cidr struct {
		kind   string
		prefix netip.Prefix
	}
	list := func(m Member) []cidr {
		var out []cidr
		for kind, cidrs := range map[string][]string{"pod": m.PodCIDRs, "service": m.ServiceCIDRs} {
			for _, s := range cidrs {
				if p, err := netip.ParsePrefix(s); err == nil {
					out = append(out, cidr{kind, p.Masked()})
				}
			}
		}
		slices.SortFunc(out, func(a, b cidr) int {
			if a.kind != b.kind {
				return strings.Compare(a.kind, b.kind)
			}
			return comparePrefixes(a.prefix, b.prefix)
		})
		return out
	}
	mine := list(joining)
	var overlaps []Overlap
	for _, m := range sortedByID(members) {
		if m.ID == joining.ID {
			continue
		}
		for _, a := range mine {
			for _, b := range list(m) {
				if a.prefix.Overlaps(b.prefix) {
					overlaps = append(overlaps, Overlap{Kind: a.kind, CIDR: a.prefix.String(), Other: m.ID, OtherKind: b.kind, OtherCIDR: b.prefix.String()})
				}
			}
		}
	}
	if len(overlaps) > 0 {
		return &OverlapError{Cluster: joining.ID, Overlaps: overlaps}
	}
	return nil
}

// ErrIDTaken is returned (wrapped) when a cluster ID belongs to another cluster.
var ErrIDTaken = errors.New("cluster ID already used by another cluster")

// CheckMembership decides whether joining (its ID, ClusterUID and ClusterSet set) may join a
// broker that holds members: its ID must not belong to a different cluster, the cluster must
// not already be a member under another ID, and the clusterset name must match the broker's.
// A cluster re-joining under its own ID passes, which makes join idempotent.
func CheckMembership(joining Member, members []Member) error {
	for _, m := range sortedByID(members) {
		switch {
		case m.ID == joining.ID && m.ClusterUID != joining.ClusterUID:
			return fmt.Errorf("cluster ID %q is already used by another cluster of the clusterset (kube-system namespace uid %s, joined %s); choose another cluster ID: %w",
				joining.ID, orUnknown(m.ClusterUID), m.JoinedAt.UTC().Format(time.RFC3339), ErrIDTaken)
		case m.ID != joining.ID && m.ClusterUID == joining.ClusterUID:
			return fmt.Errorf("this cluster is already a member as %q (kube-system namespace uid %s); run strait leave first to change its cluster ID to %q",
				m.ID, joining.ClusterUID, joining.ID)
		case m.ID != joining.ID && m.ClusterSet != "" && m.ClusterSet != joining.ClusterSet:
			return fmt.Errorf("the broker holds clusterset %q (member %s), not %q; pass --clusterset %s to join it",
				m.ClusterSet, m.ID, joining.ClusterSet, m.ClusterSet)
		}
	}
	return nil
}

// CheckLocalProperties refuses to change the identity a cluster already carries: a cluster
// ID may only change after leaving the clusterset (KEP-2149 makes it immutable while the
// cluster is a member). Empty existing values are not set yet.
func CheckLocalProperties(existingID, existingSet string, joining Member) error {
	if existingID != "" && existingID != joining.ID {
		return fmt.Errorf("this cluster already has cluster ID %q (ClusterProperty %s), not %q; run strait leave first to change it, or join as %q",
			existingID, ClusterIDProperty, joining.ID, existingID)
	}
	if existingSet != "" && existingSet != joining.ClusterSet {
		return fmt.Errorf("this cluster already belongs to clusterset %q (ClusterProperty %s), not %q; run strait leave first to move it",
			existingSet, ClusterSetProperty, joining.ClusterSet)
	}
	return nil
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func sortedByID(members []Member) []Member {
	out := slices.Clone(members)
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}
