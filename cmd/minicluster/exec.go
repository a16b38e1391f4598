package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"golang.org/x/term"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
)

// exitCode is a command's own exit status, passed on as ours without a message.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("command terminated with exit code %d", int(e)) }

// exec runs a command in a container, as kubectl exec does:
// exec [-i] [-t] [-c C] POD|TYPE/NAME -- COMMAND [ARGS...]
func (c *client) exec(args []string) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	container := fs.String("c", "", "container name")
	fs.StringVar(container, "container", "", "container name")
	stdin := fs.Bool("i", false, "pass stdin to the command")
	fs.BoolVar(stdin, "stdin", false, "pass stdin to the command")
	tty := fs.Bool("t", false, "run the command on a terminal")
	fs.BoolVar(tty, "tty", false, "run the command on a terminal")
	var command []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, command = args[:i], args[i+1:]
	}
	pos, err := parseInterspersed(fs, expandShortFlags(args, "it"))
	if err != nil {
		return err
	}
	if len(pos) > 1 && command == nil {
		pos, command = pos[:1], pos[1:]
	}
	if len(pos) != 1 || len(command) == 0 {
		return errors.New("expected POD or TYPE/NAME, then -- and a command")
	}
	pod, err := c.podFor(pos[0])
	if err != nil {
		return err
	}
	q := url.Values{"command": command, "stdout": {"true"}}
	if *container != "" {
		q.Set("container", *container)
	}
	// A terminal only when ours is one, as kubectl: "Unable to use a TTY".
	in, isTerm := c.stdin.(*os.File)
	isTerm = isTerm && term.IsTerminal(int(in.Fd()))
	if *tty && !isTerm {
		fmt.Fprintln(c.stderr, "Unable to use a TTY - input is not a terminal or the right kind of file")
		*tty = false
	}
	if *stdin {
		q.Set("stdin", "true")
	}
	if *tty {
		q.Set("tty", "true")
	} else {
		q.Set("stderr", "true")
	}
	u := c.host + resourcePath(c.reg.Lookup("", "pods"), c.namespace, pod) + "/exec?" + q.Encode()
	ex, err := remotecommand.NewWebSocketExecutor(c.rest, "GET", u)
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Stdout: c.stdout, Tty: *tty}
	if *stdin {
		opts.Stdin = c.stdin
	}
	if !*tty {
		opts.Stderr = c.stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *tty {
		state, err := term.MakeRaw(int(in.Fd()))
		if err != nil {
			return err
		}
		defer term.Restore(int(in.Fd()), state)
		opts.TerminalSizeQueue = newSizeQueue(ctx, int(in.Fd()))
	}
	err = ex.StreamWithContext(ctx, opts)
	var code utilexec.CodeExitError
	if errors.As(err, &code) {
		return exitCode(code.Code)
	}
	return err
}

// sizeQueue reports the terminal's size at start and after every SIGWINCH.
type sizeQueue struct {
	ctx   context.Context
	fd    int
	sizes chan remotecommand.TerminalSize
}

func newSizeQueue(ctx context.Context, fd int) *sizeQueue {
	q := &sizeQueue{ctx: ctx, fd: fd, sizes: make(chan remotecommand.TerminalSize, 1)}
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	winch <- syscall.SIGWINCH // the first size
	go func() {
		defer signal.Stop(winch)
		for {
			select {
			case <-winch:
				if w, h, err := term.GetSize(fd); err == nil {
					select {
					case q.sizes <- remotecommand.TerminalSize{Width: uint16(w), Height: uint16(h)}:
					default:
					}
				}
			case <-ctx.Done():
				close(q.sizes)
				return
			}
		}
	}()
	return q
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.sizes
	if !ok {
		return nil
	}
	return &sz
}

// expandShortFlags splits combined one-letter flags ("-it") into single ones, as
// kubectl's flag parser reads them.
func expandShortFlags(args []string, letters string) []string {
	var out []string
	for _, a := range args {
		if len(a) > 2 && a[0] == '-' && a[1] != '-' && strings.Trim(a[1:], letters) == "" {
			for _, l := range a[1:] {
				out = append(out, "-"+string(l))
			}
			continue
		}
		out = append(out, a)
	}
	return out
}
