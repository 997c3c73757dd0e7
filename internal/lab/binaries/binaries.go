// Package binaries builds the lab's Kubernetes components from source through the Go module
// proxy and caches them. The pinned versions live in small Go modules embedded here
// (modules/*.go.mod and .go.sum): k8s.io/kubernetes with each staging module replaced by the
// matching k8s.io/* v0.x release (the control plane with kube-scheduler, kube-proxy, kubectl and the kubelet),
// etcd from go.etcd.io/etcd/server/v3, CoreDNS from github.com/coredns/coredns, containerd,
// its runc shim and ctr from github.com/containerd/containerd/v2, and the standard CNI
// plugins (bridge, host-local, loopback, portmap) from github.com/containernetworking/plugins.
// runc itself is not built: it comes from the host (Debian package runc). The cache directory
// is keyed by a hash of those files and the Go toolchain, so a version bump builds afresh and
// nothing else ever does.
package binaries

import (
	"bufio"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

//go:embed modules/*.go.mod modules/*.go.sum
var modules embed.FS

// Names of the binaries the lab runs.
const (
	KubeAPIServer         = "kube-apiserver"
	KubeControllerManager = "kube-controller-manager"
	KubeScheduler         = "kube-scheduler"
	KubeProxy             = "kube-proxy"
	Kubectl               = "kubectl"
	Kubelet               = "kubelet"
	Etcd                  = "etcd"
	CoreDNS               = "coredns"
	Containerd            = "containerd"
	ContainerdShim        = "containerd-shim-runc-v2"
	Ctr                   = "ctr"
	// The CNI plugins live in their own directory (Set.CNIDir), the one a CNI runtime
	// searches for plugin types.
	CNIBridge    = "bridge"
	CNIHostLocal = "host-local"
	CNILoopback  = "loopback"
	CNIPortmap   = "portmap"
)

// cniDir is the subdirectory of a Set that holds the CNI plugins.
const cniDir = "cni"

// CNIPlugins are the CNI plugins the lab builds, all in Set.CNIDir.
var CNIPlugins = []string{CNIBridge, CNIHostLocal, CNILoopback, CNIPortmap}

// target is one binary and the pinned module that builds it.
type target struct {
	binary  string
	module  string // base name of the embedded module files
	pkg     string
	ldflags func(version string) string
	dir     string // subdirectory of the set; "" for the top
}

var targets = []target{
	{KubeAPIServer, "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", kubeLDFlags, ""},
	{KubeControllerManager, "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager", kubeLDFlags, ""},
	{KubeScheduler, "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", kubeLDFlags, ""},
	{KubeProxy, "kubernetes", "k8s.io/kubernetes/cmd/kube-proxy", kubeLDFlags, ""},
	{Kubectl, "kubernetes", "k8s.io/kubernetes/cmd/kubectl", kubeLDFlags, ""},
	{Kubelet, "kubernetes", "k8s.io/kubernetes/cmd/kubelet", kubeLDFlags, ""},
	{Etcd, "etcd", "go.etcd.io/etcd/server/v3", nil, ""},
	{CoreDNS, "coredns", "github.com/coredns/coredns", nil, ""},
	// containerd finds its shim beside its own binary, so they share a directory.
	{Containerd, "containerd", "github.com/containerd/containerd/v2/cmd/containerd", containerdLDFlags, ""},
	{ContainerdShim, "containerd", "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2", containerdLDFlags, ""},
	{Ctr, "containerd", "github.com/containerd/containerd/v2/cmd/ctr", containerdLDFlags, ""},
	{CNIBridge, "cni-plugins", "github.com/containernetworking/plugins/plugins/main/bridge", cniLDFlags, cniDir},
	{CNIHostLocal, "cni-plugins", "github.com/containernetworking/plugins/plugins/ipam/host-local", cniLDFlags, cniDir},
	{CNILoopback, "cni-plugins", "github.com/containernetworking/plugins/plugins/main/loopback", cniLDFlags, cniDir},
	{CNIPortmap, "cni-plugins", "github.com/containernetworking/plugins/plugins/meta/portmap", cniLDFlags, cniDir},
}

// moduleOrder is the order the modules are built in: what the lab has always run first, so
// progress reads the same as before for the control plane.
var moduleOrder = []string{"kubernetes", "etcd", "coredns", "containerd", "cni-plugins"}

// mainModule is the module whose version each embedded go.mod pins.
var mainModule = map[string]string{
	"kubernetes":  "k8s.io/kubernetes",
	"etcd":        "go.etcd.io/etcd/server/v3",
	"coredns":     "github.com/coredns/coredns",
	"containerd":  "github.com/containerd/containerd/v2",
	"cni-plugins": "github.com/containernetworking/plugins",
}

// Modules lists the base names of the pinned modules (the keys of Versions), in build order.
func Modules() []string { return append([]string(nil), moduleOrder...) }

// kubeLDFlags stamps the release into the binaries, as the Kubernetes release build does, so
// `kubectl version` and the API server's /version tell the truth.
func kubeLDFlags(version string) string {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	minor := ""
	if len(parts) > 1 {
		minor = parts[1]
	}
	return strings.Join([]string{
		"-X k8s.io/component-base/version.gitVersion=" + version,
		"-X k8s.io/component-base/version.gitMajor=" + parts[0],
		"-X k8s.io/component-base/version.gitMinor=" + minor,
		"-X k8s.io/component-base/version.gitTreeState=clean",
		"-X k8s.io/client-go/pkg/version.gitVersion=" + version,
	}, " ")
}

// containerdLDFlags stamps the release as containerd's Makefile does, so `containerd
// --version` and `ctr version` name it.
func containerdLDFlags(version string) string {
	return "-X github.com/containerd/containerd/v2/version.Version=" + version +
		" -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd"
}

// cniLDFlags stamps the release as the CNI plugins' build script does (`bridge --version`).
func cniLDFlags(version string) string {
	return "-X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=" + version
}

// Versions returns the pinned version of each component module, e.g. kubernetes -> v1.34.4.
func Versions() (map[string]string, error) {
	out := map[string]string{}
	for name, mod := range mainModule {
		data, err := modules.ReadFile("modules/" + name + ".go.mod")
		if err != nil {
			return nil, err
		}
		v := requiredVersion(string(data), mod)
		if v == "" {
			return nil, fmt.Errorf("embedded %s.go.mod does not require %s", name, mod)
		}
		out[name] = v
	}
	return out, nil
}

// requiredVersion finds "mod vX" in a go.mod's require lines.
func requiredVersion(gomod, mod string) string {
	for _, line := range strings.Split(gomod, "\n") {
		f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(line), "require"))
		if len(f) >= 2 && f[0] == mod {
			return f[1]
		}
	}
	return ""
}

// Set is a directory holding every lab binary.
type Set struct {
	Dir string
}

// Path returns the path of one binary; a CNI plugin's is in CNIDir.
func (s Set) Path(name string) string {
	for _, t := range targets {
		if t.binary == name {
			return filepath.Join(s.Dir, t.dir, name)
		}
	}
	return filepath.Join(s.Dir, name)
}

// CNIDir is the directory of the CNI plugins, for a CNI runtime's plugin path.
func (s Set) CNIDir() string { return filepath.Join(s.Dir, cniDir) }

// Progress is one step of a build, for display.
type Progress struct {
	Step    string // "download", "build", "built" (a module, with its time), "done", "cached", "wait"
	Module  string
	Done    int // packages compiled so far in this module
	Total   int // packages to compile in this module (0 if unknown)
	Message string
}

// Builder builds and caches the binaries.
type Builder struct {
	// CacheDir holds one subdirectory per key; default: <user cache dir>/strait/lab-binaries.
	CacheDir string
	// GoCommand is the go tool; default "go" from PATH.
	GoCommand string
	// Progress receives build progress; may be nil.
	Progress func(Progress)
	// Log receives the go tool's own output; may be nil.
	Log io.Writer
}

// DefaultCacheDir is <user cache dir>/strait/lab-binaries.
func DefaultCacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("finding the user cache directory: %w", err)
	}
	return filepath.Join(base, "strait", "lab-binaries"), nil
}

func (b *Builder) progress(p Progress) {
	if b.Progress != nil {
		b.Progress(p)
	}
}

func (b *Builder) goCmd() string {
	if b.GoCommand != "" {
		return b.GoCommand
	}
	return "go"
}

// Key identifies a build: the pinned versions, a hash of the module files, the list of
// binaries and the toolchain.
func (b *Builder) Key(ctx context.Context) (string, error) {
	goVersion, err := exec.CommandContext(ctx, b.goCmd(), "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("the lab builds Kubernetes from source and needs the Go toolchain (%s env GOVERSION failed: %w); install Go 1.26.8 or newer", b.goCmd(), err)
	}
	h := sha256.New()
	h.Write(goVersion)
	entries, err := modules.ReadDir("modules")
	if err != nil {
		return "", err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		data, err := modules.ReadFile("modules/" + n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(data))
		h.Write(data)
	}
	// The binaries themselves: a set built before a binary was added lacks it.
	for _, t := range targets {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00", t.binary, t.pkg, t.dir)
	}
	versions, err := Versions()
	if err != nil {
		return "", err
	}
	return "kubernetes-" + versions["kubernetes"] + "-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}

// Cached returns the binary set if it is already built, without building.
func (b *Builder) Cached(ctx context.Context) (Set, bool, error) {
	dir, err := b.dir(ctx)
	if err != nil {
		return Set{}, false, err
	}
	return Set{Dir: dir}, complete(dir), nil
}

func (b *Builder) dir(ctx context.Context) (string, error) {
	cache := b.CacheDir
	if cache == "" {
		var err error
		if cache, err = DefaultCacheDir(); err != nil {
			return "", err
		}
	}
	key, err := b.Key(ctx)
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, key), nil
}

const completeMarker = ".complete"

func complete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, completeMarker))
	return err == nil
}

// Ensure returns the binary set, building it first if the cache does not hold it. Several
// processes may call it at once (parallel test packages): one builds, the others wait.
func (b *Builder) Ensure(ctx context.Context) (Set, error) {
	dir, err := b.dir(ctx)
	if err != nil {
		return Set{}, err
	}
	if complete(dir) {
		b.progress(Progress{Step: "cached", Message: "lab binaries cached in " + dir})
		return Set{Dir: dir}, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return Set{}, fmt.Errorf("creating binary cache: %w", err)
	}
	unlock, err := lockFile(ctx, dir+".lock", func() {
		b.progress(Progress{Step: "wait", Message: "another process is building the lab binaries; waiting"})
	})
	if err != nil {
		return Set{}, err
	}
	defer unlock()
	if complete(dir) {
		return Set{Dir: dir}, nil
	}
	if err := b.build(ctx, dir); err != nil {
		return Set{}, err
	}
	b.progress(Progress{Step: "done", Message: "lab binaries built in " + dir})
	return Set{Dir: dir}, nil
}

// build compiles every target into a fresh directory and renames it into place, so a failed
// or interrupted build never leaves a half-filled cache entry.
func (b *Builder) build(ctx context.Context, dir string) error {
	versions, err := Versions()
	if err != nil {
		return err
	}
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(tmp, "bin"), 0o755); err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	for _, module := range moduleOrder {
		modDir := filepath.Join(tmp, "src", module)
		if err := b.writeModule(module, modDir); err != nil {
			return err
		}
		var pkgs []string
		for _, t := range targets {
			if t.module == module {
				pkgs = append(pkgs, t.pkg)
			}
		}
		label := fmt.Sprintf("%s %s", mainModule[module], versions[module])
		b.progress(Progress{Step: "download", Module: label, Message: "downloading modules for " + label})
		if _, err := b.run(ctx, modDir, nil, "mod", "download"); err != nil {
			return fmt.Errorf("downloading modules for %s through the Go module proxy: %w", label, err)
		}
		total := 0
		if out, err := b.run(ctx, modDir, nil, append([]string{"list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}"}, pkgs...)...); err == nil {
			total = len(strings.Fields(out))
		}
		var done atomic.Int64
		b.progress(Progress{Step: "build", Module: label, Total: total})
		onLine := func(string) {
			n := int(done.Add(1))
			b.progress(Progress{Step: "build", Module: label, Done: n, Total: total})
		}
		started := time.Now()
		for _, inv := range buildInvocations(module, versions[module], filepath.Join(tmp, "bin")) {
			if err := os.MkdirAll(filepath.Dir(inv.out), 0o755); err != nil {
				return err
			}
			args := []string{"build", "-v", "-trimpath", "-ldflags", inv.ldflags, "-o", inv.out}
			if _, err := b.run(ctx, modDir, onLine, append(args, inv.pkgs...)...); err != nil {
				return fmt.Errorf("building %s: %w", label, err)
			}
		}
		b.progress(Progress{Step: "built", Module: label, Message: fmt.Sprintf("%s in %s", label, time.Since(started).Round(time.Second))})
	}
	// Every binary the lab runs must be there before the cache entry is published.
	for _, t := range targets {
		if _, err := os.Stat(filepath.Join(tmp, "bin", t.dir, t.binary)); err != nil {
			return fmt.Errorf("build of %s produced no %s binary", t.pkg, t.binary)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "bin"), dir); err != nil {
		return fmt.Errorf("moving built binaries into the cache: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, completeMarker), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// invocation is one `go build` of a module: the packages and where their binaries go.
type invocation struct {
	pkgs    []string
	out     string // a directory ending in "/" when several binaries are built at once
	ldflags string
}

// buildInvocations groups a module's targets by output directory, one `go build` each so the
// shared packages compile once. A lone target is written to its exact name (etcd's package
// is go.etcd.io/etcd/server/v3, whose base name is not the binary's); several at once take
// the base names of their packages, which are the binaries' names.
func buildInvocations(module, version, binDir string) []invocation {
	var dirs []string
	byDir := map[string][]target{}
	for _, t := range targets {
		if t.module != module {
			continue
		}
		if _, ok := byDir[t.dir]; !ok {
			dirs = append(dirs, t.dir)
		}
		byDir[t.dir] = append(byDir[t.dir], t)
	}
	var out []invocation
	for _, d := range dirs {
		ts := byDir[d]
		inv := invocation{ldflags: "-s -w"}
		if ts[0].ldflags != nil {
			inv.ldflags += " " + ts[0].ldflags(version)
		}
		for _, t := range ts {
			inv.pkgs = append(inv.pkgs, t.pkg)
		}
		if len(ts) == 1 {
			inv.out = filepath.Join(binDir, d, ts[0].binary)
		} else {
			inv.out = filepath.Join(binDir, d) + "/"
		}
		out = append(out, inv)
	}
	return out
}

func (b *Builder) writeModule(module, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, ext := range []string{"mod", "sum"} {
		data, err := modules.ReadFile("modules/" + module + ".go." + ext)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "go."+ext), data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// run runs the go tool in dir. Lines on stderr go to onLine (go build -v names each package
// there) and to the log; the last lines are kept for the error message.
func (b *Builder) run(ctx context.Context, dir string, onLine func(string), args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, b.goCmd(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly", "GOTOOLCHAIN=local", "CGO_ENABLED=0")
	var stdout strings.Builder
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	var tail []string
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if b.Log != nil {
			fmt.Fprintln(b.Log, line)
		}
		if onLine != nil && !strings.HasPrefix(line, "go: ") && !strings.HasPrefix(line, "#") {
			onLine(line)
		}
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("go %s: %w\n%s", args[0], err, strings.Join(tail, "\n"))
	}
	return stdout.String(), nil
}

// lockFile takes an exclusive flock, calling waiting once if another process holds it.
func lockFile(ctx context.Context, path string, waiting func()) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	told := false
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if !told {
			waiting()
			told = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
