package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations an OCI image index uses to name its images: containerd's full reference, and
// the OCI tag.
const (
	AnnotationImageName = "io.containerd.image.name"
	AnnotationRefName   = "org.opencontainers.image.ref.name"
)

// assemble makes the one-layer image of fs that s describes.
func assemble(fs *rootfs, s spec) (v1.Image, error) {
	layerTar, err := fs.tar()
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:   layer,
		History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "strait lab images: " + s.refs[0], Comment: "built by Strait from Go code"},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = s.arch
	if cf.Architecture == "" {
		cf.Architecture = runtime.GOARCH
	}
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.User = s.user
	cf.Config.Entrypoint = s.entrypoint
	cf.Config.Cmd = s.cmd
	cf.Config.Env = s.env
	if len(cf.Config.Env) == 0 {
		cf.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/strait-io/strait", "org.opencontainers.image.title": s.refs[0]}
	return mutate.ConfigFile(img, cf)
}

// ociLayout is the content of an OCI layout's oci-layout file.
const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

// dockerManifest is one entry of Docker's manifest.json.
type dockerManifest struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

// writeArchive writes img under refs as a tar holding an OCI image layout (index.json names
// each reference with both annotations containerd reads) and Docker's manifest.json over the
// same blobs, as `docker save` does since Docker 25. It writes through a temporary file and
// a rename, and returns the manifest digest.
func writeArchive(dst string, img v1.Image, refs []string) (string, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return "", err
	}
	digest, err := img.Digest()
	if err != nil {
		return "", err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return "", err
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex}
	for _, ref := range refs {
		_, tag := splitRef(ref)
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1, Digest: digest, Size: int64(len(manifest)),
			Platform:    &v1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
			Annotations: map[string]string{AnnotationImageName: ref, AnnotationRefName: tag},
		})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return "", err
	}
	out, err := newLayoutTar(dst)
	if err != nil {
		return "", err
	}
	defer out.abort()
	layers, err := out.image(img)
	if err != nil {
		return "", err
	}
	dmJSON, err := json.Marshal([]dockerManifest{{Config: blobPath(configName), RepoTags: refs, Layers: layers}})
	if err != nil {
		return "", err
	}
	if err := out.bytes("index.json", indexJSON); err != nil {
		return "", err
	}
	if err := out.bytes("manifest.json", dmJSON); err != nil {
		return "", err
	}
	if err := out.commit(); err != nil {
		return "", err
	}
	return digest.String(), nil
}

// ArchiveInfo is what Inspect found in an image archive.
type ArchiveInfo struct {
	// Format is "oci" (an OCI image layout, possibly with Docker's manifest.json too) or
	// "docker" (only manifest.json, as `docker save` wrote before Docker 25).
	Format string
	// Refs are the image references the archive names, as containerd will import them.
	Refs []string
	// Digests are the digests of the manifests the archive's index lists (OCI only).
	Digests []string
}

// maxJSON bounds the files Inspect keeps in memory: manifests, configs and indexes.
const maxJSON = 8 << 20

// blob is a file of the archive: its digest and size, and its content when small enough to
// be metadata.
type blob struct {
	digest string
	size   int64
	data   []byte
}

// Inspect checks that path is an image archive containerd can import, in one pass and
// without extracting it: an OCI image layout (index, manifests, configs and layers all
// present with the sizes and digests their descriptors give) or a Docker archive
// (manifest.json whose config and layers are present). It returns the image names, and an
// error that names the archive and what is wrong with it.
func Inspect(path string) (ArchiveInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return ArchiveInfo{}, err
	}
	defer f.Close()
	files, err := readTar(f)
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("%s is not an image archive: %w", path, err)
	}
	var info ArchiveInfo
	switch {
	case files["oci-layout"] != nil && files["index.json"] != nil:
		info, err = inspectOCI(files)
	case files["manifest.json"] != nil:
		info, err = inspectDocker(files)
	default:
		err = errors.New("it has neither an OCI image layout (oci-layout and index.json) nor Docker's manifest.json")
	}
	if err != nil {
		return ArchiveInfo{}, fmt.Errorf("%s is not a valid image archive: %w", path, err)
	}
	if len(info.Refs) == 0 {
		return ArchiveInfo{}, fmt.Errorf("%s names no image: its index has no %s annotation with a full reference and it has no RepoTags; "+
			"containerd would import it under a made-up name", path, AnnotationImageName)
	}
	return info, nil
}

// readTar reads every regular file of a tar stream, hashing each and keeping the small ones.
func readTar(r io.Reader) (map[string]*blob, error) {
	var head [2]byte
	br := newPeekReader(r)
	if n, _ := br.peek(head[:]); n == 2 && head[0] == 0x1f && head[1] == 0x8b {
		return nil, errors.New("it is gzip-compressed; image archives are plain tar files (gunzip it first)")
	}
	tr := tar.NewReader(br)
	files := map[string]*blob{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("reading it as a tar file: %w", err)
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		name := strings.TrimPrefix(path.Clean("/"+hdr.Name), "/")
		h := sha256.New()
		b := &blob{size: hdr.Size}
		var w io.Writer = h
		var buf bytes.Buffer
		if hdr.Size <= maxJSON {
			w = io.MultiWriter(h, &buf)
		}
		if _, err := io.Copy(w, tr); err != nil {
			return nil, fmt.Errorf("reading %s in it: %w", name, err)
		}
		b.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))
		if hdr.Size <= maxJSON {
			b.data = buf.Bytes()
		}
		files[name] = b
	}
	if len(files) == 0 {
		return nil, errors.New("it holds no files")
	}
	return files, nil
}

func inspectOCI(files map[string]*blob) (ArchiveInfo, error) {
	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(files["oci-layout"].data, &layout); err != nil || layout.Version == "" {
		return ArchiveInfo{}, fmt.Errorf("its oci-layout file is not valid: %v", err)
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"].data, &index); err != nil {
		return ArchiveInfo{}, fmt.Errorf("its index.json is not valid JSON: %w", err)
	}
	if len(index.Manifests) == 0 {
		return ArchiveInfo{}, errors.New("its index.json lists no manifest")
	}
	info := ArchiveInfo{Format: "oci"}
	for _, d := range index.Manifests {
		if err := checkDescriptor(files, d, 0); err != nil {
			return ArchiveInfo{}, err
		}
		info.Digests = append(info.Digests, d.Digest.String())
		if ref := descriptorName(d.Annotations); ref != "" && !slices.Contains(info.Refs, ref) {
			info.Refs = append(info.Refs, ref)
		}
	}
	return info, nil
}

// descriptorName is the reference containerd gives an index entry: its image name, or its
// OCI ref name when that is a full reference rather than a bare tag.
func descriptorName(ann map[string]string) string {
	if n := ann[AnnotationImageName]; n != "" {
		return n
	}
	if n := ann[AnnotationRefName]; strings.Contains(n, "/") {
		return n
	}
	return ""
}

// checkDescriptor checks that the blob d points to is in the archive with d's size and
// digest, and for a manifest or an index, what it points to in turn.
func checkDescriptor(files map[string]*blob, d v1.Descriptor, depth int) error {
	if depth > 8 {
		return errors.New("its indexes nest too deep")
	}
	if len(d.URLs) > 0 {
		return nil // a foreign layer: fetched from its URLs, not carried
	}
	name := "blobs/" + d.Digest.Algorithm + "/" + d.Digest.Hex
	b := files[name]
	if b == nil {
		return fmt.Errorf("blob %s (%s) is missing", d.Digest, d.MediaType)
	}
	if b.size != d.Size {
		return fmt.Errorf("blob %s has %d bytes, its descriptor says %d", d.Digest, b.size, d.Size)
	}
	if d.Digest.Algorithm == "sha256" && b.digest != d.Digest.String() {
		return fmt.Errorf("blob %s has digest %s: it is corrupt", d.Digest, b.digest)
	}
	switch d.MediaType {
	case types.OCIImageIndex, types.DockerManifestList:
		var idx v1.IndexManifest
		if err := json.Unmarshal(b.data, &idx); err != nil {
			return fmt.Errorf("index %s is not valid: %w", d.Digest, err)
		}
		for _, m := range idx.Manifests {
			if err := checkDescriptor(files, m, depth+1); err != nil {
				return err
			}
		}
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		var m v1.Manifest
		if err := json.Unmarshal(b.data, &m); err != nil {
			return fmt.Errorf("manifest %s is not valid: %w", d.Digest, err)
		}
		if err := checkDescriptor(files, m.Config, depth+1); err != nil {
			return err
		}
		for _, l := range m.Layers {
			if err := checkDescriptor(files, l, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func inspectDocker(files map[string]*blob) (ArchiveInfo, error) {
	var ms []dockerManifest
	if err := json.Unmarshal(files["manifest.json"].data, &ms); err != nil {
		return ArchiveInfo{}, fmt.Errorf("its manifest.json is not valid: %w", err)
	}
	if len(ms) == 0 {
		return ArchiveInfo{}, errors.New("its manifest.json lists no image")
	}
	info := ArchiveInfo{Format: "docker"}
	for _, m := range ms {
		clean := func(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }
		cfg := files[clean(m.Config)]
		if m.Config == "" || cfg == nil {
			return ArchiveInfo{}, fmt.Errorf("image config %q named in manifest.json is missing", m.Config)
		}
		var c v1.ConfigFile
		if err := json.Unmarshal(cfg.data, &c); err != nil {
			return ArchiveInfo{}, fmt.Errorf("image config %s is not valid: %w", m.Config, err)
		}
		if len(m.Layers) == 0 {
			return ArchiveInfo{}, fmt.Errorf("image %s has no layers", m.Config)
		}
		for _, l := range m.Layers {
			if files[clean(l)] == nil {
				return ArchiveInfo{}, fmt.Errorf("layer %s named in manifest.json is missing", l)
			}
		}
		for _, t := range m.RepoTags {
			if !slices.Contains(info.Refs, t) {
				info.Refs = append(info.Refs, t)
			}
		}
	}
	return info, nil
}

// peekReader lets readTar look at the first bytes without losing them.
type peekReader struct {
	r    io.Reader
	head []byte
}

func newPeekReader(r io.Reader) *peekReader { return &peekReader{r: r} }

func (p *peekReader) peek(b []byte) (int, error) {
	n, err := io.ReadFull(p.r, b)
	p.head = append(p.head, b[:n]...)
	return n, err
}

func (p *peekReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	return p.r.Read(b)
}
