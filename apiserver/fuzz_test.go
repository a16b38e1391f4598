package apiserver

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/minicluster/minicluster/store"
)

// FuzzDecodeBody drives the request-body path every create and update takes: decode
// (strict), then defaults and validation, and the manifest decoder the CLI uses. None
// may panic on any input.
func FuzzDecodeBody(f *testing.F) {
	reg := NewRegistry(&Allocator{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")})
	at := func(group, plural string) uint8 {
		for i, r := range reg.Resources() {
			if r.Group == group && r.Plural == plural {
				return uint8(i)
			}
		}
		f.Fatalf("no %s.%s", plural, group)
		return 0
	}
	f.Add([]byte(svcJSON), at("", "services"))
	f.Add([]byte(deployJSON), at("apps", "deployments"))
	f.Add([]byte(podJSON("p", `{"a":"b"}`)), at("", "pods"))
	f.Add([]byte(`{"metadata":{"name":"x"},"spec":{"ports":[{"port":1,"targetPort":"http","nodePort":30000}],"type":"NodePort"}}`), at("", "services"))
	f.Add([]byte(`{"addressType":"IPv4","endpoints":[{"addresses":["1.2.3.4"]}],"ports":[{"port":80}]}`), at("discovery.k8s.io", "endpointslices"))
	f.Add([]byte(`{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"In"}]}}}`), at("apps", "replicasets"))
	f.Add([]byte(`{"metadata":{"name":"s"},"type":"kubernetes.io/tls","stringData":{"tls.crt":"x"},"data":{"a b":"eA=="}}`), at("", "secrets"))
	f.Add([]byte(`{"metadata":{"name":"c"},"data":{"k":"v"},"binaryData":{"k":"AA=="},"immutable":true}`), at("", "configmaps"))
	f.Add([]byte(`{"metadata":{"name":"j"},"spec":{"completions":2,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}`), at("batch", "jobs"))
	f.Add([]byte(`{"metadata":{"name":"cj"},"spec":{"schedule":"*/1 * * * *","timeZone":"Mars/Olympus","jobTemplate":{"spec":{}}}}`), at("batch", "cronjobs"))
	f.Add([]byte(`{"metadata":{"name":"e"},"eventTime":"2026-12-05T10:00:00.000000Z","regarding":{"kind":"Pod"},"series":{"count":2}}`), at("events.k8s.io", "events"))
	f.Add([]byte(`{"spec":{"resourceAttributes":{"verb":"get"},"nonResourceAttributes":{"path":"/"}}}`), at("authorization.k8s.io", "selfsubjectaccessreviews"))
	f.Add([]byte(`{"metadata":{"name":"b"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"Role","name":"r"},"subjects":[{"kind":"Robot"}]}`), at("rbac.authorization.k8s.io", "rolebindings"))
	f.Add([]byte(`{"metadata":{"name":"v"},"spec":{"containers":[{"name":"c","image":"b","volumeMounts":[{"name":"x","mountPath":"/x","subPath":"../a"}]}],`+
		`"ephemeralContainers":[{"name":"d","image":"b","targetContainerName":"zz"}],"volumes":[{"name":"x","configMap":{"items":[{"key":"k","path":"/p","mode":-1}]}},`+
		`{"name":"y","projected":{"sources":[{"serviceAccountToken":{"path":"t"}},{"downwardAPI":{"items":[{"path":"l","resourceFieldRef":{"resource":"limits.cpu"}}]}}]}},{"name":"z"}]}}`), at("", "pods"))
	f.Add([]byte(`{"metadata":{"name":"w"},"spec":{"serviceName":"w","selector":{"matchLabels":{"a":"b"}},"template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"b","volumeMounts":[{"name":"data","mountPath":"/d"}]}]}},`+
		`"volumeClaimTemplates":[{"metadata":{"name":"data"},"spec":{"accessModes":["ReadWriteOnce"],"resources":{"requests":{"storage":"1Gi"}}}}]}}`), at("apps", "statefulsets"))
	f.Add([]byte(`{"metadata":{"name":"sc"},"provisioner":"","reclaimPolicy":"Recycle"}`), at("storage.k8s.io", "storageclasses"))
	f.Add([]byte(`{"metadata":{"name":"pvc"},"spec":{"accessModes":[],"resources":{"requests":{"storage":"-1"}},"volumeName":"v"}}`), at("", "persistentvolumeclaims"))
	f.Add([]byte(`{"metadata":{"name":"j"},"spec":{"completions":3,"completionMode":"Indexed","podFailurePolicy":{"rules":[{"action":"Nope","onExitCodes":{"operator":"In","values":[]}}]},"template":{"spec":{"restartPolicy":"OnFailure","containers":[{"name":"c","image":"b"}]}}}}`), at("batch", "jobs"))
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		res := reg.Resources()
		r := res[int(which)%len(res)]
		obj, _, err := decodeObject(data, which&0x80 != 0, r, validationStrict)
		if err == nil {
			prepareCreate(r, obj)
			if r.validate != nil {
				r.validate(obj, nil)
				r.validate(obj, obj.DeepCopyObject().(store.Object))
			}
			r.Table([]store.Object{obj}, true, "")
			applyPatch(types.StrategicMergePatchType, data, data, r.New())
		}
		reg.Decode(data)
	})
}

// FuzzPatch: every patch type the API accepts, applied to a live object, never panics.
func FuzzPatch(f *testing.F) {
	reg := NewRegistry(&Allocator{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")})
	f.Add([]byte(deployJSON), []byte(`{"spec":{"replicas":5}}`), uint8(0))
	f.Add([]byte(deployJSON), []byte(`[{"op":"replace","path":"/spec/replicas","value":2},{"op":"remove","path":"/metadata/labels"}]`), uint8(1))
	f.Add([]byte(svcJSON), []byte(`{"spec":{"ports":[{"port":81,"$patch":"delete"}],"$setElementOrder/ports":[{"port":80}]}}`), uint8(2))
	f.Add([]byte(podJSON("p", `{"a":"b"}`)), []byte(`{"metadata":{"labels":{"a":null}},"spec":{"containers":[{"name":"c","$patch":"replace"}]}}`), uint8(3))
	types := []types.PatchType{types.MergePatchType, types.JSONPatchType, types.StrategicMergePatchType, types.ApplyYAMLPatchType}
	f.Fuzz(func(t *testing.T, cur, patch []byte, which uint8) {
		res := reg.Resources()
		r := res[int(which/4)%len(res)]
		applyPatch(types[int(which)%len(types)], cur, patch, r.New())
	})
}

// FuzzSelector: label and field selectors as lists and watches parse and match them.
func FuzzSelector(f *testing.F) {
	reg := NewRegistry(&Allocator{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")})
	for _, s := range []string{"app=backend,tier!=db", "a in (x,y),!b", "metadata.name=p,status.phase!=Running", "x notin (a),y", "=", "a==b,,", "spec.nodeName"} {
		f.Add(s, uint8(1))
	}
	f.Fuzz(func(t *testing.T, s string, which uint8) {
		res := reg.Resources()
		r := res[int(which)%len(res)]
		for _, q := range []string{"labelSelector", "fieldSelector"} {
			req := &request{res: r, query: url.Values{q: {s}}}
			sel, err := (&handler{}).selector(req)
			if err == nil {
				obj := r.New()
				obj.SetLabels(map[string]string{"app": "backend", s: s})
				sel.Matches(r, obj)
			}
		}
	})
}

// What FuzzPatch found: a patch that panics json-patch is a 400, and changes nothing.
func TestPatchThatPanicsTheLibrary(t *testing.T) {
	s := newTestServer(t)
	if r := s.do(t, "POST", "/apis/apps/v1/namespaces/default/deployments", jsonCT, deployJSON); r.code != 201 {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	r := s.do(t, "PATCH", "/apis/apps/v1/namespaces/default/deployments/web", "application/json-patch+json", `[{"op":"replace","path":""}]`)
	if r.code != 400 || !strings.Contains(string(r.body), `"kind":"Status"`) {
		t.Errorf("patch: %d %s", r.code, r.body)
	}
	if r := s.do(t, "GET", "/apis/apps/v1/namespaces/default/deployments/web", "", ""); r.code != 200 || !strings.Contains(string(r.body), `"replicas":2`) {
		t.Errorf("after: %d %s", r.code, r.body)
	}
}
