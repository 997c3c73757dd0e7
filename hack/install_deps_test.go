// Package hack holds the project's scripts; its test checks hack/install-deps.sh against a
// directory of stand-in commands, so it installs nothing, needs no root and runs with -short.
package hack

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tools maps each Debian package install-deps.sh handles to the command that shows it is
// installed.
var tools = map[string]string{
	"nftables": "nft", "iproute2": "ip", "runc": "runc", "busybox-static": "busybox",
	"dnsutils": "dig", "bind9": "named", "bind9-utils": "named-checkconf", "dnsperf": "dnsperf",
	"curl": "curl", "ca-certificates": "update-ca-certificates", "procps": "pgrep",
	"util-linux": "setpriv", "make": "make", "git": "git",
}

type host struct {
	dir, aptLog string
}

// newHost makes a directory of stand-ins: every tool but the missing ones, id answering uid,
// and, with apt, an apt-get that logs its arguments and "installs" a package by creating its
// command's stand-in.
func newHost(t *testing.T, uid string, apt bool, missing ...string) host {
	t.Helper()
	h := host{dir: t.TempDir()}
	h.aptLog = filepath.Join(h.dir, "apt.log")
	write := func(name, script string) {
		if err := os.WriteFile(filepath.Join(h.dir, name), []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for pkg, cmd := range tools {
		if !slices.Contains(missing, pkg) {
			write(cmd, "exit 0\n")
		}
	}
	write("id", "echo "+uid+"\n")
	if apt {
		var install strings.Builder
		for pkg, cmd := range tools {
			install.WriteString("\t" + pkg + ") printf '#!/bin/sh\\n' >" + h.dir + "/" + cmd + "; /bin/chmod 755 " + h.dir + "/" + cmd + " ;;\n")
		}
		write("apt-get", `echo "$*" >>`+h.aptLog+`
[ "$1" = install ] || exit 0
for a; do
	case $a in
`+install.String()+`	esac
done
`)
	}
	return h
}

// run runs the script with the stand-ins as its only commands.
func (h host) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command("./install-deps.sh", args...)
	cmd.Env = append(os.Environ(), "STRAIT_DEPS_PATH="+h.dir)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// aptCalls returns apt-get's command lines, one per call.
func (h host) aptCalls(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(h.aptLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(data)), "\n")
}

func contains(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, text)
		}
	}
}

func TestInstallDeps(t *testing.T) {
	t.Run("check, all present", func(t *testing.T) {
		h := newHost(t, "1000", true)
		out, errOut, code := h.run(t, "--check")
		if code != 0 || out != "install-deps: every tool is installed\n" || errOut != "" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if calls := h.aptCalls(t); calls != nil {
			t.Errorf("apt-get ran: %q", calls)
		}
	})
	t.Run("check lists the missing packages and installs nothing, even as root", func(t *testing.T) {
		h := newHost(t, "0", true, "dnsutils", "nftables")
		_, errOut, code := h.run(t, "--check")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		contains(t, "--check", errOut, "missing Debian packages:\n  nftables (for nft)\n  dnsutils (for dig)\n",
			"install with: sudo apt-get install nftables dnsutils")
		if strings.Contains(errOut, "busybox") {
			t.Errorf("--check lists a present package:\n%s", errOut)
		}
		if calls := h.aptCalls(t); calls != nil {
			t.Errorf("apt-get ran: %q", calls)
		}
	})
	t.Run("all present: nothing to do, no root needed", func(t *testing.T) {
		h := newHost(t, "1000", true)
		out, errOut, code := h.run(t)
		if code != 0 || out != "" || errOut != "" {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if calls := h.aptCalls(t); calls != nil {
			t.Errorf("apt-get ran: %q", calls)
		}
	})
	t.Run("not root: the exact command to run", func(t *testing.T) {
		h := newHost(t, "1000", true, "bind9")
		_, errOut, code := h.run(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		contains(t, "the error", errOut, "these Debian packages are missing:\n  bind9 (for named)\n", "  sudo apt-get install bind9\n")
		if calls := h.aptCalls(t); calls != nil {
			t.Errorf("apt-get ran: %q", calls)
		}
	})
	t.Run("no apt-get: what is missing", func(t *testing.T) {
		h := newHost(t, "0", false, "runc", "busybox-static")
		_, errOut, code := h.run(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		contains(t, "the error", errOut, "there is no apt-get", "  runc (for runc)\n  busybox-static (for busybox)\n")
	})
	t.Run("root: apt-get update, then only the missing packages", func(t *testing.T) {
		h := newHost(t, "0", true, "dnsutils", "bind9", "dnsperf")
		out, errOut, code := h.run(t)
		if code != 0 {
			t.Errorf("exit %d, stderr %s", code, errOut)
		}
		contains(t, "the output", out, "--- installing Debian packages: dnsutils bind9 dnsperf")
		want := []string{"update -qq", "install -y -qq --no-install-recommends dnsutils bind9 dnsperf"}
		if calls := h.aptCalls(t); !slices.Equal(calls, want) {
			t.Errorf("apt-get calls %q, want %q", calls, want)
		}
		// Run again: everything is there now, and apt-get is not asked again.
		if out, errOut, code := h.run(t); code != 0 || out != "" || errOut != "" {
			t.Errorf("second run: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if calls := h.aptCalls(t); len(calls) != 2 {
			t.Errorf("the second run called apt-get: %q", calls)
		}
	})
	t.Run("root: a package that does not bring its tool is an error", func(t *testing.T) {
		h := newHost(t, "0", true, "curl")
		if err := os.WriteFile(filepath.Join(h.dir, "apt-get"), []byte("#!/bin/sh\necho \"$*\" >>"+h.aptLog+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		_, errOut, code := h.run(t)
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		contains(t, "the error", errOut, "these tools are still missing:\n  curl (for curl)")
	})
	t.Run("bad argument", func(t *testing.T) {
		h := newHost(t, "0", true)
		_, errOut, code := h.run(t, "--dry-run")
		if code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		contains(t, "the error", errOut, "unknown argument '--dry-run'; use --check")
	})
}

// TestToolsMatchTheScript: the test's table and the script's list are the same packages.
func TestToolsMatchTheScript(t *testing.T) {
	script, err := os.ReadFile("install-deps.sh")
	if err != nil {
		t.Fatal(err)
	}
	for pkg, cmd := range tools {
		if !strings.Contains(string(script), "\t\""+pkg+" "+cmd+"\"") {
			t.Errorf("install-deps.sh does not map %s to %s", pkg, cmd)
		}
	}
	if n := strings.Count(string(script), "\n\t\""); n != len(tools) {
		t.Errorf("install-deps.sh lists %d packages, the test %d", n, len(tools))
	}
}
