package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// logs prints containers' logs, as kubectl logs:
// logs [-c C] [-f] [--tail N] [--previous] [--timestamps] POD|TYPE/NAME|-l SELECTOR
func (c *client) logs(args []string) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	container := fs.String("c", "", "container name")
	fs.StringVar(container, "container", "", "container name")
	follow := fs.Bool("f", false, "stream new lines")
	fs.BoolVar(follow, "follow", false, "stream new lines")
	tail := fs.Int("tail", -1, "lines from the end to show (-1: all; 10 with a selector)")
	previous := fs.Bool("previous", false, "the previous run of the container")
	fs.BoolVar(previous, "p", false, "the previous run of the container")
	timestamps := fs.Bool("timestamps", false, "prefix each line with its time")
	selector := fs.String("l", "", "label selector: the logs of every pod it picks")
	fs.StringVar(selector, "selector", "", "label selector: the logs of every pod it picks")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	var pods []string
	switch {
	case *selector != "" && len(pos) == 0:
		if pods, err = c.podsMatching(*selector); err != nil {
			return err
		}
		if len(pods) == 0 {
			fmt.Fprintf(c.stderr, "No resources found in %s namespace.\n", c.namespace)
			return nil
		}
		if *tail < 0 {
			*tail = 10 // kubectl's default with a selector
		}
	case *selector == "" && len(pos) == 1:
		pod, err := c.podFor(pos[0])
		if err != nil {
			return err
		}
		pods = []string{pod}
	default:
		return errors.New("expected POD, TYPE/NAME or -l SELECTOR")
	}
	q := url.Values{}
	for k, v := range map[string]bool{"follow": *follow, "previous": *previous, "timestamps": *timestamps} {
		if v {
			q.Set(k, "true")
		}
	}
	if *container != "" {
		q.Set("container", *container)
	}
	if *tail >= 0 {
		q.Set("tailLines", strconv.Itoa(*tail))
	}
	// One pod after another; following, all at once, line by line.
	var mu sync.Mutex
	out := writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return c.stdout.Write(p)
	})
	var g errgroup.Group
	for _, pod := range pods {
		copyLog := func() error { return c.podLog(pod, q, out) }
		if !*follow {
			if err := copyLog(); err != nil {
				return err
			}
			continue
		}
		g.Go(copyLog)
	}
	return g.Wait()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// podLog copies one pod's log to out a line at a time.
func (c *client) podLog(pod string, q url.Values, out io.Writer) error {
	resp, err := c.send(http.MethodGet, resourcePath(c.reg.Lookup("", "pods"), c.namespace, pod)+"/log", q, nil, "", "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, _ := io.ReadAll(resp.Body)
		var st metav1.Status
		json.Unmarshal(data, &st)
		return &apiError{status: st}
	}
	r := bufio.NewReader(resp.Body)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if _, werr := out.Write(line); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// podsMatching lists the names of the pods a label selector picks.
func (c *client) podsMatching(selector string) ([]string, error) {
	var pods metav1.PartialObjectMetadataList
	if err := c.list("", "pods", c.namespace, url.Values{"labelSelector": {selector}}, &pods); err != nil {
		return nil, err
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names, nil
}

// podFor resolves POD or TYPE/NAME (deploy/x, rs/x) to a pod name, as kubectl does:
// the first pod the object's selector picks.
func (c *client) podFor(arg string) (string, error) {
	typ, name, ok := strings.Cut(arg, "/")
	if !ok {
		return arg, nil
	}
	r := c.reg.Resolve(typ)
	if r == nil {
		return "", fmt.Errorf("the server doesn't have a resource type %q", typ)
	}
	if r.Plural == "pods" {
		return name, nil
	}
	var obj struct {
		Spec struct {
			Selector *metav1.LabelSelector `json:"selector"`
		} `json:"spec"`
	}
	if err := c.getInto(resourcePath(r, c.namespace, name), nil, &obj); err != nil {
		return "", err
	}
	if obj.Spec.Selector == nil {
		return "", fmt.Errorf("cannot find the pods of %s", arg)
	}
	sel, err := metav1.LabelSelectorAsSelector(obj.Spec.Selector)
	if err != nil {
		return "", err
	}
	pods, err := c.podsMatching(sel.String())
	if err != nil {
		return "", err
	}
	if len(pods) == 0 {
		return "", fmt.Errorf("no pods found for %s", arg)
	}
	return pods[0], nil
}
