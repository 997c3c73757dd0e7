package images

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"time"
)

// CRINamespace is the containerd namespace the kubelet's CRI uses; images must be there for
// pods to find them.
const CRINamespace = "k8s.io"

// CheckSocket fails unless a containerd (or anything) accepts connections on the unix
// socket, so a load can stop before importing anywhere.
func CheckSocket(ctx context.Context, socket string) error {
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Import loads an image archive into the containerd listening on socket, in the CRI's
// namespace, with ctr: the images are stored under the names the archive gives and
// unpacked for the default snapshotter (the CRI's), as `kind load image-archive` does.
func Import(ctx context.Context, ctr, socket, archive string) error {
	cmd := exec.CommandContext(ctx, ctr, "--address", socket, "--namespace", CRINamespace,
		"images", "import", archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr images import %s into %s: %w\n%s", archive, socket, err, strings.TrimSpace(string(out)))
	}
	return nil
}
