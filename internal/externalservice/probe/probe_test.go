package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
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
	// The test servers are on loopback, which checks reach only when allowed.
	p := Prober{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
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
	hang := Prober{AllowCIDRs: p.AllowCIDRs, Dialer: dialFunc(func(ctx context.Context, _, _ string) (net.Conn, error) {
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

// resolver answers from a table; each lookup takes the next answer of a name's list (a
// rebinding DNS server answers a safe address first, then a refused one).
type resolver struct {
	mu      sync.Mutex
	answers map[string][][]string
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.answers[host]
	if len(list) == 0 {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []netip.Addr
	for _, a := range list[0] {
		out = append(out, netip.MustParseAddr(a))
	}
	if len(list) > 1 {
		r.answers[host] = list[1:]
	}
	return out, nil
}

// recorder is a dialer that records what it is asked to dial and connects nowhere.
type recorder struct {
	mu     sync.Mutex
	dialed []string
}

func (d *recorder) DialContext(_ context.Context, _, address string) (net.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dialed = append(d.dialed, address)
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

func TestGuard(t *testing.T) {
	r := &resolver{answers: map[string][][]string{
		"metadata.example":   {{"169.254.169.254"}},
		"aws6.example":       {{"fd00:ec2::254"}},
		"mixed.example":      {{"192.0.2.10", "127.0.0.1"}},
		"localhost.example":  {{"::1"}},
		"db.example":         {{"192.0.2.20"}},
		"rebind.example":     {{"192.0.2.30"}, {"127.0.0.1"}},
		"mapped.example":     {{"::ffff:169.254.169.254"}},
		"lab-pod.example":    {{"10.1.0.5"}},
		"linklocal6.example": {{"fe80::1"}},
	}}
	ctx := context.Background()
	cases := []struct {
		target string
		allow  []string
		kind   string // "" when the check is run
	}{
		{"127.0.0.1:80", nil, KindLoopback},
		{"[::1]:80", nil, KindLoopback},
		{"0.0.0.0:80", nil, KindUnspecified},
		{"169.254.169.254:80", nil, KindMetadata},
		{"169.254.10.1:80", nil, KindLinkLocal},
		{"[fe80::1]:80", nil, KindLinkLocal},
		{"[fd00:ec2::254]:80", nil, KindMetadata},
		{"[::ffff:127.0.0.1]:80", nil, KindLoopback},
		{"metadata.example:80", nil, KindMetadata},
		{"aws6.example:80", nil, KindMetadata},
		{"mapped.example:80", nil, KindMetadata},
		{"mixed.example:80", nil, KindLoopback}, // any refused address refuses the name
		{"localhost.example:80", nil, KindLoopback},
		{"linklocal6.example:80", nil, KindLinkLocal},
		{"db.example:80", nil, ""},
		{"10.1.0.5:3307", nil, ""}, // the lab's pod and node addresses
		{"lab-pod.example:3307", nil, ""},
		{"192.0.2.1:80", nil, ""},
		{"127.0.0.1:80", []string{"127.0.0.0/8"}, ""},
		{"metadata.example:80", []string{"169.254.169.254/32"}, ""},
		{"169.254.10.1:80", []string{"169.254.169.254/32"}, KindLinkLocal},
	}
	for _, c := range cases {
		var allow []netip.Prefix
		for _, a := range c.allow {
			allow = append(allow, netip.MustParsePrefix(a))
		}
		d := &recorder{}
		p := Prober{Dialer: d, Resolver: r, AllowCIDRs: allow}
		err := p.TCP(ctx, c.target)
		var refused *RefusedError
		switch {
		case c.kind == "" && err != nil:
			t.Errorf("%s (allow %v): %v, want the check run", c.target, c.allow, err)
		case c.kind != "" && (!errors.As(err, &refused) || refused.Kind != c.kind || !errors.Is(err, ErrRefused)):
			t.Errorf("%s (allow %v): %v, want refused as %s", c.target, c.allow, err, c.kind)
		case c.kind != "" && len(d.dialed) > 0:
			t.Errorf("%s: refused, yet dialled %v", c.target, d.dialed)
		}
	}
	if err := (Prober{Resolver: r, Dialer: &recorder{}}).TCP(ctx, "metadata.example:80"); err == nil ||
		err.Error() != "not probed: metadata.example resolves to 169.254.169.254, which is a cloud metadata address; the agent checks loopback, link-local and metadata addresses only in ranges its --allow-health-check-cidrs allows" {
		t.Errorf("message: %v", err)
	}

	// Rebinding: the name is resolved once, checked, and the checked address is dialled;
	// the second answer (loopback) is never used.
	d := &recorder{}
	p := Prober{Dialer: d, Resolver: r}
	for range 2 {
		p.TCP(ctx, "rebind.example:80")
	}
	if !slices.Equal(d.dialed, []string{"192.0.2.30:80"}) {
		t.Errorf("rebinding: dialled %v, want only the checked address", d.dialed)
	}
	// HTTP checks go through the same guard.
	if err := p.HTTP(ctx, "metadata.example:80", "/latest/meta-data/"); !errors.Is(err, ErrRefused) {
		t.Errorf("HTTP to a metadata name: %v", err)
	}
}

// TestGuardAtConnect: the default dialer checks the address it connects to, whatever
// resolved it, so nothing that bypasses the lookup reaches a refused address.
func TestGuardAtConnect(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx := context.Background()
	if _, err := (Prober{}).dialer().DialContext(ctx, "tcp", l.Addr().String()); !errors.Is(err, ErrRefused) {
		t.Errorf("connect to loopback: %v", err)
	}
	// A name the dialer resolves itself is checked at connect time too.
	if _, err := (Prober{}).dialer().DialContext(ctx, "tcp", "localhost:"+strings.Split(l.Addr().String(), ":")[1]); !errors.Is(err, ErrRefused) {
		t.Errorf("connect to localhost: %v", err)
	}
	allowed := Prober{AllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	if err := allowed.TCP(ctx, l.Addr().String()); err != nil {
		t.Errorf("allowed loopback: %v", err)
	}
	if err := (Prober{Unrestricted: true}).TCP(ctx, l.Addr().String()); err != nil {
		t.Errorf("unrestricted: %v", err)
	}
}

func TestCIDRsFlag(t *testing.T) {
	var got []netip.Prefix
	v := CIDRs{P: &got}
	if err := v.Set("127.0.0.0/8, 169.254.169.254"); err != nil {
		t.Fatal(err)
	}
	if err := v.Set("fd00:ec2::254/128"); err != nil {
		t.Fatal(err)
	}
	if s := v.String(); s != "127.0.0.0/8,169.254.169.254/32,fd00:ec2::254/128" {
		t.Errorf("value %s", s)
	}
	if err := v.Set("not-a-cidr"); err == nil || !strings.Contains(err.Error(), `"not-a-cidr" is not a CIDR`) {
		t.Errorf("bad value: %v", err)
	}
}
