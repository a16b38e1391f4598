package apiserver

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// OpenAPI v3 documents are generated from the Go types by reflection: one schema per
// named struct (named as Kubernetes names them, io.k8s.api.core.v1.Pod), properties from
// json tags, and the strategic-merge extensions from the patchStrategy/patchMergeKey tags.

type schemaGen struct {
	defs map[string]any
	v2   bool // Swagger 2.0: plain references into #/definitions
}

var specialSchemas = map[reflect.Type]map[string]any{
	reflect.TypeOf(metav1.Time{}):          {"type": "string", "format": "date-time"},
	reflect.TypeOf(metav1.MicroTime{}):     {"type": "string", "format": "date-time"},
	reflect.TypeOf(metav1.Duration{}):      {"type": "string"},
	reflect.TypeOf(intstr.IntOrString{}):   {"x-kubernetes-int-or-string": true, "format": "int-or-string"},
	reflect.TypeOf(resource.Quantity{}):    {"x-kubernetes-int-or-string": true, "format": "quantity"},
	reflect.TypeOf(runtime.RawExtension{}): {"type": "object"},
	reflect.TypeOf(metav1.FieldsV1{}):      {"type": "object"},
}

// defName is Kubernetes' definition name: the package path with its domain reversed.
func defName(t reflect.Type) string {
	parts := strings.Split(t.PkgPath(), "/")
	domain := strings.Split(parts[0], ".")
	for i, j := 0, len(domain)-1; i < j; i, j = i+1, j-1 {
		domain[i], domain[j] = domain[j], domain[i]
	}
	return strings.Join(append(append(domain, parts[1:]...), t.Name()), ".")
}

func (g *schemaGen) schemaOf(t reflect.Type) map[string]any {
	if s, ok := specialSchemas[t]; ok {
		return s
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schemaOf(t.Elem())
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint:
		return map[string]any{"type": "integer", "format": "int64"}
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		return map[string]any{"type": "integer", "format": "int32"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number", "format": "double"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.schemaOf(t.Elem())}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.schemaOf(t.Elem())}
	case reflect.Struct:
		name := defName(t)
		if _, done := g.defs[name]; !done {
			g.defs[name] = nil // placeholder: stops recursion
			g.defs[name] = g.structSchema(t)
		}
		if g.v2 {
			return map[string]any{"$ref": "#/definitions/" + name}
		}
		return map[string]any{"allOf": []any{map[string]any{"$ref": "#/components/schemas/" + name}}}
	}
	return map[string]any{}
}

func (g *schemaGen) structSchema(t reflect.Type) map[string]any {
	props := map[string]any{}
	var required []string
	g.addFields(t, props, &required)
	s := map[string]any{"type": "object", "properties": props}
	if len(required) > 0 {
		slices.Sort(required)
		s["required"] = required
	}
	if d := swaggerDoc(t)[""]; d != "" {
		s["description"] = d
	}
	return s
}

// swaggerDoc is the field documentation k8s.io/api types carry (kubectl explain shows it).
func swaggerDoc(t reflect.Type) map[string]string {
	if d, ok := reflect.Zero(t).Interface().(interface{ SwaggerDoc() map[string]string }); ok {
		return d.SwaggerDoc()
	}
	return nil
}

// addFields adds t's fields to props; required collects those without omitempty, as
// Kubernetes' openapi-gen marks them (kubectl explain shows -required-).
func (g *schemaGen) addFields(t reflect.Type, props map[string]any, required *[]string) {
	doc := swaggerDoc(t)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if strings.Contains(opts, "inline") || (f.Anonymous && name == "") {
			g.addFields(f.Type, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		if !strings.Contains(opts, "omitempty") {
			*required = append(*required, name)
		}
		s := g.schemaOf(f.Type)
		if strategy := f.Tag.Get("patchStrategy"); strategy != "" {
			s = withExtensions(s, map[string]any{"x-kubernetes-patch-strategy": strategy})
			if key := f.Tag.Get("patchMergeKey"); key != "" {
				s["x-kubernetes-patch-merge-key"] = key
			}
		}
		if d := doc[name]; d != "" {
			s = withExtensions(s, map[string]any{"description": d})
		}
		props[name] = s
	}
}

func withExtensions(s map[string]any, ext map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		out[k] = v
	}
	for k, v := range ext {
		out[k] = v
	}
	return out
}

// openAPIDoc is the OpenAPI v3 document of one group-version.
func (g *Registry) openAPIDoc(gv schema.GroupVersion) map[string]any {
	gen := &schemaGen{defs: map[string]any{}}
	paths := map[string]any{}
	for _, r := range g.resources {
		if r.GroupVersion() != gv {
			continue
		}
		ref, listRef := gen.kindSchemas(r)
		gvk := map[string]any{"group": r.Group, "version": r.Version, "kind": r.Kind_}
		op := func(action string, body bool, out map[string]any) map[string]any {
			o := map[string]any{"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
				"responses": map[string]any{"200": map[string]any{"description": "OK",
					"content": map[string]any{"application/json": map[string]any{"schema": out}}}}}
			if body {
				o["parameters"] = []any{
					map[string]any{"name": "fieldValidation", "in": "query", "schema": map[string]any{"type": "string", "uniqueItems": true}},
					map[string]any{"name": "fieldManager", "in": "query", "schema": map[string]any{"type": "string", "uniqueItems": true}},
					map[string]any{"name": "dryRun", "in": "query", "schema": map[string]any{"type": "string", "uniqueItems": true}}}
				o["requestBody"] = map[string]any{"content": map[string]any{"*/*": map[string]any{"schema": ref}}}
			}
			return o
		}
		patch := op("patch", true, ref)
		patch["requestBody"] = map[string]any{"content": map[string]any{
			"application/json-patch+json":            map[string]any{"schema": map[string]any{"type": "object"}},
			"application/merge-patch+json":           map[string]any{"schema": map[string]any{"type": "object"}},
			"application/strategic-merge-patch+json": map[string]any{"schema": map[string]any{"type": "object"}},
			"application/apply-patch+yaml":           map[string]any{"schema": map[string]any{"type": "object"}}}}
		addPaths(paths, r, op, patch, ref, listRef)
	}
	return map[string]any{"openapi": "3.0.0", "info": map[string]any{"title": "Kubernetes", "version": versionInfo().GitVersion},
		"paths": paths, "components": map[string]any{"schemas": gen.defs}}
}

// addPaths lays out r's operations in paths, the same in both OpenAPI versions: op
// makes one operation (its action, whether it takes the object, what it returns).
func addPaths(paths map[string]any, r *Resource, op func(action string, body bool, out map[string]any) map[string]any, patch, ref, listRef map[string]any) {
	base := strings.TrimSuffix(resourcePrefix(r, true), "/")
	if r.review != nil {
		paths[base] = map[string]any{"post": op("post", true, ref)}
		return
	}
	paths[base] = map[string]any{"get": op("list", false, listRef), "post": op("post", true, ref), "delete": op("deletecollection", false, ref)}
	paths[base+"/{name}"] = map[string]any{"get": op("get", false, ref), "put": op("put", true, ref), "patch": patch, "delete": op("delete", false, ref)}
	for _, sub := range r.Subresources {
		paths[base+"/{name}/"+sub] = map[string]any{"get": op("get", false, ref), "put": op("put", true, ref), "patch": patch}
	}
}

// kindSchemas returns references to r's kind and list schemas (nil for a review, which
// has no list), marking both with the kind: kubectl explain finds a kind's schema by
// that extension.
func (g *schemaGen) kindSchemas(r *Resource) (ref, listRef map[string]any) {
	objs := map[string]any{r.Kind_: r.New()}
	ref = g.schemaOf(reflect.TypeOf(r.New()))
	if r.review == nil {
		list, _ := Scheme.New(r.GroupVersion().WithKind(r.Kind_ + "List"))
		listRef, objs[r.Kind_+"List"] = g.schemaOf(reflect.TypeOf(list)), list
	}
	for kind, obj := range objs {
		g.defs[defName(reflect.TypeOf(obj).Elem())].(map[string]any)["x-kubernetes-group-version-kind"] =
			[]any{map[string]any{"group": r.Group, "version": r.Version, "kind": kind}}
	}
	return ref, listRef
}

// resourcePrefix is the URL path of r's collection, with {namespace} when namespaced.
func resourcePrefix(r *Resource, namespaced bool) string {
	p := "/api/" + r.Version
	if r.Group != "" {
		p = "/apis/" + r.Group + "/" + r.Version
	}
	if r.Namespaced && namespaced {
		p += "/namespaces/{namespace}"
	}
	return p + "/" + r.Plural + "/"
}

// openAPI serves /openapi/v3 and /openapi/v3/<gv>, built once.
type openAPI struct {
	once  sync.Once
	index []byte
	docs  map[string][]byte
}

func gvPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

func (o *openAPI) build(reg *Registry) {
	o.docs = map[string][]byte{}
	paths := map[string]any{}
	for _, gv := range reg.groupVersions() {
		doc, _ := json.Marshal(reg.openAPIDoc(gv))
		sum := sha512.Sum512(doc)
		o.docs[gvPath(gv)] = doc
		paths[gvPath(gv)] = map[string]any{"serverRelativeURL": "/openapi/v3/" + gvPath(gv) + "?hash=" + strings.ToUpper(hex.EncodeToString(sum[:]))}
	}
	o.index, _ = json.Marshal(map[string]any{"paths": paths})
}

func (h *handler) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	h.openapi.once.Do(func() { h.openapi.build(h.api.reg) })
	data := h.openapi.index
	if path != "/openapi/v3" {
		doc, ok := h.openapi.docs[strings.TrimPrefix(path, "/openapi/v3/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		data = doc
		if r.URL.Query().Get("hash") != "" {
			w.Header().Set("Cache-Control", "public, immutable")
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(data)
}
