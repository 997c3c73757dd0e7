// Package names derives deterministic Kubernetes object names from other names.
//
// Every member computes the same name for the same object without coordination, which is
// what makes the agent's writes idempotent and its stale-object cleanup possible. A name
// that would exceed the limit is cut and suffixed with a hash of the full name, so two
// long inputs that share a prefix still get distinct names.
package names

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// MaxLength is the length limit of a DNS-1123 label, and of every name derived here.
const MaxLength = 63

// hashLength is the number of hex characters of SHA-256 appended to shortened names:
// 40 bits keeps accidental collisions between long names negligible.
const hashLength = 10

// minMax is the smallest limit Truncate honours: one character, a dash and the hash.
const minMax = hashLength + 2

// Truncate returns name unchanged when it has at most max characters; otherwise its first
// characters, a dash, and the first hex characters of the SHA-256 of the whole name,
// max characters in all. Trailing dashes and dots of the cut are dropped, so a name made
// of DNS-1123 label characters that starts with a letter or digit stays a valid label.
// A max below 12 is raised to 12.
func Truncate(name string, max int) string {
	if max < minMax {
		max = minMax
	}
	if len(name) <= max {
		return name
	}
	head := strings.TrimRight(name[:max-hashLength-1], "-.")
	return head + "-" + hash(name)
}

// Unique joins parts with dashes and always appends a hash of the parts, cutting the
// readable head so the result has at most MaxLength characters. Unlike a plain join it
// is injective even when parts contain dashes ("a-b"+"c" and "a"+"b-c" differ), which
// matters whenever the parts are themselves names. Parts must be DNS-1123 labels.
func Unique(parts ...string) string {
	// Length-prefixing makes the hashed encoding unambiguous for any parts.
	var key strings.Builder
	for _, p := range parts {
		key.WriteString(strconv.Itoa(len(p)))
		key.WriteByte(':')
		key.WriteString(p)
	}
	head := strings.Join(parts, "-")
	if limit := MaxLength - hashLength - 1; len(head) > limit {
		head = head[:limit]
	}
	head = strings.TrimRight(head, "-.")
	if head == "" {
		return hash(key.String())
	}
	return head + "-" + hash(key.String())
}

// DerivedServiceName names the local Service that gives a ClusterSetIP ServiceImport its
// routable IP: "derived-<name>" in the ServiceImport's namespace, shortened with a hash
// when too long. The prefix also makes it a DNS-1035 label, as Service names must be.
func DerivedServiceName(name string) string {
	return Truncate("derived-"+name, MaxLength)
}

// BrokerRecordName names a member's export record of namespace/name inside that member's
// broker namespace. It stays readable ("<name>-<namespace>-<hash>") but always carries a
// hash of the pair, because name and namespace may both contain dashes and a plain join
// would give (ns "team-a", name "x") and (ns "a", name "x-team") the same record.
func BrokerRecordName(namespace, name string) string {
	return Unique(name, namespace)
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLength]
}
