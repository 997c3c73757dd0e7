package images

import (
	"archive/tar"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/strait-io/strait/internal/lab/containerdtest"
)

// multiArchArchive writes a strait.io/strait archive for amd64 and arm64 from the embedded
// pause program, which stands in for strait (any static binary does).
func multiArchArchive(t *testing.T) (Image, map[string]string) {
	t.Helper()
	ctx := context.Background()
	b := builder(t)
	dir := t.TempDir()
	bins := map[string]string{}
	for _, arch := range ReleaseArchitectures {
		data, err := b.goBuildFor(ctx, "pause", arch)
		if err != nil {
			t.Fatal(err)
		}
		bins[arch] = filepath.Join(dir, "strait-"+arch)
		if err := os.WriteFile(bins[arch], data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img, err := StraitMultiArch(ctx, filepath.Join(dir, "out", "strait.oci.tar"), bins, "v1.2.3+dirty")
	if err != nil {
		t.Fatal(err)
	}
	return img, bins
}

func TestStraitMultiArchHasEveryPlatform(t *testing.T) {
	img, bins := multiArchArchive(t)
	if img.Name != "strait.io/strait:v1.2.3-dirty" {
		t.Errorf("image %s, want strait.io/strait:v1.2.3-dirty", img.Name)
	}
	info, err := Inspect(img.Path)
	if err != nil {
		t.Fatalf("the archive is not one containerd imports: %v", err)
	}
	if !slices.Equal(info.Refs, []string{"strait.io/strait:v1.2.3-dirty"}) {
		t.Errorf("archive names %v", info.Refs)
	}

	blobs := map[string][]byte{}
	f, err := os.Open(img.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		blobs[h.Name] = data
	}
	var top, index v1.IndexManifest
	if err := json.Unmarshal(blobs["index.json"], &top); err != nil || len(top.Manifests) != 1 {
		t.Fatalf("index.json: %v %+v", err, top)
	}
	if err := json.Unmarshal(blobs["blobs/sha256/"+top.Manifests[0].Digest.Hex], &index); err != nil {
		t.Fatal(err)
	}
	var platforms []string
	for _, m := range index.Manifests {
		platforms = append(platforms, m.Platform.OS+"/"+m.Platform.Architecture)
		var manifest v1.Manifest
		if err := json.Unmarshal(blobs["blobs/sha256/"+m.Digest.Hex], &manifest); err != nil {
			t.Fatal(err)
		}
		var cfg v1.ConfigFile
		if err := json.Unmarshal(blobs["blobs/sha256/"+manifest.Config.Digest.Hex], &cfg); err != nil {
			t.Fatal(err)
		}
		if cfg.Architecture != m.Platform.Architecture || cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/strait"}) {
			t.Errorf("%s image config: architecture %s user %s entrypoint %v", m.Platform.Architecture, cfg.Architecture, cfg.Config.User, cfg.Config.Entrypoint)
		}
	}
	if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) {
		t.Errorf("image index platforms %v, want linux/amd64 and linux/arm64", platforms)
	}

	// A binary of the wrong architecture is refused, naming it.
	_, err = StraitMultiArch(context.Background(), filepath.Join(t.TempDir(), "x.tar"), map[string]string{"arm64": bins["amd64"]}, "v1")
	if err == nil || !strings.Contains(err.Error(), "arm64") {
		t.Errorf("an amd64 binary given as arm64: %v", err)
	}
}

// The multi-platform archive imports into a real containerd with the lab's ctr (what
// `strait lab load-image` runs on each node), under its name.
func TestStraitMultiArchImportsIntoContainerd(t *testing.T) {
	cd := containerdtest.StartTemp(t, containerdtest.Binaries(t))
	img, _ := multiArchArchive(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := Import(ctx, cd.Ctr, cd.Socket, img.Path); err != nil {
		t.Fatal(err)
	}
	if got := cd.Images(t, CRINamespace); !slices.Contains(got, img.Name) {
		t.Errorf("containerd has %q, want %s", got, img.Name)
	}
}
