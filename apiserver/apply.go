package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/minicluster/minicluster/manifests"
	"github.com/minicluster/minicluster/store"
)

// Server-side apply, simplified: the applied configuration is merged into the live
// object with strategic-merge semantics (lists merged by their merge keys), the fields
// it names are recorded as the manager's FieldsV1 in managedFields, and fields the same
// manager applied before but no longer names are removed. Ownership conflicts between
// managers are not detected (every apply acts as if force=true).

const applyPatchType = "application/apply-patch+yaml"

// fieldSet is a FieldsV1 set: "f:<field>" and "k:<merge key JSON>" keys, nested.
type fieldSet = map[string]any

// fieldsOf lists the fields an applied configuration sets.
func fieldsOf(v map[string]any, meta strategicpatch.LookupPatchMeta) fieldSet {
	out := fieldSet{}
	for k, val := range v {
		switch x := val.(type) {
		case map[string]any:
			var sub strategicpatch.LookupPatchMeta
			if meta != nil {
				sub, _, _ = meta.LookupPatchMetadataForStruct(k)
			}
			out["f:"+k] = fieldsOf(x, sub)
		case []any:
			var sub strategicpatch.LookupPatchMeta
			key := ""
			if meta != nil {
				var pm strategicpatch.PatchMeta
				var err error
				if sub, pm, err = meta.LookupPatchMetadataForSlice(k); err == nil {
					key = pm.GetPatchMergeKey()
				}
			}
			out["f:"+k] = listFields(x, key, sub)
		default:
			out["f:"+k] = fieldSet{}
		}
	}
	return out
}

// listFields keys the items of a list merged by key; other lists are atomic.
func listFields(items []any, key string, meta strategicpatch.LookupPatchMeta) fieldSet {
	set := fieldSet{}
	if key == "" {
		return set
	}
	for _, it := range items {
		m, ok := it.(map[string]any)
		if !ok || m[key] == nil {
			continue
		}
		id, _ := json.Marshal(map[string]any{key: m[key]})
		item := fieldsOf(m, meta)
		item["."] = fieldSet{}
		set["k:"+string(id)] = item
	}
	return set
}

// prune removes from obj what prev holds and next does not.
func prune(obj map[string]any, prev, next fieldSet) {
	for k, p := range prev {
		name, isField := strings.CutPrefix(k, "f:")
		if !isField {
			continue
		}
		n, kept := next[k].(fieldSet)
		if !kept {
			delete(obj, name)
			continue
		}
		ps, _ := p.(fieldSet)
		switch child := obj[name].(type) {
		case map[string]any:
			prune(child, ps, n)
		case []any:
			obj[name] = pruneList(child, ps, n)
		}
	}
}

func pruneList(items []any, prev, next fieldSet) []any {
	for k, p := range prev {
		raw, ok := strings.CutPrefix(k, "k:")
		if !ok {
			continue
		}
		var id map[string]any
		if json.Unmarshal([]byte(raw), &id) != nil {
			continue
		}
		n, kept := next[k].(fieldSet)
		ps, _ := p.(fieldSet)
		out := items[:0:0]
		for _, it := range items {
			m, _ := it.(map[string]any)
			if !matches(m, id) {
				out = append(out, it)
				continue
			}
			if kept {
				prune(m, ps, n)
				out = append(out, m)
			}
		}
		items = out
	}
	return items
}

func matches(m, id map[string]any) bool {
	if m == nil {
		return false
	}
	for k, v := range id {
		if fmt.Sprint(m[k]) != fmt.Sprint(v) {
			return false
		}
	}
	return true
}

// managerFields returns what manager last applied to obj.
func managerFields(obj store.Object, manager string) fieldSet {
	for _, e := range obj.GetManagedFields() {
		if e.Manager == manager && e.Operation == metav1.ManagedFieldsOperationApply && e.FieldsV1 != nil {
			var set fieldSet
			if json.Unmarshal(e.FieldsV1.Raw, &set) == nil {
				return set
			}
		}
	}
	return fieldSet{}
}

// recordApply replaces manager's Apply entry in obj's managedFields.
func recordApply(obj store.Object, manager, apiVersion string, set fieldSet) {
	raw, _ := json.Marshal(set)
	entry := metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationApply, APIVersion: apiVersion,
		Time: &metav1.Time{Time: time.Now().Truncate(time.Second)}, FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: raw}}
	var out []metav1.ManagedFieldsEntry
	for _, e := range obj.GetManagedFields() {
		if e.Manager != manager || e.Operation != metav1.ManagedFieldsOperationApply {
			out = append(out, e)
		}
	}
	obj.SetManagedFields(append(out, entry))
}

// serverSideApply creates the object from the applied configuration, or merges it in.
func (h *handler) serverSideApply(w http.ResponseWriter, r *http.Request, req *request, body []byte, directive string) {
	manager := req.query.Get("fieldManager")
	if manager == "" {
		writeError(w, apierrors.NewBadRequest("PATCH request for apply requires fieldManager"))
		return
	}
	docs, err := manifests.Decode(body)
	if err != nil || len(docs) != 1 {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err)))
		return
	}
	applied := docs[0].JSON
	want, warnings, err := decodeObject(applied, false, req.res, directive)
	if err == nil && want.GetName() != req.name {
		err = apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", want.GetName(), req.name))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	var cfg map[string]any
	json.Unmarshal(applied, &cfg)
	meta, err := strategicpatch.NewPatchMetaFromStruct(req.res.New())
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	set := fieldsOf(cfg, meta)
	// Identity is nobody's field (and must never be pruned).
	delete(set, "f:apiVersion")
	delete(set, "f:kind")
	if md, ok := set["f:metadata"].(fieldSet); ok {
		delete(md, "f:name")
		delete(md, "f:namespace")
	}
	apiVersion := req.res.GroupVersion().String()
	out, err := h.api.Update(r.Context(), req.res, req.ns, req.name, "", func(cur store.Object) (store.Object, error) {
		curJSON, err := json.Marshal(cur)
		if err != nil {
			return nil, err
		}
		merged, err := strategicpatch.StrategicMergePatch(curJSON, applied, req.res.New())
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		var m map[string]any
		if err := json.Unmarshal(merged, &m); err != nil {
			return nil, err
		}
		prune(m, managerFields(cur, manager), set)
		merged, _ = json.Marshal(m)
		obj, _, err := decodeObject(merged, false, req.res, validationIgnore)
		if err != nil {
			return nil, err
		}
		obj.SetManagedFields(cur.GetManagedFields())
		recordApply(obj, manager, apiVersion, set)
		return obj, nil
	}, dryRun(req.query))
	code := http.StatusOK
	if apierrors.IsNotFound(err) {
		recordApply(want, manager, apiVersion, set)
		out, err = h.api.Create(r.Context(), req.res, req.ns, want, dryRun(req.query))
		code = http.StatusCreated
	}
	h.respond(w, req, code, out, warnings, err)
}
