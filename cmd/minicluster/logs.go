package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// logs prints a container's log: logs [-c C] [-f] [--tail N] [--previous] [--timestamps] POD|TYPE/NAME
func (c *client) logs(args []string) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	container := fs.String("c", "", "container name")
	fs.StringVar(container, "container", "", "container name")
	follow := fs.Bool("f", false, "stream new lines")
	fs.BoolVar(follow, "follow", false, "stream new lines")
	tail := fs.Int("tail", -1, "lines from the end to show (-1: all)")
	previous := fs.Bool("previous", false, "the previous run of the container")
	fs.BoolVar(previous, "p", false, "the previous run of the container")
	timestamps := fs.Bool("timestamps", false, "prefix each line with its time")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("expected POD or TYPE/NAME")
	}
	pod, err := c.podFor(pos[0])
	if err != nil {
		return err
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
	_, err = io.Copy(c.stdout, resp.Body)
	return err
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
	data, err := c.do(http.MethodGet, resourcePath(r, c.namespace, name), nil, nil, "", "")
	if err != nil {
		return "", err
	}
	var obj struct {
		Spec struct {
			Selector *metav1.LabelSelector `json:"selector"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(data, &obj); err != nil || obj.Spec.Selector == nil {
		return "", fmt.Errorf("cannot find the pods of %s", arg)
	}
	sel, err := metav1.LabelSelectorAsSelector(obj.Spec.Selector)
	if err != nil {
		return "", err
	}
	list, err := c.do(http.MethodGet, resourcePath(c.reg.Lookup("", "pods"), c.namespace, ""), url.Values{"labelSelector": {sel.String()}}, nil, "", "")
	if err != nil {
		return "", err
	}
	var pods struct {
		Items []metav1.PartialObjectMetadata `json:"items"`
	}
	json.Unmarshal(list, &pods)
	if len(pods.Items) == 0 {
		return "", fmt.Errorf("no pods found for %s", arg)
	}
	return pods.Items[0].Name, nil
}
