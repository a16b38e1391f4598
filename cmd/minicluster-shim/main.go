// Command minicluster-shim is the container shim alone (what `minicluster shim` runs),
// built small: it links none of the daemon's packages, so each container's shim starts
// in ~3 ms and holds ~2 MiB less than one started from the daemon's binary. The daemon
// uses it when it lies beside the minicluster binary.
package main

import (
	"os"

	"github.com/minicluster/minicluster/node/runtime/shim"
)

func main() {
	if code, ok := shim.AsAgnhost(); ok { // the /agnhost of a built-in image's container
		os.Exit(code)
	}
	os.Exit(shim.Main(os.Args[1:], os.Stderr))
}
