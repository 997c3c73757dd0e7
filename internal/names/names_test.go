package names

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
)

func assertLabel(t *testing.T, name string) {
	t.Helper()
	if len(name) > MaxLength {
		t.Errorf("%q has %d characters, more than %d", name, len(name), MaxLength)
	}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		t.Errorf("%q is not a DNS-1123 label: %v", name, errs)
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("a", 70)
	tests := []struct {
		name, in string
		max      int
		want     string
	}{
		{"short name unchanged", "hello", 63, "hello"},
		{"exactly at the limit", strings.Repeat("b", 63), 63, strings.Repeat("b", 63)},
		{"long name cut and hashed", long, 63, strings.Repeat("a", 52) + "-" + hash(long)},
		{"dash at the cut is dropped", strings.Repeat("a", 51) + "-" + strings.Repeat("c", 20), 63, strings.Repeat("a", 51) + "-" + hash(strings.Repeat("a", 51)+"-"+strings.Repeat("c", 20))},
		{"smaller limit", "abcdefghijklmnopqrstuvwxyz", 20, "abcdefghi-" + hash("abcdefghijklmnopqrstuvwxyz")},
		{"limit below the minimum is raised", "abcdefghijklmnop", 3, "a-" + hash("abcdefghijklmnop")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.in, tt.max)
			if got != tt.want {
				t.Errorf("Truncate(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
			assertLabel(t, got)
			if Truncate(tt.in, tt.max) != got {
				t.Errorf("Truncate is not deterministic")
			}
		})
	}
}

func TestLongNamesSharingAPrefixDiffer(t *testing.T) {
	prefix := strings.Repeat("x", 63)
	a, b := Truncate(prefix+"-one", MaxLength), Truncate(prefix+"-two", MaxLength)
	if a == b {
		t.Fatalf("two long names sharing a 63-character prefix both became %q", a)
	}
	assertLabel(t, a)
	assertLabel(t, b)

	da, db := DerivedServiceName(prefix[:60]+"one"), DerivedServiceName(prefix[:60]+"two")
	if da == db {
		t.Fatalf("derived names collide: %q", da)
	}
	ra, rb := BrokerRecordName(prefix, prefix[:62]+"1"), BrokerRecordName(prefix, prefix[:62]+"2")
	if ra == rb {
		t.Fatalf("record names collide: %q", ra)
	}
}

func TestDerivedServiceName(t *testing.T) {
	if got := DerivedServiceName("hello"); got != "derived-hello" {
		t.Errorf("DerivedServiceName(hello) = %q", got)
	}
	long := strings.Repeat("s", 63)
	got := DerivedServiceName(long)
	assertLabel(t, got)
	if !strings.HasPrefix(got, "derived-") {
		t.Errorf("%q lost its prefix", got)
	}
	// Services need DNS-1035 labels (leading letter), even from a name starting with a digit.
	if errs := validation.IsDNS1035Label(DerivedServiceName("1st-" + long)); len(errs) > 0 {
		t.Errorf("not a DNS-1035 label: %v", errs)
	}
}

func TestBrokerRecordName(t *testing.T) {
	got := BrokerRecordName("demo", "hello")
	if !strings.HasPrefix(got, "hello-demo-") || len(got) != len("hello-demo-")+hashLength {
		t.Errorf("BrokerRecordName(demo, hello) = %q, want hello-demo-<hash>", got)
	}
	assertLabel(t, got)
	if BrokerRecordName("demo", "hello") != got {
		t.Errorf("not deterministic")
	}

	// A plain join would give these pairs one name.
	pairs := [][2][2]string{
		{{"team-a", "x"}, {"a", "x-team"}},
		{{"b-c", "a"}, {"c", "a-b"}},
		{{"demo", "hello"}, {"hello", "demo"}},
	}
	for _, p := range pairs {
		a, b := BrokerRecordName(p[0][0], p[0][1]), BrokerRecordName(p[1][0], p[1][1])
		if a == b {
			t.Errorf("%v and %v both named %q", p[0], p[1], a)
		}
	}

	long := BrokerRecordName(strings.Repeat("n", 63), strings.Repeat("m", 63))
	assertLabel(t, long)
	if len(long) != MaxLength {
		t.Errorf("long record name has %d characters, want %d", len(long), MaxLength)
	}
}

func TestUnique(t *testing.T) {
	if Unique("a-b", "c") == Unique("a", "b-c") {
		t.Errorf("Unique is not injective over dashes")
	}
	if Unique("ab", "") == Unique("a", "b") {
		t.Errorf("Unique is not injective over part boundaries")
	}
	assertLabel(t, Unique("hello", "cluster01", "0"))
	// A cut that lands on a dash must not leave a trailing dash before the hash.
	cut := Unique(strings.Repeat("a", 51), "b")
	assertLabel(t, cut)
	if strings.Contains(cut, "--") {
		t.Errorf("%q has a double dash", cut)
	}
}
