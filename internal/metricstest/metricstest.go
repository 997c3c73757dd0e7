// Package metricstest helps tests read what a Strait component serves on its metrics and
// health endpoints, the way Prometheus and the kubelet do: over HTTP.
package metricstest

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FreeAddr returns a loopback TCP address that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Get returns the status code and body of GET http://addr+path; code 0 when the request
// failed (nothing listening yet).
func Get(addr, path string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// WaitFor polls GET addr+path until it answers 200 with a body that contains every one of
// want, and returns that body; it fails the test after timeout with the last answer.
func WaitFor(t testing.TB, addr, path string, timeout time.Duration, want ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := Get(addr, path)
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w) {
				missing = w
				break
			}
		}
		if code == http.StatusOK && missing == "" {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s%s: status %d, lacks %q; body:\n%s", addr, path, code, missing, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
