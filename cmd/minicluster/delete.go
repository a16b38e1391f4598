package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strings"

	"github.com/minicluster/minicluster/apiserver"
)

func (c *client) delete(args []string) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var files stringList
	fs.Var(&files, "f", "manifest file, directory or - for stdin (repeatable)")
	fs.Var(&files, "filename", "same as -f")
	ignoreNotFound := fs.Bool("ignore-not-found", false, "treat a missing object as deleted")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	type target struct {
		r        *apiserver.Resource
		ns, name string
	}
	var targets []target
	switch {
	case len(files) > 0 && len(pos) > 0:
		return errors.New("only one of -f or TYPE NAME may be given")
	case len(files) > 0:
		sources, err := c.readSources(files)
		if err != nil {
			return err
		}
		for _, s := range sources {
			r, obj, err := c.decodeSource(s)
			if err != nil {
				return err
			}
			ns, err := c.objectNamespace(r, obj, c.explicitNS)
			if err != nil {
				return err
			}
			targets = append(targets, target{r, ns, obj.GetName()})
		}
	case len(pos) >= 2:
		for _, typ := range strings.Split(pos[0], ",") {
			r := c.reg.Resolve(typ)
			if r == nil {
				return fmt.Errorf("the server doesn't have a resource type %q", typ)
			}
			for _, n := range pos[1:] {
				targets = append(targets, target{r, c.namespace, n})
			}
		}
	default:
		return errors.New("you must provide one or more resources by argument or filename")
	}
	failed := false
	for _, t := range targets {
		_, err := c.do(http.MethodDelete, resourcePath(t.r, t.ns, t.name), nil, []byte(`{"propagationPolicy":"Background"}`), "application/json", "")
		var ae *apiError
		if errors.As(err, &ae) && ae.status.Code == http.StatusNotFound && *ignoreNotFound {
			continue
		}
		if err != nil {
			fmt.Fprintln(c.stderr, err)
			failed = true
			continue
		}
		name := displayName(t.r, "")
		fmt.Fprintf(c.stdout, "%s %q deleted\n", strings.TrimSuffix(name, "/"), t.name)
	}
	if failed {
		return errReported
	}
	return nil
}
