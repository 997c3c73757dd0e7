package images

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
	out, err := newLayoutTar(dst)
	if err != nil {
		return "", err
	}
	defer out.abort()
	if err := out.blob(indexDigest, rawIndex); err != nil {
		return "", err
	}
	for _, img := range imgs {
		if _, err := out.image(img); err != nil {
			return "", err
		}
	}
	if err := out.bytes("index.json", topJSON); err != nil {
		return "", err
	}
	if err := out.commit(); err != nil {
		return "", err
	}
	return indexDigest.String(), nil
}
