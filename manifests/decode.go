package manifests

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Document is one manifest document converted to JSON.
type Document struct {
	JSON []byte
	// Line is the line in the source where the document starts (1-based).
	Line int
	root *yaml.Node
}

// Decode splits data into documents: YAML (several documents separated by ---) or a
// single JSON object. Empty documents are skipped.
func Decode(data []byte) ([]Document, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []Document
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return docs, fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "yaml: "))
		}
		if len(n.Content) == 0 || n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null" {
			continue
		}
		root := n.Content[0]
		if root.Kind != yaml.MappingNode {
			return docs, fmt.Errorf("line %d: a manifest must be a mapping (an object), not %s", root.Line, kindName(root))
		}
		var buf bytes.Buffer
		budget := maxExpandedNodes
		if err := writeJSON(&buf, root, 0, &budget); err != nil {
			return docs, err
		}
		docs = append(docs, Document{JSON: buf.Bytes(), Line: root.Line, root: root})
	}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "a " + n.Tag
}

// maxExpandedNodes bounds the nodes one document may expand to, so aliases pointing at
// aliases (a "billion laughs" document) fail fast instead of exhausting memory.
const maxExpandedNodes = 1 << 20

// writeJSON renders a YAML node as JSON, spending budget on every node it writes.
func writeJSON(w *bytes.Buffer, n *yaml.Node, depth int, budget *int) error {
	if depth > 100 {
		return fmt.Errorf("line %d: document nested too deeply", n.Line)
	}
	if *budget--; *budget < 0 {
		return fmt.Errorf("line %d: document expands to too many values (aliases)", n.Line)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return writeJSON(w, n.Alias, depth+1, budget)
	case yaml.MappingNode:
		w.WriteByte('{')
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a mapping key must be a plain value", k.Line)
			}
			if k.Tag == "!!merge" {
				return fmt.Errorf("line %d: merge keys (<<) are not supported", k.Line)
			}
			if first, dup := seen[k.Value]; dup {
				return fmt.Errorf("line %d: mapping key %q already defined at line %d", k.Line, k.Value, first)
			}
			seen[k.Value] = k.Line
			if i > 0 {
				w.WriteByte(',')
			}
			key, _ := json.Marshal(k.Value)
			w.Write(key)
			w.WriteByte(':')
			if err := writeJSON(w, v, depth+1, budget); err != nil {
				return err
			}
		}
		w.WriteByte('}')
	case yaml.SequenceNode:
		w.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				w.WriteByte(',')
			}
			if err := writeJSON(w, c, depth+1, budget); err != nil {
				return err
			}
		}
		w.WriteByte(']')
	case yaml.ScalarNode:
		return writeScalar(w, n)
	default:
		return fmt.Errorf("line %d: unexpected YAML node", n.Line)
	}
	return nil
}

func writeScalar(w *bytes.Buffer, n *yaml.Node) error {
	switch n.ShortTag() {
	case "!!null":
		w.WriteString("null")
	case "!!bool":
		var b bool
		if err := n.Decode(&b); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		w.WriteString(strconv.FormatBool(b))
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			var u uint64
			if err2 := n.Decode(&u); err2 != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			w.WriteString(strconv.FormatUint(u, 10))
			return nil
		}
		w.WriteString(strconv.FormatInt(i, 10))
	case "!!float":
		var f float64
		if err := n.Decode(&f); err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("line %d: %s cannot be represented in JSON", n.Line, n.Value)
		}
		w.WriteString(strconv.FormatFloat(f, 'g', -1, 64))
	default: // strings, timestamps, binary: as written
		s, _ := json.Marshal(n.Value)
		w.Write(s)
	}
	return nil
}

var pathSegment = regexp.MustCompile(`([^.\[\]]+)|\[(\d+)\]`)

// LineOf returns the source line of a field path such as "spec.template.spec.containers[0].image"
// (the path Kubernetes puts in errors), or of its nearest existing parent; 0 when unknown.
func (d Document) LineOf(path string) int {
	if d.root == nil {
		return 0
	}
	n, line := d.root, d.Line
	for _, m := range pathSegment.FindAllStringSubmatch(path, -1) {
		next, at := child(n, m[1], m[2])
		if next == nil {
			break
		}
		n, line = next, at
	}
	return line
}

// child returns the node under key or index and the line that names it (the key's
// line for mappings, so an error points at "spec:" rather than at spec's first field).
func child(n *yaml.Node, key, index string) (*yaml.Node, int) {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case n.Kind == yaml.MappingNode && key != "":
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1], n.Content[i].Line
			}
		}
	case n.Kind == yaml.SequenceNode && index != "":
		i, _ := strconv.Atoi(index)
		if i < len(n.Content) {
			return n.Content[i], n.Content[i].Line
		}
	}
	return nil, 0
}
