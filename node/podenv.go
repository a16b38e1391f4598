package node

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/node/sandbox"
)

// ErrContainerConfig means a container's settings cannot be honoured (the kubelet's
// CreateContainerConfigError).
var ErrContainerConfig = errors.New("container configuration")

// podHosts renders /etc/hosts as the kubelet does: for a hostNetwork pod, the node's.
func podHosts(pod *corev1.Pod, ip netip.Addr, domain string) string {
	var b strings.Builder
	if pod.Spec.HostNetwork {
		if data, err := os.ReadFile("/etc/hosts"); err == nil {
			b.WriteString("# Kubernetes-managed hosts file (host network).\n")
			b.Write(data)
			return b.String()
		}
	}
	b.WriteString("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" +
		"fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	host := podHostname(pod)
	if pod.Spec.Subdomain != "" {
		fmt.Fprintf(&b, "%s\t%s.%s.%s.svc.%s\t%s\n", ip, host, pod.Spec.Subdomain, pod.Namespace, domain, host)
	} else {
		fmt.Fprintf(&b, "%s\t%s\n", ip, host)
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, ha := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, "\t"))
		}
	}
	return b.String()
}

// serviceEnv is the Docker-links style variables of services, as the kubelet sets them.
func serviceEnv(services []*corev1.Service) map[string]string {
	env := map[string]string{}
	for _, s := range services {
		ip := s.Spec.ClusterIP
		if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
			continue
		}
		name := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		env[name+"_SERVICE_HOST"] = ip
		env[name+"_SERVICE_PORT"] = fmt.Sprint(s.Spec.Ports[0].Port)
		first := s.Spec.Ports[0]
		env[name+"_PORT"] = fmt.Sprintf("%s://%s:%d", strings.ToLower(string(first.Protocol)), ip, first.Port)
		for _, p := range s.Spec.Ports {
			if p.Name != "" {
				env[name+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))] = fmt.Sprint(p.Port)
			}
			proto := strings.ToLower(string(p.Protocol))
			prefix := fmt.Sprintf("%s_PORT_%d_%s", name, p.Port, strings.ToUpper(proto))
			env[prefix] = fmt.Sprintf("%s://%s:%d", proto, ip, p.Port)
			env[prefix+"_PROTO"] = proto
			env[prefix+"_PORT"] = fmt.Sprint(p.Port)
			env[prefix+"_ADDR"] = ip
		}
	}
	return env
}

// fieldValue resolves a downward-API fieldRef.
func fieldValue(pod *corev1.Pod, path, hostIP string, ip netip.Addr) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs":
		return ip.String(), nil
	case "status.hostIP", "status.hostIPs":
		return hostIP, nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if k, ok := strings.CutPrefix(path, prefix+"['"); ok {
			return m[strings.TrimSuffix(k, "']")], nil
		}
	}
	return "", fmt.Errorf("%w: fieldRef %q is not supported", ErrContainerConfig, path)
}

// expand replaces $(VAR) with earlier variables, leaving unknown references as written
// and turning $$ into $, as the kubelet's expansion does: a reference runs from $( to
// the first ), and an incomplete one is kept as it is.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch next := s[i+1]; {
		case next == '$':
			b.WriteByte('$')
			i++
		case next == '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(") // incomplete: kept, and what follows read on
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
			b.WriteByte(next)
			i++
		}
	}
	return b.String()
}

// expandCommand is ctr with $(VAR) in its command and args replaced from its
// environment (env, "NAME=value"), as the kubelet does; $$ is a literal $.
func expandCommand(ctr *corev1.Container, env []string) *corev1.Container {
	vars := map[string]string{}
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	out := ctr.DeepCopy()
	for _, list := range [][]string{out.Command, out.Args} {
		for i := range list {
			list[i] = expand(list[i], vars)
		}
	}
	return out
}

// containerEnv is the container's environment: defaults, the image's, service links,
// then its env.
func (a *Agent) containerEnv(pod *corev1.Pod, ctr *corev1.Container, sb sandbox.Sandbox, imageEnv []string) ([]string, error) {
	vars := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": podHostname(pod)}
	for _, kv := range imageEnv { // the image's ENV, under the pod's
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	if pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks {
		for k, v := range serviceEnv(a.linkedServices(pod.Namespace)) {
			vars[k] = v
		}
	}
	order := []string{}
	for k := range vars {
		order = append(order, k)
	}
	sort.Strings(order)
	set := func(k, v string) {
		if _, seen := vars[k]; !seen {
			order = append(order, k)
		}
		vars[k] = v
	}
	for _, from := range ctr.EnvFrom {
		data, err := a.envSource(pod.Namespace, from)
		if err != nil {
			return nil, err
		}
		keys := slices.Sorted(maps.Keys(data))
		for _, k := range keys {
			set(from.Prefix+k, data[k])
		}
	}
	for _, e := range ctr.Env {
		v := expand(e.Value, vars)
		if f := e.ValueFrom; f != nil {
			var err error
			var ok bool
			switch {
			case f.FieldRef != nil:
				v, err = fieldValue(pod, f.FieldRef.FieldPath, a.nodeIP().String(), sb.IP)
				ok = true
			case f.ResourceFieldRef != nil:
				ref := *f.ResourceFieldRef
				if ref.ContainerName == "" {
					ref.ContainerName = ctr.Name
				}
				v, err = resourceValue(pod, &ref)
				ok = true
			case f.ConfigMapKeyRef != nil:
				r := f.ConfigMapKeyRef
				v, ok, err = a.envKey(pod.Namespace, "configmap", r.Name, r.Key, r.Optional)
			case f.SecretKeyRef != nil:
				r := f.SecretKeyRef
				v, ok, err = a.envKey(pod.Namespace, "secret", r.Name, r.Key, r.Optional)
			}
			if err != nil {
				return nil, err
			}
			if !ok {
				continue // optional, and missing
			}
		}
		set(e.Name, v)
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

// envSource is what an envFrom entry brings: a ConfigMap's or a Secret's keys.
func (a *Agent) envSource(ns string, from corev1.EnvFromSource) (map[string]string, error) {
	out := map[string]string{}
	switch {
	case from.ConfigMapRef != nil:
		cm, err := a.configMaps.ConfigMaps(ns).Get(from.ConfigMapRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(from.ConfigMapRef.Optional, false) {
				return out, nil
			}
			return nil, fmt.Errorf("%w: configmap %q not found", ErrContainerConfig, from.ConfigMapRef.Name)
		}
		maps.Copy(out, cm.Data)
	case from.SecretRef != nil:
		s, err := a.secrets.Secrets(ns).Get(from.SecretRef.Name)
		if err != nil {
			if apierrors.IsNotFound(err) && ptr.Deref(from.SecretRef.Optional, false) {
				return out, nil
			}
			return nil, fmt.Errorf("%w: secret %q not found", ErrContainerConfig, from.SecretRef.Name)
		}
		for k, v := range s.Data {
			out[k] = string(v)
		}
	}
	return out, nil
}

// envKey is one key of a ConfigMap or Secret for an env var; ok is false when it is
// missing and optional.
func (a *Agent) envKey(ns, kind, name, key string, optional *bool) (v string, ok bool, err error) {
	var data map[string]string
	if kind == "configmap" {
		cm, gerr := a.configMaps.ConfigMaps(ns).Get(name)
		err = gerr
		if cm != nil {
			data = cm.Data
		}
	} else {
		s, gerr := a.secrets.Secrets(ns).Get(name)
		err = gerr
		if s != nil {
			data = map[string]string{}
			for k, b := range s.Data {
				data[k] = string(b)
			}
		}
	}
	if err != nil {
		if apierrors.IsNotFound(err) && ptr.Deref(optional, false) {
			return "", false, nil
		}
		return "", false, fmt.Errorf("%w: %s %q not found", ErrContainerConfig, kind, name)
	}
	v, ok = data[key]
	if !ok && !ptr.Deref(optional, false) {
		return "", false, fmt.Errorf("%w: couldn't find key %s in %s %s/%s", ErrContainerConfig, key, map[string]string{"configmap": "ConfigMap", "secret": "Secret"}[kind], ns, name)
	}
	return v, ok, nil
}

// linkedServices lists the services whose links a pod in ns gets: its namespace's, and the
// kubernetes service.
func (a *Agent) linkedServices(ns string) []*corev1.Service {
	out, _ := a.services.Services(ns).List(labels.Everything())
	if ns != metav1.NamespaceDefault {
		if k, err := a.services.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			out = append(out, k)
		}
	}
	return out
}
