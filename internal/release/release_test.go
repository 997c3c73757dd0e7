package release

import (
	"bufio"
	"context"
	"debug/elf"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"

	"github.com/strait-io/strait/internal/lab/images"
)

func TestChartVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                   "1.2.3",
		"1.2.3-rc.1":               "1.2.3-rc.1",
		"775b48c-dirty":            "0.0.0-dev-775b48c-dirty",
		"v1.2.3-4-g775b48c-dirty":  "1.2.3-4-g775b48c-dirty",
		"v0.0.0-2026+dirty":        "0.0.0-2026+dirty",
		"0123abc":                  "0.0.0-dev-0123abc",
		"v1.2.3-4-g775b48c+build2": "1.2.3-4-g775b48c+build2",
	} {
		if got := ChartVersion(in); got != want {
			t.Errorf("ChartVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPackageChartStampsTheVersion(t *testing.T) {
	dir := t.TempDir()
	path, err := PackageChart(dir, "v1.4.0+dirty")
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "strait-1.4.0+dirty.tgz" {
		t.Errorf("chart package %s", filepath.Base(path))
	}
	c, err := loader.Load(path)
	if err != nil {
		t.Fatalf("helm cannot load the packaged chart: %v", err)
	}
	// appVersion is the default image tag: the tag the image archive carries.
	if c.Metadata.AppVersion != images.Tag("v1.4.0+dirty") {
		t.Errorf("appVersion %q, want the image tag %q", c.Metadata.AppVersion, images.Tag("v1.4.0+dirty"))
	}
	if len(c.CRDObjects()) != 4 || c.Schema == nil {
		t.Errorf("packaged chart has %d CRDs and schema %v", len(c.CRDObjects()), c.Schema != nil)
	}
}

// make release-local's core: every artifact is there, SHA256SUMS covers them, the binaries
// are static for their architecture, the image archive names the version.
func TestBuild(t *testing.T) {
	// A small main package stands in for strait: cross-compiling all of strait for two
	// architectures takes many minutes and tests nothing more of the release itself.
	dir := t.TempDir()
	a, err := Build(context.Background(), Options{Dir: dir, Version: "v9.9.9", Commit: "abc", ModuleDir: filepath.Join("..", ".."),
		Package: "./internal/release/testdata/stand-in"})
	if err != nil {
		t.Fatal(err)
	}
	machines := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for arch, m := range machines {
		f, err := elf.Open(a.Binaries[arch])
		if err != nil {
			t.Fatalf("%s binary: %v", arch, err)
		}
		if f.Machine != m {
			t.Errorf("%s binary is for %s", arch, f.Machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s binary is dynamically linked", arch)
			}
		}
		f.Close()
	}
	info, err := images.Inspect(a.Image)
	if err != nil || !slices.Equal(info.Refs, []string{"strait.io/strait:v9.9.9"}) {
		t.Errorf("image archive: %v %v", info.Refs, err)
	}
	if filepath.Base(a.Chart) != "strait-9.9.9.tgz" {
		t.Errorf("chart %s, want strait-9.9.9.tgz", a.Chart)
	}
	sums, err := os.Open(a.Sums)
	if err != nil {
		t.Fatal(err)
	}
	defer sums.Close()
	var listed []string
	sc := bufio.NewScanner(sums)
	for sc.Scan() {
		sum, name, _ := strings.Cut(sc.Text(), "  ")
		listed = append(listed, name)
		got, err := fileSHA256(filepath.Join(dir, name))
		if err != nil || got != sum {
			t.Errorf("SHA256SUMS says %s for %s, file has %s (%v)", sum, name, got, err)
		}
	}
	want := []string{"strait-9.9.9.tgz", "strait-image-v9.9.9.oci.tar", "strait-linux-amd64", "strait-linux-arm64"}
	if !slices.Equal(listed, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", listed, want)
	}
}
