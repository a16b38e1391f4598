package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/protobuf/encoding/protowire"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/node/runtime"
)

// Probes run from the node, as the kubelet's: httpGet and tcpSocket against the pod IP
// over the bridge, exec inside the container's namespaces.

type probeKey struct {
	uid       types.UID
	container string
	run       int32
}

// probeState is the verdict of one container run's probes.
type probeState struct {
	mu             sync.Mutex
	ready, started bool
	cancel         context.CancelFunc
}

func (p *probeState) get() (bool, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ready, p.started
}

// prober runs the probe loops of the agent's containers, one per container run,
// beside the workers; the agent's Run waits for them.
type prober struct {
	agent  *Agent
	ctx    context.Context // the agent's Run's: every loop ends with it
	states sync.Map        // probeKey → *probeState
}

// results returns a run's readiness and whether it has started (startup probe).
func (p *prober) results(uid types.UID, name string, run int32) (ready, started bool) {
	if v, ok := p.states.Load(probeKey{uid, name, run}); ok {
		return v.(*probeState).get()
	}
	return false, false
}

// ensure starts the probe loop of a running container once per run.
func (p *prober) ensure(pod *corev1.Pod, ctr *corev1.Container, c *runtime.ContainerState, podIP string) {
	k := probeKey{pod.UID, ctr.Name, c.RestartCount}
	st := &probeState{ready: ctr.ReadinessProbe == nil && ctr.StartupProbe == nil, started: ctr.StartupProbe == nil}
	if _, loaded := p.states.LoadOrStore(k, st); loaded {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	st.cancel = cancel
	if ctr.ReadinessProbe == nil && ctr.LivenessProbe == nil && ctr.StartupProbe == nil {
		return
	}
	pod, ctr = pod.DeepCopy(), ctr.DeepCopy()
	p.agent.background.Go(func() { p.loop(ctx, pod, ctr, *c, podIP, k, st) })
}

// stop ends the probe loops of every run of a pod's containers.
func (p *prober) stop(uid types.UID) {
	p.states.Range(func(key, v any) bool {
		if key.(probeKey).uid == uid {
			v.(*probeState).cancel()
			p.states.Delete(key)
		}
		return true
	})
}

// end ends the probe loop of one finished run.
func (p *prober) end(uid types.UID, name string, run int32) {
	if v, ok := p.states.LoadAndDelete(probeKey{uid, name, run}); ok {
		v.(*probeState).cancel()
	}
}

// counter applies a probe's success and failure thresholds.
type counter struct {
	probe              *corev1.Probe
	successes, fails   int32
	lastOK, hasVerdict bool
}

func (c *counter) observe(ok bool) (verdict, changed bool) {
	if ok {
		c.successes, c.fails = c.successes+1, 0
	} else {
		c.fails, c.successes = c.fails+1, 0
	}
	prev, had := c.lastOK, c.hasVerdict
	switch {
	case ok && c.successes >= max(c.probe.SuccessThreshold, 1):
		c.lastOK, c.hasVerdict = true, true
	case !ok && c.fails >= max(c.probe.FailureThreshold, 1):
		c.lastOK, c.hasVerdict = false, true
	}
	return c.lastOK, c.hasVerdict && (!had || prev != c.lastOK)
}

func (p *prober) loop(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, run runtime.ContainerState, podIP string, k probeKey, st *probeState) {
	a, podKey := p.agent, key(pod)
	set := func(f func()) {
		st.mu.Lock()
		f()
		st.mu.Unlock()
		a.loop.Enqueue(podKey)
	}
	started := ctr.StartupProbe == nil
	kinds := []struct {
		name  string
		probe *corev1.Probe
		next  time.Time
		c     *counter
	}{{"startup", ctr.StartupProbe, time.Time{}, nil}, {"liveness", ctr.LivenessProbe, time.Time{}, nil}, {"readiness", ctr.ReadinessProbe, time.Time{}, nil}}
	begin := time.Now()
	for i := range kinds {
		if p := kinds[i].probe; p != nil {
			kinds[i].next = begin.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
			kinds[i].c = &counter{probe: p}
		}
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			for i := range kinds {
				kd := &kinds[i]
				if kd.probe == nil || now.Before(kd.next) || (kd.name != "startup" && !started) || (kd.name == "startup" && started) {
					continue
				}
				kd.next = now.Add(time.Duration(max(kd.probe.PeriodSeconds, 1)) * time.Second)
				err := runProbe(ctx, kd.probe, ctr, podIP, a.execIn(pod, ctr.Name))
				if err != nil && ctx.Err() == nil {
					a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "Unhealthy", "%s probe failed: %s",
						strings.ToUpper(kd.name[:1])+kd.name[1:], err)
				}
				verdict, changed := kd.c.observe(err == nil)
				switch {
				case kd.name == "startup" && verdict && changed:
					started = true
					set(func() { st.started = true; st.ready = ctr.ReadinessProbe == nil })
				case kd.name == "readiness" && changed:
					set(func() { st.ready = verdict })
				case (kd.name == "liveness" || kd.name == "startup") && changed && !verdict:
					a.cfg.Log.Info("probe failed: restarting container", "pod", podKey, "container", ctr.Name, "probe", kd.name)
					a.killContainer(ctx, pod, ctr.Name, run, podIP,
						fmt.Sprintf("Container %s failed %s probe, will be restarted", ctr.Name, kd.name), killGrace(pod, kd.probe))
					return
				}
			}
		}
	}
}

// runProbe runs one probe (an exec probe's command with execIn); nil means success.
func runProbe(ctx context.Context, p *corev1.Probe, ctr *corev1.Container, podIP string,
	execIn func(context.Context, []string, io.Writer) (int, error)) error {
	timeout := time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.HTTPGet != nil:
		h := p.HTTPGet
		port, err := probePort(h.Port, ctr)
		if err != nil {
			return err
		}
		host := h.Host
		if host == "" {
			host = podIP
		}
		scheme := "http"
		if h.Scheme == corev1.URISchemeHTTPS {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), h.Path), nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.32")
		for _, hd := range h.HTTPHeaders {
			req.Header.Set(hd.Name, hd.Value)
		}
		client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil:
		port, err := probePort(p.TCPSocket.Port, ctr)
		if err != nil {
			return err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err == nil {
			c.Close()
		}
		return err
	case p.Exec != nil && len(p.Exec.Command) > 0:
		// Its output is the failure's message, as the kubelet reports it.
		var out bytes.Buffer
		code, err := execIn(ctx, p.Exec.Command, &limitedBuffer{b: &out, n: 10 << 10})
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("command %q timed out", strings.Join(p.Exec.Command, " "))
		case err != nil:
			return err
		case code != 0 && out.Len() > 0:
			return errors.New(strings.TrimSpace(out.String()))
		case code != 0:
			return fmt.Errorf("command %q exited with %d", strings.Join(p.Exec.Command, " "), code)
		}
		return nil
	case p.GRPC != nil:
		return grpcProbe(ctx, podIP, p.GRPC)
	}
	return fmt.Errorf("probe has no handler")
}

// grpcProbe asks the gRPC health service (grpc.health.v1.Health/Check) at the pod's
// port, as the kubelet's gRPC prober does: plaintext HTTP/2, SERVING passes, and its
// failure messages. One unary call spoken directly: the grpc module would add 30 MB
// to the binary for it.
func grpcProbe(ctx context.Context, podIP string, g *corev1.GRPCAction) error {
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(g.Port)))
	var msg []byte // HealthCheckRequest{service}
	if svc := ptr.Deref(g.Service, ""); svc != "" {
		msg = protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), svc)
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg))) // not compressed, length
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(append(body, msg...)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", "kube-probe/1.32")
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("timeout: failed to connect service %q within %v", addr, probeTimeout(ctx))
		}
		return fmt.Errorf("error: failed to connect service %q: %w", addr, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("error: health rpc probe failed: %w", err)
	}
	code := cmp.Or(resp.Trailer.Get("Grpc-Status"), resp.Header.Get("Grpc-Status")) // trailers-only answers put it in the headers
	desc := cmp.Or(resp.Trailer.Get("Grpc-Message"), resp.Header.Get("Grpc-Message"))
	switch {
	case code == "12": // Unimplemented
		return fmt.Errorf("error: this server does not implement the grpc health protocol (grpc.health.v1.Health): %s", desc)
	case code != "0":
		return fmt.Errorf("error: health rpc probe failed: rpc error: code = %s desc = %s", code, desc)
	case len(out) < 5:
		return fmt.Errorf("error: health rpc probe failed: no response")
	}
	// HealthCheckResponse{status = 1}: SERVING.
	status := protowire.Number(0)
	for b := out[5:]; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			break
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				break
			}
			status, b = protowire.Number(v), b[m:]
			continue
		}
		if m := protowire.ConsumeFieldValue(num, typ, b); m >= 0 {
			b = b[m:]
		} else {
			break
		}
	}
	if status != 1 {
		return fmt.Errorf("service unhealthy (responded with %q)", []string{"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}[min(int(status), 3)])
	}
	return nil
}

// probeTimeout is what is left of ctx's deadline, for messages.
func probeTimeout(ctx context.Context) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d).Round(time.Second)
	}
	return 0
}

// execIn runs commands in a container of pod, its output to out.
func (a *Agent) execIn(pod *corev1.Pod, name string) func(context.Context, []string, io.Writer) (int, error) {
	return func(ctx context.Context, cmd []string, out io.Writer) (int, error) {
		return a.rt.ExecIn(ctx, string(pod.UID), name, cmd, remotecommand.StreamOptions{Stdout: out, Stderr: out})
	}
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	b *bytes.Buffer
	n int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.n - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// probePort resolves a probe's or hook's port, as the kubelet's ResolveContainerPort:
// by number, or by name through the container's ports, else a number in a string.
func probePort(p intstr.IntOrString, ctr *corev1.Container) (int, error) {
	port := p.IntValue() // a string's number, or 0
	if p.Type == intstr.String {
		if i := slices.IndexFunc(ctr.Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.StrVal }); i >= 0 {
			port = int(ctr.Ports[i].ContainerPort)
		} else if _, err := strconv.Atoi(p.StrVal); err != nil {
			return 0, fmt.Errorf("no container port named %q", p.StrVal)
		}
	}
	if port <= 0 || port > 65535 {
		return 0, fmt.Errorf("invalid port number: %d", port)
	}
	return port, nil
}
