package supervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// A lab cluster's node is real, as a kind node is: containerd and the kubelet run in the
// node's network namespace with the host's mounts (the kubelet mounts pod volumes that
// containerd's runc must see), each with its own directories in the cluster's state, its
// own cgroup subtree and its own CNI configuration, so two clusters' nodes never see each
// other's pods.

// Addresses inside a node's network namespace (its own loopback).
const (
	kubeletHealthzPort = 10248
	kubeletPort        = 10250
	// registryAddr is where the lab registry answers the node's containerd.
	registryAddr = "127.0.0.1:5000"
)

// cniBridge is the node's pod bridge, which holds the pod CIDR's gateway address.
const cniBridge = "cni0"

// NodeClusterLabel on a lab Node names its cluster (rebel-base reads it).
const NodeClusterLabel = "lab.strait.io/cluster"

// CgroupRoot is the cgroup (in every hierarchy) under which a cluster's node runs
// containerd, its shims and every pod: /strait-<lab>-<cluster>.
func CgroupRoot(c plan.Cluster) string { return "/strait-" + c.Namespace }

// containerdConfig is the node's containerd configuration (version 4, containerd 2.x):
// every path the node's own, the CRI's sandbox image the lab's pause, runc from the host,
// CNI from the lab's plugins and the node's configuration, pulls of strait.io images from
// the lab registry, containerd itself (and so its shims) in the node's cgroup, and no NRI.
func containerdConfig(cd state.ClusterDir, c plan.Cluster, bins binaries.Set, runc string) string {
	q := strconv.Quote
	return strings.Join([]string{
		"version = 4",
		"root = " + q(cd.ContainerdRoot()),
		"state = " + q(cd.ContainerdState()),
		"imports = []",
		`disabled_plugins = ["io.containerd.nri.v1.nri"]`,
		"",
		"[cgroup]",
		"  path = " + q(CgroupRoot(c)+"/containerd"),
		"",
		`[plugins."io.containerd.server.v1.grpc"]`,
		"  address = " + q(cd.ContainerdSocket()),
		"",
		`[plugins."io.containerd.server.v1.ttrpc"]`,
		"  address = " + q(cd.ContainerdSocket()+".ttrpc"),
		"",
		`[plugins."io.containerd.shim.v1.manager"]`,
		"  socket_dir = " + q(cd.ShimSocketDir()),
		"",
		`[plugins."io.containerd.internal.v1.opt"]`,
		"  path = " + q(filepath.Join(cd.Containerd(), "opt")),
		"",
		`[plugins."io.containerd.image-verifier.v1.bindir"]`,
		"  bin_dir = " + q(filepath.Join(cd.Containerd(), "image-verifier")),
		"",
		`[plugins."io.containerd.transfer.v1.local"]`,
		"  config_path = " + q(cd.ContainerdCertsDir()),
		"",
		`[plugins."io.containerd.cri.v1.images"]`,
		`  snapshotter = "overlayfs"`,
		`  [plugins."io.containerd.cri.v1.images".pinned_images]`,
		"    sandbox = " + q(images.Pause+":"+images.LabTag),
		`  [plugins."io.containerd.cri.v1.images".registry]`,
		"    config_path = " + q(cd.ContainerdCertsDir()),
		"",
		`[plugins."io.containerd.cri.v1.runtime"]`,
		"  enable_unprivileged_ports = true",
		// No container gets a lower OOM score than containerd's own: the lab may run where
		// lowering it needs a capability root lacks (CAP_SYS_RESOURCE), and a lab's pods
		// need no protection from the OOM killer that the host's other programs lack.
		"  restrict_oom_score_adj = true",
		"  enable_unprivileged_icmp = true",
		// Pods' network namespaces under the node's state, not in the host's /run/netns.
		"  netns_mounts_under_state_dir = true",
		"  cdi_spec_dirs = []",
		`  [plugins."io.containerd.cri.v1.runtime".containerd]`,
		`    default_runtime_name = "runc"`,
		`    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]`,
		`      runtime_type = "io.containerd.runc.v2"`,
		`      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]`,
		"        BinaryName = " + q(runc),
		"        Root = " + q(cd.ContainerdRuncRoot()),
		"        SystemdCgroup = false",
		`  [plugins."io.containerd.cri.v1.runtime".cni]`,
		"    bin_dirs = [" + q(bins.CNIDir()) + "]",
		"    conf_dir = " + q(cd.CNIConfDir()),
		"    max_conf_num = 1",
		"",
		`[plugins."io.containerd.grpc.v1.cri"]`,
		// kubectl exec, attach and port-forward: the kubelet proxies to this server, on the
		// node's own loopback.
		`  stream_server_address = "127.0.0.1"`,
		`  stream_server_port = "0"`,
		"",
	}, "\n")
}

// registryHosts are containerd's hosts.toml files: the lab registry is strait.io's server
// (strait.io is never asked), and the first mirror of every other registry, so what
// `strait lab load-image` loaded is pulled from the lab even with imagePullPolicy Always,
// and anything else from where it lives.
func registryHosts() map[string]string {
	host := "[host.\"http://" + registryAddr + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	return map[string]string{
		images.DefaultRegistryHost: "server = \"http://" + registryAddr + "\"\n\n" + host,
		"_default":                 host,
	}
}

// cniConfig is the node's CNI network: a bridge whose gateway is the node (no masquerade:
// pod addresses route between clusters through the lab router), host-local addresses from
// the pod CIDR, and portmap for hostPort (nftables, like kube-proxy).
func cniConfig(cd state.ClusterDir, c plan.Cluster) string {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "strait-lab",
		"plugins": []any{
			map[string]any{
				"type": "bridge", "bridge": cniBridge, "isGateway": true, "ipMasq": false, "hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  [][]map[string]string{{{"subnet": c.PodCIDR}}},
					"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
					"dataDir": cd.CNIIPAMDir(),
				},
			},
			map[string]any{"type": "portmap", "backend": "nftables", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	data, _ := json.MarshalIndent(conf, "", "  ")
	return string(data) + "\n"
}

// kubeletConfig is the node's KubeletConfiguration: served on the node's address with the
// lab CA's certificate, webhook authentication and authorization, cgroupfs under the
// node's own cgroup root, the cluster's DNS, and every directory the node's own.
func kubeletConfig(cd state.ClusterDir, c plan.Cluster) string {
	q := strconv.Quote
	lines := []string{
		"apiVersion: kubelet.config.k8s.io/v1beta1",
		"kind: KubeletConfiguration",
		"address: " + q(c.NodeIP),
		"port: " + strconv.Itoa(kubeletPort),
		"readOnlyPort: 0",
		`healthzBindAddress: "127.0.0.1"`,
		"healthzPort: " + strconv.Itoa(kubeletHealthzPort),
		"tlsCertFile: " + q(cd.File(state.KubeletServingCert)),
		"tlsPrivateKeyFile: " + q(cd.File(state.KubeletServingKey)),
		"rotateCertificates: false",
		"serverTLSBootstrap: false",
		"authentication:",
		"  anonymous: {enabled: false}",
		"  webhook: {enabled: true}",
		"  x509: {clientCAFile: " + q(cd.File(state.CACert)) + "}",
		"authorization:",
		"  mode: Webhook",
		"containerRuntimeEndpoint: " + q("unix://"+cd.ContainerdSocket()),
		"cgroupDriver: cgroupfs",
		"cgroupRoot: " + q(CgroupRoot(c)),
		"cgroupsPerQOS: true",
		"enforceNodeAllocatable: [pods]",
		// The lab's hosts may still run cgroup v1, which the kubelet 1.34 supports.
		"failCgroupV1: false",
		"failSwapOn: false",
		// The kubelet's own OOM score: the host's default, as containers' (above).
		"oomScoreAdj: 0",
		"clusterDNS: [" + q(c.DNSServiceIP) + "]",
		"clusterDomain: cluster.local",
		// Pods with dnsPolicy Default get no host nameserver: the lab has no upstream DNS.
		`resolvConf: ""`,
		"podLogsDir: " + q(cd.PodLogs()),
		"volumePluginDir: " + q(filepath.Join(cd.KubeletRoot(), "volume-plugins")),
		"staticPodPath: " + q(filepath.Join(cd.KubeletRoot(), "manifests")),
		// A lab node must never evict its pods or delete the lab's images because the disk
		// of the host is fuller than a real node's would be.
		"imageGCHighThresholdPercent: 100",
		"imageGCLowThresholdPercent: 99",
		"evictionHard:",
		`  memory.available: "100Mi"`,
		`  nodefs.available: "1%"`,
		`  imagefs.available: "1%"`,
		`  nodefs.inodesFree: "1%"`,
		"serializeImagePulls: false",
		"",
	}
	return strings.Join(lines, "\n")
}

// kubeletLabels are the labels the kubelet registers its Node with: the lab cluster, the
// topology and the instance type (all allowed to a kubelet by NodeRestriction).
func kubeletLabels(c plan.Cluster) string {
	return strings.Join([]string{
		NodeClusterLabel + "=" + c.Name,
		"topology.kubernetes.io/region=" + c.Region,
		"topology.kubernetes.io/zone=" + c.Zone,
		"node.kubernetes.io/instance-type=strait-lab",
	}, ",")
}

// egressSelectorConfig tells the API server to reach the cluster (kubelets, pods, services)
// through the egress proxy on its unix socket, with HTTP CONNECT.
func egressSelectorConfig(cd state.ClusterDir) string {
	return strings.Join([]string{
		"apiVersion: apiserver.k8s.io/v1beta1",
		"kind: EgressSelectorConfiguration",
		"egressSelections:",
		"- name: cluster",
		"  connection:",
		"    proxyProtocol: HTTPConnect",
		"    transport:",
		"      uds:",
		"        udsName: " + strconv.Quote(cd.EgressSocket()),
		"",
	}, "\n")
}

// writeNodeFiles writes the node's configuration and creates its directories. The IPAM
// records are reset: a node starts without pods, whatever the last run left.
func writeNodeFiles(cd state.ClusterDir, c plan.Cluster, bins binaries.Set, runc string) error {
	if err := os.RemoveAll(cd.CNIIPAMDir()); err != nil {
		return err
	}
	for _, d := range []string{cd.RunDir(), cd.ContainerdRoot(), cd.ContainerdState(), cd.ContainerdRuncRoot(), cd.KubeletRoot(),
		filepath.Join(cd.KubeletRoot(), "manifests"), cd.PodLogs(), cd.CNIConfDir(), cd.CNIIPAMDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	files := map[string]string{
		cd.ContainerdConfig():                             containerdConfig(cd, c, bins, runc),
		filepath.Join(cd.CNIConfDir(), "10-lab.conflist"): cniConfig(cd, c),
		cd.KubeletConfig():                                kubeletConfig(cd, c),
		cd.EgressSelectorConfig():                         egressSelectorConfig(cd),
	}
	for host, content := range registryHosts() {
		files[filepath.Join(cd.ContainerdCertsDir(), host, "hosts.toml")] = content
	}
	for path, content := range files {
		if err := state.WriteFileAtomic(path, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cgroupFS is where the cgroup hierarchies are mounted.
const cgroupFS = "/sys/fs/cgroup"

// mount is one line of /proc/self/mountinfo: where it is mounted, and its filesystem type.
type mount struct{ point, fsType string }

// mounts reads this process's mount table.
func mounts() ([]mount, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mount
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := mount{point: unescapeMount(fields[4])}
		if sep := slices.Index(fields, "-"); sep >= 0 && sep+1 < len(fields) {
			m.fsType = fields[sep+1]
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// cgroupHierarchies lists the mount points of the host's cgroup hierarchies: one for cgroup
// v2, one per controller (and named hierarchy) for v1.
func cgroupHierarchies() ([]string, error) {
	ms, err := mounts()
	var out []string
	for _, m := range ms {
		if (m.fsType == "cgroup" || m.fsType == "cgroup2") && strings.HasPrefix(m.point, cgroupFS) {
			out = append(out, m.point)
		}
	}
	return out, err
}

// createCgroupRoot creates the node's cgroup in every hierarchy, as the kubelet requires of
// its cgroupRoot. A v1 cpuset cgroup starts with no CPUs and memory nodes: it gets its
// parent's. For v2 the controllers are delegated to it.
func createCgroupRoot(root string) error {
	hs, err := cgroupHierarchies()
	if err != nil {
		return err
	}
	if len(hs) == 0 {
		return errors.New("no cgroup hierarchy is mounted under " + cgroupFS + "; the kubelet needs cgroups")
	}
	for _, h := range hs {
		dir := filepath.Join(h, root)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("creating cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if cur, err := os.ReadFile(filepath.Join(dir, f)); err == nil && strings.TrimSpace(string(cur)) == "" {
				parent, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return err
				}
				if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
					return fmt.Errorf("setting %s of cgroup %s: %w", f, dir, err)
				}
			}
		}
		if ctrl, err := os.ReadFile(filepath.Join(h, "cgroup.subtree_control")); err == nil {
			var enable []string
			for _, c := range strings.Fields(string(ctrl)) {
				enable = append(enable, "+"+c)
			}
			if len(enable) > 0 {
				_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644)
			}
		}
	}
	return nil
}

// cleanupNode removes everything a cluster's node leaves when it stops or its supervisor
// died: every process in its cgroups (pods, containerd's shims, containerd), the mounts
// under its kubelet and containerd directories (volumes, container root filesystems, pod
// network namespaces), and the cgroups. It is safe to repeat and to call for a node that
// never started. It must run after the kubelet has stopped, or it would start pods again.
func cleanupNode(cd state.ClusterDir, c plan.Cluster) error {
	var errs []error
	hs, err := cgroupHierarchies()
	if err != nil {
		errs = append(errs, err)
	}
	root := CgroupRoot(c)
	if err := killCgroups(hs, root, 15*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("node of cluster %s: %w", c.Name, err))
	}
	if err := unmountUnder([]string{cd.KubeletRoot(), cd.Containerd()}); err != nil {
		errs = append(errs, fmt.Errorf("node of cluster %s: %w", c.Name, err))
	}
	for _, h := range hs {
		if err := removeCgroupTree(filepath.Join(h, root)); err != nil {
			errs = append(errs, fmt.Errorf("node of cluster %s: %w", c.Name, err))
		}
	}
	// containerd's sockets and those of the killed shims.
	if err := os.RemoveAll(cd.RunDir()); err != nil {
		errs = append(errs, err)
	}
	_ = os.Remove(state.NodeRunRoot()) // if no other lab's node uses it
	return errors.Join(errs...)
}

// cgroupProcs lists the processes of every cgroup under dir (dir included).
func cgroupProcs(dir string) []int {
	var pids []int
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		data, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			return nil
		}
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// killCgroups kills every process under root in every hierarchy until none is left.
func killCgroups(hs []string, root string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var pids []int
		for _, h := range hs {
			pids = append(pids, cgroupProcs(filepath.Join(h, root))...)
		}
		slices.Sort(pids)
		pids = slices.Compact(pids)
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v in cgroup %s did not die", pids, root)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// removeCgroupTree removes a cgroup and its descendants, deepest first.
func removeCgroupTree(dir string) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		// A cgroup that just lost its last process may still be busy for a moment.
		var err error
		for try := 0; try < 50; try++ {
			if err = unix.Rmdir(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dirs[i], err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points at or below any of dirs, deepest first.
func mountsUnder(dirs []string) ([]string, error) {
	ms, err := mounts()
	var out []string
	for _, m := range ms {
		for _, d := range dirs {
			if m.point == d || strings.HasPrefix(m.point, d+"/") {
				out = append(out, m.point)
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out), err
}

// unmountUnder detaches every mount at or below dirs, repeating while some remain (a mount
// may be stacked on another).
func unmountUnder(dirs []string) error {
	for try := 0; ; try++ {
		mps, err := mountsUnder(dirs)
		if err != nil || len(mps) == 0 {
			return err
		}
		if try == 10 {
			return fmt.Errorf("mounts left after unmounting: %s", strings.Join(mps, ", "))
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("unmounting %s: %w", mp, err)
			}
		}
	}
}

// unescapeMount decodes the octal escapes (\040 for a space) of /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// loadNodeImages imports the lab's image archives into the node's containerd, for the
// CRI, as `strait lab load-image` does.
func loadNodeImages(ctx context.Context, cd state.ClusterDir, bins binaries.Set, archives []string) error {
	for _, a := range archives {
		if err := images.Import(ctx, bins.Path(binaries.Ctr), cd.ContainerdSocket(), a); err != nil {
			return err
		}
	}
	return nil
}
