package manifests

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestDecodeMultiDocument(t *testing.T) {
	src := `# leading comment
---
apiVersion: v1
kind: Service
metadata:
  name: a
spec:
  ports:
  - port: 80
    targetPort: http
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: b, labels: {on: "yes", n: "1"}}
spec:
  replicas: 3
  paused: false
  x: ~
  f: 1.5
  big: 0x10
`
	docs, err := Decode([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2", len(docs))
	}
	if docs[0].Line != 3 || docs[1].Line != 13 {
		t.Errorf("document lines %d, %d; want 3, 13", docs[0].Line, docs[1].Line)
	}
	var m map[string]any
	if err := json.Unmarshal(docs[1].JSON, &m); err != nil {
		t.Fatalf("invalid JSON %s: %v", docs[1].JSON, err)
	}
	spec := m["spec"].(map[string]any)
	if spec["replicas"] != 3.0 || spec["paused"] != false || spec["x"] != nil || spec["f"] != 1.5 || spec["big"] != 16.0 {
		t.Errorf("scalars: %v", spec)
	}
	if l := m["metadata"].(map[string]any)["labels"].(map[string]any); l["on"] != "yes" || l["n"] != "1" {
		t.Errorf("quoted scalars must stay strings: %v", l)
	}
	for path, want := range map[string]int{"spec.ports[0].targetPort": 10, "spec.ports[0]": 9, "metadata.name": 6, "spec.nope": 7, "": 3} {
		if got := docs[0].LineOf(path); got != want {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, want)
		}
	}
}

func TestDecodeJSONAndErrors(t *testing.T) {
	docs, err := Decode([]byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`))
	if err != nil || len(docs) != 1 || !strings.Contains(string(docs[0].JSON), `"name":"p"`) {
		t.Fatalf("json document: %v %v", docs, err)
	}
	for src, want := range map[string]string{
		"a: [1, 2\n":                    "line",
		"- a\n- b\n":                    "must be a mapping",
		"a: 1\na: 2\n":                  "already defined",
		"a: &x {b: 1}\nc: *x\n<<: *x\n": "merge keys",
		"a: .inf\n":                     "cannot be represented",
		laughs():                        "too many values",
	} {
		if _, err := Decode([]byte(src)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%q) error %v, want one containing %q", src, err, want)
		}
	}
}

func TestExamplesDecode(t *testing.T) {
	data, err := Examples.ReadFile("backend.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs, err := Decode(data)
	if err != nil || len(docs) != 2 {
		t.Fatalf("backend.yaml: %d docs, %v", len(docs), err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n---\na: [1, {b: c}]\n"))
	f.Add([]byte(`{"a": [1, 2.5, null, true]}`))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		docs, err := Decode(data)
		if err != nil {
			return
		}
		for _, d := range docs {
			if !json.Valid(d.JSON) {
				t.Fatalf("invalid JSON from %q: %s", data, d.JSON)
			}
			d.LineOf("a.b[0].c")
		}
	})
}

// laughs is a "billion laughs" document: ten levels of aliases, each ten times the last.
func laughs() string {
	var b strings.Builder
	b.WriteString("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [", i, i)
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*a%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}
