package lab

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/containerdtest"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// loadLab is a saved two-cluster lab whose binaries hold a fake ctr that records its
// arguments, one line per call, in calls.
type loadLab struct {
	dir   state.Dir
	lab   *plan.Lab
	bins  string
	calls string
}

func newLoadLab(t *testing.T) *loadLab {
	t.Helper()
	l, err := plan.Build(plan.Spec{Lab: "lt", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "cluster01"}, {Name: "cluster02"}}})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	ll := &loadLab{dir: state.Dir(filepath.Join(root, "lt")), lab: l, bins: filepath.Join(root, "bins"), calls: filepath.Join(root, "ctr-calls")}
	if err := state.Save(ll.dir, &state.Saved{Lab: l, Binaries: ll.bins, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(ll.bins, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\necho \"$*\" >> " + ll.calls + "\n"
	if err := os.WriteFile(binaries.Set{Dir: ll.bins}.Path(binaries.Ctr), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return ll
}

// listen makes something answer on a cluster's containerd socket.
func (ll *loadLab) listen(t *testing.T, cluster string) string {
	t.Helper()
	sock := ll.dir.Cluster(cluster).ContainerdSocket()
	if err := os.MkdirAll(filepath.Dir(sock), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return sock
}

func (ll *loadLab) ctrCalls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(ll.calls)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

// dockerArchive writes a small image archive named example.com/app:v1.
func dockerArchive(t *testing.T) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/app:v1")
	p := filepath.Join(t.TempDir(), "app.tar")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadImageRefusesBadInput(t *testing.T) {
	ctx := context.Background()
	ll := newLoadLab(t)
	archive := dockerArchive(t)
	notArchive := filepath.Join(t.TempDir(), "notes.tar")
	os.WriteFile(notArchive, []byte(strings.Repeat("x", 2048)), 0o644)
	tests := []struct {
		name string
		o    LoadImageOptions
		want []string
	}{
		{"no such lab", LoadImageOptions{Dir: state.Dir(filepath.Join(t.TempDir(), "gone")), Image: archive},
			[]string{"lab gone does not exist"}},
		{"a node no lab has", LoadImageOptions{Dir: ll.dir, Image: archive, Nodes: []string{"cluster01-node", "cluster09-node"}},
			[]string{"no node named cluster09-node", "cluster01-node, cluster02-node"}},
		{"not an archive", LoadImageOptions{Dir: ll.dir, Image: notArchive},
			[]string{notArchive, "is not an image archive"}},
		{"a directory", LoadImageOptions{Dir: ll.dir, Image: t.TempDir()}, []string{"is a directory"}},
		{"an image nobody builds", LoadImageOptions{Dir: ll.dir, Image: "example.com/nothing:v1"},
			[]string{`"example.com/nothing:v1" is neither an image archive`, "strait.io/lab/rebel-base"}},
		{"no image", LoadImageOptions{Dir: ll.dir}, []string{"no image given"}},
		// Nothing answers on either node's socket: both named, nothing imported.
		{"no containerd", LoadImageOptions{Dir: ll.dir, Image: archive},
			[]string{"imported nothing", "cluster cluster01: no containerd answers on " + ll.dir.Cluster("cluster01").ContainerdSocket(),
				"cluster cluster02: no containerd answers on " + ll.dir.Cluster("cluster02").ContainerdSocket()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := LoadImage(ctx, tc.o)
			if err == nil {
				t.Fatal("LoadImage succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	if calls := ll.ctrCalls(t); len(calls) > 0 {
		t.Errorf("ctr ran %q though every load was refused", calls)
	}

	// A lab image is only built once the nodes are known to take it.
	cache := t.TempDir()
	err := LoadImage(ctx, LoadImageOptions{Dir: ll.dir, Image: "strait.io/lab/echo", Images: &images.Builder{CacheDir: cache}})
	if err == nil || !strings.Contains(err.Error(), "imported nothing") {
		t.Errorf("err = %v, want imported nothing", err)
	}
	if built, _ := os.ReadDir(cache); len(built) > 0 {
		t.Errorf("built %v for nodes that cannot take it", built)
	}

	// One node's containerd answers, the other's does not: still nothing is imported.
	ll.listen(t, "cluster01")
	err = LoadImage(ctx, LoadImageOptions{Dir: ll.dir, Image: archive})
	if err == nil || !strings.Contains(err.Error(), "cluster cluster02") || strings.Contains(err.Error(), "cluster cluster01:") {
		t.Errorf("err = %v, want one naming cluster02 only", err)
	}
	if calls := ll.ctrCalls(t); len(calls) > 0 {
		t.Errorf("ctr ran %q though cluster02 had no containerd", calls)
	}
}

func TestLoadImageImportsIntoEveryChosenNode(t *testing.T) {
	ctx := context.Background()
	ll := newLoadLab(t)
	archive := dockerArchive(t)
	s1, s2 := ll.listen(t, "cluster01"), ll.listen(t, "cluster02")

	var out bytes.Buffer
	if err := LoadImage(ctx, LoadImageOptions{Dir: ll.dir, Image: archive, Out: &out}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"--address " + s1 + " --namespace k8s.io images import " + archive,
		"--address " + s2 + " --namespace k8s.io images import " + archive,
	}
	if got := ll.ctrCalls(t); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ctr calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "Image example.com/app:v1 loaded into node cluster02-node (cluster cluster02)") {
		t.Errorf("output %q", out.String())
	}

	// --nodes takes node or cluster names.
	os.Remove(ll.calls)
	if err := LoadImage(ctx, LoadImageOptions{Dir: ll.dir, Image: archive, Nodes: []string{"cluster02"}}); err != nil {
		t.Fatal(err)
	}
	if got := ll.ctrCalls(t); len(got) != 1 || !strings.Contains(got[0], s2) {
		t.Errorf("ctr calls %q, want one into cluster02", got)
	}
}

func TestLoadImageNeedsCtrInTheLabsBinaries(t *testing.T) {
	ll := newLoadLab(t)
	ll.listen(t, "cluster01")
	ll.listen(t, "cluster02")
	os.Remove(binaries.Set{Dir: ll.bins}.Path(binaries.Ctr))
	err := LoadImage(context.Background(), LoadImageOptions{Dir: ll.dir, Image: dockerArchive(t)})
	if err == nil || !strings.Contains(err.Error(), "no ctr") || !strings.Contains(err.Error(), ll.bins) {
		t.Errorf("err = %v, want one saying the lab's binaries %s have no ctr", err, ll.bins)
	}
}

func TestHostToolErrorNamesThePackage(t *testing.T) {
	_, err := hostTool{"strait-no-such-tool", "strait-pkg", "to test"}.find()
	if err == nil || !strings.Contains(err.Error(), `"strait-no-such-tool"`) || !strings.Contains(err.Error(), "Debian package strait-pkg") {
		t.Errorf("err = %v, want one naming the command and its package", err)
	}
	if runcTool.pkg != "runc" || runcTool.bin != "runc" {
		t.Errorf("runc check %+v", runcTool)
	}
}

// load-image against a real containerd on one node of a lab: the image lands there under its
// names; asked for every node while the other has no containerd, it imports nothing.
func TestLoadImageIntoContainerd(t *testing.T) {
	bins := containerdtest.Binaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	// A short state directory: the socket's path must fit a unix socket address.
	root, err := os.MkdirTemp("", "li-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	l, err := plan.Build(plan.Spec{Lab: "li", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "c1"}, {Name: "c2"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := state.Dir(filepath.Join(root, "li"))
	if err := state.Save(dir, &state.Saved{Lab: l, Binaries: bins.Dir, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	cd := dir.Cluster("c1")
	ctrd := containerdtest.Start(t, bins, cd.Containerd(), cd.ContainerdSocket())
	ls := func() []string { return ctrd.Images(t, images.CRINamespace) }
	b := &images.Builder{CacheDir: t.TempDir()}

	err = LoadImage(ctx, LoadImageOptions{Dir: dir, Image: "strait.io/lab/pause", Images: b})
	if err == nil || !strings.Contains(err.Error(), "cluster c2: no containerd answers on "+dir.Cluster("c2").ContainerdSocket()) {
		t.Fatalf("err = %v, want one naming cluster c2 and its socket", err)
	}
	if got := ls(); len(got) > 0 {
		t.Errorf("node c1-node has images %v after a refused load", got)
	}

	var out bytes.Buffer
	if err := LoadImage(ctx, LoadImageOptions{Dir: dir, Image: "strait.io/lab/echo", Nodes: []string{"c1-node"}, Images: b, Out: &out}); err != nil {
		t.Fatal(err)
	}
	got := ls()
	for _, want := range []string{"strait.io/lab/rebel-base:latest", "strait.io/lab/echo:latest"} {
		if !slices.Contains(got, want) {
			t.Errorf("node c1-node has images %v, not %s", got, want)
		}
	}
	if !strings.Contains(out.String(), "loaded into node c1-node (cluster c1)") {
		t.Errorf("output %q", out.String())
	}
}
