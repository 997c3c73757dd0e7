// Package state owns a lab's directory on disk: the saved plan, every cluster's certificates
// and kubeconfigs, etcd data, component logs and the supervisor's socket. Keeping the layout
// in one place lets `up`, `down`, `status` and the supervisor agree on it, and lets a lab be
// stopped and started again with its data.
package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/strait-io/strait/internal/lab/plan"
)

// Root returns the directory that holds every lab: $XDG_STATE_HOME/strait/lab, or
// ~/.local/state/strait/lab.
func Root() (string, error) {
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "strait", "lab"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("finding the home directory for the lab state: %w", err)
	}
	return filepath.Join(home, ".local", "state", "strait", "lab"), nil
}

// Dir is one lab's state directory.
type Dir string

// ForLab returns the state directory of the named lab under Root.
func ForLab(name string) (Dir, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	return Dir(filepath.Join(root, name)), nil
}

func (d Dir) path(elem ...string) string {
	return filepath.Join(append([]string{string(d)}, elem...)...)
}

// LabFile is the saved plan.
func (d Dir) LabFile() string { return d.path("lab.json") }

// Kubeconfig is the user's kubeconfig with one context per cluster.
func (d Dir) Kubeconfig() string { return d.path("kubeconfig") }

// Socket is the supervisor's control socket.
func (d Dir) Socket() string { return d.path("supervisor.sock") }

// LockFile is held by the running supervisor; holding it is what "the lab is up" means.
func (d Dir) LockFile() string { return d.path("supervisor.lock") }

// ProcessesFile records the process IDs of the running components, so `down` can clean up
// after a supervisor that died.
func (d Dir) ProcessesFile() string { return d.path("processes.json") }

// SupervisorLog is the supervisor's own log.
func (d Dir) SupervisorLog() string { return d.path("supervisor.log") }

// BinDir holds links to the lab's binaries (kubectl) for the user's PATH.
func (d Dir) BinDir() string { return d.path("bin") }

// Cluster returns the directory of one cluster.
func (d Dir) Cluster(name string) ClusterDir { return ClusterDir(d.path("clusters", name)) }

// ClusterDir is one cluster's directory.
type ClusterDir string

func (c ClusterDir) path(elem ...string) string {
	return filepath.Join(append([]string{string(c)}, elem...)...)
}

// PKI is the directory of the cluster's certificates and keys.
func (c ClusterDir) PKI() string { return c.path("pki") }

// File returns the path of a file in the PKI directory.
func (c ClusterDir) File(name string) string { return c.path("pki", name) }

// EtcdData is etcd's data directory.
func (c ClusterDir) EtcdData() string { return c.path("etcd") }

// Log is the log file of one component.
func (c ClusterDir) Log(component string) string { return c.path("logs", component+".log") }

// Kubeconfig is the kubeconfig one component uses.
func (c ClusterDir) Kubeconfig(component string) string {
	return c.path("kubeconfigs", component+".kubeconfig")
}

// Corefile is the CoreDNS configuration.
func (c ClusterDir) Corefile() string { return c.path("Corefile") }

// Containerd is the directory of the containerd that runs the cluster node's containers:
// its own root, state and configuration (its socket is in RunDir), so several clusters' containerds (and the
// host's, if any) never share anything.
func (c ClusterDir) Containerd() string { return c.path("containerd") }

// ContainerdRoot is containerd's persistent root: content store, image metadata, snapshots.
// It survives `down`, so images loaded into a node stay until `down --purge`.
func (c ClusterDir) ContainerdRoot() string { return c.path("containerd", "root") }

// ContainerdState is containerd's runtime state directory (tasks, shim bundles).
func (c ClusterDir) ContainerdState() string { return c.path("containerd", "state") }

// RunDir is the node's directory for sockets: /run/strait-lab/<12 hex digits of a hash of
// the cluster directory>. containerd refuses a socket path longer than 104 bytes, which a
// state directory under a long $HOME or $XDG_STATE_HOME and a long cluster name exceed; this
// path is short, the same for every run of the same cluster, and never another's.
func (c ClusterDir) RunDir() string {
	sum := sha256.Sum256([]byte(c))
	return filepath.Join(NodeRunRoot(), hex.EncodeToString(sum[:])[:12])
}

// NodeRunRoot holds every lab node's RunDir: /run/strait-lab for root, who alone can run a
// lab; for any other user (the unprivileged unit tests, which write a node's files but start
// no containerd) a directory of that user's under the temporary directory.
func NodeRunRoot() string {
	if os.Geteuid() == 0 {
		return "/run/strait-lab"
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("strait-lab-%d", os.Geteuid()))
}

// ContainerdSocket is containerd's gRPC socket, which the kubelet, ctr and `strait lab
// load-image` talk to (its ttrpc socket is beside it, with .ttrpc appended).
func (c ClusterDir) ContainerdSocket() string { return filepath.Join(c.RunDir(), "containerd.sock") }

// ShimSocketDir is where the node's containerd shims put their sockets (each named with 64
// hex digits).
func (c ClusterDir) ShimSocketDir() string { return filepath.Join(c.RunDir(), "s") }

// ContainerdConfig is containerd's configuration file.
func (c ClusterDir) ContainerdConfig() string { return c.path("containerd", "config.toml") }

// ContainerdRuncRoot is the root directory of the runc that containerd's shim runs for this
// node, so `runc list` of one node never shows another's containers.
func (c ClusterDir) ContainerdRuncRoot() string { return c.path("containerd", "runc") }

// ContainerdCertsDir holds containerd's registry host configuration (certs.d/<host>/hosts.toml):
// where the node pulls strait.io images from.
func (c ClusterDir) ContainerdCertsDir() string { return c.path("containerd", "certs.d") }

// KubeletRoot is the kubelet's root directory (pods, volumes, plugins).
func (c ClusterDir) KubeletRoot() string { return c.path("kubelet") }

// KubeletConfig is the kubelet's KubeletConfiguration file.
func (c ClusterDir) KubeletConfig() string { return c.path("kubelet-config.yaml") }

// PodLogs is where the kubelet keeps the containers' logs (/var/log/pods on a real node).
func (c ClusterDir) PodLogs() string { return c.path("pod-logs") }

// CNIConfDir is the node's CNI configuration directory (/etc/cni/net.d on a real node).
func (c ClusterDir) CNIConfDir() string { return c.path("cni", "net.d") }

// CNIIPAMDir is where the host-local IPAM plugin records the node's allocated pod addresses.
func (c ClusterDir) CNIIPAMDir() string { return c.path("cni", "ipam") }

// EgressSelectorConfig is the API server's egress selector configuration: how it reaches
// the kubelet and pods inside the node's network namespace.
func (c ClusterDir) EgressSelectorConfig() string { return c.path("egress-selector.yaml") }

// EgressSocket is the unix socket of the cluster's egress proxy (HTTP CONNECT), through
// which the API server dials kubelets and pods.
func (c ClusterDir) EgressSocket() string { return c.path("egress.sock") }

// LoadedImages lists the image archives `strait lab load-image` loaded into the lab's
// nodes, which the lab's registry serves besides its own images.
func (d Dir) LoadedImages() string { return d.path("loaded-images.json") }

// Saved is what lab.json holds.
type Saved struct {
	Lab *plan.Lab `json:"lab"`
	// Binaries is the directory of the binaries the lab runs.
	Binaries string `json:"binaries"`
	// Images are the archives of the lab's own images (pause, rebel-base, debug), loaded
	// into every node at start and served by the lab's registry.
	Images []string `json:"images,omitempty"`
	// AgentPods: each cluster's agent runs as pods of Strait's chart, from the strait image
	// among Images, instead of inside the supervisor.
	AgentPods bool      `json:"agentPods,omitempty"`
	Created   time.Time `json:"created"`
}

// ErrNoLab is returned by Load when the lab has no state.
var ErrNoLab = errors.New("no such lab")

// Load reads lab.json.
func Load(d Dir) (*Saved, error) {
	data, err := os.ReadFile(d.LabFile())
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist", ErrNoLab, d.LabFile())
	}
	if err != nil {
		return nil, err
	}
	var s Saved
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", d.LabFile(), err)
	}
	if s.Lab == nil {
		return nil, fmt.Errorf("reading %s: no lab plan in it", d.LabFile())
	}
	return &s, nil
}

// Save writes lab.json atomically.
func Save(d Dir, s *Saved) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(d.LabFile(), data, 0o644)
}

// WriteFileAtomic writes a file through a temporary file and a rename, so a reader never
// sees half of it.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Processes records the running components' process IDs.
type Processes struct {
	Supervisor int            `json:"supervisor"`
	Components map[string]int `json:"components"` // "<cluster>/<component>" -> pid (process group)
}

// LoadProcesses reads processes.json; a missing file is an empty record.
func LoadProcesses(d Dir) (Processes, error) {
	var p Processes
	data, err := os.ReadFile(d.ProcessesFile())
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	err = json.Unmarshal(data, &p)
	return p, err
}

// SaveProcesses writes processes.json.
func SaveProcesses(d Dir, p Processes) error {
	data, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(d.ProcessesFile(), data, 0o644)
}
