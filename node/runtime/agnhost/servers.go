package agnhost

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// testWebserver serves the container's files by their paths (agnhost test-webserver):
// the suite's DNS pods publish their results this way.
func testWebserver(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("test-webserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("port", 80, "port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	files := http.FileServer(http.Dir("/"))
	return serveOn(ctx, fmt.Sprintf(":%d", *port), nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		files.ServeHTTP(w, r)
	}))
}

// porter answers every request on each port its environment names with the
// variable's value (agnhost porter): SERVE_PORT_<n> over HTTP, SERVE_TLS_PORT_<n> over
// HTTPS with a certificate of its own for 127.0.0.1 and ::1; --json-response wraps the
// value as {"Method", "Body"}.
func porter(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("porter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json-response", false, "answer {\"Method\": ..., \"Body\": value}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	errc := make(chan error, 16)
	servers := 0
	for _, kv := range os.Environ() {
		key, value, _ := strings.Cut(kv, "=")
		var port string
		var cert *tls.Certificate
		switch {
		case strings.HasPrefix(key, "SERVE_PORT_"):
			port = strings.TrimPrefix(key, "SERVE_PORT_")
		case strings.HasPrefix(key, "SERVE_TLS_PORT_"):
			port = strings.TrimPrefix(key, "SERVE_TLS_PORT_")
			c, err := selfSigned()
			if err != nil {
				return err
			}
			cert = &c
		default:
			continue
		}
		answer := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if *asJSON {
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(struct{ Method, Body string }{r.Method, value})
				return
			}
			fmt.Fprint(w, value)
		})
		servers++
		go func() { errc <- serveOn(ctx, ":"+port, cert, answer) }()
	}
	if servers == 0 {
		<-ctx.Done()
		return nil
	}
	return <-errc
}

// serveOn serves h on addr (over TLS with cert, if set) until ctx ends.
func serveOn(ctx context.Context, addr string, cert *tls.Certificate, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// selfSigned makes a certificate for localhost's addresses.
func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
