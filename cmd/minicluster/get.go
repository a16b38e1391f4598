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
	"text/tabwriter"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/minicluster/minicluster/apiserver"
)

const tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"

type getFlags struct {
	allNamespaces, watch bool
	selector, fieldSel   string
	output               string
}

// selectionFlags are the flags get and describe share: where and which objects.
func (f *getFlags) selectionFlags(fs *flag.FlagSet) {
	fs.BoolVar(&f.allNamespaces, "A", false, "across all namespaces")
	fs.BoolVar(&f.allNamespaces, "all-namespaces", false, "across all namespaces")
	fs.StringVar(&f.selector, "l", "", "label selector")
	fs.StringVar(&f.selector, "selector", "", "label selector")
}

func (c *client) get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var f getFlags
	f.selectionFlags(fs)
	fs.StringVar(&f.fieldSel, "field-selector", "", "field selector")
	fs.StringVar(&f.output, "o", "", "output format: wide, yaml, json or name")
	fs.StringVar(&f.output, "output", "", "output format: wide, yaml, json or name")
	fs.BoolVar(&f.watch, "w", false, "watch for changes after listing")
	fs.BoolVar(&f.watch, "watch", false, "watch for changes after listing")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	switch f.output {
	case "", "wide", "yaml", "json", "name":
	default:
		return fmt.Errorf("unable to match a printer suitable for the output format %q, allowed formats are: json,name,wide,yaml", f.output)
	}
	if len(pos) == 0 {
		return errors.New("you must specify the type of resource to get")
	}
	resources, err := c.resolveTypes(pos[0])
	if err != nil {
		return err
	}
	names := pos[1:]
	if len(names) > 0 && len(resources) > 1 {
		return errors.New("you must specify only one resource type when naming objects")
	}
	if f.watch && len(resources) > 1 {
		return errors.New("you may only specify a single resource type when watching")
	}
	return c.getResources(resources, names, f)
}

// resolveTypes maps "svc,deploy" or "all" to resources.
func (c *client) resolveTypes(arg string) ([]*apiserver.Resource, error) {
	var out []*apiserver.Resource
	for _, t := range strings.Split(arg, ",") {
		if t == "all" {
			for _, r := range c.reg.Resources() {
				for _, cat := range r.Categories {
					if cat == "all" {
						out = append(out, r)
					}
				}
			}
			continue
		}
		r := c.reg.Resolve(t)
		if r == nil {
			return nil, fmt.Errorf("the server doesn't have a resource type %q", t)
		}
		out = append(out, r)
	}
	return out, nil
}

func (c *client) listQuery(f getFlags, names []string) url.Values {
	q := url.Values{}
	if f.selector != "" {
		q.Set("labelSelector", f.selector)
	}
	fieldSel := f.fieldSel
	if len(names) == 1 && f.watch {
		fieldSel = strings.Trim(fieldSel+",metadata.name="+names[0], ",")
	}
	if fieldSel != "" {
		q.Set("fieldSelector", fieldSel)
	}
	return q
}

func (c *client) getResources(resources []*apiserver.Resource, names []string, f getFlags) error {
	ns := c.namespace
	if f.allNamespaces {
		ns = ""
	}
	switch f.output {
	case "yaml", "json":
		return c.printObjects(resources[0], ns, names, f)
	}
	w := newTabWriter(c.stdout)
	defer w.Flush()
	printed, failed := 0, false
	for i, r := range resources {
		var tables []*metav1.Table
		var err error
		if len(names) > 0 && !f.watch {
			tables, err = c.getNamed(r, ns, names)
		} else {
			var t *metav1.Table
			t, err = c.getTable(r, ns, c.listQuery(f, names))
			tables = []*metav1.Table{t}
		}
		if err != nil {
			w.Flush()
			fmt.Fprintln(c.stderr, err)
			failed = true
			continue
		}
		p := tablePrinter{w: w, wide: f.output == "wide", withNS: f.allNamespaces && r.Namespaced, names: f.output == "name"}
		if len(resources) > 1 || p.names {
			p.prefix = displayName(r, "")
		}
		rows := 0
		for _, t := range tables {
			rows += len(t.Rows)
		}
		if rows == 0 && !f.watch {
			continue
		}
		if printed > 0 && i > 0 && !p.names {
			fmt.Fprintln(w)
		}
		p.print(mergeTables(tables), true)
		printed++
		if f.watch {
			w.Flush()
			return c.watchTable(r, ns, f, names, tables[0].ResourceVersion, p)
		}
	}
	if printed == 0 && !failed && len(names) == 0 {
		w.Flush()
		c.noResources(resources[0], ns)
	}
	if failed {
		return errReported
	}
	return nil
}

func (c *client) noResources(r *apiserver.Resource, ns string) {
	if r.Namespaced && ns != "" {
		fmt.Fprintf(c.stderr, "No resources found in %s namespace.\n", ns)
		return
	}
	fmt.Fprintln(c.stderr, "No resources found")
}

func (c *client) getTable(r *apiserver.Resource, ns string, q url.Values) (*metav1.Table, error) {
	data, err := c.do(http.MethodGet, resourcePath(r, ns, ""), q, nil, "", tableAccept)
	if err != nil {
		return nil, err
	}
	var t metav1.Table
	return &t, json.Unmarshal(data, &t)
}

func (c *client) getNamed(r *apiserver.Resource, ns string, names []string) ([]*metav1.Table, error) {
	var out []*metav1.Table
	var errs []string
	for _, n := range names {
		data, err := c.do(http.MethodGet, resourcePath(r, ns, n), nil, nil, "", tableAccept)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		var t metav1.Table
		if err := json.Unmarshal(data, &t); err != nil {
			return nil, err
		}
		out = append(out, &t)
	}
	if len(errs) > 0 {
		return out, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

func mergeTables(ts []*metav1.Table) *metav1.Table {
	if len(ts) == 0 {
		return &metav1.Table{}
	}
	out := *ts[0]
	for _, t := range ts[1:] {
		out.Rows = append(out.Rows, t.Rows...)
	}
	return &out
}

// newTabWriter aligns columns with kubectl's settings (min width 6, padding 3).
func newTabWriter(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 6, 4, 3, ' ', 0) }

// tablePrinter prints server-side Tables as kubectl does.
type tablePrinter struct {
	w                   io.Writer
	wide, withNS, names bool
	prefix              string // "service/" when several types are printed
	columns             []metav1.TableColumnDefinition
}

func (p *tablePrinter) print(t *metav1.Table, header bool) {
	if len(t.ColumnDefinitions) > 0 {
		p.columns = t.ColumnDefinitions
	}
	if p.names {
		for _, row := range t.Rows {
			fmt.Fprintf(p.w, "%s%s\n", p.prefix, row.Cells[0])
		}
		return
	}
	if header {
		var cols []string
		if p.withNS {
			cols = append(cols, "NAMESPACE")
		}
		for _, c := range p.columns {
			if c.Priority == 0 || p.wide {
				cols = append(cols, strings.ToUpper(c.Name))
			}
		}
		fmt.Fprintln(p.w, strings.Join(cols, "\t"))
	}
	for _, row := range t.Rows {
		var cells []string
		if p.withNS {
			cells = append(cells, rowNamespace(row))
		}
		for i, c := range p.columns {
			if i >= len(row.Cells) || (c.Priority != 0 && !p.wide) {
				continue
			}
			cell := formatCell(row.Cells[i])
			if i == 0 {
				cell = p.prefix + cell
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(p.w, strings.Join(cells, "\t"))
	}
}

func rowNamespace(row metav1.TableRow) string {
	var m metav1.PartialObjectMetadata
	if json.Unmarshal(row.Object.Raw, &m) != nil {
		return ""
	}
	return m.Namespace
}

func formatCell(v any) string {
	switch x := v.(type) {
	case nil:
		return "<none>"
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case string:
		return x
	}
	return fmt.Sprint(v)
}

// watchTable follows changes after rev, printing a row per event.
func (c *client) watchTable(r *apiserver.Resource, ns string, f getFlags, names []string, rev string, p tablePrinter) error {
	q := c.listQuery(f, names)
	q.Set("watch", "true")
	q.Set("resourceVersion", rev)
	resp, err := c.send(http.MethodGet, resourcePath(r, ns, ""), q, nil, "", tableAccept)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return err
		}
		if ev.Type == "ERROR" {
			var st metav1.Status
			json.Unmarshal(ev.Object, &st)
			return &apiError{status: st}
		}
		if ev.Type == "BOOKMARK" {
			continue
		}
		var t metav1.Table
		if err := json.Unmarshal(ev.Object, &t); err != nil {
			return err
		}
		p.print(&t, false)
		if fl, ok := p.w.(interface{ Flush() error }); ok {
			fl.Flush()
		}
	}
	return sc.Err()
}

// printObjects prints objects as YAML or JSON: one object when one name is given,
// otherwise a v1 List as kubectl does.
func (c *client) printObjects(r *apiserver.Resource, ns string, names []string, f getFlags) error {
	var items []json.RawMessage
	if len(names) == 0 {
		data, err := c.do(http.MethodGet, resourcePath(r, ns, ""), c.listQuery(f, nil), nil, "", "")
		if err != nil {
			return err
		}
		var list struct {
			Items []json.RawMessage `json:"items"`
		}
		if err := json.Unmarshal(data, &list); err != nil {
			return err
		}
		items = list.Items
	}
	for _, n := range names {
		data, err := c.do(http.MethodGet, resourcePath(r, ns, n), nil, nil, "", "")
		if err != nil {
			return err
		}
		items = append(items, data)
	}
	var out any = map[string]any{"apiVersion": "v1", "kind": "List", "items": items, "metadata": map[string]string{"resourceVersion": ""}}
	if len(names) == 1 {
		out = items[0]
	}
	data, err := json.MarshalIndent(out, "", "    ")
	if err != nil {
		return err
	}
	if f.output == "yaml" {
		if data, err = sigsyaml.JSONToYAML(data); err != nil {
			return err
		}
		_, err = c.stdout.Write(data)
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "%s\n", data)
	return err
}
