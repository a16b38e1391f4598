package shim

import (
	"slices"
	"testing"
)

func TestCapabilities(t *testing.T) {
	for _, c := range []struct {
		name       string
		add, drop  []string
		privileged bool
		want       []string
		wantErr    bool
	}{
		{name: "default", want: DefaultCaps},
		{name: "add one", add: []string{"NET_ADMIN"}, want: append(slices.Clone(DefaultCaps), "NET_ADMIN")},
		{name: "CAP_ prefix and case", add: []string{"cap_sys_time"}, want: append(slices.Clone(DefaultCaps), "SYS_TIME")},
		{name: "add a default one again", add: []string{"CHOWN"}, want: DefaultCaps},
		{name: "drop one", drop: []string{"NET_RAW"}, want: slices.DeleteFunc(slices.Clone(DefaultCaps), func(c string) bool { return c == "NET_RAW" })},
		{name: "drop all, add one", drop: []string{"ALL"}, add: []string{"NET_BIND_SERVICE"}, want: []string{"NET_BIND_SERVICE"}},
		{name: "drop all", drop: []string{"all"}, want: []string{}},
		{name: "add all", add: []string{"ALL"}, want: capNames},
		{name: "privileged", privileged: true, drop: []string{"ALL"}, want: capNames},
		{name: "unknown", add: []string{"NET_WIZARD"}, wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Capabilities(c.add, c.drop, c.privileged)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if !c.wantErr && (!slices.Equal(got, c.want) || got == nil) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
}
