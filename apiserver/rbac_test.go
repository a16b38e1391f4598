package apiserver

import (
	"net/http/httptest"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestRequestAttributes(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         attributes
	}{
		{"GET", "/api/v1/namespaces/default/pods", attributes{verb: "list", resource: "pods", ns: "default", resourceRequest: true}},
		{"GET", "/api/v1/pods?watch=true", attributes{verb: "watch", resource: "pods", resourceRequest: true}},
		{"POST", "/api/v1/namespaces/default/pods/p/eviction", attributes{verb: "create", resource: "pods", name: "p", sub: "eviction", ns: "default", resourceRequest: true}},
		{"DELETE", "/apis/apps/v1/namespaces/x/deployments", attributes{verb: "deletecollection", group: "apps", resource: "deployments", ns: "x", resourceRequest: true}},
		{"GET", "/api/v1/namespaces/team", attributes{verb: "get", resource: "namespaces", name: "team", ns: "team", resourceRequest: true}},
		{"PUT", "/api/v1/namespaces/team/finalize", attributes{verb: "update", resource: "namespaces", name: "team", sub: "finalize", ns: "team", resourceRequest: true}},
		{"GET", "/apis", attributes{verb: "get"}},
	} {
		got := requestAttributes(httptest.NewRequest(c.method, c.path, nil))
		got.path, c.want.path = "", ""
		if got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.method, c.path, got, c.want)
		}
	}
}

func TestRuleAllows(t *testing.T) {
	rule := rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods", "pods/log"}, ResourceNames: []string{"a"}}
	for _, c := range []struct {
		attr attributes
		want bool
	}{
		{attributes{resourceRequest: true, verb: "get", resource: "pods", name: "a"}, true},
		{attributes{resourceRequest: true, verb: "get", resource: "pods", name: "b"}, false},
		{attributes{resourceRequest: true, verb: "get", resource: "pods", sub: "log", name: "a"}, true},
		{attributes{resourceRequest: true, verb: "get", resource: "pods", sub: "exec", name: "a"}, false},
		{attributes{resourceRequest: true, verb: "delete", resource: "pods", name: "a"}, false},
		{attributes{resourceRequest: true, verb: "get", group: "apps", resource: "pods", name: "a"}, false},
		{attributes{verb: "get", path: "/version"}, false},
	} {
		if got := ruleAllows(rule, c.attr); got != c.want {
			t.Errorf("%+v: %v, want %v", c.attr, got, c.want)
		}
	}
	if !ruleAllows(everyone[0], attributes{verb: "get", path: "/apis/apps/v1"}) || ruleAllows(everyone[0], attributes{verb: "post", path: "/apis"}) {
		t.Error("discovery for everyone")
	}
}
