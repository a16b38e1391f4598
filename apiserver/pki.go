package apiserver

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/renameio/v2"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Files in the data dir; every one is 0600.
const (
	CACertFile     = "ca.crt"
	caKeyFile      = "ca.key"
	servingCert    = "apiserver.crt"
	servingKey     = "apiserver.key"
	tokenFile      = "token"
	KubeconfigFile = "kubeconfig"
)

type credentials struct {
	cert  tls.Certificate
	token string
}

// ensureCredentials creates, when missing, a CA, a serving certificate for the API's
// addresses and a bearer token, then (re)writes the kubeconfig.
func ensureCredentials(cfg Config) (*credentials, error) {
	dir := cfg.DataDir
	caCert, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := loadOrCreateServing(dir, cfg, caCert, caKey)
	if err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	token, err := loadOrCreateToken(filepath.Join(dir, tokenFile))
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	if err := writeKubeconfig(cfg, caCert, token); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return &credentials{cert: cert, token: token}, nil
}

// writeSecret replaces path with data atomically, 0600 whatever the file had before.
func writeSecret(path string, data []byte) error {
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o600), renameio.WithTempDir(filepath.Dir(path)))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	return f.CloseAtomicallyReplace()
}

func newKey() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, caKeyFile)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if key, ok := pair.PrivateKey.(*ecdsa.PrivateKey); ok && pair.Leaf.NotAfter.After(time.Now()) {
			return pair.Leaf, key, nil
		}
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "minicluster-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeSecret(keyPath, keyPEM); err != nil {
		return nil, nil, err
	}
	if err := writeSecret(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// servingNames are the names and addresses the serving certificate must cover.
func servingNames(cfg Config) ([]string, []net.IP) {
	dns := []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain}
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback, nthAddr(cfg.ServiceCIDR, 0).AsSlice()}
	if cfg.PodAddr.IsValid() {
		ips = append(ips, cfg.PodAddr.AsSlice())
	}
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		if ip := net.ParseIP(host); ip != nil {
			ips = append(ips, ip)
		} else if host != "" {
			dns = append(dns, host)
		}
	}
	return dns, ips
}

func covers(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if cert.VerifyHostname(d) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if ip.IsUnspecified() {
			continue
		}
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

func loadOrCreateServing(dir string, cfg Config, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, servingCert), filepath.Join(dir, servingKey)
	dns, ips := servingNames(cfg)
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if pair.Leaf.NotAfter.After(time.Now().Add(24*time.Hour)) && covers(pair.Leaf, dns, ips) &&
			pair.Leaf.CheckSignatureFrom(ca) == nil {
			return pair, nil
		}
	}
	key, keyPEM, err := newKey()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: serial(), Subject: pkix.Name{CommonName: "minicluster-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: dns, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := writeSecret(keyPath, keyPEM); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeSecret(certPath, certPEM); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

func loadOrCreateToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err == nil && len(strings.TrimSpace(string(data))) >= 32 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	token := hex.EncodeToString(b)
	return token, writeSecret(path, []byte(token+"\n"))
}

func writeKubeconfig(cfg Config, ca *x509.Certificate, token string) error {
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	kc := clientcmdapi.NewConfig()
	kc.Clusters["minicluster"] = &clientcmdapi.Cluster{Server: "https://" + net.JoinHostPort(host, port),
		CertificateAuthorityData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw})}
	kc.AuthInfos["minicluster-admin"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["minicluster"] = &clientcmdapi.Context{Cluster: "minicluster", AuthInfo: "minicluster-admin", Namespace: "default"}
	kc.CurrentContext = "minicluster"
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	return writeSecret(filepath.Join(cfg.DataDir, KubeconfigFile), data)
}
