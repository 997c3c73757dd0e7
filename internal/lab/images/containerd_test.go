package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/lab/binaries"
)

// startContainerd runs the lab's containerd as root with a root, state, socket and config of
// its own in a temporary directory, as a lab node will, and returns its socket.
func startContainerd(t *testing.T, ctx context.Context, bins binaries.Set) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctrd-") // short: a unix socket path has at most 107 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	config := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
# This containerd only stores and runs images; the node's CRI is not under test here.
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images", "io.containerd.nri.v1.nri"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
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
			log, _ := os.ReadFile(logf.Name())
			t.Logf("containerd log:\n%s", log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for CheckSocket(ctx, sock) != nil {
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not answer on %s within 30s; its log:\n%s", sock, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return sock
}

// The lab's images go into a real containerd with the lab's ctr, under their names, and run
// there with runc.
func TestImportIntoContainerd(t *testing.T) {
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
	ctr := bins.Path(binaries.Ctr)
	sock := startContainerd(t, ctx, bins)

	b := builder(t)
	var want []string
	for _, repo := range LabImages {
		img, err := b.Build(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		if err := Import(ctx, ctr, sock, img.Path); err != nil {
			t.Fatal(err)
		}
		want = append(want, img.Refs...)
	}
	out, err := exec.CommandContext(ctx, ctr, "--address", sock, "--namespace", CRINamespace, "images", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	got := strings.Fields(string(out))
	for _, ref := range want {
		if !slices.Contains(got, ref) {
			t.Errorf("containerd has images %v, not %s", got, ref)
		}
	}

	// An import of a broken archive fails and says why.
	if err := Import(ctx, ctr, sock, "/etc/hostname"); err == nil {
		t.Error("ctr imported /etc/hostname")
	}

	// Imported images are unpacked and run: each program starts from its own filesystem.
	if _, err := exec.LookPath("runc"); err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			t.Skip("no runc (Debian package runc) to run the images with")
		}
	}
	for i, run := range []struct {
		image string
		args  []string
		want  string
	}{
		{"strait.io/lab/pause:latest", []string{"/pause", "-v"}, "strait-lab-pause"},
		{"strait.io/lab/debug:latest", []string{"sh", "-c", "curl --version && dig -v 2>&1 && nslookup 2>&1 | head -1 && id -u"}, "curl "},
		{"strait.io/lab/rebel-base:latest", []string{"/rebel-base"}, "KUBERNETES_SERVICE_HOST"},
	} {
		id := fmt.Sprintf("strait-images-test-%d-%d", os.Getpid(), i)
		args := append([]string{"--address", sock, "--namespace", CRINamespace, "run", "--rm", run.image, id}, run.args...)
		out, err := exec.CommandContext(ctx, ctr, args...).CombinedOutput()
		if !strings.Contains(string(out), run.want) {
			t.Errorf("ctr run %s %q: %v\n%s\nwant output with %q", run.image, run.args, err, out, run.want)
		}
		t.Logf("ctr run %s %q:\n%s", run.image, run.args, out)
	}
}
