package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/minicluster/minicluster/apiserver"
	"github.com/minicluster/minicluster/manifests"
	"github.com/minicluster/minicluster/store"
)

// lastAppliedAnnotation is where kubectl keeps the manifest of the last apply, so the
// next apply can tell which fields it owns; sharing it lets kubectl and minicluster
// apply the same objects.
const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// source is one manifest document and where it came from.
type source struct {
	file string
	doc  manifests.Document
}

// readSources reads FILE, every manifest in DIR, or stdin ("-").
func (c *client) readSources(paths []string) ([]source, error) {
	var out []source
	for _, p := range paths {
		files := []string{p}
		if info, err := os.Stat(p); err == nil && info.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return nil, err
			}
			files = files[:0]
			for _, e := range entries {
				if ext := filepath.Ext(e.Name()); !e.IsDir() && (ext == ".yaml" || ext == ".yml" || ext == ".json") {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
			sort.Strings(files)
		}
		for _, f := range files {
			var data []byte
			var err error
			if f == "-" {
				data, err = io.ReadAll(c.stdin)
			} else {
				data, err = os.ReadFile(f)
			}
			if err != nil {
				return nil, fmt.Errorf("the path %q does not exist", f)
			}
			docs, err := manifests.Decode(data)
			if err != nil {
				return nil, fmt.Errorf("error parsing %s: %w", f, err)
			}
			for _, d := range docs {
				out = append(out, source{file: f, doc: d})
			}
		}
	}
	return out, nil
}

// decodeSource decodes a document, pointing decode errors at their line.
func (c *client) decodeSource(s source) (*apiserver.Resource, store.Object, error) {
	r, obj, err := c.reg.Decode(s.doc.JSON)
	var de *apiserver.DecodeError
	if errors.As(err, &de) {
		return nil, nil, fmt.Errorf("error decoding %s:%d: %v", s.file, s.doc.LineOf(de.Field), de)
	}
	if err != nil {
		return nil, nil, err
	}
	return r, obj, nil
}

// objectNamespace picks the namespace of obj: its own, else -n / the context's.
func (c *client) objectNamespace(r *apiserver.Resource, obj store.Object, explicit string) (string, error) {
	if !r.Namespaced {
		return "", nil
	}
	ns := obj.GetNamespace()
	if ns == "" {
		return c.namespace, nil
	}
	if explicit != "" && explicit != ns {
		return "", fmt.Errorf("the namespace from the provided object %q does not match the namespace %q. You must pass '--namespace=%s' to perform this operation.", ns, explicit, ns)
	}
	return ns, nil
}

func displayName(r *apiserver.Resource, name string) string {
	if r.Group == "" {
		return r.Singular + "/" + name
	}
	return r.Singular + "." + r.Group + "/" + name
}

func (c *client) apply(args []string) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var files stringList
	fs.Var(&files, "f", "manifest file, directory or - for stdin (repeatable)")
	fs.Var(&files, "filename", "same as -f")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("must specify one of -f and -k")
	}
	sources, err := c.readSources(files)
	if err != nil {
		return err
	}
	failed := false
	for _, s := range sources {
		if err := c.applyOne(s, c.explicitNS); err != nil {
			fmt.Fprintln(c.stderr, err)
			failed = true
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// applyOne creates the object, or patches it with kubectl's three-way strategic merge
// (last applied, this manifest, live object), printing what happened.
func (c *client) applyOne(s source, explicitNS string) error {
	r, obj, err := c.decodeSource(s)
	if err != nil {
		return err
	}
	ns, err := c.objectNamespace(r, obj, explicitNS)
	if err != nil {
		return err
	}
	name := obj.GetName()
	if name == "" {
		return fmt.Errorf("error from %s:%d: resource name may not be empty", s.file, s.doc.Line)
	}
	modified, err := withLastApplied(s.doc.JSON, ns)
	if err != nil {
		return err
	}
	path := resourcePath(r, ns, name)
	current, err := c.do(http.MethodGet, path, nil, nil, "", "")
	var ae *apiError
	if errors.As(err, &ae) && ae.status.Code == http.StatusNotFound {
		if _, err := c.do(http.MethodPost, resourcePath(r, ns, ""), nil, modified, "application/json", ""); err != nil {
			return c.explain(err, "creating", s)
		}
		fmt.Fprintf(c.stdout, "%s created\n", displayName(r, name))
		return nil
	}
	if err != nil {
		return c.explain(err, "retrieving current configuration of", s)
	}
	original := lastApplied(current)
	meta, err := strategicpatch.NewPatchMetaFromStruct(r.New())
	if err != nil {
		return err
	}
	patch, err := strategicpatch.CreateThreeWayMergePatch(original, modified, current, meta, true)
	if err != nil {
		return fmt.Errorf("error computing patch for %s: %w", s.file, err)
	}
	if string(patch) == "{}" {
		fmt.Fprintf(c.stdout, "%s unchanged\n", displayName(r, name))
		return nil
	}
	if _, err := c.do(http.MethodPatch, path, nil, patch, "application/strategic-merge-patch+json", ""); err != nil {
		return c.explain(err, "applying patch to", s)
	}
	fmt.Fprintf(c.stdout, "%s configured\n", displayName(r, name))
	return nil
}

// withLastApplied returns the manifest as JSON, in namespace ns, carrying its own JSON
// in the last-applied annotation, as kubectl apply sends it.
func withLastApplied(doc []byte, ns string) ([]byte, error) {
	var obj map[string]any
	if err := json.Unmarshal(doc, &obj); err != nil {
		return nil, err
	}
	meta, _ := obj["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		obj["metadata"] = meta
	}
	if ns != "" {
		meta["namespace"] = ns
	}
	ann, _ := meta["annotations"].(map[string]any)
	if ann == nil {
		ann = map[string]any{}
	}
	delete(ann, lastAppliedAnnotation)
	meta["annotations"] = ann
	self, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	ann[lastAppliedAnnotation] = string(self) + "\n"
	return json.Marshal(obj)
}

func lastApplied(current []byte) []byte {
	var m struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if json.Unmarshal(current, &m) != nil {
		return nil
	}
	if v := m.Metadata.Annotations[lastAppliedAnnotation]; v != "" {
		return []byte(v)
	}
	return nil
}

// explain turns a failed request into kubectl's message, adding the manifest line of
// each invalid field.
func (c *client) explain(err error, doing string, s source) error {
	var ae *apiError
	if !errors.As(err, &ae) {
		return err
	}
	msg := fmt.Sprintf("Error from server (%s): error when %s %q: %s", ae.status.Reason, doing, s.file, ae.status.Message)
	if d := ae.status.Details; d != nil {
		for _, cause := range d.Causes {
			if cause.Field != "" {
				msg += fmt.Sprintf("\n  %s:%d: %s: %s", s.file, s.doc.LineOf(cause.Field), cause.Field, cause.Message)
			}
		}
	}
	return errors.New(msg)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }
