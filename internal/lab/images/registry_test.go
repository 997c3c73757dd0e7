package images

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestNormalizeRef(t *testing.T) {
	for in, want := range map[string]string{
		"strait.io/lab/pause":              "strait.io/lab/pause:latest",
		"strait.io/lab/pause:latest":       "strait.io/lab/pause:latest",
		"strait.io/strait:v1":              "strait.io/strait:v1",
		"nginx":                            "docker.io/library/nginx:latest",
		"docker.io/nginx:1":                "docker.io/library/nginx:1",
		"myorg/app:v2":                     "docker.io/myorg/app:v2",
		"localhost/app":                    "localhost/app:latest",
		"127.0.0.1:5000/a/b":               "127.0.0.1:5000/a/b:latest",
		"ghcr.io/x/y@sha256:0123456789abc": "ghcr.io/x/y@sha256:0123456789abc",
	} {
		if got := NormalizeRef(in); got != want {
			t.Errorf("NormalizeRef(%q) = %q, want %q", in, got, want)
		}
	}
}

// The registry serves an archive's image as it is: a client pulls the manifest the archive
// carries (same digest), for strait.io by default and for another registry through ns, as
// a containerd mirror asks; anything else is not found.
func TestRegistryServesArchivesAsTheyAre(t *testing.T) {
	b := builder(t)
	img, err := b.Build(t.Context(), Pause)
	if err != nil {
		t.Fatal(err)
	}
	reg := &Registry{Archives: func() []string { return []string{img.Path} }}
	srv := httptest.NewServer(reg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	ref, err := name.ParseReference(host+"/lab/pause:latest", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(ref)
	if err != nil {
		t.Fatalf("pulling %s: %v", ref, err)
	}
	if desc.Digest.String() != img.Digest {
		t.Errorf("manifest digest %s, archive's %s", desc.Digest, img.Digest)
	}
	pulled, err := desc.Image()
	if err != nil {
		t.Fatal(err)
	}
	layers, err := pulled.Layers()
	if err != nil || len(layers) == 0 {
		t.Fatalf("layers: %v, %v", layers, err)
	}
	rc, err := layers[0].Compressed()
	if err != nil {
		t.Fatalf("fetching a layer blob: %v", err)
	}
	rc.Close()

	for _, missing := range []string{"/v2/lab/nothing/manifests/latest", "/v2/lab/pause/manifests/v9",
		"/v2/lab/pause/manifests/latest?ns=docker.io"} {
		resp, err := srv.Client().Get(srv.URL + missing)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("GET %s: %s, want 404", missing, resp.Status)
		}
	}
	resp, err := srv.Client().Head(srv.URL + "/v2/lab/pause/manifests/latest?ns=strait.io")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != img.Digest {
		t.Errorf("HEAD with ns=strait.io: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}
}
