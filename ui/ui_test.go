package ui

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

func newUI(t *testing.T) *UI {
	t.Helper()
	f := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	u, err := New(Config{Services: f.Core().V1().Services(), Slices: f.Discovery().V1().EndpointSlices(), Pods: f.Core().V1().Pods(), ClusterDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A login code works once; the session it gives lets GETs in, nothing else.
func TestLogin(t *testing.T) {
	u := newUI(t)
	code := u.NewLoginCode()
	login := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		u.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ui/login?code="+code, nil))
		return w
	}
	first := login()
	if first.Code != http.StatusFound || first.Header().Get("Location") != "/ui/" {
		t.Fatalf("login: %d %v", first.Code, first.Header())
	}
	cookies := first.Result().Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie: %+v", cookies)
	}
	if again := login(); again.Code != http.StatusUnauthorized {
		t.Errorf("the code worked twice: %d", again.Code)
	}
	for method, want := range map[string]bool{http.MethodGet: true, http.MethodPost: false, http.MethodDelete: false} {
		r := httptest.NewRequest(method, "/ui/events", nil)
		r.AddCookie(cookies[0])
		if got := u.Authorized(r); got != want {
			t.Errorf("%s with the session: authorized %v, want %v", method, got, want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "/ui/", nil)
	r.AddCookie(&http.Cookie{Name: cookieName, Value: "forged"})
	if u.Authorized(r) {
		t.Error("a forged session got in")
	}
}

// The page is one document: its style and script inlined, so it opens its event
// stream as soon as it arrives.
func TestPageInlined(t *testing.T) {
	u := newUI(t)
	w := httptest.NewRecorder()
	u.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ui/", nil))
	body := w.Body.String()
	if w.Code != 200 || !strings.Contains(body, `new EventSource("events")`) || !strings.Contains(body, "#search {") || strings.Contains(body, "/*app.js*/") {
		t.Errorf("page: %d\n%.300s", w.Code, body)
	}
}
