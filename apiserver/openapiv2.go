package apiserver

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	openapiv2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
)

// OpenAPI v2 (Swagger 2.0) for the clients that still read it: client-go's
// OpenAPISchema (Helm, kubectl's fallback validation) asks for protobuf, browsers and
// curl for JSON. One document holds every group-version, as kube-apiserver's.

// mimeOpenAPIv2Proto is what client-go asks for; kube-apiserver answers with the
// dotted variant as the Content-Type.
const (
	mimeOpenAPIv2Proto      = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"
	mimeOpenAPIv2ProtoReply = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
)

// openAPIv2Doc is the Swagger 2.0 document of every served resource.
func (g *Registry) openAPIv2Doc() map[string]any {
	gen := &schemaGen{defs: map[string]any{}, v2: true}
	paths := map[string]any{}
	param := func(name, in string) map[string]any {
		return map[string]any{"name": name, "in": in, "type": "string", "uniqueItems": true}
	}
	for _, r := range g.resources {
		ref, listRef := gen.kindSchemas(r)
		gvk := map[string]any{"group": r.Group, "version": r.Version, "kind": r.Kind_}
		op := func(action string, body bool, out map[string]any) map[string]any {
			o := map[string]any{"x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
				"consumes": []any{"*/*"}, "produces": []any{"application/json", "application/yaml", "application/vnd.kubernetes.protobuf"},
				"schemes":   []any{"https"},
				"responses": map[string]any{"200": map[string]any{"description": "OK", "schema": out}}}
			if body {
				o["parameters"] = []any{map[string]any{"name": "body", "in": "body", "required": true, "schema": ref},
					param("dryRun", "query"), param("fieldManager", "query"), param("fieldValidation", "query")}
			}
			return o
		}
		patch := op("patch", false, ref)
		patch["consumes"] = []any{"application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json", "application/apply-patch+yaml"}
		patch["parameters"] = []any{map[string]any{"name": "body", "in": "body", "required": true, "schema": map[string]any{"type": "object"}}}
		addPaths(paths, r, op, patch, ref, listRef)
	}
	return map[string]any{"swagger": "2.0", "info": map[string]any{"title": "Kubernetes", "version": versionInfo().GitVersion},
		"paths": paths, "definitions": gen.defs}
}

// openAPIv2 holds /openapi/v2 in both encodings, built once.
type openAPIv2 struct {
	once        sync.Once
	json, proto []byte
	err         error
}

func (o *openAPIv2) build(reg *Registry) {
	o.json, o.err = json.Marshal(reg.openAPIv2Doc())
	if o.err != nil {
		return
	}
	doc, err := openapiv2.ParseDocument(o.json)
	if err != nil {
		o.err = err
		return
	}
	o.proto, o.err = proto.Marshal(doc)
}

func (h *handler) serveOpenAPIv2(w http.ResponseWriter, r *http.Request) {
	h.openapiV2.once.Do(func() { h.openapiV2.build(h.api.reg) })
	if h.openapiV2.err != nil {
		writeError(w, h.openapiV2.err)
		return
	}
	w.Header().Set("Vary", "Accept")
	accept := r.Header.Get("Accept")
	if strings.Contains(accept, mimeOpenAPIv2Proto) || strings.Contains(accept, mimeOpenAPIv2ProtoReply) {
		w.Header().Set("Content-Type", mimeOpenAPIv2ProtoReply)
		w.Write(h.openapiV2.proto)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(h.openapiV2.json)
}
