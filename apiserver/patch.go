package apiserver

import (
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

var patchTypes = []string{string(types.JSONPatchType), string(types.MergePatchType), string(types.StrategicMergePatchType), applyPatchType}

func supportedPatch(pt types.PatchType) bool {
	for _, t := range patchTypes {
		if string(pt) == t {
			return true
		}
	}
	return false
}

// applyPatch applies a JSON, merge or strategic merge patch to cur (JSON); schema is a
// typed object whose struct tags give strategic merge its merge keys.
func applyPatch(pt types.PatchType, cur, patch []byte, schema any) (out []byte, err error) {
	// json-patch v4 panics on some patches (a value-less replace of the root, found by
	// FuzzPatch): an error in the request, not a crash of the handler.
	defer func() {
		if r := recover(); r != nil {
			out, err = nil, apierrors.NewBadRequest(fmt.Sprintf("the server rejected our request due to an error in our request: invalid patch: %v", r))
		}
	}()
	switch pt {
	case types.JSONPatchType:
		var p jsonpatch.Patch
		if p, err = jsonpatch.DecodePatch(patch); err == nil {
			out, err = p.Apply(cur)
		}
	case types.MergePatchType:
		out, err = jsonpatch.MergePatch(cur, patch)
	case types.StrategicMergePatchType:
		out, err = strategicpatch.StrategicMergePatch(cur, patch, schema)
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the server rejected our request due to an error in our request: %v", err))
	}
	return out, nil
}

func fieldErrs(path string, value any, msg string) field.ErrorList {
	return field.ErrorList{field.Invalid(field.NewPath(path), value, msg)}
}
