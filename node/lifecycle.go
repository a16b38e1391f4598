package node

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/minicluster/minicluster/node/runtime"
)

// Container lifecycle hooks (postStart, preStop) and the killing of a container, as
// the kubelet's lifecycle.handlerRunner and kuberuntime's startContainer and
// killContainer.

// errPostStartHook is the reason a container waits with after its postStart hook
// failed (the kubelet's ErrPostStartHook).
var errPostStartHook = errors.New("PostStartHookError")

// minimumGrace is the least a killed container gets after SIGTERM, whatever its
// preStop hook took (the kubelet's minimumGracePeriodInSeconds).
const minimumGrace = 2 * time.Second

// postStart runs ctr's postStart hook on the run just started, as the kubelet's
// startContainer: the container is not reported running until the hook returns, and
// when it fails the run is killed and the error says so (errPostStartHook).
func (a *Agent) postStart(pod *corev1.Pod, podIP string, st *runtime.PodState, ctr *corev1.Container, c *runtime.ContainerState) error {
	if ctr.Lifecycle == nil || ctr.Lifecycle.PostStart == nil {
		return nil
	}
	if err := a.rt.SaveState(string(pod.UID), st); err != nil { // an exec hook finds the run there
		return err
	}
	err := a.runPostStart(pod, ctr, podIP)
	if err == nil {
		return nil
	}
	a.cfg.Log.Warn("postStart hook failed", "pod", key(pod), "container", ctr.Name, "err", err)
	// Not the hook's message, which may hold secrets, as the kubelet words it.
	a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "FailedPostStartHook", "PostStartHook failed")
	a.killContainer(a.ctx, pod, ctr.Name, *c, podIP, "FailedPostStartHook", killGrace(pod, nil))
	return fmt.Errorf("%w: %w", errPostStartHook, err)
}

// runPostStart runs the hook in the worker, as the kubelet's pod sync blocks on it; the
// pod's deletion cancels it (the termination stops the container), as it cancels
// the kubelet's sync, and is not a failure of the hook.
func (a *Agent) runPostStart(pod *corev1.Pod, ctr *corev1.Container, podIP string) error {
	ctx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.hook(pod, ctr, podIP).run(ctx, ctr.Lifecycle.PostStart) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	deleted := false
	for {
		select {
		case err := <-done:
			if deleted {
				return nil
			}
			return err
		case <-tick.C:
			cur, err := a.pods.Pods(pod.Namespace).Get(pod.Name)
			if err != nil || cur.UID != pod.UID || cur.DeletionTimestamp != nil {
				deleted = true
				cancel()
			}
		}
	}
}

// killContainers stops the pod's running containers in parallel within grace, each
// after its preStop hook, as the kubelet's killContainersWithSyncResult.
func (a *Agent) killContainers(ctx context.Context, pod *corev1.Pod, grace time.Duration) {
	a.mu.Lock()
	podIP := a.sandboxes[key(pod)].IP.String()
	a.mu.Unlock()
	var wg sync.WaitGroup
	for name, c := range a.rt.State(string(pod.UID)).Containers {
		if name == runtime.PodInit || !c.Alive() {
			continue
		}
		wg.Go(func() { a.killContainer(ctx, pod, name, *c, podIP, "", grace) })
	}
	wg.Wait()
}

// killContainer stops run c of container name as the kubelet's killContainer: a
// Killing event (message, or "Stopping container"), its preStop hook if any, then
// SIGTERM and SIGKILL when what is left of grace is over (at least minimumGrace).
func (a *Agent) killContainer(ctx context.Context, pod *corev1.Pod, name string, c runtime.ContainerState, podIP, message string, grace time.Duration) {
	a.containerEvent(pod, name, corev1.EventTypeNormal, "Killing", "%s", cmp.Or(message, "Stopping container "+name))
	start := time.Now()
	if ctr := containerSpec(pod, name); ctr != nil && ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil && grace > 0 {
		a.runPreStop(ctx, pod, ctr, podIP, grace)
	}
	if err := a.rt.StopRun(ctx, c, max(grace-time.Since(start), minimumGrace)); err != nil {
		a.cfg.Log.Info("container not stopped", "pod", key(pod), "container", name, "err", err)
	}
}

// runPreStop runs ctr's preStop hook for at most grace, as the kubelet's
// executePreStopHook: a failure is an event, and the stop goes on either way.
func (a *Agent) runPreStop(ctx context.Context, pod *corev1.Pod, ctr *corev1.Container, podIP string, grace time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	err := a.hook(pod, ctr, podIP).run(ctx, ctr.Lifecycle.PreStop)
	switch {
	case err == nil:
	case ctx.Err() != nil:
		a.cfg.Log.Info("preStop hook not completed in grace period", "pod", key(pod), "container", ctr.Name, "grace", grace)
	default:
		a.cfg.Log.Warn("preStop hook failed", "pod", key(pod), "container", ctr.Name, "err", err)
		a.containerEvent(pod, ctr.Name, corev1.EventTypeWarning, "FailedPreStopHook", "PreStopHook failed")
	}
}

// killGrace is how long a killed container gets, its preStop hook included, as the
// kubelet's setTerminationGracePeriod: the deletion's grace period, else the failed
// probe's terminationGracePeriodSeconds (a liveness or startup kill), else the pod's.
func killGrace(pod *corev1.Pod, probe *corev1.Probe) time.Duration {
	seconds := func(s int64) time.Duration { return time.Duration(s) * time.Second }
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return seconds(*pod.DeletionGracePeriodSeconds)
	case pod.Spec.TerminationGracePeriodSeconds == nil:
		return minimumGrace
	case probe != nil && probe.TerminationGracePeriodSeconds != nil:
		return seconds(*probe.TerminationGracePeriodSeconds)
	}
	return seconds(*pod.Spec.TerminationGracePeriodSeconds)
}

// containerSpec finds a container of the pod by name (nil: an ephemeral one, which has
// no hooks).
func containerSpec(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// hook runs the lifecycle handlers of one container, as the kubelet's handlerRunner.
type hook struct {
	pod    *corev1.Pod
	ctr    *corev1.Container
	podIP  string // an httpGet's host when it names none
	execIn func(context.Context, []string, io.Writer) (int, error)
	// fallback hears of an HTTPS hook answered in HTTP, and retried so with success.
	fallback func(host string)
}

func (a *Agent) hook(pod *corev1.Pod, ctr *corev1.Container, podIP string) hook {
	return hook{pod: pod, ctr: ctr, podIP: podIP, execIn: a.execIn(pod, ctr.Name), fallback: func(host string) {
		a.podEvent(pod, corev1.EventTypeWarning, "LifecycleHTTPFallback",
			"request to HTTPS lifecycle hook %s got HTTP response, retry with HTTP succeeded", host)
	}}
}

// run runs handler h. Its errors are worded as the kubelet's (capitalized), since
// they are what a container's PostStartHookError says.
func (k hook) run(ctx context.Context, h *corev1.LifecycleHandler) error {
	desc := fmt.Sprintf("for Container %q in Pod %q", k.ctr.Name, fmt.Sprintf("%s_%s(%s)", k.pod.Name, k.pod.Namespace, k.pod.UID))
	switch {
	case h.Exec != nil:
		out, err := k.exec(ctx, h.Exec.Command)
		if err != nil {
			return fmt.Errorf("Exec lifecycle hook (%v) %s failed - error: %w, message: %q", h.Exec.Command, desc, err, out)
		}
	case h.HTTPGet != nil:
		if err := k.httpGet(ctx, h.HTTPGet); err != nil {
			return fmt.Errorf("HTTP lifecycle hook (%s) %s failed - error: %w", h.HTTPGet.Path, desc, err)
		}
	case h.Sleep != nil:
		select {
		case <-time.After(time.Duration(h.Sleep.Seconds) * time.Second):
		case <-ctx.Done():
			return fmt.Errorf("Sleep lifecycle hook (%d) %s failed - error: container terminated before sleep hook finished", h.Sleep.Seconds, desc)
		}
	default: // tcpSocket is kept in the API, and fails, as the kubelet's
		return fmt.Errorf("Cannot run handler: invalid handler: %v", h)
	}
	return nil
}

// exec runs cmd in the container, as an exec probe does; a non-zero exit is an error.
func (k hook) exec(ctx context.Context, cmd []string) (string, error) {
	if len(cmd) == 0 {
		return "", errors.New("no command")
	}
	var out bytes.Buffer
	code, err := k.execIn(ctx, cmd, &limitedBuffer{b: &out, n: 10 << 10})
	if err == nil && code != 0 {
		err = fmt.Errorf("command '%s' exited with %d: %s", strings.Join(cmd, " "), code, out.String())
	}
	return out.String(), err
}

// lifecycleClient is the kubelet's for HTTP hooks: TLS unverified (there is nothing to
// verify against), redirects followed on the same host only, and no credentials ever.
var lifecycleClient = &http.Client{
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	},
}

// httpGet sends the hook's request; any answer is a success, whatever its status. An
// HTTPS request answered in HTTP is retried in HTTP, as the kubelet does.
func (k hook) httpGet(ctx context.Context, g *corev1.HTTPGetAction) error {
	req, err := hookRequest(ctx, g, k.ctr, k.podIP)
	if err != nil {
		return err
	}
	err = send(req)
	if err == nil || !strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		return err
	}
	req = req.Clone(ctx)
	req.URL.Scheme = "http"
	req.Header.Del("Authorization")
	if send(req) == nil {
		k.fallback(req.URL.Host)
		return nil
	}
	return err
}

func send(req *http.Request) error {
	resp, err := lifecycleClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	return nil
}

// hookRequest is an httpGet hook's request, as the kubelet's
// NewRequestForHTTPGetAction makes it: the pod's IP when it names no host, its port
// by number or container port name, its headers over the default User-Agent and Accept.
func hookRequest(ctx context.Context, g *corev1.HTTPGetAction, ctr *corev1.Container, podIP string) (*http.Request, error) {
	port, err := probePort(g.Port, ctr)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(g.Path)
	if err != nil { // passed on as it is, as the kubelet does
		u = &url.URL{Path: g.Path}
	}
	u.Scheme = cmp.Or(strings.ToLower(string(g.Scheme)), "http")
	u.Host = net.JoinHostPort(cmp.Or(g.Host, podIP), strconv.Itoa(port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for _, h := range g.HTTPHeaders {
		req.Header.Add(h.Name, h.Value)
	}
	if _, ok := req.Header["User-Agent"]; !ok {
		req.Header.Set("User-Agent", "kube-lifecycle/1.32")
	}
	if _, ok := req.Header["Accept"]; !ok {
		req.Header.Set("Accept", "*/*")
	} else if req.Header.Get("Accept") == "" {
		req.Header.Del("Accept")
	}
	req.Host = req.Header.Get("Host")
	return req, nil
}
