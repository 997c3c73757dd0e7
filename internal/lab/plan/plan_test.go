package plan

import (
	"net/netip"
	"strings"
	"testing"
)

func spec(names ...string) Spec {
	s := Spec{Lab: "strait", APIPortBase: DefaultAPIPortBase}
	for _, n := range names {
		s.Clusters = append(s.Clusters, ClusterSpec{Name: n})
	}
	return s
}

func TestValidateRejectsBadInput(t *testing.T) {
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		spec Spec
		want string // substring of the error
	}{
		{"no clusters", spec(), "between 1 and 50 clusters, not 0"},
		{"too many clusters", spec(DefaultNames(51)...), "not 51"},
		{"upper case", spec("Cluster01"), `cluster name "Cluster01" is not a DNS-1123 label`},
		{"underscore", spec("a_b"), `"a_b" is not a DNS-1123 label`},
		{"too long", spec(long), "is not a DNS-1123 label"},
		{"duplicate", spec("east", "west", "east"), `cluster name "east" is given twice`},
		{"bad lab name", Spec{Lab: "My Lab", Clusters: []ClusterSpec{{Name: "a"}}}, `lab name "My Lab" is not valid`},
		{"long lab name", Spec{Lab: "abcdefghijklm", Clusters: []ClusterSpec{{Name: "a"}}}, "too long"},
		{"bad zone", Spec{Lab: "l", Clusters: []ClusterSpec{{Name: "a", Zone: "Zone A"}}}, `zone "Zone A" of cluster a`},
		{"port base too low", Spec{Lab: "l", APIPortBase: 80, Clusters: []ClusterSpec{{Name: "a"}}}, "API port base 80 is out of range"},
		{"port base too high", Spec{Lab: "l", APIPortBase: 65000, Clusters: []ClusterSpec{{Name: "a"}}}, "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestBuildDefaultTwoClusters(t *testing.T) {
	l, err := Build(spec(DefaultNames(2)...))
	if err != nil {
		t.Fatal(err)
	}
	c1, c2 := l.Clusters[0], l.Clusters[1]
	if c1.Name != "cluster01" || c2.Name != "cluster02" {
		t.Fatalf("names = %s, %s", c1.Name, c2.Name)
	}
	if c1.Ports.APIServer != 16443 || c2.Ports.APIServer != 16444 {
		t.Errorf("API ports = %d, %d, want 16443, 16444", c1.Ports.APIServer, c2.Ports.APIServer)
	}
	if c1.Region != "region1" || c1.Zone != "region1a" || c2.Zone != "region1b" {
		t.Errorf("topology = %s/%s, %s/%s", c1.Region, c1.Zone, c2.Region, c2.Zone)
	}
	if c1.Namespace != "strait-cluster01" || l.RouterNS != "strait-router" {
		t.Errorf("namespaces = %s, %s", c1.Namespace, l.RouterNS)
	}
	if c1.DNSServiceIP != "10.101.0.10" || c1.APIServiceIP != "10.101.0.1" {
		t.Errorf("service IPs = %s, %s", c1.APIServiceIP, c1.DNSServiceIP)
	}
	if c, err := l.Cluster("cluster03"); err == nil || !strings.Contains(err.Error(), "cluster01, cluster02") {
		t.Errorf("Cluster(cluster03) = %v, %v; want an error listing the clusters", c, err)
	}
}

// Every CIDR and address of every cluster is disjoint from every other's, for the largest
// lab: the clusterset assumes a flat, non-overlapping network.
func TestBuildAddressesNeverOverlap(t *testing.T) {
	l, err := Build(spec(DefaultNames(MaxClusters)...))
	if err != nil {
		t.Fatal(err)
	}
	var prefixes []netip.Prefix
	add := func(s string) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				t.Fatalf("bad address %q", s)
			}
			p = netip.PrefixFrom(a, 32)
		}
		prefixes = append(prefixes, p)
	}
	add(l.NodeNetwork)
	for _, c := range l.Clusters {
		add(c.PodCIDR)
		add(c.ServiceCIDR)
		node := netip.MustParseAddr(c.NodeIP)
		if !netip.MustParsePrefix(l.NodeNetwork).Contains(node) || c.NodeIP == l.RouterIP {
			t.Errorf("node IP %s of %s is outside the node network or is the router", c.NodeIP, c.Name)
		}
		if !netip.MustParsePrefix(c.ServiceCIDR).Contains(netip.MustParseAddr(c.DNSServiceIP)) {
			t.Errorf("DNS service IP %s of %s is outside %s", c.DNSServiceIP, c.Name, c.ServiceCIDR)
		}
	}
	for i := range prefixes {
		for j := i + 1; j < len(prefixes); j++ {
			if prefixes[i].Overlaps(prefixes[j]) {
				t.Errorf("%s overlaps %s", prefixes[i], prefixes[j])
			}
		}
	}
	if c := l.PortConflicts(); len(c) > 0 {
		t.Errorf("port conflicts: %v", c)
	}
}

func TestAssignPortsFillsOnlyZeroPorts(t *testing.T) {
	s := spec("a", "b")
	s.APIPortBase = 0
	l, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	next := 30000
	if err := l.AssignPorts(func() (int, error) { next++; return next, nil }); err != nil {
		t.Fatal(err)
	}
	if got := l.Clusters[1].Ports; got.APIServer != 30008 || got.Scheduler != 30014 {
		t.Errorf("ports of b = %+v", got)
	}
	if l.UnassignedPorts() {
		t.Error("UnassignedPorts after AssignPorts")
	}
	// A saved plan from before kube-scheduler had a port: only that port is filled in.
	l.Clusters[0].Ports.Scheduler = 0
	if !l.UnassignedPorts() {
		t.Error("UnassignedPorts = false with a zero scheduler port")
	}
	if err := l.AssignPorts(func() (int, error) { next++; return next, nil }); err != nil {
		t.Fatal(err)
	}
	if got := l.Clusters[0].Ports; got.APIServer != 30001 || got.Scheduler != 30015 {
		t.Errorf("ports of a = %+v", got)
	}
	if c := l.PortConflicts(); len(c) > 0 {
		t.Errorf("conflicts: %v", c)
	}
}

func TestExplicitTopologyIsKept(t *testing.T) {
	l, err := Build(Spec{Lab: "l", APIPortBase: 20000, Clusters: []ClusterSpec{{Name: "a", Region: "eu", Zone: "eu-1"}, {Name: "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if a := l.Clusters[0]; a.Region != "eu" || a.Zone != "eu-1" {
		t.Errorf("a = %s/%s", a.Region, a.Zone)
	}
	if b := l.Clusters[1]; b.Region != "region1" || b.Zone != "region1b" {
		t.Errorf("b = %s/%s", b.Region, b.Zone)
	}
}
