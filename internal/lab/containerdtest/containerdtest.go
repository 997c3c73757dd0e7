// Package containerdtest starts the lab's containerd for tests: a root process with its own
// root, state, socket and configuration in a directory of the test, as a lab node runs it,
// without the CRI (no kubelet is under test), stopped when the test ends.
package containerdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/lab/binaries"
)

// shimSocketRoot is where every containerd's shims listen, whatever its state directory.
const shimSocketRoot = "/run/containerd/s"

// Containerd is a running containerd.
type Containerd struct {
	// Socket is its gRPC socket.
	Socket string
	// Dir holds its root, state, configuration and log.
	Dir string
	// Ctr is the path of the lab's ctr.
	Ctr string
}

// Binaries returns the lab's binaries (built if missing) for a test that starts
// containerd, and skips the test under -short or without root.
func Binaries(t testing.TB) binaries.Set {
	t.Helper()
	if testing.Short() {
		t.Skip("starts containerd; needs the lab's binaries")
	}
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	bins, err := (&binaries.Builder{Progress: func(p binaries.Progress) {
		if p.Step != "build" {
			t.Logf("lab binaries: %s %s", p.Step, p.Message)
		}
	}}).Ensure(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

// StartTemp starts containerd with its files in a new temporary directory with a short
// path (a unix socket path has at most 107 bytes), removed when the test ends.
func StartTemp(t testing.TB, bins binaries.Set) *Containerd {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return Start(t, bins, dir, filepath.Join(dir, "containerd.sock"))
}

// Images lists the references of the images containerd holds in namespace.
func (c *Containerd) Images(t testing.TB, namespace string) []string {
	t.Helper()
	out, err := exec.Command(c.Ctr, "--address", c.Socket, "--namespace", namespace, "images", "ls", "-q").Output()
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// Start runs containerd from bins listening on socket, with its files in dir (both created
// if missing). A unix socket path has at most 107 bytes: keep both short. The test fails if
// containerd does not answer within 30 s; its log is shown when the test failed.
func Start(t testing.TB, bins binaries.Set, dir, socket string) *Containerd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("containerd needs root")
	}
	if _, err := os.Stat(filepath.Dir(socket)); os.IsNotExist(err) {
		// A lab node's socket directory (/run/strait-lab/<hash>): removed with the socket.
		t.Cleanup(func() {
			os.RemoveAll(filepath.Dir(socket))
			os.Remove(filepath.Dir(filepath.Dir(socket)))
		})
	}
	for _, d := range []string{dir, filepath.Dir(socket)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Configuration version 4 (containerd 2.4's): the sockets are the server plugins'.
	// Everything that defaults to a host-wide path is set to one of dir's, and imports is
	// emptied so no drop-in of a host containerd (/etc/containerd/conf.d) applies.
	config := fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
imports = []
# Only the image store, snapshots and tasks are under test: no CRI, no NRI.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]

[plugins."io.containerd.server.v1.grpc"]
  address = %[3]q

[plugins."io.containerd.server.v1.ttrpc"]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q

[plugins."io.containerd.image-verifier.v1.bindir"]
  bin_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), socket, socket+".ttrpc", filepath.Join(dir, "opt"),
		filepath.Join(dir, "image-verifier"))
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.Path(binaries.Containerd), "--config", cfg, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	// The shim finds runc on PATH; Debian puts it in /usr/sbin.
	cmd.Env = append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// containerd always puts its shims' sockets in /run/containerd/s. Remove what this test
	// created there, if anything, and only if empty: a host containerd may use it too.
	var created []string
	for _, d := range []string{shimSocketRoot, filepath.Dir(shimSocketRoot)} {
		if _, err := os.Stat(d); os.IsNotExist(err) {
			created = append(created, d)
		}
	}
	t.Cleanup(func() {
		for _, d := range created {
			_ = os.Remove(d)
		}
	})
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("containerd log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			conn.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			t.Fatalf("containerd did not answer on %s within 30s: %v; its log:\n%s", socket, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &Containerd{Socket: socket, Dir: dir, Ctr: bins.Path(binaries.Ctr)}
}
