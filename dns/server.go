package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/retry"
)

// Config configures the cluster DNS server.
type Config struct {
	// Services, Slices and Namespaces are the shared informers answers come from.
	Services   coreinformers.ServiceInformer
	Slices     discoveryinformers.EndpointSliceInformer
	Namespaces coreinformers.NamespaceInformer
	// Endpoints publishes the server's address as kube-system/kube-dns's endpoint.
	Endpoints typedcorev1.EndpointsGetter
	Zone      string
	TTL       time.Duration
	// Listen is the address served on UDP and TCP port 53 (the node's bridge address);
	// it is published as kube-system/kube-dns's endpoint, so the proxy sends the
	// cluster DNS address there.
	Listen netip.Addr
	Port   int // default 53
	// Upstreams receive names outside the zone; none: forwarding off.
	Upstreams []string
	// Reverse are the networks (service and pod CIDRs) whose reverse names are ours.
	Reverse []netip.Prefix
	// Clients may have names outside the zone forwarded (the pod CIDR; loopback and
	// the server's own address are always in): no open resolver for anyone else.
	Clients []netip.Prefix
	Metrics prometheus.Registerer
	Log     *slog.Logger
}

// Server serves cluster DNS.
type Server struct {
	cfg      Config
	index    *Index
	answerer *Answerer
	local    *Answerer // the same without forwarding, for clients outside Clients
	metrics  *metrics
	// forwarding are the queries waiting for an upstream, each in its own goroutine.
	forwarding sync.WaitGroup
}

// New builds the server; its index starts filling when the informers run.
func New(cfg Config) (*Server, error) {
	if cfg.Services == nil || cfg.Slices == nil || cfg.Namespaces == nil || cfg.Endpoints == nil || !cfg.Listen.IsValid() {
		return nil, errors.New("dns: informers, an endpoints client and a listen address are required")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 5 * time.Second
	}
	if cfg.Port == 0 {
		cfg.Port = 53
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	x, err := NewIndex(cfg.Services, cfg.Slices, cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, index: x, metrics: m}
	s.answerer = NewAnswerer(Answerer{Zone: cfg.Zone, TTL: uint32(cfg.TTL / time.Second), Serial: uint32(time.Now().Unix()),
		Source: s.index, Reverse: cfg.Reverse})
	local := *s.answerer
	s.local = &local
	if len(cfg.Upstreams) > 0 {
		f := newForwarder(cfg.Upstreams, m)
		s.answerer.Forward = f.exchange
	}
	return s, nil
}

// Run serves until ctx is cancelled.
func (s *Server) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer s.forwarding.Wait()
	defer wg.Wait()
	wg.Go(func() { s.index.Run(ctx) })
	addr := net.JoinHostPort(s.cfg.Listen.String(), fmt.Sprint(s.cfg.Port))
	// The node agent puts the address on the bridge at start: wait for it. One UDP
	// socket per CPU (SO_REUSEPORT), each with its own reader: a single socket's
	// receive and send calls are what limits a DNS server's rate.
	var pcs []net.PacketConn
	var ln net.Listener
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		return errors.Join(err, serr)
	}}
	for {
		var err error
		pcs = nil
		for range runtime.GOMAXPROCS(0) {
			var pc net.PacketConn
			if pc, err = lc.ListenPacket(ctx, "udp", addr); err != nil {
				break
			}
			pcs = append(pcs, pc)
		}
		if err == nil {
			if ln, err = net.Listen("tcp", addr); err == nil {
				break
			}
		}
		for _, pc := range pcs {
			pc.Close()
		}
		wait := 100 * time.Millisecond
		if !errors.Is(err, syscall.EADDRNOTAVAIL) {
			// Port 53 taken by another server, say: the rest of the cluster works on
			// without DNS; say so, and keep trying.
			s.cfg.Log.Error("cluster DNS cannot listen; retrying in 5s", "addr", addr, "err", err)
			wait = 5 * time.Second
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	handler := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) { s.serve(w, req) })
	servers := []*mdns.Server{{Listener: ln, Handler: handler, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}}
	errc := make(chan error, len(servers)+len(pcs))
	for _, srv := range servers {
		wg.Go(func() { errc <- srv.ActivateAndServe() })
	}
	for _, pc := range pcs {
		wg.Go(func() { errc <- s.serveUDP(pc) })
	}
	s.cfg.Log.Info("cluster DNS serving", "addr", addr, "zone", s.cfg.Zone, "upstreams", s.cfg.Upstreams)
	wg.Go(func() { s.publish(ctx) })
	select {
	case <-ctx.Done():
	case err := <-errc:
		s.cfg.Log.Error("dns server stopped", "err", err)
	}
	for _, srv := range servers {
		srv.Shutdown()
	}
	for _, pc := range pcs {
		pc.Close()
	}
	return nil
}

// serveUDP answers the queries arriving on pc in its own goroutine, a batch at a time:
// recvmmsg takes every query waiting on the socket, sendmmsg sends their answers, so
// under load a query costs a fraction of two system calls. With a goroutine per query
// (as miekg/dns's server has) they queue on the socket's write lock instead. Queries
// that may be forwarded, which wait for an upstream, get a goroutine of their own.
func (s *Server) serveUDP(pc net.PacketConn) error {
	const batch = 64
	bc := ipv4.NewPacketConn(pc)
	in := make([]ipv4.Message, batch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, 4096)} // a larger query is cut short and ignored
	}
	var out []ipv4.Message
	answers := newAnswerCache()     // this socket's own: no lock
	packed := make([][]byte, batch) // a buffer to pack each answer of a batch into
	for i := range packed {
		packed[i] = make([]byte, 1232) // the usual EDNS0 size; a larger answer gets its own
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		out = out[:0]
		for _, m := range in[:n] {
			b := m.Buffers[0][:m.N]
			recursive := s.mayRecurse(m.Addr)
			gen := s.index.Generation() // before the answer is computed: see answerCache
			if a, ok := answers.get(gen, recursive, b); ok {
				start := time.Now()
				buf := append(packed[len(out)][:0], a.packed...)
				buf[0], buf[1] = b[0], b[1] // the query's ID
				out = append(out, ipv4.Message{Buffers: [][]byte{buf}, Addr: m.Addr})
				a.responses.Inc()
				s.metrics.duration.Observe(time.Since(start).Seconds())
				continue
			}
			req := new(mdns.Msg)
			if err := req.Unpack(b); err != nil {
				// FORMERR to a malformed query whose header can be read (RFC 1035
				// 4.1.1); nothing to an answer or to what is not DNS at all.
				if reply := formErr(b); reply != nil {
					out = append(out, ipv4.Message{Buffers: [][]byte{reply}, Addr: m.Addr})
				}
				continue
			}
			if req.Response {
				continue // not a query
			}
			if s.mayForward(req) {
				s.forwarding.Go(func() { s.serve(&udpWriter{pc: pc, addr: m.Addr}, req) })
				continue
			}
			w := &udpWriter{pc: pc, addr: m.Addr, queue: &out, buf: packed[len(out)]}
			before := len(out)
			if resp := s.serve(w, req); len(out) > before && s.answerer.cacheable(resp) {
				answers.put(gen, recursive, b, out[len(out)-1].Buffers[0], s.metrics.requests.WithLabelValues(
					mdns.TypeToString[req.Question[0].Qtype], mdns.RcodeToString[resp.Rcode]))
			}
		}
		for sent := 0; sent < len(out); {
			k, err := bc.WriteBatch(out[sent:], 0)
			if err != nil {
				break // the client's problem (gone, say); UDP answers may be lost
			}
			sent += k
		}
	}
}

// formErr is the FORMERR reply to the malformed query b: its ID and opcode, no
// question; nil when b has no whole header or is a response.
func formErr(b []byte) []byte {
	if len(b) < 12 || b[2]&0x80 != 0 {
		return nil
	}
	m := &mdns.Msg{MsgHdr: mdns.MsgHdr{Id: binary.BigEndian.Uint16(b), Response: true, Opcode: int(b[2]>>3) & 0xf, Rcode: mdns.RcodeFormatError}}
	out, err := m.Pack()
	if err != nil {
		return nil
	}
	return out
}

// mayForward says whether answering req may ask an upstream.
func (s *Server) mayForward(req *mdns.Msg) bool {
	if s.answerer.Forward == nil || len(req.Question) != 1 {
		return false
	}
	return !s.answerer.inZone(req.Question[0].Name) // no copy: this runs for every query
}

// udpWriter is the ResponseWriter of a UDP query served by serveUDP.
type udpWriter struct {
	pc    net.PacketConn
	addr  net.Addr
	queue *[]ipv4.Message // answers to send in a batch; nil: send at once
	buf   []byte          // to pack into
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.pc.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return w.addr }
func (w *udpWriter) Network() string      { return "udp" }
func (w *udpWriter) WriteMsg(m *mdns.Msg) error {
	b, err := m.PackBuffer(w.buf)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Write(b []byte) (int, error) {
	if w.queue != nil {
		*w.queue = append(*w.queue, ipv4.Message{Buffers: [][]byte{b}, Addr: w.addr})
		return len(b), nil
	}
	return w.pc.WriteTo(b, w.addr)
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}

// serve answers one query; a UDP answer that does not fit the client's buffer is
// truncated with TC set, so the client asks again over TCP.
func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) *mdns.Msg {
	start := time.Now()
	a := s.answerer
	if !s.mayRecurse(w.RemoteAddr()) {
		a = s.local
	}
	resp := a.Answer(req) // with EDNS, when the query has it
	size := 512
	if opt := req.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), 512)
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		resp.Truncate(size)
	} else {
		resp.Truncate(mdns.MaxMsgSize)
	}
	w.WriteMsg(resp)
	qtype := "none"
	if len(req.Question) > 0 {
		qtype = mdns.TypeToString[req.Question[0].Qtype]
	}
	s.metrics.observe(qtype, mdns.RcodeToString[resp.Rcode], time.Since(start))
	return resp
}

func (s *Server) mayRecurse(addr net.Addr) bool {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	ip = ip.Unmap()
	if ip.IsLoopback() || ip == s.cfg.Listen {
		return true
	}
	for _, p := range s.cfg.Clients {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// publish keeps kube-system/kube-dns's Endpoints pointing at this server; the
// EndpointSlice controller mirrors it and the proxy routes the service address here.
func (s *Server) publish(ctx context.Context) {
	want := []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: s.cfg.Listen.String()}},
		Ports: []corev1.EndpointPort{{Name: "dns", Port: int32(s.cfg.Port), Protocol: corev1.ProtocolUDP},
			{Name: "dns-tcp", Port: int32(s.cfg.Port), Protocol: corev1.ProtocolTCP}}}}
	client := s.cfg.Endpoints.Endpoints(metav1.NamespaceSystem)
	for ctx.Err() == nil {
		err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
			ep, err := client.Get(ctx, "kube-dns", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				ep = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "kube-dns", Labels: map[string]string{"k8s-app": "kube-dns"}}, Subsets: want}
				_, err = client.Create(ctx, ep, metav1.CreateOptions{})
				return err
			}
			if err != nil {
				return err
			}
			ep.Subsets = want
			_, err = client.Update(ctx, ep, metav1.UpdateOptions{})
			return err
		})
		if err == nil {
			return
		}
		s.cfg.Log.Warn("could not publish the kube-dns endpoint; retrying", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// HostUpstreams are the host's nameservers for forwarding: systemd-resolved's real
// upstreams when present, else /etc/resolv.conf's, without loopback addresses (a stub
// there would send the queries back here, or to a resolver the pods cannot use).
func HostUpstreams() []string {
	for _, path := range []string{"/run/systemd/resolve/resolv.conf", "/etc/resolv.conf"} {
		conf, err := mdns.ClientConfigFromFile(path)
		if err != nil {
			continue
		}
		var out []string
		for _, server := range conf.Servers {
			if ip, err := netip.ParseAddr(server); err == nil && !ip.IsLoopback() {
				out = append(out, net.JoinHostPort(ip.String(), conf.Port))
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}
