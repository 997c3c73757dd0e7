package images

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// DefaultRegistryHost is the registry a request names when it carries no ns parameter: a
// node's containerd asks the lab registry as the server of strait.io, and as a mirror of
// every other registry (then ns names that registry).
const DefaultRegistryHost = "strait.io"

// Registry is a read-only OCI distribution registry (pull only) that serves the images of
// image archives, as they are: the same manifests and blobs, so the digests a node pulls are
// those it imported. A lab node's containerd uses it for strait.io and as a mirror of
// every registry, which makes imagePullPolicy Always work for the lab's images and for
// images loaded with `strait lab load-image`, with no registry to run and nothing to push.
type Registry struct {
	// Archives lists the archives to serve; it is called on every request that needs an
	// index, so archives added meanwhile are served at once.
	Archives func() []string

	mu      sync.Mutex
	indexed map[string]*archiveIndex // by path
}

// archiveIndex is what the registry knows of one archive.
type archiveIndex struct {
	mtime time.Time
	size  int64
	refs  map[string]v1.Descriptor // full reference (docker.io/library/x:tag) -> manifest
	blobs map[string]blobEntry     // digest -> where the blob is in the tar
}

type blobEntry struct {
	name string // file name in the tar
	size int64
	data []byte // kept for manifests and indexes, which are small
}

// ServeHTTP answers the pull side of the distribution API: /v2/, manifests by tag or
// digest, and blobs, for GET and HEAD.
func (r *Registry) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		registryError(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "this registry only serves pulls")
		return
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	if p == "" || req.URL.Path == "/v2" {
		w.WriteHeader(http.StatusOK)
		return
	}
	var repo, kind, ref string
	for _, k := range []string{"/manifests/", "/blobs/"} {
		if i := strings.LastIndex(p, k); i > 0 {
			repo, kind, ref = p[:i], strings.Trim(k, "/"), p[i+len(k):]
			break
		}
	}
	if repo == "" || ref == "" {
		registryError(w, http.StatusNotFound, "NAME_UNKNOWN", "no such path")
		return
	}
	host := req.URL.Query().Get("ns")
	if host == "" {
		host = DefaultRegistryHost
	}
	name := host + "/" + repo
	indexes := r.indexes()
	switch kind {
	case "manifests":
		if strings.HasPrefix(ref, "sha256:") {
			r.serveBlob(w, req, indexes, ref, true)
			return
		}
		for _, idx := range indexes {
			if d, ok := idx.refs[NormalizeRef(name+":"+ref)]; ok {
				r.serveBlob(w, req, indexes, d.Digest.String(), true)
				return
			}
		}
		registryError(w, http.StatusNotFound, "MANIFEST_UNKNOWN", fmt.Sprintf("no image %s:%s", name, ref))
	case "blobs":
		r.serveBlob(w, req, indexes, ref, false)
	}
}

func (r *Registry) serveBlob(w http.ResponseWriter, req *http.Request, indexes map[string]*archiveIndex, digest string, manifest bool) {
	for archive, idx := range indexes {
		b, ok := idx.blobs[digest]
		if !ok {
			continue
		}
		w.Header().Set("Docker-Content-Digest", digest)
		w.Header().Set("Content-Length", strconv.FormatInt(b.size, 10))
		if manifest {
			var m struct {
				MediaType string `json:"mediaType"`
			}
			_ = json.Unmarshal(b.data, &m)
			if m.MediaType == "" {
				m.MediaType = "application/vnd.oci.image.manifest.v1+json"
			}
			w.Header().Set("Content-Type", m.MediaType)
		} else {
			w.Header().Set("Content-Type", "application/octet-stream")
		}
		if req.Method == http.MethodHead {
			w.WriteHeader(http.StatusOK)
			return
		}
		if b.data != nil {
			_, _ = w.Write(b.data)
			return
		}
		if err := copyFromTar(w, archive, b.name); err != nil {
			// Headers are sent; all that is left is to cut the response short.
			panic(http.ErrAbortHandler)
		}
		return
	}
	code := "BLOB_UNKNOWN"
	if manifest {
		code = "MANIFEST_UNKNOWN"
	}
	registryError(w, http.StatusNotFound, code, "no blob "+digest)
}

// indexes returns the index of every archive, reading again those that changed.
func (r *Registry) indexes() map[string]*archiveIndex {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.indexed == nil {
		r.indexed = map[string]*archiveIndex{}
	}
	out := map[string]*archiveIndex{}
	var archives []string
	if r.Archives != nil {
		archives = r.Archives()
	}
	for _, p := range archives {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		idx := r.indexed[p]
		if idx == nil || !idx.mtime.Equal(fi.ModTime()) || idx.size != fi.Size() {
			if idx, err = indexArchive(p); err != nil {
				continue // not an OCI layout archive: imported by load-image, not served
			}
			idx.mtime, idx.size = fi.ModTime(), fi.Size()
			r.indexed[p] = idx
		}
		out[p] = idx
	}
	return out
}

// indexArchive reads an OCI layout archive's index and blob table.
func indexArchive(archive string) (*archiveIndex, error) {
	f, err := os.Open(archive)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	files, err := readTar(f)
	if err != nil {
		return nil, err
	}
	if files["index.json"] == nil {
		return nil, errors.New("no OCI image layout")
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"].data, &index); err != nil {
		return nil, err
	}
	idx := &archiveIndex{refs: map[string]v1.Descriptor{}, blobs: map[string]blobEntry{}}
	for name, b := range files {
		if !strings.HasPrefix(name, "blobs/") {
			continue
		}
		e := blobEntry{name: name, size: b.size}
		if b.size <= 1<<20 {
			e.data = b.data
		}
		idx.blobs[b.digest] = e
	}
	for _, d := range index.Manifests {
		if ref := descriptorName(d.Annotations); ref != "" {
			idx.refs[NormalizeRef(ref)] = d
		}
	}
	return idx, nil
}

// copyFromTar writes the named file of a tar archive to w.
func copyFromTar(w io.Writer, archive, name string) error {
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return fmt.Errorf("%s not found in %s: %w", name, archive, err)
		}
		if strings.TrimPrefix(path.Clean("/"+hdr.Name), "/") == name {
			_, err := io.Copy(w, tr)
			return err
		}
	}
}

// NormalizeRef writes a reference the way containerd does: with its registry
// (docker.io by default, library/ for single names) and a tag (latest by default) unless
// it has a digest. strait.io/lab/pause -> strait.io/lab/pause:latest; nginx ->
// docker.io/library/nginx:latest.
func NormalizeRef(ref string) string {
	first, rest, found := strings.Cut(ref, "/")
	if !found || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !found {
			ref = "docker.io/library/" + ref
		} else {
			ref = "docker.io/" + ref
		}
	} else if first == "docker.io" && !strings.Contains(rest, "/") {
		ref = "docker.io/library/" + rest
	}
	if strings.Contains(ref, "@") {
		return ref
	}
	if i := strings.LastIndex(ref, ":"); i <= strings.LastIndex(ref, "/") {
		ref += ":" + LabTag
	}
	return ref
}

func registryError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}
