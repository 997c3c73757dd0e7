// Package version says which Strait a binary is: the version `make build` stamps with
// -ldflags "-X github.com/strait-io/strait/internal/version.Version=<git describe>", else
// the module version the Go command recorded (a tagged module, or the pseudo-version of the
// checkout's commit, "+dirty" when it had changes), and the commit it was built from.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
)

// Version and GitCommit are set at build time with -ldflags -X (see VersionVariable);
// empty otherwise.
var (
	Version   string
	GitCommit string
)

// VersionVariable is the name -ldflags -X sets: -X <VersionVariable>=v1.2.3.
const VersionVariable = "github.com/strait-io/strait/internal/version.Version"

// Info describes a build, as `strait version -o json|yaml` prints it.
type Info struct {
	Version   string `json:"version"`
	GitCommit string `json:"gitCommit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get describes this binary.
func Get() Info {
	info := Info{Version: Version, GitCommit: GitCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" {
			info.Version = FromBuildInfo(bi)
		}
		if info.GitCommit == "" {
			info.GitCommit = Commit(bi)
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is this binary's version.
func String() string { return Get().Version }

// FromBuildInfo is the version of the binary bi describes: the value -ldflags -X gave
// Version, else the main module's version; empty for a build that recorded neither (a
// "(devel)" build without version control information).
func FromBuildInfo(bi *debug.BuildInfo) string {
	for _, s := range bi.Settings {
		if s.Key == "-ldflags" {
			if v, ok := ldflagsVersion(s.Value); ok {
				return v
			}
		}
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	return ""
}

// Commit is the VCS revision bi records, with "-dirty" when the tree had changes.
func Commit(bi *debug.BuildInfo) string {
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" && dirty {
		rev += "-dirty"
	}
	return rev
}

// ldflagsVersion finds -X <VersionVariable>=<v> in the linker flags the Go command recorded.
func ldflagsVersion(flags string) (string, bool) {
	fields := strings.Fields(flags)
	for i, f := range fields {
		var arg string
		switch {
		case f == "-X" && i+1 < len(fields):
			arg = fields[i+1]
		case strings.HasPrefix(f, "-X="):
			arg = strings.TrimPrefix(f, "-X=")
		default:
			continue
		}
		arg = strings.Trim(arg, `'"`)
		if v, ok := strings.CutPrefix(arg, VersionVariable+"="); ok && v != "" {
			return v, true
		}
	}
	return "", false
}
