package kubeconfig

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/klog/v2"
)

// tokenServer is an API server stand-in that accepts one token at a time and records the
// tokens it was shown.
type tokenServer struct {
	*httptest.Server
	mu     sync.Mutex
	accept string
	seen   []string
}

func newTokenServer(t *testing.T, accept string) *tokenServer {
	s := &tokenServer{accept: accept}
	// TLS: client-go sends no credentials to a plain-HTTP server.
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		got := r.Header.Get("Authorization")
		s.seen = append(s.seen, got)
		if got != "Bearer "+s.accept {
			http.Error(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"major":"1","minor":"34"}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *tokenServer) rotate(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accept = token
}

// writeTokenKubeconfig writes a one-context kubeconfig for srv with token, replacing the
// file as the kubelet updates a mounted Secret (a new file renamed into place).
func writeTokenKubeconfig(t *testing.T, path string, srv *tokenServer, token string) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	cfg.Clusters["broker"] = &clientcmdapi.Cluster{Server: srv.URL, CertificateAuthorityData: ca}
	cfg.AuthInfos["member"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["broker"] = &clientcmdapi.Context{Cluster: "broker", AuthInfo: "member"}
	cfg.CurrentContext = "broker"
	tmp := path + ".new"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// followed resolves --broker-kubeconfig path the way strait dns serve does.
func followed(t *testing.T, path string) *rest.Config {
	t.Helper()
	isolate(t)
	cmd := &cobra.Command{Use: "cmd"}
	other := AddFlags(cmd, Options{}).AddOther(cmd, OtherOptions{ContextFlag: "broker-context", KubeconfigFlag: "broker-kubeconfig"})
	if err := cmd.ParseFlags([]string{"--broker-kubeconfig", path}); err != nil {
		t.Fatal(err)
	}
	cfg, name, err := other.FollowedRESTConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if name != "broker" {
		t.Fatalf("context %q, want broker", name)
	}
	return cfg
}

func get(t *testing.T, cfg *rest.Config) int {
	t.Helper()
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Get(cfg.Host + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A credential rotated into the kubeconfig file (the member's Secret, mounted) reaches a
// client made before the rotation: the API server's first refusal of the old token makes
// the client read the file again, and the next request carries the new token.
func TestFollowedRESTConfigRotation(t *testing.T) {
	srv := newTokenServer(t, "one")
	path := filepath.Join(t.TempDir(), "kubeconfig")
	writeTokenKubeconfig(t, path, srv, "one")
	cfg := followed(t, path)
	if code := get(t, cfg); code != http.StatusOK {
		t.Fatalf("with the first token: status %d (seen %q)", code, srv.seen)
	}

	// The agent renews the token; the old one stops working.
	writeTokenKubeconfig(t, path, srv, "two")
	srv.rotate("two")
	if code := get(t, cfg); code != http.StatusUnauthorized {
		t.Fatalf("the request right after the rotation: status %d, want 401 (read on the interval or after a refusal)", code)
	}
	time.Sleep(staleRecheck) // a refused token is read again at most once per staleRecheck
	if code := get(t, cfg); code != http.StatusOK {
		t.Fatalf("after the refusal: status %d, want 200 with the rotated token (seen %v)", code, srv.seen)
	}

	// A file that cannot be read as a kubeconfig does not take the working token away.
	if err := os.WriteFile(path, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv.rotate("three")
	time.Sleep(staleRecheck)
	_ = get(t, cfg)
	srv.rotate("two")
	time.Sleep(staleRecheck)
	if code := get(t, cfg); code != http.StatusOK {
		t.Fatalf("with a broken file: status %d, want 200 with the last good token (seen %v)", code, srv.seen)
	}
	if last := srv.seen[len(srv.seen)-1]; last != "Bearer two" {
		t.Fatalf("with a broken file the client sent %q, want the last good token", last)
	}
}

// A kubeconfig whose user reads its token from a file is left to client-go, which follows
// that file itself.
func TestFollowedRESTConfigTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("from-file"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["broker"] = &clientcmdapi.Cluster{Server: "https://broker.example:6443"}
	cfg.AuthInfos["member"] = &clientcmdapi.AuthInfo{TokenFile: tokenFile}
	cfg.Contexts["broker"] = &clientcmdapi.Context{Cluster: "broker", AuthInfo: "member"}
	cfg.CurrentContext = "broker"
	path := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	rc := followed(t, path)
	if rc.BearerTokenFile != tokenFile || rc.WrapTransport != nil {
		t.Fatalf("token file %q, wrapped %v: want client-go's own token file handling", rc.BearerTokenFile, rc.WrapTransport != nil)
	}
}

// The token is read again every interval, and a source that fails keeps the last good one.
func TestFollowedTokenInterval(t *testing.T) {
	now := time.Unix(1000, 0)
	source, fail := "a", error(nil)
	loads := 0
	tok := &followedToken{
		token: "a", every: 30 * time.Second, checked: now, logger: klog.Background(),
		now:  func() time.Time { return now },
		load: func() (string, error) { loads++; return source, fail },
	}
	source = "b"
	now = now.Add(29 * time.Second)
	if got := tok.Token(); got != "a" || loads != 0 {
		t.Fatalf("before the interval: token %q after %d reads, want a without reading", got, loads)
	}
	now = now.Add(time.Second)
	if got := tok.Token(); got != "b" || loads != 1 {
		t.Fatalf("at the interval: token %q after %d reads, want b after one", got, loads)
	}
	fail = errors.New("read kubeconfig: permission denied")
	now = now.Add(30 * time.Second)
	if got := tok.Token(); got != "b" {
		t.Fatalf("with the source failing: token %q, want the last good b", got)
	}
	// A refusal makes the next request read again, but not more than once per staleRecheck.
	fail, source = nil, "c"
	tok.Unauthorized()
	if got := tok.Token(); got != "b" {
		t.Fatalf("a refusal right after a read: token %q, want b until staleRecheck has passed", got)
	}
	now = now.Add(staleRecheck)
	if got := tok.Token(); got != "c" {
		t.Fatalf("a refusal after staleRecheck: token %q, want c", got)
	}
}
