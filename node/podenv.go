package node

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/minicluster/minicluster/node/sandbox"
)

// ErrContainerConfig means a container's settings cannot be honoured (the kubelet's
// CreateContainerConfigError).
var ErrContainerConfig = errors.New("container configuration")

// podHosts renders /etc/hosts as the kubelet does.
func podHosts(pod *corev1.Pod, ip netip.Addr, domain string) string {
	var b strings.Builder
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

// expand replaces $(VAR) with earlier variables, leaving unknown references and
// turning $$ into $, as Kubernetes does.
func expand(s string, vars map[string]string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case strings.HasPrefix(s[i:], "$$"):
			b.WriteByte('$')
			i++
		case strings.HasPrefix(s[i:], "$("):
			end := strings.IndexByte(s[i:], ')')
			if v, ok := vars[s[i+2:i+max(end, 2)]]; end > 2 && ok {
				b.WriteString(v)
				i += end
				continue
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
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

// containerEnv is the container's environment: defaults, service links, then its env.
func (a *Agent) containerEnv(pod *corev1.Pod, ctr *corev1.Container, sb sandbox.Sandbox) ([]string, error) {
	vars := map[string]string{"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME": podHostname(pod)}
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
	for _, e := range ctr.Env {
		v := expand(e.Value, vars)
		if f := e.ValueFrom; f != nil {
			if f.FieldRef == nil {
				return nil, fmt.Errorf("%w: env %s: only valueFrom.fieldRef is supported", ErrContainerConfig, e.Name)
			}
			var err error
			if v, err = fieldValue(pod, f.FieldRef.FieldPath, a.nodeIP().String(), sb.IP); err != nil {
				return nil, err
			}
		}
		if _, seen := vars[e.Name]; !seen {
			order = append(order, e.Name)
		}
		vars[e.Name] = v
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
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
