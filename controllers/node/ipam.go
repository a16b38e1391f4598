package node

import (
	"errors"
	"net/netip"
	"sync"

	"github.com/minicluster/minicluster/store"
)

// ErrNoAddress means the pod CIDR has no free address.
var ErrNoAddress = errors.New("pod CIDR exhausted")

// ipam hands out pod addresses: never one in use, and not one just released (it moves
// on from the last address given, wrapping around), so a stale connection or conntrack
// entry cannot reach the next pod by accident.
type ipam struct {
	mu   sync.Mutex
	cidr netip.Prefix
	next uint64 // index of the next candidate, from the network address
	used map[netip.Addr]string
}

func newIPAM(cidr netip.Prefix) *ipam {
	return &ipam{cidr: cidr.Masked(), next: 1, used: map[netip.Addr]string{}}
}

// gateway is the bridge's address: the first host address.
func (p *ipam) gateway() netip.Addr { return store.NthAddr(p.cidr, 0) }

func (p *ipam) reserve(ip netip.Addr, owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.used[ip] = owner
}

func (p *ipam) release(ip netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.used, ip)
}

func (p *ipam) allocated() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.used)
}

func (p *ipam) allocate(owner string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := store.PrefixSize(p.cidr)
	for i := uint64(0); i < n; i++ {
		idx := (p.next + i) % n
		ip := store.NthAddr(p.cidr, idx)
		if ip == p.gateway() {
			continue
		}
		if _, taken := p.used[ip]; !taken {
			p.used[ip] = owner
			p.next = idx + 1
			return ip, nil
		}
	}
	return netip.Addr{}, ErrNoAddress
}
