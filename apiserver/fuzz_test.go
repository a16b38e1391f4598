package apiserver

import (
	"net/netip"
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/minicluster/minicluster/store"
)

// FuzzDecodeBody drives the request-body path every create and update takes: decode
// (strict), then defaults and validation, and the manifest decoder the CLI uses. None
// may panic on any input.
func FuzzDecodeBody(f *testing.F) {
	reg := NewRegistry(&Allocator{ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12")})
	f.Add([]byte(svcJSON), uint8(2))
	f.Add([]byte(deployJSON), uint8(6))
	f.Add([]byte(podJSON("p", `{"a":"b"}`)), uint8(1))
	f.Add([]byte(`{"metadata":{"name":"x"},"spec":{"ports":[{"port":1,"targetPort":"http","nodePort":30000}],"type":"NodePort"}}`), uint8(2))
	f.Add([]byte(`{"addressType":"IPv4","endpoints":[{"addresses":["1.2.3.4"]}],"ports":[{"port":80}]}`), uint8(5))
	f.Add([]byte(`{"spec":{"selector":{"matchExpressions":[{"key":"a","operator":"In"}]}}}`), uint8(7))
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
