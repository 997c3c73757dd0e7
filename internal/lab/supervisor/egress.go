package supervisor

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/strait-io/strait/internal/lab/netns"
)

// The API server runs on the host, where no lab address exists, yet it must reach each
// kubelet (logs, exec, attach, port-forward) and, for the proxy subresources, pods and
// services: addresses that live only in the cluster's node network namespace. Its egress
// selector sends that traffic ("cluster" egress) to an HTTP CONNECT proxy on a unix socket,
// which the supervisor serves and which dials from inside the node's namespace, as
// konnectivity does for a real control plane that cannot reach its nodes. A unix socket, not
// a TCP port: nothing to plan or collide with, and only root may use it.

// listenEgress opens the egress proxy's socket, replacing a stale one.
func listenEgress(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// serveEgress answers CONNECT requests on l by dialing the target with dial, until ctx ends.
func serveEgress(ctx context.Context, l net.Listener, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	var wg sync.WaitGroup
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				http.Error(w, "only CONNECT is served", http.StatusMethodNotAllowed)
				return
			}
			dctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
			out, err := dial(dctx, "tcp", r.Host)
			cancel()
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			hj, ok := w.(http.Hijacker)
			if !ok {
				out.Close()
				http.Error(w, "cannot hijack", http.StatusInternalServerError)
				return
			}
			in, buf, err := hj.Hijack()
			if err != nil {
				out.Close()
				return
			}
			if _, err := in.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
				in.Close()
				out.Close()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				splice(ctx, in, buf.Reader, out)
			}()
		}),
	}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err := srv.Serve(l)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return err
}

// splice copies between the client (whose already-buffered bytes are in br) and the
// target until both directions are done or ctx ends.
func splice(ctx context.Context, in net.Conn, br *bufio.Reader, out net.Conn) {
	defer in.Close()
	defer out.Close()
	stop := context.AfterFunc(ctx, func() { in.Close(); out.Close() })
	defer stop()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(out, br)
		if tc, ok := out.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(in, out)
		if uc, ok := in.(*net.UnixConn); ok {
			_ = uc.CloseWrite()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
}

// egressDialer dials from inside a cluster's node namespace.
func egressDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return netns.Dialer{Namespace: ns}.DialContext
}
