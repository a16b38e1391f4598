package apiserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
	sigsjson "sigs.k8s.io/json"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/minicluster/minicluster/manifests"
	"github.com/minicluster/minicluster/store"
)

// MaxBodyBytes is the largest request body accepted, as in Kubernetes (3 MiB).
const MaxBodyBytes = 3 << 20

// Field validation directives (?fieldValidation=), as in Kubernetes.
const (
	validationStrict = "Strict"
	validationWarn   = "Warn"
	validationIgnore = "Ignore"
)

// protobufType is Kubernetes' protobuf media type (a "k8s\x00" magic and a runtime.Unknown).
const protobufType = "application/vnd.kubernetes.protobuf"

var (
	pbSerializer = protobuf.NewSerializer(Scheme, Scheme)
	// pbRaw encodes watch events without the envelope, as Kubernetes' watch streams do.
	pbRaw = protobuf.NewRawSerializer(Scheme, Scheme)
)

func isProtobuf(r *http.Request) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return ct == protobufType
}

// readBody reads a request body within the size limit and converts YAML to JSON;
// protobuf bodies are returned as they are.
func readBody(r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxBodyBytes))
	}
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("reading request body: %v", err))
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "", "application/json", "application/json-patch+json", "application/merge-patch+json",
		"application/strategic-merge-patch+json", "*/*", protobufType:
		return data, nil
	case applyPatchType:
		return data, nil // YAML or JSON; the apply handler decodes it
	case "application/yaml", "application/x-yaml", "text/yaml":
		docs, err := manifests.Decode(data)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding YAML: %v", err))
		}
		if len(docs) != 1 {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("expected one YAML document, got %d", len(docs)))
		}
		return docs[0].JSON, nil
	}
	return nil, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "", schema.GroupResource{}, "", fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"), 0, false)
}

// decodeInto decodes JSON into obj, case-sensitively as Kubernetes does, and applies
// the fieldValidation directive to unknown and duplicate fields. It returns warnings.
func decodeInto(data []byte, obj any, directive string) ([]string, error) {
	strict, err := sigsjson.UnmarshalStrict(data, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, apierrors.NewBadRequest(decodeErrMessage(err))
	}
	var msgs []string
	for _, e := range strict {
		msgs = append(msgs, e.Error())
	}
	if len(msgs) == 0 || directive == validationIgnore {
		return nil, nil
	}
	if directive == validationStrict {
		return nil, apierrors.NewBadRequest("strict decoding error: " + strings.Join(msgs, ", "))
	}
	return msgs, nil
}

func decodeErrMessage(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		return fmt.Sprintf("json: cannot unmarshal %s into Go struct field %s of type %s", te.Value, te.Field, te.Type)
	}
	return err.Error()
}

// decodeObject decodes a request body (JSON, or protobuf when proto) into a new object
// of r, checking apiVersion and kind.
func decodeObject(data []byte, proto bool, r *Resource, directive string) (store.Object, []string, error) {
	if proto {
		return decodeProtobuf(data, r)
	}
	var tm metav1.TypeMeta
	if err := json.Unmarshal(data, &tm); err != nil {
		return nil, nil, apierrors.NewBadRequest(decodeErrMessage(err))
	}
	if tm.APIVersion != "" && tm.APIVersion != r.GroupVersion().String() {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the API version in the data (%s) does not match the expected API version (%s)", tm.APIVersion, r.GroupVersion()))
	}
	if tm.Kind != "" && tm.Kind != r.Kind_ {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", tm.Kind, r.Kind_))
	}
	obj := r.New()
	warnings, err := decodeInto(data, obj, directive)
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Reason == metav1.StatusReasonBadRequest {
		// Kubernetes' wording, which kubectl users recognise.
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("%s in version %q cannot be handled as a %s: %s",
			r.Kind_, r.Version, r.Kind_, status.Status().Message))
	}
	if err != nil {
		return nil, nil, err
	}
	return obj, warnings, nil
}

func decodeProtobuf(data []byte, r *Resource) (store.Object, []string, error) {
	obj := r.New()
	_, gvk, err := pbSerializer.Decode(data, nil, obj)
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("error decoding protobuf body: %v", err))
	}
	if gvk != nil && !gvk.Empty() && *gvk != r.GVK() {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("the kind in the data (%s) does not match the expected kind (%s)", gvk, r.GVK()))
	}
	obj.GetObjectKind().SetGroupVersionKind(schema.GroupVersionKind{})
	return obj, nil, nil
}

// setTypeMeta fills apiVersion and kind from the scheme.
func setTypeMeta(obj runtime.Object) {
	gvks, _, err := Scheme.ObjectKinds(obj)
	// Objects from the store are shared with watchers: write only when it changes.
	if err == nil && len(gvks) > 0 && obj.GetObjectKind().GroupVersionKind() != gvks[0] {
		obj.GetObjectKind().SetGroupVersionKind(gvks[0])
	}
}

// newList builds the typed list (PodList, ...) holding objs.
func newList(r *Resource, objs []store.Object, rev string) (runtime.Object, error) {
	list, err := Scheme.New(r.GroupVersion().WithKind(r.Kind_ + "List"))
	if err != nil {
		return nil, err
	}
	items := make([]runtime.Object, len(objs))
	for i, o := range objs {
		items[i] = o
	}
	if err := meta.SetList(list, items); err != nil {
		return nil, err
	}
	lm, _ := meta.ListAccessor(list)
	lm.SetResourceVersion(rev)
	setTypeMeta(list)
	return list, nil
}

// output is how a response is encoded, from the Accept header.
type output struct {
	table    bool
	yaml     bool
	protobuf bool
}

// negotiate picks the first media type in Accept that can be served.
func negotiate(r *http.Request) (output, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return output{}, nil
	}
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		switch {
		case params["as"] == "Table" && params["g"] == "meta.k8s.io" && (mt == "application/json" || mt == "*/*"):
			return output{table: true}, nil
		case params["as"] != "":
			continue // other conversions (PartialObjectMetadata, protobuf Tables) are not served
		case mt == "application/json" || mt == "*/*" || mt == "application/*":
			return output{}, nil
		case mt == "application/yaml":
			return output{yaml: true}, nil
		case mt == protobufType:
			return output{protobuf: true}, nil
		}
	}
	return output{}, apierrors.NewGenericServerResponse(http.StatusNotAcceptable, "", schema.GroupResource{}, "",
		"only the following media types are accepted: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json;as=Table;v=v1;g=meta.k8s.io", 0, false)
}

func encode(obj runtime.Object, out output) ([]byte, string, error) {
	if out.protobuf {
		var buf bytes.Buffer
		err := pbSerializer.Encode(obj, &buf)
		if !protobuf.IsNotMarshalable(err) {
			return buf.Bytes(), protobufType, err
		}
	}
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, "", err
	}
	if out.yaml {
		y, err := sigsyaml.JSONToYAML(data)
		return y, "application/yaml", err
	}
	return append(data, '\n'), "application/json", nil
}

// writeObject writes obj with status code under the negotiated encoding.
func writeObject(w http.ResponseWriter, code int, obj runtime.Object, out output) {
	setTypeMeta(obj)
	data, ct, err := encode(obj, out)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(code)
	w.Write(data)
}

// writeError writes err as a metav1.Status.
func writeError(w http.ResponseWriter, err error) {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		status = apierrors.NewInternalError(err)
	}
	st := status.Status()
	st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
	st.Status = metav1.StatusFailure
	code := int(st.Code)
	if code == 0 {
		code = http.StatusInternalServerError
		st.Code = int32(code)
	}
	data, _ := json.Marshal(&st)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	w.Write(append(data, '\n'))
}
