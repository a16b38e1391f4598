// Package sandbox is the node's pod networking, as a CNI bridge plugin with host-local
// IPAM would do it: the node bridge with the pod CIDR's first address, one network
// namespace per pod (<instance>_<namespace>_<pod>) holding eth0 on a veth pair to the
// bridge, an address from the pod CIDR, masquerading of pod egress, and the repair of
// what was removed behind the daemon's back. Everything it creates carries the
// instance name, so it can adopt it after a restart and remove it on cleanup. It knows
// nothing of the API.
package sandbox
