// Package process starts and stops the lab's component processes (etcd, kube-apiserver, ...)
// with their output in log files, each in its own process group so a stop reaches everything
// it spawned, and with the parent-death signal set so nothing outlives a crashed supervisor.
package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/strait-io/strait/internal/lab/netns"
)

// Spec describes a process to run.
type Spec struct {
	// Name identifies the component within its cluster, e.g. "kube-apiserver".
	Name string
	// Cluster the component belongs to.
	Cluster string
	Path    string
	Args    []string
	// Netns, if set, runs the process inside that network namespace (through `ip netns exec`,
	// which also shows it /etc/netns/<ns>/ files in place of /etc).
	Netns string
	// HostMounts, with Netns, enters only the network namespace (from a thread of this
	// process that has entered it, so the child is born there) and keeps the host's mount
	// namespace and /etc: the kubelet and containerd must see each other's mounts, since
	// containers get the volumes the kubelet mounts.
	HostMounts bool
	LogFile    string
	Env        []string
}

// Process is a started process.
type Process struct {
	Spec    Spec
	Started time.Time

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// Start launches the process.
func Start(spec Spec) (*Process, error) {
	if err := os.MkdirAll(filepath.Dir(spec.LogFile), 0o755); err != nil {
		return nil, err
	}
	log, err := os.OpenFile(spec.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening log of %s: %w", spec.Name, err)
	}
	path, args := spec.Path, spec.Args
	if spec.Netns != "" && !spec.HostMounts {
		path, args = "ip", append([]string{"netns", "exec", spec.Netns, spec.Path}, spec.Args...)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(log, "---- %s starting %s %v\n", time.Now().Format(time.RFC3339), path, args)
	start := cmd.Start
	if spec.Netns != "" && spec.HostMounts {
		start = func() error { return netns.Do(spec.Netns, cmd.Start) }
	}
	if err := start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s of cluster %s: %w", spec.Name, spec.Cluster, err)
	}
	p := &Process{Spec: spec, Started: time.Now(), cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		log.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Running reports whether the process is still running.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// ExitError returns how the process ended, once it has.
func (p *Process) ExitError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// Stop sends SIGTERM to the process group, and SIGKILL after the grace period.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() {
		return nil
	}
	pgid := p.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s of cluster %s (pid %d) did not exit after SIGKILL", p.Spec.Name, p.Spec.Cluster, pgid)
	}
}

// WaitFor polls check until it succeeds, the process exits, or ctx ends. The error names the
// component and includes the last check error, so a failed start is easy to diagnose.
func (p *Process) WaitFor(ctx context.Context, what string, check func(context.Context) error) error {
	var last error
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s of cluster %s exited before it was %s (%v); see %s", p.Spec.Name, p.Spec.Cluster, what, p.ExitError(), p.Spec.LogFile)
		case <-ctx.Done():
			return fmt.Errorf("%s of cluster %s was not %s in time: %w; see %s", p.Spec.Name, p.Spec.Cluster, what, errors.Join(ctx.Err(), last), p.Spec.LogFile)
		case <-t.C:
		}
	}
}

// Alive reports whether a process with this pid exists (for state left by a dead supervisor).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// KillGroup kills a process group left behind by a supervisor that died.
func KillGroup(pid int) {
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}
