package apiserver

import (
	"fmt"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	k8sschema "k8s.io/apimachinery/pkg/runtime/schema"
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
// kube-apiserver's bounds on a JSON patch: how many operations it may hold, and how
// much its copy operations may add to the document (a few copies of a copy of a large
// value grow it exponentially).
const (
	maxJSONPatchOperations = 10000
	maxJSONPatchCopyBytes  = 3 << 20
)

func init() { jsonpatch.AccumulatedCopySizeLimit = maxJSONPatchCopyBytes }

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
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
		if len(p) > maxJSONPatchOperations {
			return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(p)))
		}
		if out, err = p.Apply(cur); err != nil {
			return nil, apierrors.NewGenericServerResponse(http.StatusUnprocessableEntity, "", k8sschema.GroupResource{}, "", err.Error(), 0, false)
		}
		return out, nil
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
