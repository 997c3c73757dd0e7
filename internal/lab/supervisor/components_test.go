package supervisor

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/strait-io/strait/internal/dns/server"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

func TestComponentCommandLines(t *testing.T) {
	l, err := plan.Build(plan.Spec{Lab: "t", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "a"}, {Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Clusters[1]
	got := specs(binaries.Set{Dir: "/bins"}, state.Dir("/state").Cluster(c.Name), c)
	tests := []struct {
		component string
		netns     string
		wantArgs  []string
	}{
		// RBAC, never AlwaysAllow; the kubernetes Service points at the node address.
		{APIServer, "", []string{"--authorization-mode=Node,RBAC", "--advertise-address=10.254.0.12", "--secure-port=20002", "--bind-address=127.0.0.1", "--service-cluster-ip-range=10.102.0.0/16"}},
		{Etcd, "", []string{"--listen-client-urls=http://127.0.0.1:20102"}},
		{ControllerManager, "", []string{"--secure-port=20302", "--cluster-name=b", "--use-service-account-credentials=true"}},
		// nftables inside the node's namespace, conntrack left to the host.
		{KubeProxy, "t-b", []string{"--proxy-mode=nftables", "--hostname-override=b-node", "--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--cluster-cidr=10.2.0.0/16"}},
		{CoreDNS, "t-b", []string{"-conf"}},
		// The API server reaches kubelets through the egress proxy, verifying their
		// certificates; a kubelet may only touch its own Node and pods.
		{APIServer, "", []string{"--egress-selector-config-file=/state/clusters/b/egress-selector.yaml",
			"--kubelet-certificate-authority=/state/clusters/b/pki/ca.crt", "--enable-admission-plugins=NodeRestriction"}},
		{Scheduler, "", []string{"--secure-port=20602", "--bind-address=127.0.0.1"}},
		// The node gets the whole pod CIDR.
		{ControllerManager, "", []string{"--allocate-node-cidrs=true", "--node-cidr-mask-size=16", "--cluster-cidr=10.2.0.0/16"}},
		{Containerd, "t-b", []string{"--config", "/state/clusters/b/containerd/config.toml"}},
		{Kubelet, "t-b", []string{"--hostname-override=b-node", "--node-ip=10.254.0.12", "--root-dir=/state/clusters/b/kubelet",
			"--node-labels=lab.strait.io/cluster=b,topology.kubernetes.io/region=region1,topology.kubernetes.io/zone=region1b,node.kubernetes.io/instance-type=strait-lab"}},
	}
	for _, tt := range tests {
		s, ok := got[tt.component]
		if !ok {
			t.Errorf("no spec for %s", tt.component)
			continue
		}
		if s.Netns != tt.netns {
			t.Errorf("%s runs in netns %q, want %q", tt.component, s.Netns, tt.netns)
		}
		for _, a := range tt.wantArgs {
			if !slices.Contains(s.Args, a) {
				t.Errorf("%s lacks %s in %v", tt.component, a, s.Args)
			}
		}
		if !strings.HasPrefix(s.Path, "/bins/") || s.LogFile != "/state/clusters/b/logs/"+tt.component+".log" {
			t.Errorf("%s: path %s, log %s", tt.component, s.Path, s.LogFile)
		}
		// The node's containerd and kubelet share the host's mounts: containers must see the
		// volumes the kubelet mounts.
		if node := tt.component == Containerd || tt.component == Kubelet; s.HostMounts != node {
			t.Errorf("%s: HostMounts %v", tt.component, s.HostMounts)
		}
		for _, a := range s.Args {
			if strings.Contains(a, "AlwaysAllow") {
				t.Errorf("%s has %s", tt.component, a)
			}
		}
	}
}

func TestCorefileServesTheClusterOnItsNodeAddress(t *testing.T) {
	l, err := plan.Build(plan.Spec{Lab: "t", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "a"}}})
	if err != nil {
		t.Fatal(err)
	}
	c := l.Clusters[0]
	cf := Corefile(state.Dir("/s").Cluster("a"), c, labDNSAddr(l))
	for _, want := range []string{"bind 10.254.0.11", "kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {", "multicluster clusterset.local", "kubeconfig /s/clusters/a/kubeconfigs/coredns.kubeconfig", "ready 127.0.0.1:8181"} {
		if !strings.Contains(cf, want) {
			t.Errorf("Corefile lacks %q:\n%s", want, cf)
		}
	}
	// The federation's short names and the lab domain go to the lab's strait dns, from the
	// node address, cached no longer than the lab's TTL.
	fed := "federation strait.test {\n    bind 10.254.0.11\n    errors\n    forward . 10.254.0.1:53\n    cache 5\n}\n"
	if !strings.HasSuffix(cf, fed) {
		t.Errorf("Corefile does not end with\n%s\ngot:\n%s", fed, cf)
	}
	rc := ResolvConf(c)
	if !strings.Contains(rc, "nameserver 10.101.0.10") || !strings.Contains(rc, "search default.svc.cluster.local svc.cluster.local cluster.local") {
		t.Errorf("resolv.conf = %q", rc)
	}
}

func TestLabDNSAttributesQueriesToClustersByNodeAddress(t *testing.T) {
	l, err := plan.Build(plan.Spec{Lab: "t", APIPortBase: 20000, Clusters: []plan.ClusterSpec{{Name: "a"}, {Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dnsConfig(l)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Listeners) != 1 || cfg.Listeners[0] != (server.Listener{Addr: "10.254.0.1:53"}) {
		t.Errorf("listeners %+v, want the router address, port 53, shared by all clusters", cfg.Listeners)
	}
	want := []server.Source{
		{Prefix: netip.MustParsePrefix("10.254.0.11/32"), Cluster: "a"},
		{Prefix: netip.MustParsePrefix("10.254.0.12/32"), Cluster: "b"},
	}
	if !slices.Equal(cfg.Sources, want) {
		t.Errorf("sources %+v, want %+v", cfg.Sources, want)
	}
	z := cfg.Zone
	if z.Domain != "strait.test" || z.DefaultTTL != 5*time.Second || z.NegativeTTL != 5*time.Second {
		t.Errorf("zone %+v, want strait.test with 5 s TTLs", z)
	}
	if len(z.Nameservers) != 1 || z.Nameservers[0].Name != "ns.strait.test" || !slices.Equal(z.Nameservers[0].Addresses, []netip.Addr{netip.MustParseAddr("10.254.0.1")}) {
		t.Errorf("nameservers %+v, want ns.strait.test at the router address", z.Nameservers)
	}

	bad := *l
	bad.RouterIP = "10.254.0"
	if _, err := dnsConfig(&bad); err == nil || !strings.Contains(err.Error(), `router address "10.254.0"`) {
		t.Errorf("bad router address: %v", err)
	}
}

func TestOnlyTheBrokerClusterRunsStraitDNS(t *testing.T) {
	if got := clusterComponents(true); got[len(got)-1] != StraitDNS || len(got) != len(ComponentNames) {
		t.Errorf("broker components %v", got)
	}
	member := clusterComponents(false)
	if slices.Contains(member, StraitDNS) || len(member) != len(ComponentNames)-1 {
		t.Errorf("member components %v", member)
	}
	if !slices.Contains(ComponentNames, StraitDNS) {
		t.Error("ComponentNames lacks strait-dns: `strait lab stop|start` would refuse it")
	}
	c := &cluster{plan: plan.Cluster{Name: "cluster02"}, components: member}
	if err := c.stopComponent(StraitDNS); err == nil || !strings.Contains(err.Error(), `cluster cluster02 has no component "strait-dns"`) {
		t.Errorf("stopping strait-dns of a member: %v", err)
	}
}
