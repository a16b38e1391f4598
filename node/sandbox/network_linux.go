package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const netnsDir = "/run/netns"

// Sandbox is one pod's network: a named netns holding eth0 (alias = pod UID) with IP.
type Sandbox struct {
	Netns string
	UID   string
	IP    netip.Addr
}

// Config configures a Network.
type Config struct {
	// Instance prefixes the bridge, veths, netns and nftables table.
	Instance string
	// CIDR is the pod CIDR; the bridge holds its first address.
	CIDR netip.Prefix
	// StateDir (in the daemon's data dir) records the netns this daemon made: only those
	// are adopted or removed, never another's that shares the instance's prefix.
	StateDir string
	Log      *slog.Logger
}

// Network owns the node bridge, the pod addresses and the pod sandboxes of one instance.
type Network struct {
	instance string
	stateDir string
	cidr     netip.Prefix
	gateway  netip.Addr
	ipam     *ipam
	log      *slog.Logger

	mu        sync.Mutex
	hostPorts []HostPort // forwarded now
}

// New builds the network; nothing touches the kernel before Setup.
func New(cfg Config) *Network {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Network{instance: cfg.Instance, stateDir: cfg.StateDir, cidr: cfg.CIDR.Masked(), gateway: Gateway(cfg.CIDR), ipam: newIPAM(cfg.CIDR), log: cfg.Log}
}

func (n *Network) bridgeName() string { return n.instance + "0" }

// Gateway is the bridge's address, every pod's default route.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// Allocated counts the pod addresses held.
func (n *Network) Allocated() int { return n.ipam.allocated() }

// NetnsName is a pod's netns as users see it: <instance>_<namespace>_<pod>. A name
// longer than a file name may be (a namespace of 63 characters and a pod name of 189
// are valid) keeps its start and ends in a hash of the namespace and pod instead.
func (n *Network) NetnsName(ns, pod string) string { return NetnsName(n.instance, ns, pod) }

// NetnsName is the netns of pod ns/pod of instance (see Network.NetnsName).
func NetnsName(instance, ns, pod string) string {
	name := instance + "_" + ns + "_" + pod
	if len(name) <= maxFileName {
		return name
	}
	sum := sha256.Sum256([]byte(ns + "/" + pod))
	suffix := "-" + hex.EncodeToString(sum[:8])
	return name[:maxFileName-len(suffix)] + suffix
}

// maxFileName is the longest file name Linux takes (NAME_MAX): netns are files in /run/netns.
const maxFileName = 255

// vethName is the host end of a pod's veth pair: the instance and a hash of the UID,
// within the kernel's 15-character limit.
func vethName(instance, uid string) string {
	h := fnv.New32a()
	h.Write([]byte(uid))
	return fmt.Sprintf("%sv%06x", instance, h.Sum32()&0xffffff)
}

// Setup creates (or repairs) the bridge with the gateway address and turns on forwarding.
func (n *Network) Setup() error {
	br, err := netlink.LinkByName(n.bridgeName())
	if err != nil {
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridgeName()}}); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create bridge %s: %w", n.bridgeName(), err)
		}
		if br, err = netlink.LinkByName(n.bridgeName()); err != nil {
			return err
		}
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: n.gateway.AsSlice(), Mask: net.CIDRMask(n.cidr.Bits(), n.cidr.Addr().BitLen())}}
	if err := netlink.AddrReplace(br, addr); err != nil {
		return fmt.Errorf("address bridge %s: %w", n.bridgeName(), err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bring up bridge: %w", err)
	}
	if err := n.ensureMasquerade(); err != nil {
		n.log.Warn("pod egress will not be masqueraded (install nftables)", "err", err)
	}
	for path, why := range map[string]string{
		"/proc/sys/net/ipv4/ip_forward":                 "pods cannot reach anything beyond the bridge",
		"/proc/sys/net/bridge/bridge-nf-call-iptables":  "service traffic between pods on the bridge bypasses the proxy's rules",
		"/proc/sys/net/bridge/bridge-nf-call-ip6tables": "IPv6 service traffic between pods bypasses the proxy's rules",
	} {
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			n.log.Warn("cannot set sysctl", "path", path, "consequence", why, "err", err)
		}
	}
	return nil
}

// RepairBridge makes the bridge again, with its address, up, when something took it
// away, and says whether it did. The pods' veths are put back on it by Repair.
func (n *Network) RepairBridge() (bool, error) {
	if br, err := netlink.LinkByName(n.bridgeName()); err == nil && br.Attrs().Flags&net.FlagUp != 0 {
		addrs, err := netlink.AddrList(br, netlink.FAMILY_V4)
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == n.gateway {
				return false, nil
			}
		}
		if err != nil {
			return false, nil // not knowable now: the next look
		}
	}
	return true, n.Setup()
}

// Reattach puts the instance's veths that are off the bridge back on it, and counts
// them: the kernel takes every port off a bridge it deletes.
func (n *Network) Reattach() (int, error) {
	br, err := netlink.LinkByName(n.bridgeName())
	if err != nil {
		return 0, fmt.Errorf("bridge: %w", err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 0, err
	}
	count := 0
	for _, l := range links {
		if !ownVeth(n.instance, l.Attrs().Name) || l.Attrs().MasterIndex == br.Attrs().Index {
			continue
		}
		if err := netlink.LinkSetMaster(l, br); err != nil {
			if errors.Is(err, unix.ENODEV) {
				continue // removed meanwhile
			}
			return count, fmt.Errorf("attach %s to %s: %w", l.Attrs().Name, n.bridgeName(), err)
		}
		if err := netlink.LinkSetHairpin(l, true); err != nil {
			return count, fmt.Errorf("hairpin on %s: %w", l.Attrs().Name, err)
		}
		count++
	}
	return count, nil
}

// WatchLinks calls changed whenever the bridge is deleted or one of the instance's
// veths is seen off it, until ctx ends: what the kernel says at once, where a look
// every few seconds would leave pods cut off meanwhile.
func (n *Network) WatchLinks(ctx context.Context, changed func()) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // the subscription's socket closing as ctx ends is no news
				n.log.Warn("link updates", "err", err)
			}
		}}); err != nil {
		return fmt.Errorf("subscribe to link updates: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-updates:
			if !ok {
				return errors.New("link updates ended")
			}
			name := u.Attrs().Name
			switch {
			case u.Header.Type == unix.RTM_DELLINK && name == n.bridgeName():
				changed()
			case u.Header.Type == unix.RTM_NEWLINK && u.Attrs().MasterIndex == 0 && ownVeth(n.instance, name):
				changed()
			}
		}
	}
}

// Create builds pod ns/name's sandbox: an address, a netns, a veth pair on the bridge
// (hairpin on), eth0 with the address and a default route via the bridge, loopback up.
// On failure it removes what it made.
func (n *Network) Create(ns, name, uid string) (Sandbox, error) {
	ip, err := n.ipam.allocate(uid)
	if err != nil {
		return Sandbox{}, err
	}
	sb := Sandbox{Netns: n.NetnsName(ns, name), UID: uid, IP: ip}
	n.remove(sb.Netns, sb.UID) // a stale one from a crash, if any
	if err := n.record(sb.Netns); err != nil {
		n.Remove(sb)
		return Sandbox{}, err
	}
	if err := n.create(sb); err != nil {
		n.Remove(sb)
		return Sandbox{}, err
	}
	return sb, nil
}

func (n *Network) create(sb Sandbox) error {
	h, err := newNamedNetns(sb.Netns)
	if err != nil {
		return fmt.Errorf("create netns %s: %w", sb.Netns, err)
	}
	defer h.Close()
	br, err := netlink.LinkByName(n.bridgeName())
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	hostName := vethName(n.instance, sb.UID)
	// The peer is born inside the pod's netns as eth0, and the host end is born up on the
	// bridge: moving or renaming devices costs extra round trips under the kernel's rtnl
	// lock, which serialises every pod's network set-up.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, MasterIndex: br.Attrs().Index, MTU: br.Attrs().MTU, Flags: net.FlagUp},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(h))}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s: %w", hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return err
	}
	if err := n.configurePod(h, sb); err != nil {
		return err
	}
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("hairpin on %s: %w", hostName, err)
	}
	return nil
}

func (n *Network) configurePod(h netns.NsHandle, sb Sandbox) error {
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return err
	}
	defer nh.Close()
	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := nh.LinkSetAlias(eth, sb.UID); err != nil {
		return err
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: sb.IP.AsSlice(), Mask: net.CIDRMask(n.cidr.Bits(), n.cidr.Addr().BitLen())}}
	if err := nh.AddrAdd(eth, addr); err != nil {
		return fmt.Errorf("address eth0: %w", err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return err
	}
	if lo, err := nh.LinkByName("lo"); err == nil {
		if err := nh.LinkSetUp(lo); err != nil {
			return err
		}
	}
	route := &netlink.Route{LinkIndex: eth.Attrs().Index, Gw: n.gateway.AsSlice()}
	if err := nh.RouteAdd(route); err != nil {
		return fmt.Errorf("default route: %w", err)
	}
	return nil
}

// Repair puts back what was taken from a sandbox behind the daemon's back and says what
// it repaired ("" when nothing was wrong). A sandbox whose netns is gone cannot be
// repaired here (its containers hold the old one): that is reported as "netns".
func (n *Network) Repair(sb Sandbox) (string, error) {
	if _, err := os.Stat(filepath.Join(netnsDir, sb.Netns)); errors.Is(err, os.ErrNotExist) {
		return "netns", nil
	}
	h, err := netns.GetFromName(sb.Netns)
	if err != nil {
		return "", nil // not knowable now (out of descriptors, say): the next look
	}
	defer h.Close()
	br, err := netlink.LinkByName(n.bridgeName())
	if err != nil {
		return "veth", fmt.Errorf("bridge: %w", err)
	}
	hostName := vethName(n.instance, sb.UID)
	host, err := netlink.LinkByName(hostName)
	if err == nil {
		var what []string
		if host.Attrs().MasterIndex != br.Attrs().Index {
			// Off the bridge: the bridge was deleted and made again, or the veth taken off.
			what = append(what, "veth off the bridge")
			if err := netlink.LinkSetMaster(host, br); err != nil {
				return strings.Join(what, ", "), fmt.Errorf("attach %s to %s: %w", hostName, n.bridgeName(), err)
			}
			if err := netlink.LinkSetHairpin(host, true); err != nil {
				return strings.Join(what, ", "), fmt.Errorf("hairpin on %s: %w", hostName, err)
			}
		}
		if host.Attrs().Flags&net.FlagUp == 0 {
			what = append(what, "veth down")
			if err := netlink.LinkSetUp(host); err != nil {
				return strings.Join(what, ", "), err
			}
		}
		return strings.Join(what, ", "), nil
	}
	// The veth is gone (its pod end with it): a new pair, configured as at creation.
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostName, MasterIndex: br.Attrs().Index, MTU: br.Attrs().MTU, Flags: net.FlagUp},
		PeerName: "eth0", PeerNamespace: netlink.NsFd(int(h))}
	if err := netlink.LinkAdd(veth); err != nil {
		return "veth", fmt.Errorf("create veth %s: %w", hostName, err)
	}
	if host, err = netlink.LinkByName(hostName); err != nil {
		return "veth", err
	}
	if err := n.configurePod(h, sb); err != nil {
		return "veth", err
	}
	return "veth", netlink.LinkSetHairpin(host, true)
}

// newNamedNetns creates a netns bound at /run/netns/name without moving the daemon.
func newNamedNetns(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return 0, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name) // moves this thread into the new netns
	if setErr := netns.Set(orig); setErr != nil {
		// The thread is stuck in the pod's netns: keep it locked so it dies with this goroutine.
		return h, errors.Join(err, setErr)
	}
	runtime.UnlockOSThread()
	return h, err
}

// Remove deletes a sandbox's veth, netns and /etc/netns entry (missing parts are fine)
// and frees its address.
func (n *Network) Remove(sb Sandbox) {
	n.remove(sb.Netns, sb.UID)
	if sb.IP.IsValid() {
		n.ipam.release(sb.IP)
	}
}

func (n *Network) remove(name, uid string) {
	if uid != "" {
		if l, err := netlink.LinkByName(vethName(n.instance, uid)); err == nil {
			netlink.LinkDel(l)
		}
	}
	path := filepath.Join(netnsDir, name)
	// Not mounted (EINVAL) or already gone (ENOENT) is fine: remove the file either way.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		n.log.Warn("unmount netns", "netns", name, "err", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.log.Warn("delete netns", "netns", name, "err", err)
	}
	os.RemoveAll(filepath.Join("/etc/netns", name))
	if n.stateDir != "" {
		os.Remove(filepath.Join(n.stateDir, name))
	}
}

// record notes that this daemon owns netns name, before it is made: whatever a crash
// leaves half made is then found by List.
func (n *Network) record(name string) error {
	if n.stateDir == "" {
		return nil
	}
	if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
		return fmt.Errorf("record netns %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(n.stateDir, name), nil, 0o600); err != nil {
		return fmt.Errorf("record netns %s: %w", name, err)
	}
	return nil
}

// Adopt takes over a sandbox found by List: its address is held again.
func (n *Network) Adopt(sb Sandbox) { n.ipam.reserve(sb.IP, sb.UID) }

// List finds the sandboxes this daemon made (for adoption after a restart): those
// recorded in the state dir, with or without their netns still there. Without a state
// dir yet (a data dir from before it was kept), every netns named with the instance's
// prefix whose eth0 carries a pod UID is taken as ours, and recorded.
func (n *Network) List() ([]Sandbox, error) {
	var names []string
	entries, err := os.ReadDir(n.stateDir)
	switch {
	case n.stateDir != "" && err == nil:
		for _, e := range entries {
			names = append(names, e.Name())
		}
	case n.stateDir != "" && !errors.Is(err, os.ErrNotExist):
		return nil, err
	default:
		all, err := os.ReadDir(netnsDir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range all {
			if strings.HasPrefix(e.Name(), n.instance+"_") {
				names = append(names, e.Name())
			}
		}
	}
	migrate := n.stateDir != "" && errors.Is(err, os.ErrNotExist)
	var out []Sandbox
	for _, name := range names {
		sb := Sandbox{Netns: name}
		if h, err := netns.GetFromName(name); err == nil {
			sb.UID, sb.IP = readPodInterface(h)
			h.Close()
		}
		if migrate {
			if sb.UID == "" {
				continue // not a pod's, or not knowably: left alone
			}
			if err := n.record(name); err != nil {
				return nil, err
			}
		}
		out = append(out, sb)
	}
	if migrate {
		if err := os.MkdirAll(n.stateDir, 0o700); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readPodInterface(h netns.NsHandle) (string, netip.Addr) {
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		return "", netip.Addr{}
	}
	defer nh.Close()
	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return "", netip.Addr{}
	}
	addrs, _ := nh.AddrList(eth, netlink.FAMILY_V4)
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok {
			return eth.Attrs().Alias, ip.Unmap()
		}
	}
	return eth.Attrs().Alias, netip.Addr{}
}

// WriteFile writes /etc/netns/<netns>/<file>, which `ip netns exec` mounts over /etc.
func WriteFile(netnsName, file, content string) error {
	dir := filepath.Join("/etc/netns", netnsName)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644)
}

// Cleanup removes the instance's network: pod netns, veths, the masquerade table and
// the bridge. It touches nothing without the instance's prefix.
func Cleanup(instance, stateDir string, log *slog.Logger) error {
	n := New(Config{Instance: instance, StateDir: stateDir, Log: log})
	sandboxes, err := n.List()
	if err != nil {
		return err
	}
	for _, sb := range sandboxes {
		n.remove(sb.Netns, sb.UID)
		log.Info("removed pod network", "netns", sb.Netns)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	for _, l := range links {
		name := l.Attrs().Name
		if _, isVeth := l.(*netlink.Veth); isVeth && ownVeth(instance, name) {
			netlink.LinkDel(l)
			log.Info("removed veth", "link", name)
		}
	}
	removeMasquerade(instance)
	if br, err := netlink.LinkByName(n.bridgeName()); err == nil {
		if err := netlink.LinkDel(br); err != nil {
			return fmt.Errorf("delete bridge: %w", err)
		}
		log.Info("removed bridge", "link", n.bridgeName())
	}
	return nil
}

// ownVeth reports whether name is one of vethName's: instance, v, six hex digits.
func ownVeth(instance, name string) bool {
	rest, ok := strings.CutPrefix(name, instance)
	if !ok || len(rest) != 7 || rest[0] != 'v' {
		return false
	}
	_, err := strconv.ParseUint(rest[1:], 16, 32)
	return err == nil
}

// Do runs f on a thread of its own moved into the named netns (sockets and children
// made there belong to it). A thread that cannot move back ends with its goroutine
// instead of returning to the pool.
func Do(name string, f func()) error {
	if name == "" { // the node's own network (a hostNetwork pod's)
		f()
		return nil
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		f()
		if err := netns.Set(orig); err != nil {
			errc <- err // the thread stays locked and ends with this goroutine
			return
		}
		runtime.UnlockOSThread()
		errc <- nil
	}()
	return <-errc
}

// NetnsPath is where the named network namespace is bound.
func NetnsPath(name string) string { return filepath.Join(netnsDir, name) }
