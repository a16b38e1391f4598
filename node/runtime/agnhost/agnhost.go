// Package agnhost is minicluster's built-in stand-in for Kubernetes' e2e test image
// registry.k8s.io/e2e-test-images/agnhost: the subcommands networking tests use
// (netexec, serve-hostname, pause), with the same flags and replies, served by the
// minicluster binary itself since nothing is pulled.
package agnhost

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Main runs one agnhost subcommand and returns its exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: agnhost netexec|serve-hostname|pause|test-webserver|porter|dns-suffix|dns-server-list [flags]")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	// /exit?code=N ends the server and Main returns N (no os.Exit: Main may run inside
	// the container shim, which must still record the exit).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	exitCode := -1
	var err error
	switch args[0] {
	case "netexec":
		err = netexec(ctx, args[1:], stderr, func(code int) { exitCode = code; cancel() })
	case "serve-hostname":
		err = serveHostname(ctx, args[1:], stderr)
	case "pause":
		<-ctx.Done()
	case "test-webserver":
		err = testWebserver(ctx, args[1:], stderr)
	case "porter":
		err = porter(ctx, args[1:], stderr)
	case "dns-suffix", "dns-server-list":
		// The search domains, or the name servers, of /etc/resolv.conf, comma-separated,
		// as agnhost prints them.
		var list []string
		list, err = resolvConf(map[string]string{"dns-suffix": "search", "dns-server-list": "nameserver"}[args[0]])
		fmt.Print(strings.Join(list, ","))
	default:
		err = fmt.Errorf("unknown agnhost subcommand %q (built in: netexec, serve-hostname, pause, test-webserver, porter, dns-suffix, dns-server-list)", args[0])
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if exitCode >= 0 {
		return exitCode
	}
	return 0
}

// resolvConf returns the values of the /etc/resolv.conf lines starting with key.
func resolvConf(key string) ([]string, error) {
	data, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == key {
			out = append(out, f[1:]...)
		}
	}
	return out, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// NetexecHandler serves netexec's HTTP endpoints; /exit calls exit with the code.
func NetexecHandler(exit func(int)) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, "NOW: %v", time.Now())
	})
	mux.HandleFunc("/hostname", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, hostname()) })
	mux.HandleFunc("/hostName", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, hostname()) })
	mux.HandleFunc("/clientip", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.RemoteAddr) })
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.FormValue("msg")) })
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	mux.HandleFunc("/header", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, r.Header.Get(r.FormValue("key"))) })
	mux.HandleFunc("/shell", func(w http.ResponseWriter, r *http.Request) {
		out, err := exec.CommandContext(r.Context(), "/bin/sh", "-c", r.FormValue("cmd")).CombinedOutput()
		reply := map[string]string{"output": string(out)}
		if err != nil {
			reply["error"] = err.Error()
		}
		json.NewEncoder(w).Encode(reply)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.FormValue("code"))
		w.WriteHeader(http.StatusOK)
		exit(code)
	})
	return mux
}

// udpReply answers netexec's UDP commands: "hostname", "echo <msg>", "clientip".
func udpReply(msg string, from net.Addr) string {
	cmd, rest, _ := strings.Cut(strings.TrimSpace(msg), " ")
	switch cmd {
	case "hostname", "hostName":
		return hostname()
	case "echo":
		return rest
	case "clientip":
		return from.String()
	}
	return "unknown command " + cmd
}

func netexec(ctx context.Context, args []string, stderr io.Writer, exit func(int)) error {
	fs := flag.NewFlagSet("netexec", flag.ContinueOnError)
	fs.SetOutput(stderr)
	httpPort := fs.Int("http-port", 8080, "HTTP port")
	udpPort := fs.Int("udp-port", 8081, "UDP port (-1 to disable)")
	fs.Int("sctp-port", -1, "SCTP port (not served)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logf := log.New(stderr, "", log.LstdFlags).Printf
	if *udpPort > 0 {
		pc, err := net.ListenPacket("udp", fmt.Sprintf(":%d", *udpPort))
		if err != nil {
			return err
		}
		defer pc.Close()
		go serveUDP(pc, udpReply)
		logf("Started UDP server on port %d", *udpPort)
	}
	logf("Started HTTP server on port %d", *httpPort)
	h := NetexecHandler(exit)
	// Requests are logged as agnhost does, so `kubectl logs` shows the traffic; probes
	// of /healthz are not.
	logged := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			logf("%s %s", r.Method, r.URL.Path)
		}
		h.ServeHTTP(w, r)
	})
	return serveHTTP(ctx, fmt.Sprintf(":%d", *httpPort), logged, false)
}

func serveUDP(pc net.PacketConn, reply func(string, net.Addr) string) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo([]byte(reply(string(buf[:n]), from)), from)
	}
}

func serveHTTP(ctx context.Context, addr string, h http.Handler, closeEach bool) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	srv.SetKeepAlivesEnabled(!closeEach)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	return srv.ListenAndServe()
}

func serveHostname(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve-hostname", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tcp := fs.Bool("tcp", false, "serve raw over TCP")
	udp := fs.Bool("udp", false, "serve raw over UDP")
	serveHTTPFlag := fs.Bool("http", true, "serve HTTP")
	closeEach := fs.Bool("close", false, "close the connection after each HTTP request")
	port := fs.Int("port", 9376, "port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *serveHTTPFlag && (*tcp || *udp) {
		return errors.New("can't serve HTTP and TCP/UDP at the same time")
	}
	addr := fmt.Sprintf(":%d", *port)
	if *udp {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		defer pc.Close()
		go serveUDP(pc, func(string, net.Addr) string { return hostname() })
	}
	if *tcp {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(hostname()))
				c.Close()
			}
		}()
	}
	if *serveHTTPFlag {
		return serveHTTP(ctx, addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, hostname()) }), *closeEach)
	}
	<-ctx.Done()
	return nil
}
