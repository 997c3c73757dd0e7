package binaries

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestVersions(t *testing.T) {
	v, err := Versions()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"kubernetes":  "v1.34.4",
		"etcd":        "v3.6.4",
		"coredns":     "v1.13.1",
		"containerd":  "v2.4.2",
		"cni-plugins": "v1.10.0",
	}
	for m, ver := range want {
		if v[m] != ver {
			t.Errorf("Versions()[%s] = %q, want %q", m, v[m], ver)
		}
	}
	if len(v) != len(want) {
		t.Errorf("Versions() = %v, want exactly %v", v, want)
	}
	if got := Modules(); !slices.Equal(got, moduleOrder) || len(got) != len(mainModule) {
		t.Errorf("Modules() = %v, want every module of mainModule once", got)
	}
}

// Every target's package must be a tool of its embedded module, or `go build` under
// -mod=readonly would have nothing pinning its dependencies.
func TestEveryTargetIsAToolOfItsModule(t *testing.T) {
	for _, tg := range targets {
		data, err := modules.ReadFile("modules/" + tg.module + ".go.mod")
		if err != nil {
			t.Fatalf("%s: %v", tg.binary, err)
		}
		if !strings.Contains(string(data), "\t"+tg.pkg+"\n") && !strings.Contains(string(data), "tool "+tg.pkg+"\n") {
			t.Errorf("modules/%s.go.mod has no tool line for %s (binary %s)", tg.module, tg.pkg, tg.binary)
		}
		if _, err := modules.ReadFile("modules/" + tg.module + ".go.sum"); err != nil {
			t.Errorf("binary %s: %v", tg.binary, err)
		}
	}
}

func TestBuildInvocations(t *testing.T) {
	bin := "/c/bin"
	tests := []struct {
		module string
		want   []invocation
	}{
		{"etcd", []invocation{{pkgs: []string{"go.etcd.io/etcd/server/v3"}, out: "/c/bin/etcd", ldflags: "-s -w"}}},
		{"containerd", []invocation{{
			pkgs: []string{
				"github.com/containerd/containerd/v2/cmd/containerd",
				"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2",
				"github.com/containerd/containerd/v2/cmd/ctr",
			},
			out:     "/c/bin/",
			ldflags: "-s -w -X github.com/containerd/containerd/v2/version.Version=v2.4.2 -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd",
		}}},
		{"cni-plugins", []invocation{{
			pkgs: []string{
				"github.com/containernetworking/plugins/plugins/main/bridge",
				"github.com/containernetworking/plugins/plugins/ipam/host-local",
				"github.com/containernetworking/plugins/plugins/main/loopback",
				"github.com/containernetworking/plugins/plugins/meta/portmap",
			},
			out:     "/c/bin/cni/",
			ldflags: "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=v1.10.0",
		}}},
	}
	versions := map[string]string{"etcd": "v3.6.4", "containerd": "v2.4.2", "cni-plugins": "v1.10.0"}
	for _, tc := range tests {
		got := buildInvocations(tc.module, versions[tc.module], bin)
		if len(got) != len(tc.want) {
			t.Fatalf("%s: %d invocations %+v, want %+v", tc.module, len(got), got, tc.want)
		}
		for i := range got {
			if !slices.Equal(got[i].pkgs, tc.want[i].pkgs) || got[i].out != tc.want[i].out || got[i].ldflags != tc.want[i].ldflags {
				t.Errorf("%s: invocation %d = %+v, want %+v", tc.module, i, got[i], tc.want[i])
			}
		}
	}
	// The Kubernetes binaries, kubelet included, build in one go with the release stamped.
	k := buildInvocations("kubernetes", "v1.34.4", bin)
	if len(k) != 1 || !slices.Contains(k[0].pkgs, "k8s.io/kubernetes/cmd/kubelet") || !strings.Contains(k[0].ldflags, "gitVersion=v1.34.4") {
		t.Errorf("kubernetes invocations = %+v, want one with the kubelet and the version stamped", k)
	}
	// When several binaries are built at once, go names them after their packages.
	for _, m := range moduleOrder {
		for _, inv := range buildInvocations(m, "v1", bin) {
			if !strings.HasSuffix(inv.out, "/") {
				continue
			}
			for _, p := range inv.pkgs {
				name := filepath.Base(p)
				if !slices.ContainsFunc(targets, func(t target) bool { return t.binary == name && t.pkg == p }) {
					t.Errorf("package %s would be built as %s, which is not its target's name", p, name)
				}
			}
		}
	}
}

func TestSetPath(t *testing.T) {
	s := Set{Dir: "/cache/k"}
	for name, want := range map[string]string{
		Kubelet:        "/cache/k/kubelet",
		Containerd:     "/cache/k/containerd",
		ContainerdShim: "/cache/k/containerd-shim-runc-v2",
		Ctr:            "/cache/k/ctr",
		CNIBridge:      "/cache/k/cni/bridge",
		CNIPortmap:     "/cache/k/cni/portmap",
	} {
		if got := s.Path(name); got != want {
			t.Errorf("Path(%s) = %s, want %s", name, got, want)
		}
	}
	if s.CNIDir() != "/cache/k/cni" {
		t.Errorf("CNIDir() = %s", s.CNIDir())
	}
	for _, p := range CNIPlugins {
		if filepath.Dir(s.Path(p)) != s.CNIDir() {
			t.Errorf("CNI plugin %s is not in CNIDir: %s", p, s.Path(p))
		}
	}
}
