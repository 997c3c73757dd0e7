package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// sharedCache is one image cache for the whole test binary, so each image is built once.
var sharedCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strait-images-test-")
	if err != nil {
		panic(err)
	}
	sharedCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// builder caches in the test binary's shared cache.
func builder(t *testing.T) *Builder {
	t.Helper()
	return &Builder{CacheDir: sharedCache, Progress: func(m string) { t.Log(m) }}
}

// freshBuilder caches in a directory of its own, for tests about building.
func freshBuilder(t *testing.T) *Builder {
	t.Helper()
	return &Builder{CacheDir: t.TempDir(), Progress: func(m string) { t.Log(m) }}
}

// readBack reads an archive with go-containerregistry both ways containerd may: as an OCI
// layout (extracted) and as a Docker archive (manifest.json). It validates every blob and
// returns the image and the references the index names.
func readBack(t *testing.T, archive string) (v1.Image, []string) {
	t.Helper()
	dir := t.TempDir()
	extract(t, archive, dir)
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("reading %s as an OCI layout: %v", archive, err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("OCI layout of %s is not valid: %v", archive, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, d := range im.Manifests {
		refs = append(refs, d.Annotations[AnnotationImageName])
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != runtime.GOARCH {
			t.Errorf("index entry %s has platform %v, want linux/%s", d.Digest, d.Platform, runtime.GOARCH)
		}
		if _, tag := splitRef(d.Annotations[AnnotationImageName]); d.Annotations[AnnotationRefName] != tag {
			t.Errorf("index entry %v: ref name %q, want the tag %q", d.Annotations, d.Annotations[AnnotationRefName], tag)
		}
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	// The same archive read as `docker save` output, by the first tag.
	tag, err := name.NewTag(refs[0])
	if err != nil {
		t.Fatal(err)
	}
	dimg, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatalf("reading %s as a Docker archive: %v", archive, err)
	}
	if err := validate.Image(dimg); err != nil {
		t.Fatalf("Docker archive %s is not valid: %v", archive, err)
	}
	d1, _ := img.Digest()
	cfg1, _ := img.ConfigName()
	cfg2, _ := dimg.ConfigName()
	if cfg1 != cfg2 {
		t.Errorf("OCI image %s has config %s, the Docker view %s", d1, cfg1, cfg2)
	}
	return img, refs
}

func extract(t *testing.T, archive, dir string) {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// layerFiles lists the files of the image's (only) layer, with the content of regular files.
func layerFiles(t *testing.T, img v1.Image) map[string]*tar.Header {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("image has layers %v (%v), want exactly one", layers, err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(hdr.Name, "/")] = hdr
	}
}

func checkConfig(t *testing.T, img v1.Image, user string, entrypoint, cmd []string) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("platform %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
	}
	if cf.Config.User != user {
		t.Errorf("user %q, want %q", cf.Config.User, user)
	}
	if !slices.Equal(cf.Config.Entrypoint, entrypoint) || !slices.Equal(cf.Config.Cmd, cmd) {
		t.Errorf("entrypoint %q cmd %q, want %q %q", cf.Config.Entrypoint, cf.Config.Cmd, entrypoint, cmd)
	}
	if !cf.Created.Time.Equal(epoch) {
		t.Errorf("created %s, want the fixed %s", cf.Created, epoch)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Errorf("manifest media type %s, want OCI", m.MediaType)
	}
}

func TestLabImages(t *testing.T) {
	b := builder(t)
	ctx := context.Background()
	tests := []struct {
		repo       string
		refs       []string
		user       string
		entrypoint []string
		cmd        []string
		files      []string
	}{
		{Pause, []string{"strait.io/lab/pause:latest"}, "65535:65535", []string{"/pause"}, nil, []string{"pause"}},
		{RebelBase, []string{"strait.io/lab/rebel-base:latest", "strait.io/lab/echo:latest"}, "65532:65532", []string{"/rebel-base"}, nil,
			[]string{"rebel-base", "etc/passwd", "tmp"}},
		{Debug, []string{"strait.io/lab/debug:latest"}, "0:0", nil, []string{"sleep", "infinity"},
			[]string{"bin/busybox", "bin/sh", "bin/nslookup", "bin/wget", "usr/bin/curl", "usr/bin/dig", "etc/ssl/certs/ca-certificates.crt"}},
	}
	for _, tc := range tests {
		t.Run(tc.repo, func(t *testing.T) {
			im, err := b.Build(ctx, tc.repo)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(im.Refs, tc.refs) || im.Name != tc.refs[0] {
				t.Errorf("built %s %v, want %v", im.Name, im.Refs, tc.refs)
			}
			info, err := Inspect(im.Path)
			if err != nil {
				t.Fatal(err)
			}
			if info.Format != "oci" || !slices.Equal(info.Refs, tc.refs) || info.Digests[0] != im.Digest {
				t.Errorf("Inspect = %+v, want oci %v %s", info, tc.refs, im.Digest)
			}
			img, refs := readBack(t, im.Path)
			if !slices.Equal(refs, tc.refs) {
				t.Errorf("index names %v, want %v", refs, tc.refs)
			}
			if d, _ := img.Digest(); d.String() != im.Digest {
				t.Errorf("archive digest %s, builder said %s", d, im.Digest)
			}
			checkConfig(t, img, tc.user, tc.entrypoint, tc.cmd)
			files := layerFiles(t, img)
			for _, f := range tc.files {
				if files[f] == nil {
					t.Errorf("image has no /%s", f)
				}
			}
			for p, h := range files {
				if !h.ModTime.Equal(epoch) {
					t.Errorf("/%s has time %s, want the fixed %s", p, h.ModTime, epoch)
				}
			}
			// A second build finds the archive in the cache.
			again, err := b.Build(ctx, tc.repo)
			if err != nil || again.Path != im.Path || again.Digest != im.Digest {
				t.Errorf("second Build = %+v, %v; want the cached %+v", again, err, im)
			}
		})
	}
	t.Run("echo is rebel-base", func(t *testing.T) {
		repo, ok := Resolve("strait.io/lab/echo:latest")
		if !ok || repo != RebelBase {
			t.Errorf("Resolve(echo) = %q, %v", repo, ok)
		}
	})
}

// Builds of the same source are the same image, wherever they are cached.
func TestBuildIsReproducible(t *testing.T) {
	ctx := context.Background()
	a, err := freshBuilder(t).Build(ctx, Pause)
	if err != nil {
		t.Fatal(err)
	}
	b, err := freshBuilder(t).Build(ctx, Pause)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Errorf("two builds of the pause image: %s and %s", a.Digest, b.Digest)
	}
	da, _ := os.ReadFile(a.Path)
	db, _ := os.ReadFile(b.Path)
	if !bytes.Equal(da, db) {
		t.Error("two builds of the pause image wrote different archives")
	}
}

func TestStraitImage(t *testing.T) {
	ctx := context.Background()
	b := builder(t)
	// Any static program stands in for the strait binary.
	bin, err := b.goBuild(ctx, "pause")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "strait")
	if err := os.WriteFile(path, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	im, err := b.Strait(ctx, path, "v0.3.0+dirty")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"strait.io/strait:v0.3.0-dirty", "strait.io/strait:latest"}
	if !slices.Equal(im.Refs, want) {
		t.Errorf("refs %v, want %v", im.Refs, want)
	}
	img, refs := readBack(t, im.Path)
	if !slices.Equal(refs, want) {
		t.Errorf("index names %v, want %v", refs, want)
	}
	checkConfig(t, img, "65532:65532", []string{"/strait"}, nil)
	files := layerFiles(t, img)
	for _, f := range []string{"strait", "etc/ssl/certs/ca-certificates.crt", "etc/passwd", "tmp", "home/nonroot"} {
		if files[f] == nil {
			t.Errorf("image has no /%s", f)
		}
	}
	if h := files["strait"]; h != nil && (h.Mode&0o111 == 0 || h.Size != int64(len(bin))) {
		t.Errorf("/strait mode %o size %d, want executable of %d bytes", h.Mode, h.Size, len(bin))
	}
	if h := files["home/nonroot"]; h != nil && h.Uid != 65532 {
		t.Errorf("/home/nonroot belongs to %d, want 65532", h.Uid)
	}

	// Without a version, a development build is tagged after its content.
	dev, err := b.Strait(ctx, path, "")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dev.Name, "strait.io/strait:dev-") || len(dev.Name) != len("strait.io/strait:dev-")+12 {
		t.Errorf("development image %s, want strait.io/strait:dev-<12 hex>", dev.Name)
	}

	if curl, err := exec.LookPath("curl"); err == nil {
		if _, err := b.Strait(ctx, curl, "v1"); err == nil || !strings.Contains(err.Error(), "CGO_ENABLED=0") {
			t.Errorf("a dynamically linked binary: err = %v, want advice to build with CGO_ENABLED=0", err)
		}
	}
	if _, err := b.Strait(ctx, filepath.Join(t.TempDir(), "none"), "v1"); err == nil {
		t.Error("a missing binary built an image")
	}
}

func TestResolveAndTag(t *testing.T) {
	for in, want := range map[string]string{
		"strait.io/lab/pause": Pause, "strait.io/lab/pause:latest": Pause, "strait.io/lab/rebel-base": RebelBase,
		"strait.io/lab/echo": RebelBase, "strait.io/lab/debug:latest": Debug,
		"strait.io/lab/debug:v2": "", "busybox": "", "strait.io/strait": "", "": "",
	} {
		got, ok := Resolve(in)
		if got != want || ok != (want != "") {
			t.Errorf("Resolve(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for in, want := range map[string]string{
		"v1.2.3": "v1.2.3", "v0.1.0+dirty": "v0.1.0-dirty", "v0.0.0-2026/x": "v0.0.0-2026-x", "": "latest", "...": "latest",
	} {
		if got := Tag(in); got != want {
			t.Errorf("Tag(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseLdd(t *testing.T) {
	out := `	linux-vdso.so.1 (0x00007ffd)
	libcurl.so.4 => /lib/x86_64-linux-gnu/libcurl.so.4 (0x00007f49)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f49)
	/lib64/ld-linux-x86-64.so.2 (0x00007f49)
`
	got, err := parseLdd("curl", out)
	want := []string{"/lib/x86_64-linux-gnu/libcurl.so.4", "/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseLdd = %v, %v; want %v", got, err, want)
	}
	if _, err := parseLdd("dig", "\tlibfoo.so.1 => not found\n"); err == nil || !strings.Contains(err.Error(), "libfoo") {
		t.Errorf("missing library: err = %v", err)
	}
	if got, err := parseLdd("busybox", "\tnot a dynamic executable\n"); err != nil || len(got) != 0 {
		t.Errorf("static program: %v, %v", got, err)
	}
}

// writeTar writes a tar archive of the given files, in order.
func writeTar(t *testing.T, files [][2]string) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f[0], Mode: 0o644, Size: int64(len(f[1])), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(f[1]))
	}
	tw.Close()
	p := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInspectRejects(t *testing.T) {
	ctx := context.Background()
	good, err := builder(t).Build(ctx, Pause)
	if err != nil {
		t.Fatal(err)
	}
	goodFiles := readTarFiles(t, good.Path)

	// rewrite returns an archive of good's files with some changed or dropped.
	rewrite := func(change func(name string, data string) (string, bool)) string {
		var files [][2]string
		for _, f := range goodFiles {
			data, keep := change(f[0], f[1])
			if keep {
				files = append(files, [2]string{f[0], data})
			}
		}
		return writeTar(t, files)
	}
	var layerBlob string
	for _, f := range goodFiles {
		if strings.HasPrefix(f[0], "blobs/") && len(f[1]) > 100000 {
			layerBlob = f[0]
		}
	}
	if layerBlob == "" {
		t.Fatal("found no layer blob in the pause archive")
	}
	notTar := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notTar, []byte(strings.Repeat("not an archive\n", 100)), 0o644)
	gz := filepath.Join(t.TempDir(), "image.tar.gz")
	os.WriteFile(gz, []byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3}, 0o644)

	tests := []struct {
		name, path, want string
	}{
		{"not a tar", notTar, "is not an image archive"},
		{"gzip", gz, "gunzip"},
		{"a tar of something else", writeTar(t, [][2]string{{"README", "hello"}}), "neither an OCI image layout"},
		{"layer missing", rewrite(func(n, d string) (string, bool) { return d, n != layerBlob }), "is missing"},
		{"layer corrupt", rewrite(func(n, d string) (string, bool) {
			if n == layerBlob {
				b := []byte(d)
				b[len(b)/2] ^= 0xff
				return string(b), true
			}
			return d, true
		}), "corrupt"},
		{"no names", rewrite(func(n, d string) (string, bool) {
			if n == "index.json" {
				var idx v1.IndexManifest
				json.Unmarshal([]byte(d), &idx)
				for i := range idx.Manifests {
					idx.Manifests[i].Annotations = map[string]string{AnnotationRefName: "latest"}
				}
				out, _ := json.Marshal(idx)
				return string(out), true
			}
			return d, n != "manifest.json"
		}), "names no image"},
		{"bad index", rewrite(func(n, d string) (string, bool) {
			if n == "index.json" {
				return "{", true
			}
			return d, true
		}), "index.json is not valid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Inspect(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.path) {
				t.Errorf("Inspect = %v, want an error naming %s and saying %q", err, tc.path, tc.want)
			}
		})
	}
	if _, err := Inspect(filepath.Join(t.TempDir(), "missing.tar")); err == nil {
		t.Error("Inspect of a missing file succeeded")
	}
}

func readTarFiles(t *testing.T, p string) [][2]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out [][2]string
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			data, _ := io.ReadAll(tr)
			out = append(out, [2]string{hdr.Name, string(data)})
		}
	}
}

// A Docker archive as `docker save` wrote it before Docker 25 (what go-containerregistry's
// tarball writes) is accepted too.
func TestInspectDockerArchive(t *testing.T) {
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("example.com/team/app:v1")
	p := filepath.Join(t.TempDir(), "app.tar")
	if err := tarball.WriteToFile(p, tag, img); err != nil {
		t.Fatal(err)
	}
	info, err := Inspect(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "docker" || !slices.Equal(info.Refs, []string{"example.com/team/app:v1"}) {
		t.Errorf("Inspect = %+v, want the docker archive of example.com/team/app:v1", info)
	}
}

// The pause program exits at once, with status 0, on SIGTERM and SIGINT.
func TestPauseExitsOnSignal(t *testing.T) {
	bin := buildProgram(t, "pause")
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		cmd := exec.Command(bin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let it install its handlers; the test is about the exit
		cmd.Process.Signal(sig)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pause after %s: %v (%s)", sig, err, stderr.String())
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("pause did not exit on %s", sig)
		}
	}
	out, err := exec.Command(bin, "-v").Output()
	if err != nil || !strings.Contains(string(out), "strait-lab-pause") {
		t.Errorf("pause -v = %q, %v", out, err)
	}
}

// As PID 1 of a PID namespace, pause reaps the orphans that exit under it.
func TestPauseReapsZombies(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("needs nsenter (util-linux)")
	}
	bin := buildProgram(t, "pause")
	cmd := exec.Command(bin)
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	time.Sleep(200 * time.Millisecond)
	// sh starts a short sleep in the background and exits: the sleep is orphaned to pause,
	// which must reap it when it ends.
	nsenter := exec.Command("nsenter", "-t", strconv.Itoa(cmd.Process.Pid), "-p", "--", "sh", "-c", "sleep 0.3 & echo $!")
	if out, err := nsenter.CombinedOutput(); err != nil {
		t.Fatalf("nsenter: %v: %s", err, out)
	}
	// The orphan ends after 0.3 s; give pause a moment past that, then there must be no
	// zombie child left under it.
	deadline := time.Now().Add(5 * time.Second)
	time.Sleep(500 * time.Millisecond)
	for {
		zombies := childZombies(t, cmd.Process.Pid)
		if len(zombies) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pause left zombies %v", zombies)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// childZombies lists the zombie children of pid.
func childZombies(t *testing.T, pid int) []string {
	t.Helper()
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(data)
		i := strings.LastIndex(s, ")")
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(pid) {
			out = append(out, e.Name())
		}
	}
	return out
}

func buildProgram(t *testing.T, program string) string {
	t.Helper()
	data, err := (&Builder{}).goBuild(context.Background(), program)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), program)
	if err := os.WriteFile(p, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// The debug image's tools run from its own root filesystem: busybox applets, and curl and
// dig with the libraries copied beside them.
func TestDebugImageRuns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chroot into the image's filesystem")
	}
	im, err := builder(t).Build(context.Background(), Debug)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := readBack(t, im.Path)
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			os.MkdirAll(p, os.FileMode(hdr.Mode).Perm())
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, p); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			data, _ := io.ReadAll(tr)
			if err := os.WriteFile(p, data, os.FileMode(hdr.Mode).Perm()); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, args := range [][]string{
		{"/bin/sh", "-c", "ls /bin/nslookup && echo ok"},
		{"/usr/bin/curl", "--version"},
		{"/usr/bin/dig", "-v"},
		{"/bin/sh", "-c", "curl -s file:///etc/passwd | grep -q nonroot"},
	} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
		cmd.Dir = "/"
		cmd.Env = []string{"PATH=/usr/bin:/bin"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%q in the debug image: %v\n%s", args, err, out)
		}
	}
}
