package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// LoadImageOptions say what `strait lab load-image` loads, and where.
type LoadImageOptions struct {
	Dir state.Dir
	// Image is an image archive's path, or the name of an image the lab builds
	// (strait.io/lab/..., or strait.io/strait[:<version>] for this strait binary).
	Image string
	// Nodes are node names (<cluster>-node) or cluster names; empty means every node.
	Nodes []string
	// Images builds the lab's images; nil uses the default cache.
	Images *images.Builder
	// StraitBinary is the binary the strait.io/strait image carries; default: this program.
	StraitBinary string
	// Out receives one line per node loaded; may be nil.
	Out io.Writer
}

// loadTarget is one node to load an image into.
type loadTarget struct {
	cluster, node, socket string
}

// LoadImage imports an image archive into the containerd of every selected node of a lab,
// as `kind load image-archive` does. It checks everything first (the archive, the node names,
// that ctr is there and that every node's containerd answers) and imports nothing when any
// check fails.
func LoadImage(ctx context.Context, o LoadImageOptions) error {
	name := filepath.Base(string(o.Dir))
	saved, err := state.Load(o.Dir)
	if errors.Is(err, state.ErrNoLab) {
		return fmt.Errorf("lab %s does not exist; start it with `strait lab up`", name)
	}
	if err != nil {
		return err
	}
	targets, err := selectNodes(o.Dir, saved.Lab, o.Nodes)
	if err != nil {
		return err
	}
	build, err := resolveImage(o)
	if err != nil {
		return err
	}
	var down []error
	for _, t := range targets {
		if err := images.CheckSocket(ctx, t.socket); err != nil {
			down = append(down, fmt.Errorf("cluster %s: no containerd answers on %s (%w)", t.cluster, t.socket, err))
		}
	}
	if len(down) > 0 {
		return fmt.Errorf("imported nothing: %w; the nodes of lab %s must run containerd (real nodes) to load images",
			errors.Join(down...), name)
	}
	ctr := binaries.Set{Dir: saved.Binaries}.Path(binaries.Ctr)
	if _, err := os.Stat(ctr); err != nil {
		return fmt.Errorf("lab %s runs binaries from %s, which have no ctr (they predate real nodes); "+
			"stop the lab and start it again with this strait to use the current binaries: %w", name, saved.Binaries, err)
	}
	archive, refs, err := build(ctx)
	if err != nil {
		return err
	}
	for _, t := range targets {
		if err := images.Import(ctx, ctr, t.socket, archive); err != nil {
			return fmt.Errorf("loading %s into node %s of cluster %s: %w", strings.Join(refs, ", "), t.node, t.cluster, err)
		}
		if o.Out != nil {
			fmt.Fprintf(o.Out, "Image %s loaded into node %s (cluster %s)\n", strings.Join(refs, ", "), t.node, t.cluster)
		}
	}
	return recordLoaded(o.Dir, archive)
}

// recordLoaded adds an archive to the lab's list of loaded images, which the lab registry
// serves to the nodes: a pull of a loaded image (imagePullPolicy Always) then finds it.
func recordLoaded(dir state.Dir, archive string) error {
	abs, err := filepath.Abs(archive)
	if err != nil {
		return err
	}
	var paths []string
	if data, err := os.ReadFile(dir.LoadedImages()); err == nil {
		if err := json.Unmarshal(data, &paths); err != nil {
			return fmt.Errorf("reading %s: %w", dir.LoadedImages(), err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if slices.Contains(paths, abs) {
		return nil
	}
	data, err := json.MarshalIndent(append(paths, abs), "", "  ")
	if err != nil {
		return err
	}
	return state.WriteFileAtomic(dir.LoadedImages(), data, 0o644)
}

// selectNodes maps node or cluster names to the nodes of the lab, in the lab's order, and
// names any the lab does not have.
func selectNodes(dir state.Dir, l *plan.Lab, names []string) ([]loadTarget, error) {
	var unknown []string
	chosen := map[string]bool{}
	for _, n := range names {
		i := slices.IndexFunc(l.Clusters, func(c plan.Cluster) bool { return c.NodeName == n || c.Name == n })
		if i < 0 {
			unknown = append(unknown, n)
			continue
		}
		chosen[l.Clusters[i].Name] = true
	}
	if len(unknown) > 0 {
		var nodes []string
		for _, c := range l.Clusters {
			nodes = append(nodes, c.NodeName)
		}
		return nil, fmt.Errorf("lab %s has no node named %s; its nodes are %s (a cluster's name works too)",
			l.Name, strings.Join(unknown, ", "), strings.Join(nodes, ", "))
	}
	var out []loadTarget
	for _, c := range l.Clusters {
		if len(names) == 0 || chosen[c.Name] {
			out = append(out, loadTarget{cluster: c.Name, node: c.NodeName, socket: dir.Cluster(c.Name).ContainerdSocket()})
		}
	}
	return out, nil
}

// resolveImage checks what o.Image names and returns how to get its archive: the file named
// (already inspected), or the archive of a lab image, built when called if the cache lacks
// it. The archive comes with the image names in it.
func resolveImage(o LoadImageOptions) (func(context.Context) (string, []string, error), error) {
	if o.Image == "" {
		return nil, errors.New("no image given: name an image archive or one of the lab's images")
	}
	if fi, err := os.Stat(o.Image); err == nil {
		if fi.IsDir() {
			return nil, fmt.Errorf("%s is a directory; give an image archive (a tar file, as `docker save` or `strait lab images` write)", o.Image)
		}
		info, err := images.Inspect(o.Image)
		if err != nil {
			return nil, err
		}
		return func(context.Context) (string, []string, error) { return o.Image, info.Refs, nil }, nil
	}
	b := o.Images
	if b == nil {
		b = &images.Builder{}
	}
	if repo, ok := images.Resolve(o.Image); ok {
		return func(ctx context.Context) (string, []string, error) {
			img, err := b.Build(ctx, repo)
			return img.Path, img.Refs, err
		}, nil
	}
	if repo, tag, _ := strings.Cut(o.Image, ":"); repo == images.Strait {
		return func(ctx context.Context) (string, []string, error) {
			bin := o.StraitBinary
			if bin == "" {
				exe, err := os.Executable()
				if err != nil {
					return "", nil, err
				}
				bin = exe
			}
			img, err := b.Strait(ctx, bin, tag)
			return img.Path, img.Refs, err
		}, nil
	}
	known := append(slices.Clone(images.LabImages), images.Echo, images.Strait)
	return nil, fmt.Errorf("%q is neither an image archive (there is no such file) nor an image the lab builds (%s)",
		o.Image, strings.Join(known, ", "))
}
