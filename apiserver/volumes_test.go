package apiserver

import (
	"testing"
)

// Pod volumes: defaulted and checked as kube-apiserver does, and the ServiceAccount
// admission mounts the token volume into every container.
func TestPodVolumesValidation(t *testing.T) {
	s := newTestServer(t)
	pod := func(name, volumes, mounts string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{"containers":[{"name":"c","image":"busybox","volumeMounts":` + mounts + `}],"volumes":` + volumes + `}}`
	}
	runSteps(t, s, []step{
		{name: "defaults and the token volume", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 201,
			body: pod("ok", `[{"name":"cfg","configMap":{"name":"x"}},{"name":"plain"}]`, `[{"name":"cfg","mountPath":"/etc/cfg"}]`),
			check: func(t *testing.T, r response) {
				o := r.object()
				if m := get(o, "spec", "volumes", 0, "configMap", "defaultMode"); m != float64(0o644) {
					t.Errorf("configMap defaultMode %v", m)
				}
				if e := get(o, "spec", "volumes", 1, "emptyDir"); e == nil {
					t.Errorf("a volume of no type is not an emptyDir: %v", get(o, "spec", "volumes", 1))
				}
				if p := get(o, "spec", "containers", 0, "volumeMounts", 1, "mountPath"); p != serviceAccountMountPath {
					t.Errorf("token mount %v", p)
				}
				if src := get(o, "spec", "volumes", 2, "projected", "sources", 0, "serviceAccountToken", "expirationSeconds"); src != float64(3607) {
					t.Errorf("token projection %v", src)
				}
			}},
		{name: "a mount of no volume", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body: pod("a", `[]`, `[{"name":"ghost","mountPath":"/g"}]`), check: wantCauses("spec.containers[0].volumeMounts[0].name")},
		{name: "two paths alike", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body:  pod("b", `[{"name":"v"}]`, `[{"name":"v","mountPath":"/d"},{"name":"v","mountPath":"/d"}]`),
			check: wantCauses("spec.containers[0].volumeMounts[1].mountPath")},
		{name: "duplicate volume", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body: pod("c", `[{"name":"v"},{"name":"v"}]`, `[]`), check: wantCauses("spec.volumes[1].name")},
		{name: "two types", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body: pod("d", `[{"name":"v","emptyDir":{},"hostPath":{"path":"/x"}}]`, `[]`), check: wantCauses("spec.volumes[0].hostPath")},
		{name: "item path out of the volume", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body:  pod("e", `[{"name":"v","secret":{"secretName":"s","items":[{"key":"k","path":"a/../../b"}]}}]`, `[]`),
			check: wantCauses("spec.volumes[0].secret.items[0].path")},
		{name: "subPath out of the volume", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body: pod("f", `[{"name":"v"}]`, `[{"name":"v","mountPath":"/v","subPath":"/etc"}]`), check: wantCauses("spec.containers[0].volumeMounts[0].subPath")},
		{name: "a bad hostPath type", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body: pod("g", `[{"name":"v","hostPath":{"path":"/x","type":"Folder"}}]`, `[]`), check: wantCauses("spec.volumes[0].hostPath.type")},
		{name: "a short token", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 422,
			body:  pod("h", `[{"name":"v","projected":{"sources":[{"serviceAccountToken":{"path":"t","expirationSeconds":60}}]}}]`, `[]`),
			check: wantCauses("spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds")},
		{name: "no automount", method: "POST", path: podsPath, contentType: jsonCT, wantCode: 201,
			body: `{"metadata":{"name":"quiet"},"spec":{"automountServiceAccountToken":false,"containers":[{"name":"c","image":"busybox"}]}}`,
			check: func(t *testing.T, r response) {
				if v := get(r.object(), "spec", "volumes"); v != nil {
					t.Errorf("volumes %v", v)
				}
			}},
	})
}
