package apiserver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	netutils "k8s.io/utils/net"
	utilnet "k8s.io/utils/net"

	"github.com/minicluster/minicluster/store"
)

// Pools in the store.
const (
	poolClusterIP = "clusterip"
	poolNodePort  = "nodeport"
)

// Allocator hands out ClusterIPs and NodePorts inside the service write transaction, so
// an address is never given twice and is released exactly when its service goes.
type Allocator struct {
	ServiceCIDR   netip.Prefix
	NodePortBase  int
	NodePortCount int
}

// hostCount is the number of usable host addresses in an IPv4 or IPv6 prefix, without
// the network address (and the broadcast address for IPv4), for at most 24 host bits.
func hostCount(p netip.Prefix) uint64 {
	n := uint64(1) << min(p.Addr().BitLen()-p.Bits(), 24)
	switch {
	case n <= 2:
		return 0
	case p.Addr().Is4():
		return n - 2
	}
	return n - 1
}

// broadcast is an IPv4 prefix's last address (IPv6 prefixes have none).
func broadcast(p netip.Prefix) netip.Addr {
	if !p.Addr().Is4() {
		return netip.Addr{}
	}
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// nthAddr returns the address i+1 after the prefix's network address.
func nthAddr(p netip.Prefix, i uint64) netip.Addr {
	p = p.Masked()
	ip, _ := utilnet.GetIndexedIP(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, int(i+1))
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap()
}

func serviceOwner(s *corev1.Service) string { return s.Namespace + "/" + s.Name }

func invalid(s *corev1.Service, errs ...*field.Error) error {
	return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), s.Name, errs)
}

// staticBand is the low part of the range kept for requested addresses (as Kubernetes
// does, KEP-3070), so that dynamic allocation never takes 10.96.0.10 from kube-dns.
func (a *Allocator) staticBand() uint64 {
	n := hostCount(a.ServiceCIDR)
	return min(max(n/16, 16), 256, n)
}

func (a *Allocator) claimClusterIP(t store.Txn, s *corev1.Service) error {
	p := field.NewPath("spec", "clusterIPs").Index(0)
	if s.Spec.ClusterIP == "" {
		n, band := hostCount(a.ServiceCIDR), a.staticBand()
		ip, err := t.ClaimAny(poolClusterIP, serviceOwner(s), n-band, func(i uint64) string {
			return nthAddr(a.ServiceCIDR, band+i).String()
		})
		if errors.Is(err, store.ErrFull) {
			ip, err = t.ClaimAny(poolClusterIP, serviceOwner(s), band, func(i uint64) string {
				return nthAddr(a.ServiceCIDR, i).String()
			})
		}
		if err != nil {
			return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: %w", err))
		}
		s.Spec.ClusterIP, s.Spec.ClusterIPs = ip, []string{ip}
		return nil
	}
	addr, ok := parseIP(s.Spec.ClusterIP)
	if !ok || !a.ServiceCIDR.Contains(addr) || addr == a.ServiceCIDR.Masked().Addr() || addr == broadcast(a.ServiceCIDR) {
		return invalid(s, field.Invalid(p, s.Spec.ClusterIP, fmt.Sprintf(
			"failed to allocate IP %s: provided IP is not in the valid range. The range of valid IPs is %s", s.Spec.ClusterIP, a.ServiceCIDR)))
	}
	if err := t.Claim(poolClusterIP, addr.String(), serviceOwner(s)); err != nil {
		return invalid(s, field.Invalid(p, s.Spec.ClusterIP, fmt.Sprintf(
			"failed to allocate IP %s: provided IP is already allocated", s.Spec.ClusterIP)))
	}
	s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	return nil
}

// parseIP reads ip as Kubernetes does: leading zeros are decimal
// (netutils.ParseIPSloppy, CVE-2021-29923), so 10.96.0.011 is 10.96.0.11.
func parseIP(ip string) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(netutils.ParseIPSloppy(ip))
	return a.Unmap(), ok
}

// poolIP is the allocation pool's key for ip: its canonical spelling.
func poolIP(ip string) string {
	if a, ok := parseIP(ip); ok {
		return a.String()
	}
	return ip
}

func needsClusterIP(s *corev1.Service) bool {
	return s.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP != corev1.ClusterIPNone
}

func needsNodePorts(s *corev1.Service) bool {
	return s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer
}

func (a *Allocator) claimNodePorts(t store.Txn, s *corev1.Service) error {
	owner := serviceOwner(s)
	for i := range s.Spec.Ports {
		port := &s.Spec.Ports[i]
		p := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		if port.NodePort == 0 {
			v, err := t.ClaimAny(poolNodePort, owner, uint64(a.NodePortCount), func(i uint64) string {
				return strconv.Itoa(a.NodePortBase + int(i))
			})
			if err != nil {
				return apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: %w", err))
			}
			n, _ := strconv.Atoi(v)
			port.NodePort = int32(n)
			continue
		}
		if int(port.NodePort) < a.NodePortBase || int(port.NodePort) >= a.NodePortBase+a.NodePortCount {
			return invalid(s, field.Invalid(p, port.NodePort, fmt.Sprintf(
				"provided port is not in the valid range. The range of valid ports is %d-%d", a.NodePortBase, a.NodePortBase+a.NodePortCount-1)))
		}
		if err := t.Claim(poolNodePort, strconv.Itoa(int(port.NodePort)), owner); err != nil {
			return invalid(s, field.Invalid(p, port.NodePort, "provided port is already allocated"))
		}
	}
	return nil
}

func (a *Allocator) serviceCreate(t store.Txn, obj store.Object) error {
	s := obj.(*corev1.Service)
	if needsClusterIP(s) {
		if err := a.claimClusterIP(t, s); err != nil {
			return err
		}
	}
	if needsNodePorts(s) {
		return a.claimNodePorts(t, s)
	}
	return nil
}

func (a *Allocator) serviceUpdate(t store.Txn, obj, old store.Object) error {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	if needsClusterIP(s) && s.Spec.ClusterIP == "" {
		if err := a.claimClusterIP(t, s); err != nil {
			return err
		}
	}
	if needsNodePorts(s) {
		if err := a.claimNodePorts(t, s); err != nil {
			return err
		}
	}
	keep := map[string]bool{}
	if needsClusterIP(s) {
		keep[poolIP(s.Spec.ClusterIP)] = true
	}
	if !keep[poolIP(o.Spec.ClusterIP)] && o.Spec.ClusterIP != corev1.ClusterIPNone {
		if err := t.Release(poolClusterIP, poolIP(o.Spec.ClusterIP), serviceOwner(o)); err != nil {
			return err
		}
	}
	if needsNodePorts(s) {
		for _, p := range s.Spec.Ports {
			keep[strconv.Itoa(int(p.NodePort))] = true
		}
	}
	for _, p := range o.Spec.Ports {
		if np := strconv.Itoa(int(p.NodePort)); p.NodePort != 0 && !keep[np] {
			if err := t.Release(poolNodePort, np, serviceOwner(o)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (a *Allocator) serviceDelete(t store.Txn, obj store.Object) error {
	s := obj.(*corev1.Service)
	if s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
		if err := t.Release(poolClusterIP, poolIP(s.Spec.ClusterIP), serviceOwner(s)); err != nil {
			return err
		}
	}
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			if err := t.Release(poolNodePort, strconv.Itoa(int(p.NodePort)), serviceOwner(s)); err != nil {
				return err
			}
		}
	}
	return nil
}

// prepareServiceUpdate keeps status and carries allocated values an update leaves
// unset (a manifest re-applied without clusterIP or nodePort keeps them), as
// Kubernetes does.
func prepareServiceUpdate(obj, old store.Object) {
	s, o := obj.(*corev1.Service), old.(*corev1.Service)
	s.Status = o.Status
	// A change of type drops what only the old type had, when the update left it as it
	// was (Kubernetes' dropTypeDependentFields): kubectl patches just the type.
	if s.Spec.Type == corev1.ServiceTypeExternalName && o.Spec.Type != corev1.ServiceTypeExternalName && s.Spec.ClusterIP == o.Spec.ClusterIP {
		s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
	}
	if needsNodePorts(o) && !needsNodePorts(s) {
		for i := range s.Spec.Ports {
			for _, op := range o.Spec.Ports {
				if s.Spec.Ports[i].NodePort != 0 && s.Spec.Ports[i].NodePort == op.NodePort {
					s.Spec.Ports[i].NodePort = 0
				}
			}
		}
	}
	if s.Spec.ClusterIP == "" && needsClusterIP(s) && needsClusterIP(o) {
		s.Spec.ClusterIP, s.Spec.ClusterIPs = o.Spec.ClusterIP, o.Spec.ClusterIPs
	}
	if !needsNodePorts(s) || !needsNodePorts(o) {
		return
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		for _, op := range o.Spec.Ports {
			if p.NodePort == 0 && op.Port == p.Port && op.Protocol == p.Protocol {
				p.NodePort = op.NodePort
			}
		}
	}
}
