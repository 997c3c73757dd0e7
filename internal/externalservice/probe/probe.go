// Package probe runs the health checks of ExternalService targets and the reachability
// checks of `strait doctor`: a TCP connect or an HTTP GET through a dialer. The dialer is
// what lets the lab check addresses that live in a cluster's network namespace; in a
// cluster it is a plain net.Dialer. Errors are reduced to stable messages, so a target's
// status does not change with every ephemeral port.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
)

// Dialer opens connections; *net.Dialer and the lab's netns.Dialer are Dialers.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Prober checks addresses through its Dialer; the zero value dials directly.
type Prober struct {
	Dialer Dialer
}

func (p Prober) dialer() Dialer {
	if p.Dialer == nil {
		return &net.Dialer{}
	}
	return p.Dialer
}

// TCP succeeds when a TCP connection to address opens before ctx ends.
func (p Prober) TCP(ctx context.Context, address string) error {
	c, err := p.dialer().DialContext(ctx, "tcp", address)
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
		Transport: &http.Transport{DialContext: p.dialer().DialContext, DisableKeepAlives: true},
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

// Reason reduces a dial or request error to a stable message.
func Reason(ctx context.Context, err error) error {
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
