package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/minicluster/minicluster/apiserver"
)

// errReported means the command already printed what went wrong.
var errReported = errors.New("reported")

// client talks to the API server the way kubectl does, over HTTPS with the
// kubeconfig's credentials.
type client struct {
	http      *http.Client
	rest      *rest.Config // for the streaming calls (exec)
	host      string
	namespace string
	// explicitNS is the namespace given with -n, empty when none was.
	explicitNS string
	reg        *apiserver.Registry
	stdin      io.Reader
	stdout     io.Writer
	stderr     io.Writer
}

// globalFlags are accepted by every client command, anywhere on the line.
type globalFlags struct {
	kubeconfig, dataDir, namespace string
}

// parseInterspersed parses flags wherever they appear among the arguments, as kubectl does.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// newClientFromArgs pulls the global flags out of args (they may sit anywhere) and
// connects; the remaining args go to the command.
func newClientFromArgs(args []string) (*client, []string, error) {
	var g globalFlags
	var rest []string
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || !takesValue("--"+name) && !takesValue("-"+name) {
			rest = append(rest, args[i])
			continue
		}
		if !hasValue {
			if i+1 >= len(args) {
				return nil, nil, fmt.Errorf("flag needs an argument: %s", args[i])
			}
			i++
			value = args[i]
		}
		switch name {
		case "kubeconfig":
			g.kubeconfig = value
		case "data-dir":
			g.dataDir = value
		case "n", "namespace":
			g.namespace = value
		}
	}
	if g.dataDir == "" {
		g.dataDir = DefaultDataDir
	}
	c, err := newClient(g)
	return c, rest, err
}

func kubeconfigPath(g globalFlags) string {
	if g.kubeconfig != "" {
		return g.kubeconfig
	}
	if env := os.Getenv("KUBECONFIG"); env != "" {
		return filepath.SplitList(env)[0]
	}
	return filepath.Join(g.dataDir, apiserver.KubeconfigFile)
}

func newClient(g globalFlags) (*client, error) {
	path := kubeconfigPath(g)
	kc, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig: %w (is the daemon running? start it with: sudo minicluster serve)", err)
	}
	cc := clientcmd.NewDefaultClientConfig(*kc, &clientcmd.ConfigOverrides{})
	rc, err := cc.ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	hc, err := rest.HTTPClientFor(rc)
	if err != nil {
		return nil, err
	}
	ns := g.namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil || ns == "" {
			ns = "default"
		}
	}
	return &client{http: hc, rest: rc, host: strings.TrimSuffix(rc.Host, "/"), namespace: ns, explicitNS: g.namespace,
		reg: apiserver.NewRegistry(&apiserver.Allocator{})}, nil
}

func (c *client) runCommand(cmd string, args []string) error {
	switch cmd {
	case "apply":
		return c.apply(args)
	case "get":
		return c.get(args)
	case "delete":
		return c.delete(args)
	case "logs":
		return c.logs(args)
	case "exec":
		return c.exec(args)
	case "describe":
		return c.describe(args)
	case "backup":
		return c.backup(args)
	case "explain":
		return c.explainPath(args)
	case "ui":
		return c.ui(args)
	default:
		return c.version()
	}
}

// resourcePath is the URL path of a collection (name empty) or of one object.
func resourcePath(r *apiserver.Resource, ns, name string) string {
	p := "/api/" + r.Version
	if r.Group != "" {
		p = "/apis/" + r.Group + "/" + r.Version
	}
	if r.Namespaced && ns != "" {
		p += "/namespaces/" + url.PathEscape(ns)
	}
	p += "/" + r.Plural
	if name != "" {
		p += "/" + url.PathEscape(name)
	}
	return p
}

// apiError is a failed request with the server's Status.
type apiError struct {
	status metav1.Status
}

func (e *apiError) Error() string {
	reason := string(e.status.Reason)
	if reason == "" {
		reason = http.StatusText(int(e.status.Code))
	}
	return fmt.Sprintf("Error from server (%s): %s", reason, e.status.Message)
}

// do sends a request and returns the response body of a 2xx reply; anything else
// becomes an *apiError.
func (c *client) do(method, path string, query url.Values, body []byte, contentType, accept string) ([]byte, error) {
	resp, err := c.send(method, path, query, body, contentType, accept)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		var st metav1.Status
		if json.Unmarshal(data, &st) != nil || st.Kind != "Status" {
			st = metav1.Status{Code: int32(resp.StatusCode), Message: strings.TrimSpace(string(data))}
		}
		return nil, &apiError{status: st}
	}
	return data, nil
}

// getInto GETs path with query q and decodes the answer into out.
func (c *client) getInto(path string, q url.Values, out any) error {
	data, err := c.do(http.MethodGet, path, q, nil, "", "")
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// list gets the list of a resource in ns, with query q, into out.
func (c *client) list(group, plural, ns string, q url.Values, out any) error {
	return c.getInto(resourcePath(c.reg.Lookup(group, plural), ns, ""), q, out)
}

func (c *client) send(method, path string, query url.Values, body []byte, contentType, accept string) (*http.Response, error) {
	u := c.host + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "minicluster/"+apiserver.Version)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the connection to the server %s was refused - did you specify the right host or port? (%w)", c.host, err)
	}
	return resp, nil
}

func (c *client) version() error {
	fmt.Fprintf(c.stdout, "Client Version: %s\n", apiserver.Version)
	data, err := c.do(http.MethodGet, "/version", nil, nil, "", "")
	if err != nil {
		return err
	}
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "Server Version: %s\n", v.GitVersion)
	return nil
}
