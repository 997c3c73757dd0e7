// Package probe runs the health checks of ExternalService targets and the reachability
// checks of `strait doctor`: a TCP connect or an HTTP GET through a dialer. The dialer is
// what lets the lab check addresses that live in a cluster's network namespace; in a
// cluster it is a plain net.Dialer. Errors are reduced to stable messages, so a target's
// status does not change with every ephemeral port.
//
// Checks never reach loopback, link-local or cloud metadata addresses (guard.go) unless
// the cluster admin allows them: an ExternalService's author must not be able to use the
// agent, which may run with the node's network or a cloud identity, to probe them.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
)

// Dialer opens connections; *net.Dialer and the lab's netns.Dialer are Dialers.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Resolver looks host names up; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Prober checks addresses through its Dialer; the zero value dials directly and refuses
// loopback, link-local and metadata addresses (see Guard).
type Prober struct {
	Dialer Dialer
	// AllowCIDRs are ranges checks may reach although the guard refuses them (e.g.
	// 127.0.0.0/8 for a target on the agent's own host); the agent's
	// --allow-health-check-cidrs.
	AllowCIDRs []netip.Prefix
	// Unrestricted turns the guard off: for checks a person runs from their own machine.
	Unrestricted bool
	// Resolver resolves host names before the guard looks at their addresses; nil means
	// net.DefaultResolver.
	Resolver Resolver
}

// dialer is where connections are opened. The default dialer checks again, at connect
// time, the address the socket actually connects to.
func (p Prober) dialer() Dialer {
	if p.Dialer != nil {
		return p.Dialer
	}
	if p.Unrestricted {
		return &net.Dialer{}
	}
	return &net.Dialer{Control: Guard{Allow: p.AllowCIDRs}.control}
}

// dial resolves address, refuses it when the guard refuses any of its addresses, and
// connects to the checked addresses themselves (never to the name again), so a DNS answer
// that changes between the check and the connection (rebinding) cannot bring the check to
// a refused address.
func (p Prober) dial(ctx context.Context, network, address string) (net.Conn, error) {
	if p.Unrestricted {
		return p.dialer().DialContext(ctx, network, address)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	g := Guard{Allow: p.AllowCIDRs}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
		host = ""
	} else {
		r := p.Resolver
		if r == nil {
			r = net.DefaultResolver
		}
		if addrs, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	for _, a := range addrs {
		if err := g.Check(a); err != nil {
			return nil, err.(*RefusedError).forHost(host)
		}
	}
	var first error
	for _, a := range addrs {
		c, err := p.dialer().DialContext(ctx, network, net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// TCP succeeds when a TCP connection to address opens before ctx ends.
func (p Prober) TCP(ctx context.Context, address string) error {
	c, err := p.dial(ctx, "tcp", address)
	if err != nil {
		return Reason(ctx, err)
	}
	return c.Close()
}

// HTTP succeeds when GET http://address/path answers with a status from 200 to 399
// before ctx ends. Redirects are not followed, as a kubelet's HTTP probe counts them as
// success.
func (p Prober) HTTP(ctx context.Context, address, path string) error {
	client := &http.Client{
		// No proxy: the check must reach the target itself, through the guard.
		Transport: &http.Transport{DialContext: p.dial, DisableKeepAlives: true, Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+address+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "strait-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return Reason(ctx, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 399 {
		return fmt.Errorf("HTTP GET %s answered %s", path, resp.Status)
	}
	return nil
}

// Reason reduces a dial or request error to a stable message. A guard's refusal is
// returned as it is (a *RefusedError).
func Reason(ctx context.Context, err error) error {
	var refused *RefusedError
	if errors.As(err, &refused) {
		return refused
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return errors.New("connection refused")
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return errors.New("no route to host")
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("connection reset")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded), ctx.Err() != nil:
		return errors.New("timed out")
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		if dnsErr.IsNotFound {
			return fmt.Errorf("no such host %s", dnsErr.Name)
		}
		return fmt.Errorf("cannot resolve %s", dnsErr.Name)
	}
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return errors.New(msg)
}
