package supervisor

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

func nodeTestCluster(t *testing.T) (state.ClusterDir, plan.Cluster) {
	t.Helper()
	l, err := plan.Build(plan.Spec{Lab: "t", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "a"}, {Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	return state.Dir("/state").Cluster("b"), l.Clusters[1]
}

// Every path of the node's containerd is its own, its pods' sandbox is the lab's pause, its
// runc is the host's with a root of its own, and its CNI is the lab's.
func TestContainerdConfigIsTheNodesOwn(t *testing.T) {
	cd, c := nodeTestCluster(t)
	got := containerdConfig(cd, c, binaries.Set{Dir: "/bins"}, "/usr/sbin/runc")
	for _, want := range []string{
		"version = 4",
		`root = "/state/clusters/b/containerd/root"`,
		`state = "/state/clusters/b/containerd/state"`,
		"imports = []",
		`disabled_plugins = ["io.containerd.nri.v1.nri"]`,
		`path = "/strait-t-b/containerd"`,
		`address = "` + cd.ContainerdSocket() + `"`,
		`sandbox = "strait.io/lab/pause:latest"`,
		`config_path = "/state/clusters/b/containerd/certs.d"`,
		`BinaryName = "/usr/sbin/runc"`,
		`Root = "/state/clusters/b/containerd/runc"`,
		`bin_dirs = ["/bins/cni"]`,
		`conf_dir = "/state/clusters/b/cni/net.d"`,
		"enable_unprivileged_ports = true",
		"netns_mounts_under_state_dir = true",
		"restrict_oom_score_adj = true",
		`socket_dir = "` + cd.ShimSocketDir() + `"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("containerd config lacks %s:\n%s", want, got)
		}
	}
	if cd.ShimSocketDir() == state.Dir("/state").Cluster("a").ShimSocketDir() {
		t.Error("two nodes share a shim socket directory")
	}
}

// The node's pods sit on a bridge whose gateway is the node, take addresses from the
// cluster's pod CIDR and are not masqueraded (pod addresses route between clusters).
func TestCNIConfigIsABridgeOnThePodCIDR(t *testing.T) {
	cd, c := nodeTestCluster(t)
	var conf struct {
		Plugins []struct {
			Type      string `json:"type"`
			Bridge    string `json:"bridge"`
			IsGateway bool   `json:"isGateway"`
			IPMasq    bool   `json:"ipMasq"`
			IPAM      struct {
				Type    string                `json:"type"`
				Ranges  [][]map[string]string `json:"ranges"`
				DataDir string                `json:"dataDir"`
			} `json:"ipam"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal([]byte(cniConfig(cd, c)), &conf); err != nil {
		t.Fatal(err)
	}
	if len(conf.Plugins) != 2 || conf.Plugins[0].Type != "bridge" || conf.Plugins[1].Type != "portmap" {
		t.Fatalf("plugins %+v, want bridge and portmap", conf.Plugins)
	}
	br := conf.Plugins[0]
	if br.Bridge != "cni0" || !br.IsGateway || br.IPMasq || br.IPAM.Type != "host-local" ||
		br.IPAM.Ranges[0][0]["subnet"] != "10.2.0.0/16" || br.IPAM.DataDir != "/state/clusters/b/cni/ipam" {
		t.Errorf("bridge %+v", br)
	}
}

func TestKubeletConfigIsolatesTheNode(t *testing.T) {
	cd, c := nodeTestCluster(t)
	got := kubeletConfig(cd, c)
	for _, want := range []string{
		`address: "10.254.0.12"`,
		"readOnlyPort: 0",
		`healthzBindAddress: "127.0.0.1"`,
		"mode: Webhook",
		"anonymous: {enabled: false}",
		`containerRuntimeEndpoint: "unix://` + cd.ContainerdSocket() + `"`,
		"cgroupDriver: cgroupfs",
		`cgroupRoot: "/strait-t-b"`,
		"failCgroupV1: false",
		"failSwapOn: false",
		`clusterDNS: ["10.102.0.10"]`,
		"clusterDomain: cluster.local",
		`tlsCertFile: "/state/clusters/b/pki/kubelet-serving.crt"`,
		`podLogsDir: "/state/clusters/b/pod-logs"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("kubelet config lacks %s:\n%s", want, got)
		}
	}
	if eg := egressSelectorConfig(cd); !strings.Contains(eg, "name: cluster") || !strings.Contains(eg, `udsName: "/state/clusters/b/egress.sock"`) ||
		!strings.Contains(eg, "proxyProtocol: HTTPConnect") {
		t.Errorf("egress selector config:\n%s", eg)
	}
}

func TestRegistryHostsServeStraitIOFromTheLab(t *testing.T) {
	h := registryHosts()
	if !strings.HasPrefix(h["strait.io"], `server = "http://127.0.0.1:5000"`) {
		t.Errorf("strait.io hosts.toml:\n%s", h["strait.io"])
	}
	if strings.Contains(h["_default"], "server =") || !strings.Contains(h["_default"], `[host."http://127.0.0.1:5000"]`) {
		t.Errorf("_default hosts.toml must add the lab as a mirror and keep each registry's own server:\n%s", h["_default"])
	}
}

func TestMountsUnderFindsOnlyTheNodesMountsDeepestFirst(t *testing.T) {
	if got := unescapeMount(`/a\040b/c`); got != "/a b/c" {
		t.Errorf("unescapeMount = %q", got)
	}
	// /proc is always mounted; nothing is mounted below a fresh directory.
	dir := t.TempDir()
	if mps, err := mountsUnder([]string{dir}); err != nil || len(mps) != 0 {
		t.Errorf("mountsUnder(%s) = %v, %v", dir, mps, err)
	}
	if mps, err := mountsUnder([]string{"/proc"}); err != nil || len(mps) == 0 || mps[len(mps)-1] != "/proc" {
		t.Errorf("mountsUnder(/proc) = %v, %v; want /proc last", mps, err)
	}
}

func TestWriteNodeFilesResetsIPAM(t *testing.T) {
	_, c := nodeTestCluster(t)
	cd := state.Dir(t.TempDir()).Cluster(c.Name)
	stale := filepath.Join(cd.CNIIPAMDir(), "strait-lab", "10.2.0.7")
	if err := os.MkdirAll(filepath.Dir(stale), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(stale, []byte("gone"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeNodeFiles(cd, c, binaries.Set{Dir: "/bins"}, "/usr/sbin/runc"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("a stale IPAM record survived a node start: %v", err)
	}
	for _, f := range []string{cd.ContainerdConfig(), cd.KubeletConfig(), cd.EgressSelectorConfig(),
		filepath.Join(cd.CNIConfDir(), "10-lab.conflist"), filepath.Join(cd.ContainerdCertsDir(), "strait.io", "hosts.toml")} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
}
