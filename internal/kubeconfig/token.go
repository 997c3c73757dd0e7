package kubeconfig

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// TokenCheckInterval is how often a followed kubeconfig is read again for its token.
const TokenCheckInterval = 30 * time.Second

// FollowedRESTConfig is RESTConfig for a long-running command: when the context
// authenticates with a token written into the kubeconfig itself (as the broker credential
// strait join stores, which the member's agent renews in its Secret), every request
// carries the token the kubeconfig holds now, read again at most every
// TokenCheckInterval and at once after the API server answers 401. So a Secret
// mounted as a file (which the kubelet updates in place) reaches a running client
// without a restart. A kubeconfig that can no longer be read, or whose context lost its
// token, is logged and the last good token kept. Only the token is followed: a changed
// server or CA needs a restart. Other kinds of authentication (token files, exec plugins,
// client certificates) are left to client-go, which already follows them.
func (o *Other) FollowedRESTConfig(ctx context.Context) (*rest.Config, string, error) {
	cfg, name, err := o.RESTConfig()
	if err != nil || cfg.BearerToken == "" || cfg.BearerTokenFile != "" {
		return cfg, name, err
	}
	load := func() (string, error) {
		c, _, err := o.RESTConfig()
		if err != nil {
			return "", err
		}
		if c.BearerToken == "" {
			return "", fmt.Errorf("context %q no longer has a token", name)
		}
		return c.BearerToken, nil
	}
	t := &followedToken{token: cfg.BearerToken, load: load, every: TokenCheckInterval, now: time.Now, logger: klog.FromContext(ctx).WithValues("context", name)}
	t.checked = t.now()
	return WithToken(cfg, t), name, nil
}

// TokenSource gives the bearer token each request carries, read at the time of the
// request. A source that also has an Unauthorized method is told of every 401 answer, so
// it can read its token again.
type TokenSource interface{ Token() string }

// WithToken returns a copy of cfg whose requests carry src's current token: a token
// renewed after the clients were made reaches them.
func WithToken(cfg *rest.Config, src TokenSource) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.BearerToken = ""
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &tokenRoundTripper{src: src, rt: rt} })
	return c
}

// followedToken is a token read again from its source when it may have changed.
type followedToken struct {
	load   func() (string, error)
	every  time.Duration
	now    func() time.Time
	logger klog.Logger

	mu      sync.Mutex
	token   string
	checked time.Time
	stale   bool // the API server refused the token
	lastErr string
}

// staleRecheck bounds how often a refused token makes the source be read again.
const staleRecheck = time.Second

// Token returns the current token, reading the source again when due.
func (t *followedToken) Token() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	since := t.now().Sub(t.checked)
	if since < t.every && (!t.stale || since < staleRecheck) {
		return t.token
	}
	t.checked, t.stale = t.now(), false
	tok, err := t.load()
	switch {
	case err != nil:
		if msg := err.Error(); msg != t.lastErr {
			t.logger.Error(err, "Reading the kubeconfig again for its token; keeping the last one")
			t.lastErr = msg
		}
	case tok != t.token:
		t.logger.Info("Using the new token from the kubeconfig")
		t.token, t.lastErr = tok, ""
	default:
		t.lastErr = ""
	}
	return t.token
}

// Unauthorized marks the token refused, so the next request reads the source again.
func (t *followedToken) Unauthorized() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stale = true
}

type tokenRoundTripper struct {
	src TokenSource
	rt  http.RoundTripper
}

func (r *tokenRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+r.src.Token())
	resp, err := r.rt.RoundTrip(req)
	if u, ok := r.src.(interface{ Unauthorized() }); ok && err == nil && resp.StatusCode == http.StatusUnauthorized {
		u.Unauthorized()
	}
	return resp, err
}

// WrappedRoundTripper lets client-go's debugging wrappers see through.
func (r *tokenRoundTripper) WrappedRoundTripper() http.RoundTripper { return r.rt }
