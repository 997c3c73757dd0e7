package nodesim

import (
	"net/netip"
	"strconv"
	"testing"
)

func TestAllocatorSkipsReservedAddresses(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.1.0.0/29"), netip.MustParseAddr("10.1.0.3"))
	// .0 network, .1 gateway, .3 node, .7 broadcast: .2 .4 .5 .6 remain.
	want := []string{"10.1.0.2", "10.1.0.4", "10.1.0.5", "10.1.0.6"}
	for i, w := range want {
		got, err := a.allocate("ns/p"+strconv.Itoa(i), "uid")
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if got.String() != w {
			t.Errorf("allocate %d = %s, want %s", i, got, w)
		}
	}
	if got, err := a.allocate("ns/extra", "uid"); err == nil {
		t.Errorf("allocate from an exhausted CIDR = %s, want error", got)
	}
}

func TestAllocatorIPv6(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("fd01::/126"), netip.MustParseAddr("fd00::1"))
	for i, w := range []string{"fd01::2", "fd01::3"} {
		got, err := a.allocate("ns/p"+strconv.Itoa(i), "uid")
		if err != nil || got.String() != w {
			t.Errorf("allocate %d = %s, %v; want %s", i, got, err, w)
		}
	}
	if _, err := a.allocate("ns/extra", "uid"); err == nil {
		t.Error("allocate from an exhausted CIDR succeeded")
	}
}

func TestAllocatorKeepsAndReleases(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.1.0.0/16"), netip.MustParseAddr("192.168.50.10"))
	first, _ := a.allocate("ns/a", "uid-a")
	if again, _ := a.allocate("ns/a", "uid-a"); again != first {
		t.Errorf("second allocate for the same pod = %s, want %s", again, first)
	}
	// Same name, new pod: new address, old one released.
	renewed, _ := a.allocate("ns/a", "uid-a2")
	if renewed == first {
		t.Errorf("recreated pod kept address %s", first)
	}
	if _, ok := a.used[first]; ok {
		t.Errorf("address %s of the old pod still held", first)
	}
	a.release("ns/a")
	if _, ok := a.lookup("ns/a"); ok {
		t.Error("released pod still holds an address")
	}
	// Released addresses are not handed out again at once.
	next, _ := a.allocate("ns/b", "uid-b")
	if next == first || next == renewed {
		t.Errorf("allocate after release = %s, want an address not used just before", next)
	}
}

func TestAllocatorReserve(t *testing.T) {
	a := newAllocator(netip.MustParsePrefix("10.1.0.0/24"), netip.MustParseAddr("10.1.0.10"))
	if err := a.reserve("ns/a", "uid-a", netip.MustParseAddr("10.1.0.2")); err != nil {
		t.Fatalf("reserve: %v", err)
	}
	if err := a.reserve("ns/b", "uid-b", netip.MustParseAddr("10.1.0.2")); err == nil {
		t.Error("reserving an address held by another pod succeeded")
	}
	for _, bad := range []string{"10.1.0.0", "10.1.0.1", "10.1.0.10", "10.1.0.255", "10.2.0.5"} {
		if err := a.reserve("ns/c", "uid-c", netip.MustParseAddr(bad)); err == nil {
			t.Errorf("reserve %s succeeded, want error", bad)
		}
	}
	got, err := a.allocate("ns/d", "uid-d")
	if err != nil || got.String() != "10.1.0.3" {
		t.Errorf("allocate after reserve = %s, %v; want 10.1.0.3", got, err)
	}
}
