package sysctl

import "testing"

func TestSysctls(t *testing.T) {
	for _, c := range []struct {
		name      string
		valid     bool
		ns        Namespace
		path      string
		forbidden string // with neither host namespace
	}{
		{"kernel.shm_rmid_forced", true, IPC, "/proc/sys/kernel/shm_rmid_forced", ""},
		{"kernel/shm_rmid_forced", true, IPC, "/proc/sys/kernel/shm_rmid_forced", ""},
		{"kernel.msgmax", true, IPC, "/proc/sys/kernel/msgmax", `"kernel.msgmax" not allowlisted`},
		{"fs.mqueue.msg_max", true, IPC, "/proc/sys/fs/mqueue/msg_max", `"fs.mqueue.msg_max" not allowlisted`},
		{"net.ipv4.ip_local_port_range", true, Net, "/proc/sys/net/ipv4/ip_local_port_range", ""},
		{"net/ipv4/conf/eth0.100/rp_filter", true, Net, "/proc/sys/net/ipv4/conf/eth0.100/rp_filter", `"net.ipv4.conf.eth0/100.rp_filter" not allowlisted`},
		{"kernel.hostname", true, Unknown, "/proc/sys/kernel/hostname", `"kernel.hostname" not allowlisted`},
		{"foo-", false, Unknown, "", ""},
		{"bar..", false, Unknown, "", ""},
	} {
		if got := ValidName(c.name); got != c.valid {
			t.Errorf("ValidName(%q) = %v", c.name, got)
		}
		if !c.valid {
			continue
		}
		if got := NamespaceOf(c.name); got != c.ns {
			t.Errorf("NamespaceOf(%q) = %q, want %q", c.name, got, c.ns)
		}
		if got := Path(c.name); got != c.path {
			t.Errorf("Path(%q) = %q, want %q", c.name, got, c.path)
		}
		err := Forbidden(c.name, false, false)
		if (err == nil) != (c.forbidden == "") || err != nil && err.Error() != c.forbidden {
			t.Errorf("Forbidden(%q) = %v, want %q", c.name, err, c.forbidden)
		}
	}
	if err := Forbidden("kernel.shm_rmid_forced", false, true); err == nil {
		t.Error("an IPC sysctl with hostIPC must be forbidden")
	}
	if err := Forbidden("net.ipv4.tcp_syncookies", true, false); err == nil {
		t.Error("a net sysctl with hostNetwork must be forbidden")
	}
}
