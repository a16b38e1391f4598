package apiserver

import (
	"context"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/minicluster/minicluster/store"
)

// Reviews are the create-only resources that answer a question about the caller
// instead of storing anything: "may I?" (SelfSubjectAccessReview), "what may I?"
// (SelfSubjectRulesReview), "who am I?" (SelfSubjectReview); TokenReview asks who a
// token is. kubectl auth can-i and whoami, k9s and Helm ask them.
//
// The trust model: whoever holds the admin token (TCP) or can open the root-only API
// socket is system:masters, allowed everything, as in Kubernetes. A ServiceAccount token
// is its account, held to RBAC (rbac.go); the answers follow.

type identityKey struct{}

// The identities the authenticator knows.
var (
	adminUser  = authenticationv1.UserInfo{Username: "minicluster-admin", Groups: []string{"system:masters", "system:authenticated"}}
	socketUser = authenticationv1.UserInfo{Username: "system:minicluster", Groups: []string{"system:masters", "system:authenticated"}}
)

// withIdentity records who the request was authenticated as.
func withIdentity(r *http.Request, u authenticationv1.UserInfo) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), identityKey{}, u))
}

// identity is who made the request: the socket's user unless a token said otherwise.
func identity(ctx context.Context) authenticationv1.UserInfo {
	if u, ok := ctx.Value(identityKey{}).(authenticationv1.UserInfo); ok {
		return u
	}
	return socketUser
}

const allowedReason = "minicluster: the caller is in system:masters (admin token or API socket)"

func reviewAccess(ctx context.Context, a *API, obj store.Object) {
	ssar := obj.(*authorizationv1.SelfSubjectAccessReview)
	ssar.Status = a.accessReview(ctx, ssar.Spec)
}

func validateAccessReview(obj, _ store.Object) field.ErrorList {
	spec := obj.(*authorizationv1.SelfSubjectAccessReview).Spec
	if (spec.ResourceAttributes == nil) == (spec.NonResourceAttributes == nil) {
		return field.ErrorList{field.Invalid(field.NewPath("spec"), spec, "exactly one of nonResourceAttributes or resourceAttributes must be specified")}
	}
	return nil
}

func reviewRules(ctx context.Context, a *API, obj store.Object) {
	ssrr := obj.(*authorizationv1.SelfSubjectRulesReview)
	if u := identity(ctx); !isMaster(u) {
		for _, r := range a.rulesFor(u, ssrr.Spec.Namespace) {
			if len(r.NonResourceURLs) > 0 {
				ssrr.Status.NonResourceRules = append(ssrr.Status.NonResourceRules, authorizationv1.NonResourceRule{Verbs: r.Verbs, NonResourceURLs: r.NonResourceURLs})
			} else {
				ssrr.Status.ResourceRules = append(ssrr.Status.ResourceRules, authorizationv1.ResourceRule{Verbs: r.Verbs,
					APIGroups: r.APIGroups, Resources: r.Resources, ResourceNames: r.ResourceNames})
			}
		}
		return
	}
	ssrr.Status = authorizationv1.SubjectRulesReviewStatus{
		ResourceRules:    []authorizationv1.ResourceRule{{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}},
		NonResourceRules: []authorizationv1.NonResourceRule{{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}},
	}
}

func reviewSelf(ctx context.Context, _ *API, obj store.Object) {
	obj.(*authenticationv1.SelfSubjectReview).Status.UserInfo = identity(ctx)
}

// review answers a create of a review resource: the object sent, with its status.
func (h *handler) review(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	var obj store.Object
	var warnings []string
	if err == nil {
		obj, warnings, err = decodeObject(data, isProtobuf(r), req.res, directive)
	}
	if err == nil && req.res.validate != nil {
		err = h.api.invalid(req.res, "", req.res.validate(obj, nil))
	}
	if err == nil {
		req.res.review(r.Context(), h.api, obj)
		obj.SetCreationTimestamp(metav1.Time{})
		setTypeMeta(obj)
	}
	h.respond(w, req, http.StatusCreated, obj, warnings, err)
}
