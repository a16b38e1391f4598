package apiserver

import (
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/proxy"
)

// proxyTransport reaches pods as kube-apiserver does: over HTTPS without checking
// their certificates.
var proxyTransport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}

// serveProxy serves the proxy subresources of pods and services: the request goes on
// to the pod (for a service, one of its ready endpoints, chosen at random) and the
// answer comes back, as with kube-apiserver (kubectl proxy, kubectl get --raw).
func (h *handler) serveProxy(w http.ResponseWriter, r *http.Request) {
	ns, plural, id := chi.URLParam(r, "namespace"), chi.URLParam(r, "resource"), chi.URLParam(r, "name")
	if chi.URLParam(r, "group") != "" || chi.URLParam(r, "version") != "v1" || (plural != "pods" && plural != "services") {
		writeError(w, errNoSuchResource)
		return
	}
	_, path, _ := strings.Cut(r.URL.Path, "/"+id+"/proxy")
	scheme, name, port := splitProxyName(id)
	switch scheme {
	case "":
		scheme = "http"
	case "http", "https":
	default:
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid scheme %q: only http and https", scheme)))
		return
	}
	if name == "" {
		writeError(w, apierrors.NewBadRequest(fmt.Sprintf("invalid name %q", id)))
		return
	}
	var target string
	var err error
	if plural == "pods" {
		target, err = h.podTarget(ns, name, port, scheme)
	} else {
		target, err = h.serviceTarget(ns, name, port)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if path == "" { // as kube-apiserver: reads of the root go to it with its slash, the rest on
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			redirectToSlash(w, r)
			return
		}
		path = "/"
	}
	// As kube-apiserver: links and redirects to the target's own paths in what comes
	// back are rewritten to go through the proxy again.
	rt := &proxy.Transport{PathPrepend: strings.TrimSuffix(r.URL.Path, path), RoundTripper: proxyTransport}
	rp := &httputil.ReverseProxy{Transport: rt, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.URL.Path, pr.Out.URL.RawPath, pr.Out.Host = scheme, target, path, "", target
		pr.Out.Header.Del("Authorization") // the API's token is not the pod's business
	}, ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
		writeError(w, apierrors.NewServiceUnavailable(fmt.Sprintf("error trying to reach %s %q: %v", strings.TrimSuffix(plural, "s"), name, err)))
	}}
	rp.ServeHTTP(w, r)
	return
}

// splitProxyName reads a proxy subresource's name as kube-apiserver does: name,
// name:port or scheme:name:port.
func splitProxyName(id string) (scheme, name, port string) {
	switch parts := strings.Split(id, ":"); len(parts) {
	case 1:
		name = parts[0]
	case 2:
		name, port = parts[0], parts[1]
	case 3:
		scheme, name, port = parts[0], parts[1], parts[2]
	}
	return scheme, name, port
}

// redirectToSlash answers a proxy path without its trailing slash with a permanent
// redirect to the path with one.
func redirectToSlash(w http.ResponseWriter, r *http.Request) {
	u := *r.URL
	u.Path += "/"
	http.Redirect(w, r, u.RequestURI(), http.StatusMovedPermanently)
}

// serveNodeProxy serves nodes/{name}/proxy: what the kubelet serves there that this
// node has: /healthz, /pods (the pods bound to the node) and /logs/ (the node's
// /var/log, read-only).
func (h *handler) serveNodeProxy(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if chi.URLParam(r, "group") != "" || chi.URLParam(r, "version") != "v1" || chi.URLParam(r, "resource") != "nodes" {
		writeError(w, errNoSuchResource)
		return
	}
	_, node, _ := splitProxyName(name) // every port is the kubelet's here
	if _, err := h.api.Get(h.api.reg.Lookup("", "nodes"), "", node); err != nil {
		writeError(w, err)
		return
	}
	_, path, _ := strings.Cut(r.URL.Path, "/"+name+"/proxy")
	switch {
	case path == "":
		redirectToSlash(w, r)
	case r.Method != http.MethodGet && r.Method != http.MethodHead:
		writeError(w, apierrors.NewMethodNotSupported(corev1.Resource("nodes/proxy"), strings.ToLower(r.Method)))
	case path == "/healthz":
		w.Write([]byte("ok"))
	case path == "/pods" || path == "/pods/":
		pods, _, err := h.api.List(h.api.reg.Lookup("", "pods"), "", Selector{})
		if err != nil {
			writeError(w, err)
			return
		}
		list := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
		for _, o := range pods {
			if p := o.(*corev1.Pod); p.Spec.NodeName == node {
				list.Items = append(list.Items, *p)
			}
		}
		writeJSONValue(w, list)
	case path == "/logs" || strings.HasPrefix(path, "/logs/"):
		http.StripPrefix(strings.TrimSuffix(r.URL.Path, path)+"/logs", http.FileServer(http.Dir("/var/log"))).ServeHTTP(w, r)
	default:
		writeError(w, errNoSuchResource)
	}
}

func (h *handler) podTarget(ns, name, port, scheme string) (string, error) {
	obj, err := h.api.Get(h.api.reg.Lookup("", "pods"), ns, name)
	if err != nil {
		return "", err
	}
	pod := obj.(*corev1.Pod)
	if pod.Status.PodIP == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("pod %q has no address yet", name))
	}
	if port == "" { // as kube-apiserver (pod.ResourceLocation): the first container port the pod declares
		for _, c := range pod.Spec.Containers {
			if len(c.Ports) > 0 {
				port = strconv.Itoa(int(c.Ports[0].ContainerPort))
				break
			}
		}
	}
	switch {
	case port == "" && scheme == "https":
		port = "443"
	case port == "":
		port = "80"
	default:
		if _, err := strconv.Atoi(port); err != nil { // a named container port
			found := false
			for _, c := range pod.Spec.Containers {
				for _, p := range c.Ports {
					if p.Name == port {
						port, found = strconv.Itoa(int(p.ContainerPort)), true
					}
				}
			}
			if !found {
				return "", apierrors.NewBadRequest(fmt.Sprintf("no container port named %q in pod %q", port, name))
			}
		}
	}
	return net.JoinHostPort(pod.Status.PodIP, port), nil
}

// serviceTarget is a ready endpoint of the service port named or numbered port (or
// the service's only port).
func (h *handler) serviceTarget(ns, name, port string) (string, error) {
	obj, err := h.api.Get(h.api.reg.Lookup("", "services"), ns, name)
	if err != nil {
		return "", err
	}
	svc := obj.(*corev1.Service)
	var sp *corev1.ServicePort
	for i, p := range svc.Spec.Ports {
		if p.Name == port || strconv.Itoa(int(p.Port)) == port || port == "" && len(svc.Spec.Ports) == 1 {
			sp = &svc.Spec.Ports[i]
			break
		}
	}
	if sp == nil {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("no service port %q found for service %q", port, name))
	}
	eps, err := h.api.Get(h.api.reg.Lookup("", "endpoints"), ns, name)
	if err != nil && !apierrors.IsNotFound(err) {
		return "", err
	}
	var targets []string
	if eps != nil {
		for _, ss := range eps.(*corev1.Endpoints).Subsets {
			for _, p := range ss.Ports {
				if p.Name != sp.Name {
					continue
				}
				for _, a := range ss.Addresses {
					targets = append(targets, net.JoinHostPort(a.IP, strconv.Itoa(int(p.Port))))
				}
			}
		}
	}
	if len(targets) == 0 {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("no endpoints available for service %q", name))
	}
	return targets[rand.IntN(len(targets))], nil
}
