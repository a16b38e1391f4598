package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/minicluster/minicluster/node/runtime/shim"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"k8s.io/client-go/tools/remotecommand"
)

// attachSocket is where a container's shim listens: short enough for a socket's path
// limit (108 bytes) whatever the container's name.
func (r *Runtime) attachSocket(uid, container string) string {
	h := fnv.New32a()
	h.Write([]byte(container))
	return filepath.Join(r.podDir(uid), fmt.Sprintf("%08x.sock", h.Sum32()))
}

// Attach connects the streams to a running container's process, as `kubectl attach`
// and `kubectl run -i` ask: its output from now on, and stdin if the container keeps
// one open (spec stdin). It returns when the process ends or ctx does.
func (r *Runtime) Attach(ctx context.Context, pod *corev1.Pod, container string, o remotecommand.StreamOptions) error {
	name, err := podContainer(pod, container)
	if err != nil {
		return err
	}
	c := r.State(string(pod.UID)).Containers[name]
	if c == nil || !c.Alive() {
		return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", name))
	}
	// A shim binds its socket a moment after it starts, and a client may attach the
	// moment the pod runs.
	sock, closeDir, err := shim.ShortUnixPath(r.attachSocket(string(pod.UID), name))
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", name, err)
	}
	defer closeDir()
	var d net.Dialer
	var conn net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if conn, err = d.DialContext(ctx, "unix", sock); err == nil {
			break
		}
		if time.Now().After(deadline) || !c.Alive() || ctx.Err() != nil {
			return fmt.Errorf("attach to container %s: %w", name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer conn.Close()
	key := pod.Namespace + "/" + pod.Name
	r.log.Info("attached", "pod", key, "container", name, "stdin", o.Stdin != nil, "tty", o.Tty)
	defer r.log.Info("detached", "pod", key, "container", name)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(ch byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return shim.WriteFrame(conn, ch, p)
	}
	done := make(chan struct{})
	defer close(done)
	if o.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := o.Stdin.Read(buf)
				if n > 0 && send(shim.FrameStdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					send(shim.FrameClose, []byte{shim.FrameStdin}) // the client closed stdin, or left
					return
				}
			}
		}()
	}
	forwardResizes(o.TerminalSizeQueue, func(sz remotecommand.TerminalSize) {
		b, _ := json.Marshal(sz)
		send(shim.FrameResize, b)
	})
	br := bufio.NewReader(conn)
	for {
		ch, p, err := shim.ReadFrame(br)
		if err != nil {
			if errors.Is(err, io.EOF) || ctx.Err() != nil {
				return nil // the process ended, or the client left
			}
			return err
		}
		switch {
		case ch == shim.FrameStdout && o.Stdout != nil:
			o.Stdout.Write(p)
		case ch == shim.FrameStderr && o.Stderr != nil:
			o.Stderr.Write(p)
		}
	}
}

// forwardResizes applies every size q delivers until it delivers nil (the client's
// connection has ended), in a goroutine of its own: the queue's owner ends it.
func forwardResizes(q remotecommand.TerminalSizeQueue, apply func(remotecommand.TerminalSize)) {
	if q == nil {
		return
	}
	go func() {
		for sz := q.Next(); sz != nil; sz = q.Next() {
			apply(*sz)
		}
	}()
}
