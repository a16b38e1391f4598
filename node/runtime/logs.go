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

// The kubelet's bounds on a termination message (pkg/kubelet/container): the last 4 KiB
// of the file; from the log, the last 80 lines and at most their last 2 KiB.
const (
	maxTerminationMessage        = 4 << 10
	maxTerminationMessageLog     = 2 << 10
	maxTerminationMessageLogLine = 80
)

func terminationFile(dir string, run int32) string {
	return filepath.Join(dir, fmt.Sprintf("%d.termination-log", run))
}

// TerminationMessage is the termination message of run `run` of a container, read as
// the kubelet reads it once the run ended: the end of the file at its
// terminationMessagePath; when that is empty (or there is none) and fallbackToLogs
// (FallbackToLogsOnError and a failure), the end of the run's log.
func (r *Runtime) TerminationMessage(uid, name string, run int32, fallbackToLogs bool) string {
	dir := filepath.Join(r.podDir(uid), name)
	if data, err := os.ReadFile(terminationFile(dir, run)); err == nil && len(data) > 0 {
		return string(data[max(0, len(data)-maxTerminationMessage):])
	}
	if !fallbackToLogs {
		return ""
	}
	f, err := os.Open(filepath.Join(dir, fmt.Sprintf("%d.log", run)))
	if err != nil {
		return ""
	}
	defer f.Close()
	records := shim.ReadLogRecords(f)
	records = records[max(0, len(records)-maxTerminationMessageLogLine):]
	var b strings.Builder
	for _, rec := range records {
		b.WriteString(rec.Render(false))
	}
	s := b.String()
	return s[max(0, len(s)-maxTerminationMessageLog):]
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
