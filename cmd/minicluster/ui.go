package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
)

// ui prints a one-time login link to the topology page, and opens it in a browser when
// this session has a display.
func (c *client) ui(args []string) error {
	if len(args) != 0 {
		return errors.New("usage: minicluster ui")
	}
	data, err := c.do(http.MethodPost, "/ui/login-codes", nil, nil, "", "")
	if err != nil {
		return err
	}
	var link struct{ Path string }
	if err := json.Unmarshal(data, &link); err != nil || link.Path == "" {
		return fmt.Errorf("ui: unexpected answer %q", data)
	}
	u := strings.TrimSuffix(c.host, "/") + link.Path
	fmt.Fprintf(c.stdout, "Open the topology page with this link (it works once, within five minutes):\n%s\n", u)
	if os.Getenv("DISPLAY") != "" || os.Getenv("WAYLAND_DISPLAY") != "" {
		if opener, err := exec.LookPath("xdg-open"); err == nil {
			exec.Command(opener, u).Start()
		}
	}
	return nil
}
