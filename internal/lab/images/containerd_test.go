package images

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/lab/containerdtest"
)

// The lab's images go into a real containerd with the lab's ctr, under their names, and run
// there with runc.
func TestImportIntoContainerd(t *testing.T) {
	bins := containerdtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cd := containerdtest.StartTemp(t, bins)
	ctr, sock, dir := cd.Ctr, cd.Socket, cd.Dir

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
	got := cd.Images(t, CRINamespace)
	for _, ref := range want {
		if !slices.Contains(got, ref) {
			t.Errorf("containerd has images %v, not %s", got, ref)
		}
	}

	// kind's `load image-archive` streams the archive to ctr with these flags.
	kindImage, err := b.Build(ctx, Pause)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(kindImage.Path)
	if err != nil {
		t.Fatal(err)
	}
	kind := exec.CommandContext(ctx, ctr, "--address", sock, "--namespace=k8s.io", "images", "import",
		"--all-platforms", "--digests", "--snapshotter=overlayfs", "-")
	kind.Stdin = f
	out, err := kind.CombinedOutput()
	f.Close()
	if err != nil {
		t.Fatalf("ctr import as kind runs it: %v\n%s", err, out)
	}

	// An import of a broken archive fails and says why.
	if err := Import(ctx, ctr, sock, "/etc/hostname"); err == nil {
		t.Error("ctr imported /etc/hostname")
	}

	// Imported images are unpacked and run: each program starts from its own filesystem.
	runc, err := exec.LookPath("runc")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/runc"); err != nil {
			t.Skip("no runc (Debian package runc) to run the images with")
		}
		runc = "/usr/sbin/runc"
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
		// runc's state and the container's FIFOs stay in the test's directory; only the
		// shims' sockets go to /run/containerd/s, where containerd always puts them.
		args := append([]string{"--address", sock, "--namespace", CRINamespace, "run", "--rm",
			"--runc-binary", runc, "--runc-root", filepath.Join(dir, "runc"), "--fifo-dir", filepath.Join(dir, "fifo"),
			run.image, id}, run.args...)
		out, err := exec.CommandContext(ctx, ctr, args...).CombinedOutput()
		if !strings.Contains(string(out), run.want) {
			t.Errorf("ctr run %s %q: %v\n%s\nwant output with %q", run.image, run.args, err, out, run.want)
		}
		t.Logf("ctr run %s %q:\n%s", run.image, run.args, out)
	}
}
