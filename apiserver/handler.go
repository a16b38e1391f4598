package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"

	"github.com/minicluster/minicluster/store"
)

// request is a parsed resource request.
type request struct {
	res           *Resource
	ns, name, sub string
	query         url.Values
	out           output
}

// serveResource dispatches a resource request to its verb.
func (h *handler) serveResource(w http.ResponseWriter, r *http.Request, req *request) {
	req.query = r.URL.Query()
	out, err := negotiate(r)
	if err != nil {
		writeError(w, err)
		return
	}
	req.out = out
	leave, ok := h.inFlight.enter(w, r, req)
	if !ok {
		return
	}
	defer leave()
	switch {
	case req.res.review != nil && r.Method == http.MethodPost && req.name == "":
		h.review(w, r, req)
	case req.res.review != nil:
		writeError(w, apierrors.NewMethodNotSupported(req.res.GroupResource(), strings.ToLower(r.Method)))
	case r.Method == http.MethodGet && req.name == "" && isTrue(req.query.Get("watch")):
		h.watch(w, r, req)
	case r.Method == http.MethodGet && req.name == "":
		h.list(w, req)
	case r.Method == http.MethodGet && req.sub == "scale":
		h.getScale(w, req)
	case req.sub == "binding" && r.Method == http.MethodPost:
		h.bind(w, r, req)
	case req.sub == "eviction" && r.Method == http.MethodPost:
		h.evict(w, r, req)
	case req.sub == "token" && r.Method == http.MethodPost:
		h.requestToken(w, r, req)
	case req.sub == "log" && r.Method == http.MethodGet:
		h.podLog(w, r, req)
	case (req.sub == "exec" || req.sub == "attach" || req.sub == "portforward") && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		obj, err := h.api.Get(req.res, req.ns, req.name)
		if err != nil {
			writeError(w, err)
			return
		}
		if req.sub == "portforward" {
			h.podPortForward(w, r, obj.(*corev1.Pod))
			return
		}
		h.podExec(w, r, obj.(*corev1.Pod), req.sub == "attach")
	case req.sub == "log":
		writeError(w, apierrors.NewMethodNotSupported(req.res.GroupResource(), strings.ToLower(r.Method)))
	case r.Method == http.MethodGet:
		h.get(w, req)
	case r.Method == http.MethodPost && req.name == "":
		h.create(w, r, req)
	case r.Method == http.MethodPut && req.name != "":
		h.update(w, r, req)
	case r.Method == http.MethodPatch && req.name != "":
		h.patch(w, r, req)
	case r.Method == http.MethodDelete && req.name == "":
		h.deleteCollection(w, r, req)
	case r.Method == http.MethodDelete && req.sub == "":
		h.delete(w, r, req)
	default:
		writeError(w, apierrors.NewMethodNotSupported(req.res.GroupResource(), strings.ToLower(r.Method)))
	}
}

func isTrue(s string) bool { return s == "true" || s == "1" }

func (h *handler) selector(req *request) (Selector, error) {
	var sel Selector
	var err error
	if s := req.query.Get("labelSelector"); s != "" {
		if sel.Labels, err = labels.Parse(s); err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
		}
	}
	if s := req.query.Get("fieldSelector"); s != "" {
		if sel.Fields, err = fields.ParseSelector(s); err != nil {
			return sel, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
		}
		supported := sets.KeySet(req.res.fieldSet(req.res.New()))
		for _, rq := range sel.Fields.Requirements() {
			if !supported.Has(rq.Field) {
				return sel, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", rq.Field))
			}
		}
	}
	return sel, nil
}

func (h *handler) get(w http.ResponseWriter, req *request) {
	obj, err := h.api.Get(req.res, req.ns, req.name)
	if err != nil {
		writeError(w, err)
		return
	}
	h.writeResult(w, http.StatusOK, req, obj)
}

// writeResult writes one object, as a Table when asked.
func (h *handler) writeResult(w http.ResponseWriter, code int, req *request, obj store.Object) {
	if req.out.table {
		writeObject(w, code, req.res.Table([]store.Object{obj}, true, includeObject(req)), req.out)
		return
	}
	writeObject(w, code, obj, req.out)
}

func includeObject(req *request) metav1.IncludeObjectPolicy {
	return metav1.IncludeObjectPolicy(req.query.Get("includeObject"))
}

func (h *handler) list(w http.ResponseWriter, req *request) {
	sel, err := h.selector(req)
	if err != nil {
		writeError(w, err)
		return
	}
	pg, err := parsePage(req.query, h.api.store.Floor())
	if err != nil {
		writeError(w, err)
		return
	}
	objs, rev, next, err := h.api.ListPage(req.res, req.ns, sel, pg.start, pg.limit)
	switch {
	case err != nil:
		writeError(w, err)
		return
	case pg.exact && pg.rv != rev:
		// Only the present is kept: an earlier revision is as gone as a compacted one.
		writeError(w, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", pg.rv, rev)))
		return
	case pg.start != "":
		rev = pg.rv // every page of a list says the first one's revision
	}
	cont := ""
	if next != "" {
		cont = encodeContinue(rev, next)
	}
	if req.out.table {
		t := req.res.Table(objs, true, includeObject(req))
		t.ResourceVersion, t.Continue = fmt.Sprint(rev), cont
		writeObject(w, http.StatusOK, t, req.out)
		return
	}
	list, err := newList(req.res, objs, fmt.Sprint(rev))
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	if lm, err := meta.ListAccessor(list); err == nil {
		lm.SetContinue(cont)
	}
	writeObject(w, http.StatusOK, list, req.out)
}

func dryRun(q url.Values) bool { return len(q["dryRun"]) > 0 }

func fieldValidation(q url.Values) (string, error) {
	switch v := q.Get("fieldValidation"); v {
	case "":
		return validationWarn, nil
	case validationStrict, validationWarn, validationIgnore:
		return v, nil
	default:
		return "", apierrors.NewBadRequest(fmt.Sprintf("fieldValidation parameter unsupported: %v", v))
	}
}

func warn(w http.ResponseWriter, warnings []string) {
	for _, m := range warnings {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", m))
	}
}

// readWrite reads what every write starts with: the fieldValidation directive and the body.
func readWrite(r *http.Request, req *request) (string, []byte, error) {
	directive, err := fieldValidation(req.query)
	if err != nil {
		return "", nil, err
	}
	data, err := readBody(r)
	return directive, data, err
}

// respond writes err as a Status, or the warnings and the object.
func (h *handler) respond(w http.ResponseWriter, req *request, code int, out store.Object, warnings []string, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	warn(w, warnings)
	h.writeResult(w, code, req, out)
}

func (h *handler) create(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	var obj store.Object
	var warnings []string
	if err == nil {
		obj, warnings, err = decodeObject(data, isProtobuf(r), req.res, directive)
	}
	if err == nil {
		obj, err = h.api.Create(r.Context(), req.res, req.ns, obj, dryRun(req.query))
	}
	h.respond(w, req, http.StatusCreated, obj, warnings, err)
}

func (h *handler) update(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	if err == nil && req.sub == "scale" {
		if isProtobuf(r) { // client-go sends Scales as protobuf too
			var sc autoscalingv1.Scale
			if _, _, derr := pbSerializer.Decode(data, nil, &sc); derr != nil {
				writeError(w, apierrors.NewBadRequest(fmt.Sprintf("error decoding protobuf body: %v", derr)))
				return
			}
			data, _ = json.Marshal(&sc)
		}
		h.updateScale(w, r, req, func([]byte) ([]byte, error) { return data, nil }, directive)
		return
	}
	var obj store.Object
	var warnings []string
	if err == nil {
		obj, warnings, err = decodeObject(data, isProtobuf(r), req.res, directive)
	}
	if err == nil && obj.GetName() != req.name {
		err = apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", obj.GetName(), req.name))
	}
	if err == nil {
		want := obj
		obj, err = h.api.Update(r.Context(), req.res, req.ns, req.name, req.sub,
			func(store.Object) (store.Object, error) { return want.DeepCopyObject().(store.Object), nil }, dryRun(req.query))
	}
	h.respond(w, req, http.StatusOK, obj, warnings, err)
}

func (h *handler) patch(w http.ResponseWriter, r *http.Request, req *request) {
	pt := types.PatchType(strings.TrimSpace(strings.Split(r.Header.Get("Content-Type"), ";")[0]))
	if !supportedPatch(pt) {
		writeError(w, apierrors.NewGenericServerResponse(http.StatusUnsupportedMediaType, "patch", req.res.GroupResource(), req.name,
			fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s", strings.Join(patchTypes, ", ")), 0, false))
		return
	}
	directive, patch, err := readWrite(r, req)
	if err == nil && pt == applyPatchType && req.sub == "" {
		h.serverSideApply(w, r, req, patch, directive)
		return
	}
	if err == nil && pt == applyPatchType {
		err = apierrors.NewBadRequest("server-side apply is served for the main resource only")
	}
	if err == nil && req.sub == "scale" {
		h.updateScale(w, r, req, func(cur []byte) ([]byte, error) {
			return applyPatch(pt, cur, patch, &autoscalingv1.Scale{})
		}, directive)
		return
	}
	var out store.Object
	var warnings []string
	if err == nil {
		out, err = h.api.Update(r.Context(), req.res, req.ns, req.name, req.sub, func(cur store.Object) (store.Object, error) {
			curJSON, err := json.Marshal(cur)
			if err != nil {
				return nil, err
			}
			patched, err := applyPatch(pt, curJSON, patch, req.res.New())
			if err != nil {
				return nil, err
			}
			obj, w, err := decodeObject(patched, false, req.res, directive)
			warnings = w
			return obj, err
		}, dryRun(req.query))
	}
	h.respond(w, req, http.StatusOK, out, warnings, err)
}

func deleteOptions(r *http.Request, req *request) (metav1.DeleteOptions, error) {
	var opts metav1.DeleteOptions
	data, err := readBody(r)
	if err != nil {
		return opts, err
	}
	if isProtobuf(r) && len(data) > 0 {
		if _, _, err := pbSerializer.Decode(data, nil, &opts); err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid delete options: %v", err))
		}
	} else if len(strings.TrimSpace(string(data))) > 0 {
		if err := json.Unmarshal(data, &opts); err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid delete options: %v", err))
		}
	}
	if p := req.query.Get("propagationPolicy"); p != "" {
		policy := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &policy
	}
	if v := req.query.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return opts, apierrors.NewBadRequest(fmt.Sprintf("invalid gracePeriodSeconds %q", v))
		}
		opts.GracePeriodSeconds = &n
	}
	opts.DryRun = append(opts.DryRun, req.query["dryRun"]...)
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			return opts, apierrors.NewBadRequest(fmt.Sprintf("propagationPolicy: Unsupported value: %q: supported values: \"Foreground\", \"Background\", \"Orphan\"", *p))
		}
	}
	return opts, nil
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := deleteOptions(r, req)
	if err != nil {
		writeError(w, err)
		return
	}
	obj, gone, err := h.api.Delete(r.Context(), req.res, req.ns, req.name, opts)
	if err != nil {
		writeError(w, err)
		return
	}
	if gone || obj == nil {
		details := &metav1.StatusDetails{Name: req.name, Group: req.res.Group, Kind: req.res.Plural}
		if obj != nil {
			details.UID = obj.GetUID()
		}
		writeObject(w, http.StatusOK, &metav1.Status{Status: metav1.StatusSuccess, Details: details}, req.out)
		return
	}
	h.writeResult(w, http.StatusOK, req, obj)
}

func (h *handler) deleteCollection(w http.ResponseWriter, r *http.Request, req *request) {
	opts, err := deleteOptions(r, req)
	if err != nil {
		writeError(w, err)
		return
	}
	sel, err := h.selector(req)
	if err != nil {
		writeError(w, err)
		return
	}
	objs, rev, err := h.api.List(req.res, req.ns, sel)
	if err != nil {
		writeError(w, err)
		return
	}
	var deleted []store.Object
	for _, o := range objs {
		out, _, err := h.api.Delete(r.Context(), req.res, o.GetNamespace(), o.GetName(), opts)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			writeError(w, err)
			return
		}
		deleted = append(deleted, out)
	}
	list, err := newList(req.res, deleted, fmt.Sprint(rev))
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	writeObject(w, http.StatusOK, list, req.out)
}

// scaleOf renders a Deployment's or ReplicaSet's replicas as autoscaling/v1 Scale.
func scaleOf(obj store.Object) (*autoscalingv1.Scale, error) {
	spec := structField(obj, "Spec")
	var s labels.Selector
	switch sel := spec.FieldByName("Selector").Interface().(type) {
	case map[string]string: // a ReplicationController's
		s = labels.SelectorFromSet(sel)
	case *metav1.LabelSelector:
		var err error
		if s, err = metav1.LabelSelectorAsSelector(sel); err != nil {
			return nil, err
		}
	}
	sc := &autoscalingv1.Scale{
		TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"},
		ObjectMeta: metav1.ObjectMeta{Name: obj.GetName(), Namespace: obj.GetNamespace(), UID: obj.GetUID(),
			ResourceVersion: obj.GetResourceVersion(), CreationTimestamp: obj.GetCreationTimestamp()},
		Spec:   autoscalingv1.ScaleSpec{Replicas: replicas(spec.FieldByName("Replicas").Interface().(*int32))},
		Status: autoscalingv1.ScaleStatus{Replicas: int32(structField(obj, "Status").FieldByName("Replicas").Int()), Selector: s.String()},
	}
	return sc, nil
}

func (h *handler) getScale(w http.ResponseWriter, req *request) {
	obj, err := h.api.Get(req.res, req.ns, req.name)
	writeScale(w, req, obj, err)
}

// writeScale writes obj's Scale, or err.
func writeScale(w http.ResponseWriter, req *request, obj store.Object, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	sc, err := scaleOf(obj)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	writeObject(w, http.StatusOK, sc, req.out)
}

// updateScale sets spec.replicas from a Scale that change derives from the current one.
func (h *handler) updateScale(w http.ResponseWriter, r *http.Request, req *request, change func(cur []byte) ([]byte, error), directive string) {
	out, err := h.api.Update(r.Context(), req.res, req.ns, req.name, "", func(cur store.Object) (store.Object, error) {
		sc, err := scaleOf(cur)
		if err != nil {
			return nil, err
		}
		curJSON, _ := json.Marshal(sc)
		data, err := change(curJSON)
		if err != nil {
			return nil, err
		}
		var next autoscalingv1.Scale
		if _, err := decodeInto(data, &next, directive); err != nil {
			return nil, err
		}
		if next.Name != "" && next.Name != req.name {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", next.Name, req.name))
		}
		if next.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), req.name,
				fieldErrs("spec.replicas", next.Spec.Replicas, "must be greater than or equal to 0"))
		}
		if next.ResourceVersion != "" && next.ResourceVersion != cur.GetResourceVersion() {
			return nil, store.ErrConflict
		}
		n := next.Spec.Replicas
		structField(cur, "Spec").FieldByName("Replicas").Set(reflect.ValueOf(&n))
		return cur, nil
	}, dryRun(req.query))
	writeScale(w, req, out, err)
}
