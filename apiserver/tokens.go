package apiserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/minicluster/minicluster/store"
)

// ServiceAccount tokens, as kube-apiserver issues them: POST
// serviceaccounts/{name}/token returns a JWT (ES256, signed with <data dir>/sa.key)
// naming the account; the API accepts it as system:serviceaccount:<ns>:<name> while the
// account exists with that uid and the token has not expired. TokenReview asks the
// same question for others.

const saKeyFile = "sa.key"

// tokenIssuer signs and verifies service account tokens.
type tokenIssuer struct {
	once   sync.Once
	dir    string
	key    *ecdsa.PrivateKey
	signer jose.Signer
	err    error
	issuer string
}

type saClaims struct {
	jwt.Claims
	Kubernetes struct {
		Namespace      string       `json:"namespace"`
		ServiceAccount objectClaim  `json:"serviceaccount"`
		Pod            *objectClaim `json:"pod,omitempty"` // a token bound to a pod
	} `json:"kubernetes.io"`
}

type objectClaim struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

func (t *tokenIssuer) load() error {
	t.once.Do(func() {
		path := filepath.Join(t.dir, saKeyFile)
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			key, gerr := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if gerr != nil {
				t.err = gerr
				return
			}
			der, _ := x509.MarshalECPrivateKey(key)
			data = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
			err = os.WriteFile(path, data, 0o600)
		}
		if err != nil {
			t.err = err
			return
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.err = fmt.Errorf("%s: no PEM key", path)
			return
		}
		if t.key, t.err = x509.ParseECPrivateKey(block.Bytes); t.err != nil {
			return
		}
		t.signer, t.err = jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: t.key}, (&jose.SignerOptions{}).WithType("JWT"))
	})
	return t.err
}

func (t *tokenIssuer) issue(sa *corev1.ServiceAccount, pod *corev1.Pod, audiences []string, ttl time.Duration, now time.Time) (string, error) {
	if err := t.load(); err != nil {
		return "", err
	}
	c := saClaims{Claims: jwt.Claims{Issuer: t.issuer, Subject: serviceAccountUser(sa.Namespace, sa.Name), Audience: audiences,
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(ttl))}}
	c.Kubernetes.Namespace = sa.Namespace
	c.Kubernetes.ServiceAccount.Name, c.Kubernetes.ServiceAccount.UID = sa.Name, string(sa.UID)
	if pod != nil {
		c.Kubernetes.Pod = &objectClaim{Name: pod.Name, UID: string(pod.UID)}
	}
	return jwt.Signed(t.signer).Claims(c).Serialize()
}

func serviceAccountUser(ns, name string) string { return "system:serviceaccount:" + ns + ":" + name }

// authenticate returns who a service account token stands for, checking its signature,
// times and audience, and that the account still exists with the same uid.
func (a *API) authenticate(token string, now time.Time) (authenticationv1.UserInfo, error) {
	t := a.tokens
	if err := t.load(); err != nil {
		return authenticationv1.UserInfo{}, err
	}
	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return authenticationv1.UserInfo{}, err
	}
	var c saClaims
	if err := parsed.Claims(&t.key.PublicKey, &c); err != nil {
		return authenticationv1.UserInfo{}, err
	}
	// Only tokens meant for the API: a projected token for another audience is not one.
	if err := c.Claims.ValidateWithLeeway(jwt.Expected{Issuer: t.issuer, AnyAudience: jwt.Audience{t.issuer}, Time: now}, time.Minute); err != nil {
		return authenticationv1.UserInfo{}, err
	}
	sa := c.Kubernetes.ServiceAccount
	obj, err := a.Get(a.reg.Lookup("", "serviceaccounts"), c.Kubernetes.Namespace, sa.Name)
	if err != nil || string(obj.GetUID()) != sa.UID {
		return authenticationv1.UserInfo{}, fmt.Errorf("service account %s/%s has been deleted", c.Kubernetes.Namespace, sa.Name)
	}
	ns := c.Kubernetes.Namespace
	if p := c.Kubernetes.Pod; p != nil {
		obj, err := a.Get(a.reg.Lookup("", "pods"), ns, p.Name)
		if err != nil || string(obj.GetUID()) != p.UID {
			return authenticationv1.UserInfo{}, fmt.Errorf("pod %s/%s, to which the token is bound, has been deleted", ns, p.Name)
		}
	}
	return authenticationv1.UserInfo{Username: serviceAccountUser(ns, sa.Name), UID: sa.UID,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}, nil
}

// requestToken serves POST serviceaccounts/{name}/token.
func (h *handler) requestToken(w http.ResponseWriter, r *http.Request, req *request) {
	directive, data, err := readWrite(r, req)
	var tr authenticationv1.TokenRequest
	if err == nil && isProtobuf(r) {
		if _, _, perr := pbSerializer.Decode(data, nil, &tr); perr != nil {
			err = apierrors.NewBadRequest(fmt.Sprintf("invalid token request: %v", perr))
		}
	} else if err == nil {
		_, err = decodeInto(data, &tr, directive)
	}
	if err == nil {
		err = h.api.RequestToken(r.Context(), req.ns, req.name, &tr)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	writeObject(w, http.StatusCreated, &tr, req.out)
}

// RequestToken fills tr's status with a token for service account ns/name.
func (a *API) RequestToken(_ context.Context, ns, name string, tr *authenticationv1.TokenRequest) error {
	obj, err := a.Get(a.reg.Lookup("", "serviceaccounts"), ns, name)
	if err != nil {
		return err
	}
	secs := ptr.Deref(tr.Spec.ExpirationSeconds, 3600)
	if secs < 600 {
		return apierrors.NewInvalid(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest").GroupKind(), name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "expirationSeconds"), secs, "may not specify a duration less than 10 minutes")})
	}
	if len(tr.Spec.Audiences) == 0 {
		tr.Spec.Audiences = []string{a.tokens.issuer}
	}
	var pod *corev1.Pod
	if ref := tr.Spec.BoundObjectRef; ref != nil {
		if ref.Kind != "Pod" {
			return apierrors.NewInvalid(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest").GroupKind(), name, field.ErrorList{
				field.NotSupported(field.NewPath("spec", "boundObjectRef", "kind"), ref.Kind, []string{"Pod"})})
		}
		p, err := a.Get(a.reg.Lookup("", "pods"), ns, ref.Name)
		if err != nil {
			return err
		}
		if ref.UID != "" && p.GetUID() != ref.UID {
			return apierrors.NewConflict(corev1.Resource("pods"), ref.Name, fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
		}
		pod = p.(*corev1.Pod)
	}
	now := time.Now()
	token, err := a.tokens.issue(obj.(*corev1.ServiceAccount), pod, tr.Spec.Audiences, time.Duration(secs)*time.Second, now)
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	tr.TypeMeta = metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "TokenRequest"}
	tr.Name, tr.Namespace, tr.CreationTimestamp = name, ns, metav1.NewTime(now.Truncate(time.Second))
	tr.Spec.ExpirationSeconds = ptr.To(secs)
	tr.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(now.Add(time.Duration(secs) * time.Second).Truncate(time.Second))}
	return nil
}

// reviewToken answers a TokenReview: is this token someone, and who.
func reviewToken(_ context.Context, a *API, obj store.Object) {
	tr := obj.(*authenticationv1.TokenReview)
	u, err := a.authenticate(tr.Spec.Token, time.Now())
	if err != nil {
		tr.Status = authenticationv1.TokenReviewStatus{Error: err.Error()}
		return
	}
	tr.Status = authenticationv1.TokenReviewStatus{Authenticated: true, User: u, Audiences: tr.Spec.Audiences}
}
