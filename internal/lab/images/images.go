// Package images builds the lab's container images from Go code, with neither a container
// engine nor a registry, and caches them as image archives: OCI image layouts in a tar file
// that also carry Docker's manifest.json, so `ctr images import` (and through it `kind load
// image-archive`) and `docker load` all accept them.
//
// The images are strait.io/lab/pause (the pod sandbox), strait.io/lab/rebel-base (also
// tagged strait.io/lab/echo: the demo responder), strait.io/lab/debug (busybox, curl and dig
// for `kubectl exec`) and strait.io/strait:<version> (Strait itself). The pause and
// rebel-base programs are embedded here as source and compiled statically with the local Go
// toolchain; the debug image copies static busybox and curl and dig with the shared libraries
// `ldd` says they need from the host. Every image is linux on the host's architecture, with
// fixed timestamps and ordered files, so the same inputs give the same digests.
//
// Archives are cached in <user cache dir>/strait/lab-images, beside the lab's binaries, under
// a hash of everything that goes into them; a changed input builds afresh.
package images

import (
	"context"
	"crypto/sha256"
	"debug/buildinfo"
	"debug/elf"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/strait-io/strait/internal/version"
)

// The lab's image repositories. The lab's manifests name them without a tag, which is
// LabTag; strait.io/strait is tagged with Strait's version (and LabTag).
const (
	Pause     = "strait.io/lab/pause"
	RebelBase = "strait.io/lab/rebel-base"
	Echo      = "strait.io/lab/echo"
	Debug     = "strait.io/lab/debug"
	Strait    = "strait.io/strait"
	LabTag    = "latest"
)

// formatVersion is part of every cache key: bump it when the way images are assembled
// changes, so no archive of the old way is reused.
const formatVersion = "1"

// Users the images run as: the Kubernetes pause image's 65535, distroless' nonroot 65532.
const (
	pauseUser   = "65535:65535"
	nonrootUser = "65532:65532"
)

//go:embed pause/main.go rebelbase/main.go
var programs embed.FS

// Image is a built image archive.
type Image struct {
	// Name is the image's first reference, e.g. strait.io/lab/rebel-base:latest.
	Name string
	// Refs are every reference the archive carries.
	Refs []string
	// Path is the archive.
	Path string
	// Digest is the digest of the image manifest.
	Digest string
}

// Builder builds and caches the images.
type Builder struct {
	// CacheDir holds the archives; default: DefaultCacheDir.
	CacheDir string
	// GoCommand is the go tool; default "go" from PATH.
	GoCommand string
	// Progress receives one line per image built or found; may be nil.
	Progress func(msg string)
}

// DefaultCacheDir is <user cache dir>/strait/lab-images.
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w", err)
	}
	return filepath.Join(base, "strait", "lab-images"), nil
}

func (b *Builder) cacheDir() (string, error) {
	if b.CacheDir != "" {
		return b.CacheDir, nil
	}
	return DefaultCacheDir()
}

func (b *Builder) goCmd() string {
	if b.GoCommand != "" {
		return b.GoCommand
	}
	return "go"
}

func (b *Builder) progress(format string, args ...any) {
	if b.Progress != nil {
		b.Progress(fmt.Sprintf(format, args...))
	}
}

// spec describes one image: its references, how it runs, and how to get its files. key
// returns what identifies the content cheaply (source and tool versions, file hashes), so a
// cached archive is found without building anything.
type spec struct {
	file       string // the archive's base name in the cache
	refs       []string
	user       string
	entrypoint []string
	cmd        []string
	env        []string
	key        func(ctx context.Context) (string, error)
	rootfs     func(ctx context.Context) (*rootfs, error)
	// arch is the image's architecture; empty: the host's.
	arch string
}

// LabImages are the repositories Build takes, in the order BuildAll builds them.
var LabImages = []string{Pause, RebelBase, Debug}

// Resolve maps a name a user may type (a repository, with or without :latest, an alias)
// to the lab image that has it: "strait.io/lab/echo" -> strait.io/lab/rebel-base. It
// reports false for any other name. strait.io/strait is resolved by the caller, which knows
// the binary.
func Resolve(name string) (string, bool) {
	repo, tag := splitRef(name)
	if tag != "" && tag != LabTag {
		return "", false
	}
	switch repo {
	case Pause, RebelBase, Debug:
		return repo, true
	case Echo:
		return RebelBase, true
	}
	return "", false
}

// splitRef splits a reference into repository and tag; a digest stays with the tag.
func splitRef(ref string) (repo, tag string) {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[:i], ref[i+1:]
	}
	return ref, ""
}

// Build builds (or finds in the cache) one of LabImages.
func (b *Builder) Build(ctx context.Context, repo string) (Image, error) {
	s, err := b.labSpec(repo)
	if err != nil {
		return Image{}, err
	}
	return b.build(ctx, s)
}

// BuildAll builds (or finds) every lab image.
func (b *Builder) BuildAll(ctx context.Context) ([]Image, error) {
	var out []Image
	for _, repo := range LabImages {
		img, err := b.Build(ctx, repo)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

func (b *Builder) labSpec(repo string) (spec, error) {
	switch repo {
	case Pause:
		return spec{
			file: "pause", refs: []string{Pause + ":" + LabTag}, user: pauseUser,
			entrypoint: []string{"/pause"},
			key:        b.programKey("pause"),
			rootfs: func(ctx context.Context) (*rootfs, error) {
				bin, err := b.goBuild(ctx, "pause")
				if err != nil {
					return nil, err
				}
				fs := newRootfs()
				fs.addFile("pause", 0o755, bin)
				return fs, nil
			},
		}, nil
	case RebelBase:
		return spec{
			file: "rebel-base", refs: []string{RebelBase + ":" + LabTag, Echo + ":" + LabTag}, user: nonrootUser,
			entrypoint: []string{"/rebel-base"},
			key:        b.programKey("rebelbase"),
			rootfs: func(ctx context.Context) (*rootfs, error) {
				bin, err := b.goBuild(ctx, "rebelbase")
				if err != nil {
					return nil, err
				}
				fs := newRootfs()
				fs.addBase()
				fs.addFile("rebel-base", 0o755, bin)
				return fs, nil
			},
		}, nil
	case Debug:
		return spec{
			file: "debug", refs: []string{Debug + ":" + LabTag}, user: "0:0",
			cmd: []string{"sleep", "infinity"},
			env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			key: func(ctx context.Context) (string, error) {
				files, err := debugHostFiles(ctx)
				if err != nil {
					return "", err
				}
				return files.key()
			},
			rootfs: func(ctx context.Context) (*rootfs, error) {
				files, err := debugHostFiles(ctx)
				if err != nil {
					return nil, err
				}
				return files.rootfs()
			},
		}, nil
	}
	return spec{}, fmt.Errorf("%q is not an image the lab builds; those are %s (and %s for Strait itself)",
		repo, strings.Join(append(slices.Clone(LabImages), Echo), ", "), Strait)
}

// Strait builds (or finds) the image strait.io/strait:<version> (and :latest) of a static
// strait binary. An empty version is taken from the binary's build information; a
// development build is tagged dev-<hash of the binary>, so two builds never share a tag.
func (b *Builder) Strait(ctx context.Context, binary, version string) (Image, error) {
	data, err := os.ReadFile(binary)
	if err != nil {
		return Image{}, fmt.Errorf("reading the strait binary: %w", err)
	}
	if err := checkStatic(binary, data); err != nil {
		return Image{}, err
	}
	sum := sha256.Sum256(data)
	if version == "" {
		version = binaryVersion(binary, hex.EncodeToString(sum[:])[:12])
	}
	tag := Tag(version)
	refs := []string{Strait + ":" + tag}
	if tag != LabTag {
		refs = append(refs, Strait+":"+LabTag)
	}
	return b.build(ctx, straitSpec(data, refs, ""))
}

// straitSpec is the image of the static strait binary data for arch (empty: the host's):
// the binary as /strait, the host's CA bundle, run as distroless' nonroot.
func straitSpec(data []byte, refs []string, arch string) spec {
	sum := sha256.Sum256(data)
	return spec{
		file: "strait", refs: refs, user: nonrootUser, arch: arch,
		entrypoint: []string{"/strait"},
		key:        func(context.Context) (string, error) { return hex.EncodeToString(sum[:]), nil },
		rootfs: func(context.Context) (*rootfs, error) {
			ca, err := os.ReadFile(caBundle)
			if err != nil {
				return nil, fmt.Errorf("the strait image carries the host's CA bundle (Debian package ca-certificates): %w", err)
			}
			fs := newRootfs()
			fs.addBase()
			fs.addFile("etc/ssl/certs/ca-certificates.crt", 0o644, ca)
			fs.addFile("strait", 0o755, data)
			return fs, nil
		},
	}
}

// binaryVersion is the version the binary reports (internal/version: the one `make build`
// stamps, else the module version Go recorded), or dev-<short hash> for a build without
// one. A build from a tree with uncommitted changes gets the short hash appended, since two
// such builds share a version but not their contents.
func binaryVersion(path, short string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return "dev-" + short
	}
	v := version.FromBuildInfo(info)
	switch {
	case v == "":
		return "dev-" + short
	case strings.Contains(v, "dirty"):
		return v + "-" + short
	}
	return v
}

var tagInvalid = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// Tag turns a version into a valid image tag: v0.1.0+dirty -> v0.1.0-dirty.
func Tag(version string) string {
	t := tagInvalid.ReplaceAllString(version, "-")
	t = strings.TrimLeft(t, ".-")
	if len(t) > 128 {
		t = t[:128]
	}
	if t == "" {
		return LabTag
	}
	return t
}

// checkStatic fails unless the file is an ELF executable for the host's architecture
// without a dynamic loader: the images have no C library for it.
func checkStatic(path string, data []byte) error { return checkStaticFor(path, data, runtime.GOARCH) }

// checkStaticFor fails unless the file is a static ELF executable for arch.
func checkStaticFor(path string, data []byte, arch string) error {
	f, err := elf.NewFile(bytesReaderAt(data))
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %w", path, err)
	}
	defer f.Close()
	if m, ok := elfMachine[arch]; ok && f.Machine != m {
		return fmt.Errorf("%s is built for %s, not for %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; build it with CGO_ENABLED=0 (as `make build` does) for an image without a C library", path)
		}
	}
	return nil
}

var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390,
}

// build finds the spec's archive in the cache or builds it.
func (b *Builder) build(ctx context.Context, s spec) (Image, error) {
	dir, err := b.cacheDir()
	if err != nil {
		return Image{}, err
	}
	content, err := s.key(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.refs[0], err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%s\x00%q\x00%q\x00%q\x00%s", formatVersion, runtime.GOARCH, s.refs, s.user, s.entrypoint, s.cmd, s.env, content)
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.tar", s.file, hex.EncodeToString(h.Sum(nil))[:16]))
	if info, err := Inspect(path); err == nil {
		now := time.Now()
		_ = os.Chtimes(path, now, now) // in use: not stale for another build's removeStale
		b.progress("image %s cached in %s", s.refs[0], path)
		return Image{Name: s.refs[0], Refs: info.Refs, Path: path, Digest: info.Digests[0]}, nil
	}
	b.progress("building image %s", s.refs[0])
	fs, err := s.rootfs(ctx)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.refs[0], err)
	}
	img, err := assemble(fs, s)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.refs[0], err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Image{}, fmt.Errorf("creating the image cache: %w", err)
	}
	digest, err := writeArchive(path, img, s.refs)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", s.refs[0], err)
	}
	removeStale(dir, s.file, path)
	b.progress("image %s built in %s", s.refs[0], path)
	return Image{Name: s.refs[0], Refs: s.refs, Path: path, Digest: digest}, nil
}

// removeStale deletes the older archives of the same image that nothing wrote for a day, so
// the cache holds about one each; a recent one may be in use by a lab of another checkout
// (another build of the same image), which is importing it into its nodes.
func removeStale(dir, file, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, file+"-*.tar"))
	for _, p := range old {
		info, err := os.Stat(p)
		if p != keep && len(filepath.Base(p)) == len(filepath.Base(keep)) && err == nil && time.Since(info.ModTime()) > 24*time.Hour {
			_ = os.Remove(p)
		}
	}
}

// programKey identifies a build of an embedded program: its source, the toolchain and the
// target.
func (b *Builder) programKey(program string) func(context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		src, err := programs.ReadFile(program + "/main.go")
		if err != nil {
			return "", err
		}
		goVersion, err := b.goVersion(ctx)
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(src)
		return goVersion + "\x00" + hex.EncodeToString(sum[:]), nil
	}
}

func (b *Builder) goVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.goCmd(), "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("the lab's images are built from Go source and need the Go toolchain (%s env GOVERSION: %w)", b.goCmd(), err)
	}
	return strings.TrimSpace(string(out)), nil
}

// goBuild compiles an embedded program into a static binary for linux on this machine's
// architecture, in a module of its own: the programs use only the standard library, so this
// works wherever the strait binary runs, without its source tree.
func (b *Builder) goBuild(ctx context.Context, program string) ([]byte, error) {
	return b.goBuildFor(ctx, program, runtime.GOARCH)
}

// goBuildFor compiles one of the embedded programs statically for linux/arch.
func (b *Builder) goBuildFor(ctx context.Context, program, arch string) ([]byte, error) {
	src, err := programs.ReadFile(program + "/main.go")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "strait-image-"+program+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	gomod := "module strait.io/lab/" + program + "\n\ngo 1.24\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), src, 0o644); err != nil {
		return nil, err
	}
	out := filepath.Join(dir, program)
	cmd := exec.CommandContext(ctx, b.goCmd(), "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch,
		"GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-buildvcs=false")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building %s: %w\n%s", program, err, msg)
	}
	return os.ReadFile(out)
}

// bytesReaderAt adapts a byte slice for debug/elf.
type bytesReaderAt []byte

func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}
