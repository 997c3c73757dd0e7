package supervisor

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
)

// forward accepts connections on l and copies each to and from a new connection to target,
// until ctx ends. The lab uses it to make each API server, which listens on the host's
// loopback, reachable on its node address inside the cluster's network namespace: that is
// the address the kubernetes Service points at.
func forward(ctx context.Context, l net.Listener, target string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var d net.Dialer
	for {
		in, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer in.Close()
			out, err := d.DialContext(ctx, "tcp", target)
			if err != nil {
				return
			}
			defer out.Close()
			stop := context.AfterFunc(ctx, func() { in.Close(); out.Close() })
			defer stop()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(out, in)
			go pipe(in, out)
			<-done
			<-done
		}()
	}
}
