package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/strait-io/strait/internal/lab/state"
)

// The control API, served on the lab's unix socket (root-only, like the lab):
//
//	GET  /status    the Status, with live health checks
//	GET  /events    the phase and events only, cheap enough to poll for progress
//	POST /shutdown  stop the lab; the supervisor exits when everything is down
//	POST /clusters/{cluster}/components/{component}/{stop|start}
type controlServer struct {
	srv *http.Server
	l   net.Listener
}

func serveControl(s *Supervisor) (*controlServer, error) {
	path := s.dir.Socket()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.Status(r.Context()))
	})
	mux.HandleFunc("GET /events", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		st := Status{Lab: s.lab.Name, Phase: s.phase, Error: s.failure, Started: s.started,
			Supervisor: os.Getpid(), Kubeconfig: s.dir.Kubeconfig(), Events: append([]Event(nil), s.events...)}
		s.mu.Unlock()
		writeJSON(w, st)
	})
	mux.HandleFunc("POST /shutdown", func(w http.ResponseWriter, r *http.Request) {
		s.Shutdown()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("POST /clusters/{cluster}/components/{component}/{action}", func(w http.ResponseWriter, r *http.Request) {
		cluster, component := r.PathValue("cluster"), r.PathValue("component")
		var err error
		switch r.PathValue("action") {
		case "stop":
			err = s.StopComponent(cluster, component)
		case "start":
			err = s.StartComponent(r.Context(), cluster, component)
		default:
			http.Error(w, "action must be stop or start", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	cs := &controlServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, l: l}
	go func() { _ = cs.srv.Serve(l) }()
	return cs, nil
}

func (cs *controlServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cs.srv.Shutdown(ctx)
	_ = os.Remove(cs.l.Addr().String())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// ErrNotRunning means no supervisor answers on the lab's socket.
var ErrNotRunning = errors.New("the lab is not running")

// ControlClient talks to a running supervisor.
type ControlClient struct {
	http *http.Client
}

// NewControlClient returns a client for the supervisor of the lab in dir.
func NewControlClient(dir state.Dir) *ControlClient {
	sock := dir.Socket()
	return &ControlClient{http: &http.Client{
		Timeout: 5 * time.Minute, // starting a component waits until it is healthy
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}},
	}}
}

func (c *ControlClient) do(ctx context.Context, method, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://supervisor"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return ErrNotRunning
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Status returns the full status with health checks.
func (c *ControlClient) Status(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/status", &st)
	return st, err
}

// Events returns the phase and the events so far.
func (c *ControlClient) Events(ctx context.Context) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/events", &st)
	return st, err
}

// Shutdown asks the supervisor to stop the lab.
func (c *ControlClient) Shutdown(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/shutdown", nil)
}

// Component stops or starts one component of a cluster; action is "stop" or "start".
func (c *ControlClient) Component(ctx context.Context, cluster, component, action string) error {
	return c.do(ctx, http.MethodPost, "/clusters/"+url.PathEscape(cluster)+"/components/"+url.PathEscape(component)+"/"+action, nil)
}
