package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// RBAC, enforced for service account tokens as kube-apiserver's RBAC authorizer does:
// a request is allowed when a rule of a Role or ClusterRole bound to the user (by name),
// one of its groups or its service account allows the verb on the resource. Every
// authenticated user may read discovery, OpenAPI and version, and ask about itself
// (Kubernetes' system:discovery, system:public-info-viewer and system:basic-user).
// system:masters (the admin token, the API socket) is allowed everything.

// attributes are what a request asks to do.
type attributes struct {
	verb, group, resource, sub, ns, name, path string
	resourceRequest                            bool
}

// requestAttributes reads a request as kube-apiserver's RequestInfoFactory does.
func requestAttributes(r *http.Request) attributes {
	a := attributes{path: r.URL.Path}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	var rest []string
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		rest = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		a.group, rest = parts[1], parts[3:]
	}
	a.verb = strings.ToLower(r.Method)
	if len(rest) == 0 {
		return a
	}
	a.resourceRequest = true
	if rest[0] == "namespaces" && len(rest) > 1 {
		a.ns = rest[1]
		if len(rest) > 2 && rest[2] != "status" && rest[2] != "finalize" {
			rest = rest[2:]
		}
	}
	a.resource = rest[0]
	if len(rest) > 1 {
		a.name = rest[1]
	}
	if len(rest) > 2 {
		a.sub = rest[2]
	}
	watch := r.URL.Query().Get("watch")
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		switch {
		case a.name == "" && (watch == "true" || watch == "1"):
			a.verb = "watch"
		case a.name == "":
			a.verb = "list"
		default:
			a.verb = "get"
		}
	case http.MethodPost:
		a.verb = "create"
	case http.MethodPut:
		a.verb = "update"
	case http.MethodDelete:
		a.verb = map[bool]string{true: "deletecollection", false: "delete"}[a.name == ""]
	}
	return a
}

// everyone is what any authenticated user may do.
var everyone = []rbacv1.PolicyRule{
	{Verbs: []string{"get"}, NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/version", "/version/", "/healthz", "/livez", "/readyz", "/openapi", "/openapi/*"}},
	{Verbs: []string{"create"}, APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"selfsubjectaccessreviews", "selfsubjectrulesreviews"}},
	{Verbs: []string{"create"}, APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"selfsubjectreviews"}},
}

func has(list []string, v string) bool { return slices.Contains(list, v) || slices.Contains(list, "*") }

func ruleAllows(rule rbacv1.PolicyRule, a attributes) bool {
	if !has(rule.Verbs, a.verb) {
		return false
	}
	if !a.resourceRequest {
		for _, u := range rule.NonResourceURLs {
			if u == "*" || u == a.path || strings.HasSuffix(u, "*") && strings.HasPrefix(a.path, strings.TrimSuffix(u, "*")) {
				return true
			}
		}
		return false
	}
	resource := a.resource
	if a.sub != "" {
		resource += "/" + a.sub
	}
	if !has(rule.APIGroups, a.group) || !(has(rule.Resources, resource) || a.sub != "" && slices.Contains(rule.Resources, a.resource+"/*")) {
		return false
	}
	return len(rule.ResourceNames) == 0 || slices.Contains(rule.ResourceNames, a.name)
}

func subjectMatches(s rbacv1.Subject, u authenticationv1.UserInfo, bindingNS string) bool {
	switch s.Kind {
	case rbacv1.UserKind:
		return s.Name == u.Username
	case rbacv1.GroupKind:
		return slices.Contains(u.Groups, s.Name)
	case rbacv1.ServiceAccountKind:
		ns := s.Namespace
		if ns == "" {
			ns = bindingNS
		}
		return serviceAccountUser(ns, s.Name) == u.Username
	}
	return false
}

// rulesFor lists the rules that apply to u in namespace ns (cluster-wide ones only when
// ns is ""), the ones every user has first.
func (a *API) rulesFor(u authenticationv1.UserInfo, ns string) []rbacv1.PolicyRule {
	rules := slices.Clone(everyone)
	roleRules := func(ref rbacv1.RoleRef, bindingNS string) []rbacv1.PolicyRule {
		if ref.Kind == "ClusterRole" {
			if obj, err := a.Get(a.reg.Lookup(rbacv1.GroupName, "clusterroles"), "", ref.Name); err == nil {
				return obj.(*rbacv1.ClusterRole).Rules
			}
			return nil
		}
		if obj, err := a.Get(a.reg.Lookup(rbacv1.GroupName, "roles"), bindingNS, ref.Name); err == nil {
			return obj.(*rbacv1.Role).Rules
		}
		return nil
	}
	crbs, _, _ := a.List(a.reg.Lookup(rbacv1.GroupName, "clusterrolebindings"), "", Selector{})
	for _, o := range crbs {
		b := o.(*rbacv1.ClusterRoleBinding)
		if slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return subjectMatches(s, u, "") }) {
			rules = append(rules, roleRules(b.RoleRef, "")...)
		}
	}
	if ns != "" {
		rbs, _, _ := a.List(a.reg.Lookup(rbacv1.GroupName, "rolebindings"), ns, Selector{})
		for _, o := range rbs {
			b := o.(*rbacv1.RoleBinding)
			if slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return subjectMatches(s, u, ns) }) {
				rules = append(rules, roleRules(b.RoleRef, ns)...)
			}
		}
	}
	return rules
}

func isMaster(u authenticationv1.UserInfo) bool { return slices.Contains(u.Groups, "system:masters") }

// authorize says whether u may do a; the reason names the rule's source loosely.
func (a *API) authorize(u authenticationv1.UserInfo, attr attributes) bool {
	if isMaster(u) {
		return true
	}
	return slices.ContainsFunc(a.rulesFor(u, attr.ns), func(r rbacv1.PolicyRule) bool { return ruleAllows(r, attr) })
}

// forbidden is kube-apiserver's refusal, naming what was asked.
func forbidden(u authenticationv1.UserInfo, attr attributes) error {
	if !attr.resourceRequest {
		return apierrors.NewForbidden(schema.GroupResource{}, "", fmt.Errorf("User %q cannot %s path %q", u.Username, attr.verb, attr.path))
	}
	resource := attr.resource
	if attr.sub != "" {
		resource += "/" + attr.sub
	}
	where := "at the cluster scope"
	if attr.ns != "" {
		where = fmt.Sprintf("in the namespace %q", attr.ns)
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: attr.group, Resource: resource}, attr.name,
		fmt.Errorf("User %q cannot %s resource %q in API group %q %s", u.Username, attr.verb, resource, attr.group, where))
}

// Authenticate wraps next for the TCP listener: the health and version paths need no
// token; the admin token is system:masters; a service account token is its account,
// held to RBAC; anything else is 401.
func (s *Server) Authenticate(adminToken string, next http.Handler) http.Handler {
	admin := RequireToken(adminToken, next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" && s.uiSession(r) {
			next.ServeHTTP(w, withIdentity(r, adminUser))
			return
		}
		bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || bearer == adminToken || publicPaths[strings.TrimSuffix(r.URL.Path, "/")] {
			admin.ServeHTTP(w, r)
			return
		}
		u, err := s.api.authenticate(bearer, time.Now())
		if err != nil {
			writeError(w, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		if attr := requestAttributes(r); !s.api.authorize(u, attr) {
			writeError(w, forbidden(u, attr))
			return
		}
		next.ServeHTTP(w, withIdentity(r, u))
	})
}

// accessReview answers "may u do this?" for a SelfSubjectAccessReview.
func (a *API) accessReview(ctx context.Context, spec authorizationv1.SelfSubjectAccessReviewSpec) authorizationv1.SubjectAccessReviewStatus {
	u := identity(ctx)
	var attr attributes
	if ra := spec.ResourceAttributes; ra != nil {
		attr = attributes{resourceRequest: true, verb: ra.Verb, group: ra.Group, resource: ra.Resource, sub: ra.Subresource, ns: ra.Namespace, name: ra.Name}
	} else if nra := spec.NonResourceAttributes; nra != nil {
		attr = attributes{verb: nra.Verb, path: nra.Path}
	}
	if isMaster(u) {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: allowedReason}
	}
	if a.authorize(u, attr) {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: "RBAC: allowed by a binding of " + u.Username}
	}
	return authorizationv1.SubjectAccessReviewStatus{}
}

// uiSession says whether r may go on without a token: the page's login (its one-time
// code is the credential), or a GET of the page, its events or an explain path by a
// browser holding a session from such a login.
func (s *Server) uiSession(r *http.Request) bool {
	if s.cfg.UI == nil {
		return false
	}
	p := r.URL.Path
	if p == "/ui/login" {
		return true
	}
	return (p == "/ui" || strings.HasPrefix(p, "/ui/") || p == "/explain") && s.cfg.UI.Authorized(r)
}
