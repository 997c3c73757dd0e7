package nodesim

import (
	"fmt"
	"math/big"
	"net/netip"
	"sync"

	"k8s.io/apimachinery/pkg/types"
)

// maxScan bounds one search for a free address, so a huge (IPv6) CIDR never makes an
// allocation scan the whole range.
const maxScan = 1 << 20

// allocation is the address held by one pod incarnation.
type allocation struct {
	uid  types.UID
	addr netip.Addr
}

// allocator hands out pod addresses from the node's pod CIDR. Addresses are held per pod
// key (namespace/name) together with the pod's UID, so a pod recreated under the same name
// is recognised as a new pod. The search continues after the last address handed out, as
// host-local IPAM does, so a released address is not reused at once.
type allocator struct {
	prefix   netip.Prefix
	first    netip.Addr // first address handed out
	last     netip.Addr // last address handed out
	reserved netip.Addr // never handed out (the node IP)
	size     int        // number of candidate addresses, capped at maxScan

	mu    sync.Mutex
	next  netip.Addr
	byKey map[string]allocation
	used  map[netip.Addr]string
}

func newAllocator(prefix netip.Prefix, reserved netip.Addr) *allocator {
	base := prefix.Addr()
	first := base.Next().Next() // skip the network address and the gateway
	hostBits := base.BitLen() - prefix.Bits()
	span := new(big.Int).Lsh(big.NewInt(1), uint(hostBits))
	// Candidates: everything but the network address and the gateway, and for IPv4 the
	// broadcast address.
	span.Sub(span, big.NewInt(2))
	if base.Is4() {
		span.Sub(span, big.NewInt(1))
	}
	size := maxScan
	if span.IsInt64() && span.Int64() < maxScan {
		size = int(span.Int64())
	}
	last := lastAddr(prefix)
	if base.Is4() {
		last = last.Prev()
	}
	return &allocator{
		prefix:   prefix,
		first:    first,
		last:     last,
		reserved: reserved,
		size:     size,
		next:     first,
		byKey:    map[string]allocation{},
		used:     map[netip.Addr]string{},
	}
}

// lastAddr is the highest address of prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		hostBits := len(b)*8 - p.Bits() - (len(b)-1-i)*8
		switch {
		case hostBits >= 8:
			b[i] = 0xff
		case hostBits > 0:
			b[i] |= byte(1<<hostBits) - 1
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// inRange reports whether addr lies between the first and the last address handed out.
func (a *allocator) inRange(addr netip.Addr) bool {
	return addr.IsValid() && addr.Compare(a.first) >= 0 && addr.Compare(a.last) <= 0
}

// usable reports whether addr may be handed out at all.
func (a *allocator) usable(addr netip.Addr) bool {
	return a.inRange(addr) && addr != a.reserved
}

// lookup returns the address held by key, if any.
func (a *allocator) lookup(key string) (allocation, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	al, ok := a.byKey[key]
	return al, ok
}

// reserve records that the pod key with uid holds addr, as reported by an existing pod
// status. It fails if the address is unusable or held by another pod.
func (a *allocator) reserve(key string, uid types.UID, addr netip.Addr) error {
	addr = addr.Unmap()
	if !a.usable(addr) {
		return fmt.Errorf("address %s is not allocatable from %s", addr, a.prefix)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if owner, ok := a.used[addr]; ok && owner != key {
		return fmt.Errorf("address %s is already held by pod %s", addr, owner)
	}
	if al, ok := a.byKey[key]; ok {
		if al.uid == uid && al.addr == addr {
			return nil
		}
		delete(a.used, al.addr)
	}
	a.byKey[key] = allocation{uid: uid, addr: addr}
	a.used[addr] = key
	return nil
}

// allocate returns the address of the pod key with uid, allocating one if it holds none. An
// address held by an earlier pod of the same name is released first.
func (a *allocator) allocate(key string, uid types.UID) (netip.Addr, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byKey[key]; ok {
		if al.uid == uid {
			return al.addr, nil
		}
		delete(a.used, al.addr)
		delete(a.byKey, key)
	}
	addr := a.next
	for range a.size {
		if !a.inRange(addr) {
			addr = a.first
		}
		if _, taken := a.used[addr]; !taken && addr != a.reserved {
			a.byKey[key] = allocation{uid: uid, addr: addr}
			a.used[addr] = key
			a.next = addr.Next()
			return addr, nil
		}
		addr = addr.Next()
	}
	return netip.Addr{}, fmt.Errorf("pod CIDR %s has no free address (%d in use)", a.prefix, len(a.used))
}

// release frees the address held by key, if any.
func (a *allocator) release(key string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if al, ok := a.byKey[key]; ok {
		delete(a.used, al.addr)
		delete(a.byKey, key)
	}
}

// parseAddr parses an address as reported in a pod status.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("parse pod IP: %w", err)
	}
	return a.Unmap(), nil
}
