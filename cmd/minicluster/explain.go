package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"

	"github.com/minicluster/minicluster/explain"
)

// explainPath prints the path a connection from a pod takes to a name or address
// (minicluster explain [-n NS] [--from POD] [-o json] TARGET). It exits 1 when the path
// is broken, after saying where.
func (c *client) explainPath(args []string) error {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	from := fs.String("from", "", "the pod ([namespace/]name) whose view to take: its search path, namespace and node")
	output := fs.String("o", "", "output format: json")
	fs.StringVar(output, "output", "", "output format: json")
	fs.Usage = func() {
		fmt.Fprint(c.stderr, `Usage: minicluster explain [-n NS] [--from POD] [-o json] TARGET

TARGET is a DNS name as a pod would type it (backend, backend.other, web-0.web),
svc/NAME, a ClusterIP, a pod IP, or NODE:NODEPORT (the node's name or localhost), each
with an optional :PORT.
`)
		fs.PrintDefaults()
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || (*output != "" && *output != "json") {
		fs.Usage()
		return errReported
	}
	q := url.Values{"target": {pos[0]}, "namespace": {c.namespace}}
	if *from != "" {
		q.Set("from", *from)
	}
	data, err := c.do(http.MethodGet, "/explain", q, nil, "", "")
	if err != nil {
		return err
	}
	var path explain.Path
	if err := json.Unmarshal(data, &path); err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if *output == "json" {
		out, _ := json.MarshalIndent(&path, "", "  ")
		fmt.Fprintln(c.stdout, string(out))
	} else {
		fmt.Fprint(c.stdout, path.Text())
	}
	if len(path.Problems) > 0 {
		return exitCode(1)
	}
	return nil
}
