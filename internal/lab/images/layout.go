package images

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// layoutTar writes an OCI image layout as a tar (reproducibly: fixed times and modes),
// through a temporary file that commit renames into place; a blob is written once however
// often it is added.
type layoutTar struct {
	dst     string
	tmp     *os.File
	tw      *tar.Writer
	written map[v1.Hash]bool
}

func newLayoutTar(dst string) (*layoutTar, error) {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".*")
	if err != nil {
		return nil, err
	}
	l := &layoutTar{dst: dst, tmp: tmp, tw: tar.NewWriter(tmp), written: map[v1.Hash]bool{}}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			l.abort()
			return nil, err
		}
	}
	return l, nil
}

// blobPath is a blob's path in the layout.
func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// file writes one regular file.
func (l *layoutTar) file(name string, r io.Reader, size int64) error {
	if err := l.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err := io.Copy(l.tw, r)
	return err
}

// bytes writes one regular file from memory.
func (l *layoutTar) bytes(name string, data []byte) error {
	return l.file(name, bytes.NewReader(data), int64(len(data)))
}

// blob writes data as the blob h, unless it was written already.
func (l *layoutTar) blob(h v1.Hash, data []byte) error {
	if l.written[h] {
		return nil
	}
	l.written[h] = true
	return l.bytes(blobPath(h), data)
}

// image writes img's config, layers and manifest as blobs, and returns the paths of its
// layers.
func (l *layoutTar) image(img v1.Image) ([]string, error) {
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	configName, err := img.ConfigName()
	if err != nil {
		return nil, err
	}
	if err := l.blob(configName, config); err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, layer := range layers {
		h, err := layer.Digest()
		if err != nil {
			return nil, err
		}
		paths = append(paths, blobPath(h))
		if l.written[h] {
			continue
		}
		if err := l.layer(h, layer); err != nil {
			return nil, err
		}
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, err
	}
	return paths, l.blob(digest, manifest)
}

func (l *layoutTar) layer(h v1.Hash, layer v1.Layer) error {
	size, err := layer.Size()
	if err != nil {
		return err
	}
	rc, err := layer.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	l.written[h] = true
	return l.file(blobPath(h), rc, size)
}

// commit writes oci-layout, closes the tar and renames it to its destination.
func (l *layoutTar) commit() error {
	if err := l.bytes("oci-layout", []byte(ociLayout)); err != nil {
		return err
	}
	if err := l.tw.Close(); err != nil {
		return err
	}
	if err := l.tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(l.tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(l.tmp.Name(), l.dst)
}

// abort removes the temporary file unless commit renamed it; deferred after newLayoutTar.
func (l *layoutTar) abort() {
	l.tmp.Close()
	os.Remove(l.tmp.Name())
}
