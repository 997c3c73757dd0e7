package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// epoch is the time of every file and of every image: fixed, so builds are reproducible.
var epoch = time.Unix(0, 0).UTC()

// entry is one file, directory or symbolic link of an image's root filesystem.
type entry struct {
	typ  byte // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	mode int64
	data []byte
	link string
}

// rootfs is an image's root filesystem in memory, by path without a leading slash.
type rootfs struct {
	entries map[string]entry
	err     error
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]entry{}} }

// add records an entry and its parent directories. Adding the same path twice as the same
// thing is fine (a library two programs need); as two different things is an error, kept
// for tar().
func (fs *rootfs) add(p string, e entry) {
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" {
		return
	}
	if dir := path.Dir(p); dir != "." {
		fs.add(dir, entry{typ: tar.TypeDir, mode: 0o755})
	}
	if old, ok := fs.entries[p]; ok {
		if old.typ != e.typ || old.link != e.link || !bytes.Equal(old.data, e.data) {
			if fs.err == nil {
				fs.err = fmt.Errorf("the image would have /%s twice, as different things", p)
			}
		}
		if e.typ == tar.TypeDir && old.typ == tar.TypeDir && e.mode != 0o755 {
			fs.entries[p] = e
		}
		return
	}
	fs.entries[p] = e
}

func (fs *rootfs) addFile(p string, mode int64, data []byte) {
	fs.add(p, entry{typ: tar.TypeReg, mode: mode, data: data})
}

func (fs *rootfs) addDir(p string, mode int64) { fs.add(p, entry{typ: tar.TypeDir, mode: mode}) }

func (fs *rootfs) addSymlink(p, target string) {
	fs.add(p, entry{typ: tar.TypeSymlink, mode: 0o777, link: target})
}

// addBase adds what programs expect of a minimal system, as distroless' static image has:
// users root and nonroot (65532), their groups, a home for nonroot and a writable /tmp.
func (fs *rootfs) addBase() {
	fs.addFile("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\n"+
		"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
	fs.addFile("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
	fs.addDir("root", 0o700)
	fs.addDir("home/nonroot", 0o700)
	fs.addDir("tmp", 0o1777)
}

// tar writes the filesystem as a layer: sorted paths (a parent sorts before its children),
// owner root, the fixed time. nonroot's home belongs to nonroot.
func (fs *rootfs) tar() ([]byte, error) {
	if fs.err != nil {
		return nil, fs.err
	}
	paths := make([]string, 0, len(fs.entries))
	for p := range fs.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := fs.entries[p]
		hdr := &tar.Header{
			Typeflag: e.typ, Name: p, Mode: e.mode, Linkname: e.link,
			ModTime: epoch, Format: tar.FormatPAX,
		}
		if e.typ == tar.TypeDir {
			hdr.Name += "/"
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if p == "home/nonroot" {
			hdr.Uid, hdr.Gid = 65532, 65532
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caBundle is Debian's bundle of trusted CA certificates (package ca-certificates).
const caBundle = "/etc/ssl/certs/ca-certificates.crt"

// debugFiles is what the debug image copies from the host.
type debugFiles struct {
	busybox string   // a static busybox
	applets []string // its applets, each a link in /bin
	tools   []string // curl and dig, copied to /usr/bin
	libs    []string // the libraries and loader ldd names for the tools
}

// debugHostFiles finds the debug image's files on the host, with errors that name the
// Debian package to install.
func debugHostFiles(ctx context.Context) (*debugFiles, error) {
	d := &debugFiles{}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("the debug image needs a static busybox (Debian package busybox-static): %w", err)
	}
	if static, err := isStatic(bb); err != nil || !static {
		return nil, fmt.Errorf("the debug image needs a static busybox, and %s is not one (install Debian package busybox-static)", bb)
	}
	d.busybox = bb
	out, err := exec.CommandContext(ctx, bb, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w", bb, err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			d.applets = append(d.applets, a)
		}
	}
	sort.Strings(d.applets)
	libs := map[string]bool{}
	for _, tool := range []struct{ bin, pkg string }{{"curl", "curl"}, {"dig", "dnsutils"}} {
		p, err := exec.LookPath(tool.bin)
		if err != nil {
			return nil, fmt.Errorf("the debug image copies %s from the host (Debian package %s): %w", tool.bin, tool.pkg, err)
		}
		d.tools = append(d.tools, p)
		deps, err := ldd(ctx, p)
		if err != nil {
			return nil, err
		}
		for _, l := range deps {
			libs[l] = true
		}
	}
	for l := range libs {
		d.libs = append(d.libs, l)
	}
	sort.Strings(d.libs)
	if _, err := os.Stat(caBundle); err != nil {
		return nil, fmt.Errorf("the debug image carries the host's CA bundle for curl (Debian package ca-certificates): %w", err)
	}
	return d, nil
}

// ldd lists the shared libraries (and the dynamic loader) a program needs, as paths.
func ldd(ctx context.Context, program string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ldd", program).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ldd %s (Debian package libc-bin): %w\n%s", program, err, out)
	}
	return parseLdd(program, string(out))
}

// parseLdd reads ldd's output: "name => /path (0x..)", "/lib64/ld-linux-x86-64.so.2 (0x..)",
// and the vDSO, which has no file.
func parseLdd(program, out string) ([]string, error) {
	var libs []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "linux-vdso") || strings.HasPrefix(line, "linux-gate") {
			continue
		}
		if strings.Contains(line, "not found") {
			return nil, fmt.Errorf("%s needs a library the host lacks: %s", program, line)
		}
		if strings.Contains(line, "statically linked") || strings.Contains(line, "not a dynamic executable") {
			continue
		}
		if _, after, ok := strings.Cut(line, "=>"); ok {
			line = strings.TrimSpace(after)
		}
		p := strings.Fields(line)
		if len(p) == 0 || !strings.HasPrefix(p[0], "/") {
			continue
		}
		libs = append(libs, p[0])
	}
	return libs, nil
}

// key hashes every file the debug image would hold, by path and content.
func (d *debugFiles) key() (string, error) {
	fs, err := d.rootfs()
	if err != nil {
		return "", err
	}
	h := sha256.New()
	paths := make([]string, 0, len(fs.entries))
	for p := range fs.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		e := fs.entries[p]
		sum := sha256.Sum256(e.data)
		fmt.Fprintf(h, "%s\x00%c\x00%o\x00%s\x00%x\n", p, e.typ, e.mode, e.link, sum)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// rootfs lays the debug image out: busybox and its applets in /bin, curl and dig in /usr/bin,
// their libraries where the host has them (with the host's symbolic links on the way, so
// the loader path the programs carry resolves), the CA bundle and a few /etc files.
func (d *debugFiles) rootfs() (*rootfs, error) {
	fs := newRootfs()
	fs.addBase()
	bb, err := os.ReadFile(d.busybox)
	if err != nil {
		return nil, err
	}
	fs.addFile("bin/busybox", 0o755, bb)
	for _, a := range d.applets {
		fs.addSymlink("bin/"+a, "busybox")
	}
	for _, t := range d.tools {
		data, err := os.ReadFile(t)
		if err != nil {
			return nil, err
		}
		fs.addFile("usr/bin/"+filepath.Base(t), 0o755, data)
	}
	for _, l := range d.libs {
		if err := copyHostPath(fs, l); err != nil {
			return nil, err
		}
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return nil, err
	}
	fs.addFile(strings.TrimPrefix(caBundle, "/"), 0o644, ca)
	fs.addFile("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"))
	return fs, fs.err
}

// copyHostPath copies a file from the host to the same path in fs, following symbolic links
// component by component and recreating each one (on a merged-/usr host /lib64 is a link
// to usr/lib64, whose loader is a link into /lib/x86_64-linux-gnu), so the path resolves in
// the image as it does on the host.
func copyHostPath(fs *rootfs, p string) error {
	for range 40 {
		resolved, err := copyComponents(fs, p)
		if err != nil {
			return err
		}
		if resolved == "" {
			return nil
		}
		p = resolved
	}
	return fmt.Errorf("too many symbolic links resolving %s", p)
}

// copyComponents walks p's components; at the first symbolic link it records the link and
// returns the path it leads to, to walk again; at a regular file it copies it and returns "".
func copyComponents(fs *rootfs, p string) (string, error) {
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = path.Join(cur, part)
		fi, err := os.Lstat(cur)
		if err != nil {
			return "", err
		}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, err := os.Readlink(cur)
			if err != nil {
				return "", err
			}
			fs.addSymlink(cur, target)
			next := target
			if !path.IsAbs(next) {
				next = path.Join(path.Dir(cur), target)
			}
			return path.Join(append([]string{next}, parts[i+1:]...)...), nil
		case fi.IsDir():
			continue
		case fi.Mode().IsRegular() && i == len(parts)-1:
			data, err := os.ReadFile(cur)
			if err != nil {
				return "", err
			}
			fs.addFile(cur, int64(fi.Mode().Perm()), data)
			return "", nil
		default:
			return "", fmt.Errorf("%s is neither a file, a directory nor a symbolic link", cur)
		}
	}
	return "", fmt.Errorf("%s is a directory, not a file", p)
}

// isStatic reports whether an ELF program has no dynamic loader.
func isStatic(p string) (bool, error) {
	f, err := elf.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}
