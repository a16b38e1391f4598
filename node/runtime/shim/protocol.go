package shim

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
)

// A shim serves attaches on a unix socket in its pod's directory, so they reach the
// container's process across daemon restarts, as conmon's attach socket does. Both ways
// it carries frames: a channel byte (the remote command protocol's numbers), a
// big-endian uint32 length, the payload. To the shim: stdin (0), a resize (4, JSON
// {"Width","Height"}) and stdin's end (255); from it: stdout (1) and stderr (2). The shim
// closes the connection when the process has ended and its output is sent.
const (
	FrameStdin  = 0
	FrameStdout = 1
	FrameStderr = 2
	FrameResize = 4
	FrameClose  = 255
	maxFrame    = 1 << 20
)

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, ch byte, p []byte) error {
	b := make([]byte, 5+len(p))
	b[0] = ch
	binary.BigEndian.PutUint32(b[1:], uint32(len(p)))
	copy(b[5:], p)
	_, err := w.Write(b)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// ShortUnixPath names path so that it fits a socket address (108 bytes): a long one is
// reached through /proc/self/fd and its directory opened; done closes that.
func ShortUnixPath(path string) (short string, done func(), err error) {
	if len(path) < 100 {
		return path, func() {}, nil
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return "", nil, err
	}
	return fmt.Sprintf("/proc/self/fd/%d/%s", dir.Fd(), filepath.Base(path)), func() { dir.Close() }, nil
}

// listenAttach binds a shim's attach socket.
func listenAttach(path string) (net.Listener, error) {
	short, done, err := ShortUnixPath(path)
	if err != nil {
		return nil, err
	}
	defer done()
	return net.Listen("unix", short)
}
