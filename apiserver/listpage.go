package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// page is a list request's paging and consistency, from its query: limit, continue,
// resourceVersion and resourceVersionMatch, checked as kube-apiserver checks them.
type page struct {
	limit int
	// start is the key the page starts at ("" for the first page); rv the revision the
	// list started at (0: now).
	start string
	rv    int64
	// exact asks for the list at exactly revision rv.
	exact bool
}

// continueToken is kube-apiserver's continue token: base64 of this JSON, with the key
// to start at and the revision of the list's first page.
type continueToken struct {
	APIVersion      string `json:"v"`
	ResourceVersion int64  `json:"rv"`
	StartKey        string `json:"start"`
}

func encodeContinue(rv int64, start string) string {
	data, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", ResourceVersion: rv, StartKey: start})
	return base64.RawURLEncoding.EncodeToString(data)
}

func parsePage(q url.Values, floor int64) (page, error) {
	var p page
	var errs field.ErrorList
	rv, match, cont := q.Get("resourceVersion"), metav1.ResourceVersionMatch(q.Get("resourceVersionMatch")), q.Get("continue")
	if s := q.Get("limit"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return p, apierrors.NewBadRequest(fmt.Sprintf("limit: invalid value %q", s))
		}
		if n > 0 && rv != "0" { // resourceVersion 0 is served whole, as from kube-apiserver's cache
			p.limit = int(min(n, 1<<30))
		}
	}
	if match != "" {
		path := field.NewPath("resourceVersionMatch")
		switch {
		case rv == "":
			errs = append(errs, field.Forbidden(path, "resourceVersionMatch is forbidden unless resourceVersion is provided"))
		case cont != "":
			errs = append(errs, field.Forbidden(path, "resourceVersionMatch is forbidden when continue is provided"))
		case match == metav1.ResourceVersionMatchExact && rv == "0":
			errs = append(errs, field.Forbidden(path, "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""))
		case match != metav1.ResourceVersionMatchExact && match != metav1.ResourceVersionMatchNotOlderThan:
			errs = append(errs, field.NotSupported(path, match, []string{string(metav1.ResourceVersionMatchExact), string(metav1.ResourceVersionMatchNotOlderThan)}))
		}
	}
	if len(errs) > 0 {
		return p, apierrors.NewInvalid(schema.GroupKind{Group: metav1.GroupName, Kind: "ListOptions"}, "", errs)
	}
	if cont != "" && rv != "" && rv != "0" { // as kube-apiserver's storage says it
		return p, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
	}
	if rv != "" && rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return p, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
		}
		p.rv, p.exact = n, match == metav1.ResourceVersionMatchExact
	}
	if cont != "" {
		var t continueToken
		data, err := base64.RawURLEncoding.DecodeString(cont)
		if err == nil {
			err = json.Unmarshal(data, &t)
		}
		if err == nil && (t.APIVersion != "meta.k8s.io/v1" || t.ResourceVersion <= 0 || t.StartKey == "") {
			err = fmt.Errorf("continue key is not valid")
		}
		if err != nil {
			return p, apierrors.NewBadRequest(fmt.Sprintf("continue key is not valid: %v", err))
		}
		if t.ResourceVersion < floor {
			// The changes since the first page are no longer all kept: a watch from the
			// list's revision could not catch up (kube-apiserver: compacted).
			return p, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
		}
		p.start, p.rv = t.StartKey, t.ResourceVersion
	}
	return p, nil
}
