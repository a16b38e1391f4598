package apiserver

import (
	"encoding/json"
	"mime"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func writeJSONValue(w http.ResponseWriter, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(data, '\n'))
}

// groupVersions lists the served group-versions in table order.
func (g *Registry) groupVersions() []schema.GroupVersion {
	var out []schema.GroupVersion
	seen := map[schema.GroupVersion]bool{}
	for _, r := range g.resources {
		if gv := r.GroupVersion(); !seen[gv] {
			seen[gv] = true
			out = append(out, gv)
		}
	}
	return out
}

var verbsAll = metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}

// resourceList is the legacy discovery document of one group-version.
func (g *Registry) resourceList(gv schema.GroupVersion) *metav1.APIResourceList {
	list := &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv.String()}
	for _, r := range g.resources {
		if r.GroupVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.Plural, SingularName: r.Singular, Namespaced: r.Namespaced, Kind: r.Kind_,
			Verbs: r.Verbs(), ShortNames: r.ShortNames, Categories: r.Categories})
		for _, sub := range r.Subresources {
			res := metav1.APIResource{Name: r.Plural + "/" + sub, Namespaced: r.Namespaced, Kind: r.Kind_, Verbs: metav1.Verbs{"get", "patch", "update"}}
			switch sub {
			case "scale":
				res.Group, res.Version, res.Kind = "autoscaling", "v1", "Scale"
			case "finalize":
				res.Verbs = metav1.Verbs{"update"}
			case "log":
				res.Verbs = metav1.Verbs{"get"}
			case "token":
				res.Group, res.Version, res.Kind, res.Verbs = "authentication.k8s.io", "v1", "TokenRequest", metav1.Verbs{"create"}
			case "eviction", "binding":
				res.Group, res.Version, res.Kind, res.Verbs = map[bool]string{true: "policy", false: ""}[sub == "eviction"], "v1",
					map[bool]string{true: "Eviction", false: "Binding"}[sub == "eviction"], metav1.Verbs{"create"}
			case "exec":
				res.Kind, res.Verbs = "PodExecOptions", metav1.Verbs{"create", "get"}
			case "attach":
				res.Kind, res.Verbs = "PodAttachOptions", metav1.Verbs{"create", "get"}
			case "portforward":
				res.Kind, res.Verbs = "PodPortForwardOptions", metav1.Verbs{"create", "get"}
			}
			list.APIResources = append(list.APIResources, res)
		}
	}
	return list
}

// aggregatedType is the media type of aggregated discovery (apidiscovery.k8s.io/v2).
const aggregatedType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

func wantsAggregated(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err == nil && mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" && params["as"] == "APIGroupDiscoveryList" {
			return true
		}
	}
	return false
}

// aggregated is the aggregated discovery document for the core group (core true, /api)
// or the named groups (/apis).
func (g *Registry) aggregated(core bool) *apidiscoveryv2.APIGroupDiscoveryList {
	list := &apidiscoveryv2.APIGroupDiscoveryList{TypeMeta: metav1.TypeMeta{APIVersion: "apidiscovery.k8s.io/v2", Kind: "APIGroupDiscoveryList"}}
	for _, gv := range g.groupVersions() {
		if (gv.Group == "") != core {
			continue
		}
		v := apidiscoveryv2.APIVersionDiscovery{Version: gv.Version, Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent}
		for _, r := range g.resources {
			if r.GroupVersion() != gv {
				continue
			}
			scope := apidiscoveryv2.ScopeCluster
			if r.Namespaced {
				scope = apidiscoveryv2.ScopeNamespace
			}
			kind := metav1.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind_}
			res := apidiscoveryv2.APIResourceDiscovery{Resource: r.Plural, ResponseKind: &kind, Scope: scope,
				SingularResource: r.Singular, Verbs: r.Verbs(), ShortNames: r.ShortNames, Categories: r.Categories}
			for _, sub := range r.Subresources {
				sk, verbs := kind, []string{"get", "patch", "update"}
				switch sub {
				case "scale":
					sk = metav1.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}
				case "finalize":
					verbs = []string{"update"}
				case "log":
					verbs = []string{"get"}
				case "eviction":
					sk, verbs = metav1.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, []string{"create"}
				case "binding":
					sk, verbs = metav1.GroupVersionKind{Version: "v1", Kind: "Binding"}, []string{"create"}
				case "token":
					sk, verbs = metav1.GroupVersionKind{Group: "authentication.k8s.io", Version: "v1", Kind: "TokenRequest"}, []string{"create"}
				case "exec":
					sk, verbs = metav1.GroupVersionKind{Version: "v1", Kind: "PodExecOptions"}, []string{"create", "get"}
				case "attach":
					sk, verbs = metav1.GroupVersionKind{Version: "v1", Kind: "PodAttachOptions"}, []string{"create", "get"}
				case "portforward":
					sk, verbs = metav1.GroupVersionKind{Version: "v1", Kind: "PodPortForwardOptions"}, []string{"create", "get"}
				}
				res.Subresources = append(res.Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub, ResponseKind: &sk, Verbs: verbs})
			}
			v.Resources = append(v.Resources, res)
		}
		list.Items = append(list.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group},
			Versions: []apidiscoveryv2.APIVersionDiscovery{v}})
	}
	return list
}

func (h *handler) discovery(w http.ResponseWriter, r *http.Request) {
	reg := h.api.reg
	path := strings.Trim(r.URL.Path, "/")
	if (path == "api" || path == "apis") && wantsAggregated(r) {
		data, _ := json.Marshal(reg.aggregated(path == "api"))
		w.Header().Set("Content-Type", aggregatedType)
		w.Header().Set("Vary", "Accept")
		w.Write(append(data, '\n'))
		return
	}
	switch {
	case path == "api":
		writeJSONValue(w, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: r.Host}}})
		return
	case path == "apis":
		list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}}
		for _, gv := range reg.groupVersions() {
			if gv.Group == "" {
				continue
			}
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
			list.Groups = append(list.Groups, metav1.APIGroup{Name: gv.Group, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
		}
		writeJSONValue(w, list)
		return
	}
	for _, gv := range reg.groupVersions() {
		prefix := "apis/" + gv.String()
		if gv.Group == "" {
			prefix = "api/" + gv.Version
		}
		if path == prefix {
			writeJSONValue(w, reg.resourceList(gv))
			return
		}
		if gv.Group != "" && path == "apis/"+gv.Group {
			v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
			writeJSONValue(w, &metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: gv.Group,
				Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
			return
		}
	}
	writeError(w, errNoSuchResource)
}

// errNoSuchResource is kube-apiserver's answer for a path it serves nothing at.
var errNoSuchResource = apierrors.NewGenericServerResponse(http.StatusNotFound, "get", schema.GroupResource{}, "",
	"the server could not find the requested resource", 0, false)
