package probe

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestProber(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	// An address where nothing listens: a listener opened and closed again.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := Prober{}
	if err := p.TCP(ctx, addr); err != nil {
		t.Errorf("TCP to a listener: %v", err)
	}
	if err := p.TCP(ctx, closed); err == nil || err.Error() != "connection refused" {
		t.Errorf("TCP to a closed port: %v, want \"connection refused\"", err)
	}
	if err := p.HTTP(ctx, addr, "/healthz"); err != nil {
		t.Errorf("HTTP 200: %v", err)
	}
	if err := p.HTTP(ctx, addr, "/moved"); err != nil {
		t.Errorf("HTTP redirect counts as a pass: %v", err)
	}
	if err := p.HTTP(ctx, addr, "/other"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("HTTP 503: %v", err)
	}
	// A dialer that never connects: the check ends with its context, as "timed out".
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	hang := Prober{Dialer: dialFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})}
	if err := hang.TCP(short, addr); err == nil || err.Error() != "timed out" {
		t.Errorf("TCP that hangs: %v, want \"timed out\"", err)
	}
}

type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

func (f dialFunc) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	return f(ctx, network, address)
}
