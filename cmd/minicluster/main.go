// Command minicluster is the daemon (serve) and its command-line client.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/minicluster/minicluster/node/runtime/agnhost"
	"github.com/minicluster/minicluster/node/runtime/shim"
)

const usage = `minicluster turns one Linux host into a small Kubernetes-style cluster.

Usage:
  minicluster serve [flags]                 run the daemon
  minicluster apply -f FILE|DIR|-           create or update objects from manifests
  minicluster get TYPE[,TYPE] [NAME...]     list or show objects
  minicluster describe TYPE [NAME...] [-l SELECTOR]   show objects in detail, with their events
  minicluster delete -f FILE | TYPE NAME... delete objects
  minicluster logs [-f] [-c C] [--tail N] [--previous] POD|TYPE/NAME|-l SELECTOR   print containers' logs
  minicluster exec [-i] [-t] [-c C] POD|TYPE/NAME -- COMMAND [ARGS...]   run a command in a container
  minicluster explain [--from POD] [-o json] NAME|svc/NAME|IP[:PORT]|NODE:NODEPORT
                                            the path a connection from a pod takes, from live state
  minicluster ui                            a one-time login link to the live topology page
  minicluster version                       show client and server versions
  minicluster images [list|pull REF|import FILE|rm REF]   the node's image store (root)
  minicluster cleanup [--instance mc]       remove the instance's bridge, veths and pod netns
  minicluster backup FILE                   copy the running daemon's database to FILE
  minicluster restore [--data-dir D] FILE   put a backup in place of a stopped daemon's database

Client flags (before or after the subcommand): --kubeconfig, --data-dir, -n/--namespace.
Run "minicluster COMMAND -h" for a command's flags.
`

func main() {
	if code, ok := shim.AsAgnhost(); ok { // the /agnhost of a built-in image's container
		os.Exit(code)
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd, rest := splitCommand(args)
	var err error
	switch cmd {
	case "serve":
		err = serve(rest, stderr)
	case "cleanup":
		err = cleanup(rest, stderr)
	case "images":
		err = imagesCommand(rest, stdout, stderr)
	case "restore":
		err = restore(rest, stdout, stderr)
	case "agnhost": // built-in image registry.k8s.io/e2e-test-images/agnhost
		return agnhost.Main(args[1:], stderr)
	case "pause": // built-in image registry.k8s.io/pause
		return agnhost.Main([]string{"pause"}, stderr)
	case "shim": // started by the node agent for each container
		return shim.Main(args[1:], stderr)
	case "apply", "get", "describe", "delete", "logs", "exec", "version", "backup", "explain", "ui":
		var c *client
		var cmdArgs []string
		if c, cmdArgs, err = newClientFromArgs(rest); err == nil {
			c.stdin, c.stdout, c.stderr = stdin, stdout, stderr
			err = c.runCommand(cmd, cmdArgs)
		}
	case "", "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		err = fmt.Errorf("unknown command %q for \"minicluster\"", cmd)
	}
	if err == nil {
		return 0
	}
	var code exitCode
	if errors.As(err, &code) {
		return int(code)
	}
	if err != errReported {
		fmt.Fprintf(stderr, "error: %v\n", err)
	}
	return 1
}

// splitCommand finds the subcommand, letting client flags come before it.
func splitCommand(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if len(a) > 0 && a[0] != '-' {
			return a, append(append([]string{}, args[:i]...), args[i+1:]...)
		}
		if takesValue(a) {
			i++
		}
	}
	return "", args
}

// takesValue reports whether a global flag given without "=" consumes the next argument.
func takesValue(flag string) bool {
	switch flag {
	case "--kubeconfig", "-kubeconfig", "--data-dir", "-data-dir", "-n", "--namespace":
		return true
	}
	return false
}
