package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/minicluster/minicluster/node/runtime/shim"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// followPoll is how often a followed log is checked for growth.
var followPoll = 100 * time.Millisecond

// Logs writes a container's log as GET pods/log asks for it (container, previous,
// timestamps, tailLines, sinceSeconds/sinceTime, limitBytes, follow).
func (r *Runtime) Logs(ctx context.Context, pod *corev1.Pod, opts *corev1.PodLogOptions, w io.Writer, flush func()) error {
	name, err := podContainer(pod, opts.Container)
	if err != nil {
		return err
	}
	c := r.State(string(pod.UID)).Containers[name]
	if c == nil || c.ShimPID == 0 {
		reason := "ContainerCreating"
		if c != nil && c.Waiting != "" {
			reason = c.Waiting
		}
		return apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q is waiting to start: %s", name, pod.Name, reason))
	}
	run := c.RestartCount
	if opts.Previous {
		if run == 0 {
			return apierrors.NewBadRequest(fmt.Sprintf("previous terminated container %q in pod %q not found", name, pod.Name))
		}
		run--
	}
	f, err := os.Open(filepath.Join(r.podDir(string(pod.UID)), name, fmt.Sprintf("%d.log", run)))
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("container %q in pod %q: no log: %v", name, pod.Name, err))
	}
	defer f.Close()
	out := &limitedWriter{w: w, left: -1}
	if opts.LimitBytes != nil {
		out.left = *opts.LimitBytes
	}
	var since time.Time
	switch {
	case opts.SinceSeconds != nil:
		since = time.Now().Add(-time.Duration(*opts.SinceSeconds) * time.Second)
	case opts.SinceTime != nil:
		since = opts.SinceTime.Time
	}
	records := shim.ReadLogRecords(f)
	if opts.TailLines != nil && int64(len(records)) > *opts.TailLines {
		records = records[len(records)-int(*opts.TailLines):]
	}
	for _, r := range records {
		if !r.Time.Before(since) && !out.write(r.Render(opts.Timestamps)) {
			return nil
		}
	}
	flush()
	if !opts.Follow || opts.Previous {
		return nil
	}
	return r.follow(ctx, pod, name, run, f, out, opts.Timestamps, flush)
}

// follow streams records appended to f until the run ends and the file stops growing.
func (r *Runtime) follow(ctx context.Context, pod *corev1.Pod, name string, run int32, f *os.File, out *limitedWriter, ts bool, flush func()) error {
	br := bufio.NewReader(f)
	var pending string
	for {
		line, err := br.ReadString('\n')
		pending += line
		if err == nil {
			if rec, ok := shim.ParseLogRecord(strings.TrimSuffix(pending, "\n")); ok && !out.write(rec.Render(ts)) {
				return nil
			}
			pending = ""
			continue
		}
		flush()
		c := r.State(string(pod.UID)).Containers[name]
		if c == nil || c.RestartCount != run || !c.Alive() {
			return nil // the run ended and everything it wrote was sent
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(followPoll):
		}
	}
}

// podContainer picks the container a request names (the only one, when it names none).
func podContainer(pod *corev1.Pod, want string) (string, error) {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == want {
			return want, nil
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == want {
			return want, nil
		}
	}
	var names []string
	for _, c := range pod.Spec.Containers {
		if c.Name == want {
			return want, nil
		}
		names = append(names, c.Name)
	}
	if want == "" && len(names) == 1 {
		return names[0], nil
	}
	if want == "" {
		return "", apierrors.NewBadRequest(fmt.Sprintf("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " ")))
	}
	return "", apierrors.NewBadRequest(fmt.Sprintf("container %s is not valid for pod %s", want, pod.Name))
}

// limitedWriter stops after limitBytes (left < 0: no limit).
type limitedWriter struct {
	w    io.Writer
	left int64
}

// write reports whether more may follow.
func (l *limitedWriter) write(s string) bool {
	if l.left == 0 {
		return false
	}
	if l.left > 0 && int64(len(s)) > l.left {
		s = s[:l.left]
	}
	n, err := io.WriteString(l.w, s)
	if l.left > 0 {
		l.left -= int64(n)
	}
	return err == nil && l.left != 0
}
