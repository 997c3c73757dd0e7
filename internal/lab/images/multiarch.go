package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ReleaseArchitectures are the architectures of Strait's released image.
var ReleaseArchitectures = []string{"amd64", "arm64"}

// StraitMultiArch writes to dst an image archive of strait.io/strait:<tag of version> for
// several architectures: an OCI image layout whose index.json names one OCI image index with
// one manifest per architecture, each the image Strait builds for the lab from that
// architecture's static binary. binaries maps an architecture (GOARCH) to its binary.
// `ctr images import` takes it (the host's platform, or all with --all-platforms), and so do
// `strait lab load-image`, `skopeo copy oci-archive:` and `crane push`; Docker's
// manifest.json is left out, as it can describe only one platform.
func StraitMultiArch(ctx context.Context, dst string, binaries map[string]string, version string) (Image, error) {
	if len(binaries) == 0 {
		return Image{}, fmt.Errorf("no binaries given; want one per architecture of %v", ReleaseArchitectures)
	}
	if version == "" {
		return Image{}, fmt.Errorf("no version given for the image tag")
	}
	ref := Strait + ":" + Tag(version)
	archs := make([]string, 0, len(binaries))
	for arch := range binaries {
		archs = append(archs, arch)
	}
	sort.Strings(archs)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	var imgs []v1.Image
	for _, arch := range archs {
		data, err := os.ReadFile(binaries[arch])
		if err != nil {
			return Image{}, fmt.Errorf("reading the %s strait binary: %w", arch, err)
		}
		if err := checkStaticFor(binaries[arch], data, arch); err != nil {
			return Image{}, err
		}
		s := straitSpec(data, []string{ref}, arch)
		fs, err := s.rootfs(ctx)
		if err != nil {
			return Image{}, err
		}
		img, err := assemble(fs, s)
		if err != nil {
			return Image{}, fmt.Errorf("assembling the %s image: %w", arch, err)
		}
		imgs = append(imgs, img)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	digest, err := writeIndexArchive(dst, idx, imgs, ref)
	if err != nil {
		return Image{}, err
	}
	return Image{Name: ref, Refs: []string{ref}, Path: dst, Digest: digest}, nil
}

// writeIndexArchive writes the OCI layout tar of idx (whose manifests are imgs) named ref,
// through a temporary file and a rename; it returns the index's digest.
func writeIndexArchive(dst string, idx v1.ImageIndex, imgs []v1.Image, ref string) (string, error) {
	rawIndex, err := idx.RawManifest()
	if err != nil {
		return "", err
	}
	indexDigest, err := idx.Digest()
	if err != nil {
		return "", err
	}
	_, tag := splitRef(ref)
	top := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: []v1.Descriptor{{
		MediaType: types.OCIImageIndex, Digest: indexDigest, Size: int64(len(rawIndex)),
		Annotations: map[string]string{AnnotationImageName: ref, AnnotationRefName: tag},
	}}}
	topJSON, err := json.Marshal(top)
	if err != nil {
		return "", err
	}
	blobs := map[v1.Hash]func() (io.ReadCloser, int64, error){}
	addBytes := func(h v1.Hash, data []byte) {
		blobs[h] = func() (io.ReadCloser, int64, error) {
			return io.NopCloser(bytes.NewReader(data)), int64(len(data)), nil
		}
	}
	addBytes(indexDigest, rawIndex)
	for _, img := range imgs {
		m, err := img.RawManifest()
		if err != nil {
			return "", err
		}
		d, err := img.Digest()
		if err != nil {
			return "", err
		}
		addBytes(d, m)
		c, err := img.RawConfigFile()
		if err != nil {
			return "", err
		}
		cn, err := img.ConfigName()
		if err != nil {
			return "", err
		}
		addBytes(cn, c)
		layers, err := img.Layers()
		if err != nil {
			return "", err
		}
		for _, l := range layers {
			h, err := l.Digest()
			if err != nil {
				return "", err
			}
			blobs[h] = func() (io.ReadCloser, int64, error) {
				size, err := l.Size()
				if err != nil {
					return nil, 0, err
				}
				rc, err := l.Compressed()
				return rc, size, err
			}
		}
	}
	hashes := make([]v1.Hash, 0, len(blobs))
	for h := range blobs {
		hashes = append(hashes, h)
	}
	sort.Slice(hashes, func(i, j int) bool { return hashes[i].String() < hashes[j].String() })

	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	write := func(name string, r io.Reader, size int64) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return "", err
		}
	}
	for _, h := range hashes {
		rc, size, err := blobs[h]()
		if err != nil {
			return "", err
		}
		err = write("blobs/"+h.Algorithm+"/"+h.Hex, rc, size)
		rc.Close()
		if err != nil {
			return "", err
		}
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{"index.json", topJSON}, {"oci-layout", []byte(ociLayout)}} {
		if err := write(f.name, bytes.NewReader(f.data), int64(len(f.data))); err != nil {
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return indexDigest.String(), nil
}
