// Package release builds Strait's release artifacts without a container engine (`make image`,
// `make release-local`, and the release workflow on a tag): static strait binaries for each
// release architecture, the image strait.io/strait:<version> for all of them as one OCI
// archive (internal/lab/images), the Helm chart packaged with the version stamped, and
// SHA256SUMS over everything.
package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"helm.sh/helm/v3/pkg/chartutil"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/version"
)

// Options say what to build.
type Options struct {
	// Dir receives the artifacts (created if missing).
	Dir string
	// Version is stamped into the binaries, tags the image and versions the chart.
	Version string
	// Commit is stamped into the binaries (strait version's gitCommit); may be empty.
	Commit string
	// ModuleDir is the root of Strait's source; default ".".
	ModuleDir string
	// GoCommand is the go tool; default "go".
	GoCommand string
	// Architectures default to images.ReleaseArchitectures.
	Architectures []string
	// Package is the main package built; default ./cmd/strait (tests build a small one).
	Package string
	// ImageOnly builds the binaries and the image archive only (make image).
	ImageOnly bool
	// Progress receives a line per artifact; may be nil.
	Progress func(string)
}

// Artifacts are the files written, by kind; paths are in Options.Dir.
type Artifacts struct {
	Binaries map[string]string // architecture -> binary
	Image    string
	Chart    string
	Sums     string
}

// Build builds the artifacts.
func Build(ctx context.Context, o Options) (Artifacts, error) {
	if o.Version == "" {
		return Artifacts{}, fmt.Errorf("no version given")
	}
	if o.ModuleDir == "" {
		o.ModuleDir = "."
	}
	if o.GoCommand == "" {
		o.GoCommand = "go"
	}
	pkg := o.Package
	if pkg == "" {
		pkg = "./cmd/strait"
	}
	if len(o.Architectures) == 0 {
		o.Architectures = images.ReleaseArchitectures
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return Artifacts{}, err
	}
	progress := func(format string, args ...any) {
		if o.Progress != nil {
			o.Progress(fmt.Sprintf(format, args...))
		}
	}
	a := Artifacts{Binaries: map[string]string{}}
	for _, arch := range o.Architectures {
		out, err := filepath.Abs(filepath.Join(o.Dir, "strait-linux-"+arch))
		if err != nil {
			return a, err
		}
		ldflags := "-s -w -X " + version.VersionVariable + "=" + o.Version
		if o.Commit != "" {
			ldflags += " -X github.com/strait-io/strait/internal/version.GitCommit=" + o.Commit
		}
		// The version and commit are stamped above; VCS stamping would also fail where git
		// refuses the checkout (another owner, as in the unprivileged test run).
		cmd := exec.CommandContext(ctx, o.GoCommand, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, pkg)
		cmd.Dir = o.ModuleDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
		if msg, err := cmd.CombinedOutput(); err != nil {
			return a, fmt.Errorf("building strait for linux/%s: %w\n%s", arch, err, msg)
		}
		a.Binaries[arch] = out
		progress("built %s", out)
	}
	img, err := images.StraitMultiArch(ctx, filepath.Join(o.Dir, "strait-image-"+images.Tag(o.Version)+".oci.tar"), a.Binaries, o.Version)
	if err != nil {
		return a, err
	}
	a.Image = img.Path
	progress("wrote %s (%s for %s)", img.Path, img.Name, strings.Join(o.Architectures, ", "))
	if o.ImageOnly {
		return a, nil
	}
	if a.Chart, err = PackageChart(o.Dir, o.Version); err != nil {
		return a, err
	}
	progress("wrote %s", a.Chart)
	if a.Sums, err = writeSums(o.Dir, a); err != nil {
		return a, err
	}
	progress("wrote %s", a.Sums)
	return a, nil
}

// PackageChart writes the chart as <dir>/strait-<chart version>.tgz, as `helm package` does,
// with its version derived from version (ChartVersion) and its appVersion, the default
// image tag, the image's tag.
func PackageChart(dir, v string) (string, error) {
	c, err := chart.Load()
	if err != nil {
		return "", err
	}
	c.Metadata.Version = ChartVersion(v)
	c.Metadata.AppVersion = images.Tag(v)
	if err := c.Validate(); err != nil {
		return "", fmt.Errorf("chart with version %s: %w", c.Metadata.Version, err)
	}
	return chartutil.Save(c, dir)
}

var notIdentifier = regexp.MustCompile(`[^0-9A-Za-z-]+`)

// ChartVersion is the SemVer 2 version a chart needs: the version without its leading v
// when it is one (v1.2.3 -> 1.2.3), else 0.0.0-dev-<version> (a git describe of an
// untagged tree, e.g. 775b48c-dirty).
func ChartVersion(v string) string {
	trimmed := strings.TrimPrefix(v, "v")
	if _, err := semver.StrictNewVersion(trimmed); err == nil {
		return trimmed
	}
	return "0.0.0-dev-" + strings.Trim(notIdentifier.ReplaceAllString(v, "-"), "-")
}

// writeSums writes SHA256SUMS (sha256sum's format) over every artifact.
func writeSums(dir string, a Artifacts) (string, error) {
	files := []string{a.Image, a.Chart}
	for _, b := range a.Binaries {
		files = append(files, b)
	}
	sort.Strings(files)
	var b strings.Builder
	for _, f := range files {
		sum, err := fileSHA256(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, filepath.Base(f))
	}
	path := filepath.Join(dir, "SHA256SUMS")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
