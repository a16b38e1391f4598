package sandbox

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	utilnet "k8s.io/utils/net"
)

// ErrNoAddress means the pod CIDR has no free address.
var ErrNoAddress = errors.New("pod CIDR exhausted")

// ipam hands out pod addresses: never one in use, and not one just released (it moves
// on from the last address given, wrapping around), so a stale connection or conntrack
// entry cannot reach the next pod by accident.
type ipam struct {
	mu     sync.Mutex
	subnet *net.IPNet
	size   int // addresses in the subnet
	next   int // index of the next candidate, from the network address
	used   map[netip.Addr]string
}

func newIPAM(cidr netip.Prefix) *ipam {
	cidr = cidr.Masked()
	subnet := &net.IPNet{IP: cidr.Addr().AsSlice(), Mask: net.CIDRMask(cidr.Bits(), cidr.Addr().BitLen())}
	return &ipam{subnet: subnet, size: int(min(utilnet.RangeSize(subnet), 1<<24)), next: 2, used: map[netip.Addr]string{}}
}

// Gateway is the bridge's address: the first host address of cidr.
func Gateway(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

func (p *ipam) nth(i int) netip.Addr {
	ip, _ := utilnet.GetIndexedIP(p.subnet, i)
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

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

// allocate gives owner a free host address: not the network address, the gateway (the
// first) or the broadcast address (the last).
func (p *ipam) allocate(owner string) (netip.Addr, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	hosts := p.size - 3
	for i := range max(hosts, 0) {
		idx := 2 + (p.next-2+i)%hosts
		ip := p.nth(idx)
		if _, taken := p.used[ip]; !taken {
			p.used[ip] = owner
			p.next = idx + 1
			return ip, nil
		}
	}
	return netip.Addr{}, ErrNoAddress
}
