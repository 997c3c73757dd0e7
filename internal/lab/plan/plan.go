// Package plan turns what a user asks of the lab (cluster names, topology, a port base) into
// the full addressing plan of every cluster: network namespaces, node and router addresses,
// pod and service CIDRs that never overlap, and the host ports each component listens on.
// It is pure: no I/O, so every rule is table-tested.
package plan

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Limits of the addressing scheme below; they are documented in the CLI help.
const (
	MaxClusters = 50
	// portsPerKind is the stride between the port ranges of the components: cluster i's API
	// server listens on base+i, its etcd client port on base+portsPerKind+i, and so on.
	portsPerKind = 100
	portKinds    = 7
	// DefaultAPIPortBase puts the first API server on 127.0.0.1:16443.
	DefaultAPIPortBase = 16442
	// MaxLabNameLen keeps network namespace names short and readable.
	MaxLabNameLen = 12
)

// Fixed parts of the lab network. They exist only inside network namespaces the lab creates,
// so two labs running at once can use the same addresses without seeing each other.
var (
	nodeNetwork = netip.MustParsePrefix("10.254.0.0/16")
	routerIP    = netip.MustParseAddr("10.254.0.1")
)

// Spec is what the user asks for.
type Spec struct {
	// Lab names this lab; it prefixes network namespaces and names the state directory.
	Lab string
	// Clusters in order; the first is cluster index 1.
	Clusters []ClusterSpec
	// APIPortBase: cluster i's API server listens on 127.0.0.1:APIPortBase+i. Zero asks the
	// caller to pick free ports (used by tests running several labs at once).
	APIPortBase int
}

// ClusterSpec names one cluster and where it sits. Empty Region and Zone get defaults.
type ClusterSpec struct {
	Name   string
	Region string
	Zone   string
}

// Lab is the complete plan of a lab.
type Lab struct {
	Name        string    `json:"name"`
	RouterNS    string    `json:"routerNamespace"`
	RouterIP    string    `json:"routerIP"`
	NodeNetwork string    `json:"nodeNetwork"`
	Clusters    []Cluster `json:"clusters"`
}

// Cluster is the plan of one cluster.
type Cluster struct {
	Name  string `json:"name"`
	Index int    `json:"index"`
	// ID is the cluster's unique ID in the clusterset (About API cluster.clusterset.k8s.io).
	ID     string `json:"id"`
	Region string `json:"region"`
	Zone   string `json:"zone"`
	// Namespace is the network namespace that plays the cluster's node.
	Namespace    string `json:"netns"`
	NodeName     string `json:"nodeName"`
	NodeIP       string `json:"nodeIP"`
	PodCIDR      string `json:"podCIDR"`
	ServiceCIDR  string `json:"serviceCIDR"`
	APIServiceIP string `json:"apiServiceIP"`
	DNSServiceIP string `json:"dnsServiceIP"`
	Ports        Ports  `json:"ports"`
}

// Ports are the host (127.0.0.1) ports of a cluster's control plane.
type Ports struct {
	APIServer         int `json:"apiServer"`
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	ControllerManager int `json:"controllerManager"`
	AgentMetrics      int `json:"agentMetrics"`
	AgentHealth       int `json:"agentHealth"`
	Scheduler         int `json:"scheduler"`
}

// All lists the ports with a human name each, for error messages and checks.
func (p Ports) All() []NamedPort {
	return []NamedPort{
		{"kube-apiserver", p.APIServer},
		{"etcd client", p.EtcdClient},
		{"etcd peer", p.EtcdPeer},
		{"kube-controller-manager", p.ControllerManager},
		{"strait agent metrics", p.AgentMetrics},
		{"strait agent health", p.AgentHealth},
		{"kube-scheduler", p.Scheduler},
	}
}

// NamedPort is a port and what listens on it.
type NamedPort struct {
	Name string
	Port int
}

// DefaultNames returns cluster01..clusterNN, the names of the ClusterMesh walkthrough.
func DefaultNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("cluster%02d", i+1)
	}
	return names
}

// DefaultTopology places every two clusters in one region and each cluster in its own zone:
// cluster 1 and 2 in region1 (zones region1a, region1b), 3 and 4 in region2, and so on.
func DefaultTopology(index int) (region, zone string) {
	r := (index-1)/2 + 1
	z := string(rune('a' + (index-1)%2))
	region = fmt.Sprintf("region%d", r)
	return region, region + z
}

// ValidateLabName checks a lab name.
func ValidateLabName(name string) error {
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("lab name %q is not valid: %s", name, strings.Join(errs, "; "))
	}
	if len(name) > MaxLabNameLen {
		return fmt.Errorf("lab name %q is too long: at most %d characters", name, MaxLabNameLen)
	}
	return nil
}

// Validate checks a spec and names the first bad value it finds.
func (s Spec) Validate() error {
	if err := ValidateLabName(s.Lab); err != nil {
		return err
	}
	n := len(s.Clusters)
	if n < 1 || n > MaxClusters {
		return fmt.Errorf("the lab needs between 1 and %d clusters, not %d", MaxClusters, n)
	}
	seen := map[string]bool{}
	for _, c := range s.Clusters {
		if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
			return fmt.Errorf("cluster name %q is not a DNS-1123 label (lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters): %s",
				c.Name, strings.Join(errs, "; "))
		}
		if seen[c.Name] {
			return fmt.Errorf("cluster name %q is given twice; cluster names must be unique", c.Name)
		}
		seen[c.Name] = true
		for _, v := range []struct{ what, value string }{{"region", c.Region}, {"zone", c.Zone}} {
			if v.value == "" {
				continue
			}
			if errs := validation.IsDNS1123Label(v.value); len(errs) > 0 {
				return fmt.Errorf("%s %q of cluster %s is not a DNS-1123 label: %s", v.what, v.value, c.Name, strings.Join(errs, "; "))
			}
		}
	}
	if s.APIPortBase != 0 {
		lo, hi := s.APIPortBase+1, s.APIPortBase+portKinds*portsPerKind
		if lo < 1024 || hi > 65535 {
			return fmt.Errorf("API port base %d is out of range: the lab uses ports %d to %d, which must lie between 1024 and 65535",
				s.APIPortBase, lo, hi)
		}
	}
	return nil
}

// Build validates the spec and computes the plan. With APIPortBase zero the ports are left
// zero for the caller to fill in (AssignPorts).
func Build(s Spec) (*Lab, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	l := &Lab{
		Name:        s.Lab,
		RouterNS:    s.Lab + "-router",
		RouterIP:    routerIP.String(),
		NodeNetwork: nodeNetwork.String(),
	}
	for i, cs := range s.Clusters {
		idx := i + 1
		region, zone := DefaultTopology(idx)
		if cs.Region != "" {
			region = cs.Region
		}
		if cs.Zone != "" {
			zone = cs.Zone
		}
		c := Cluster{
			Name:         cs.Name,
			Index:        idx,
			ID:           cs.Name,
			Region:       region,
			Zone:         zone,
			Namespace:    s.Lab + "-" + cs.Name,
			NodeName:     cs.Name + "-node",
			NodeIP:       fmt.Sprintf("10.254.0.%d", 10+idx),
			PodCIDR:      fmt.Sprintf("10.%d.0.0/16", idx),
			ServiceCIDR:  fmt.Sprintf("10.%d.0.0/16", 100+idx),
			APIServiceIP: fmt.Sprintf("10.%d.0.1", 100+idx),
			DNSServiceIP: fmt.Sprintf("10.%d.0.10", 100+idx),
		}
		if s.APIPortBase != 0 {
			b := s.APIPortBase
			c.Ports = Ports{
				APIServer:         b + idx,
				EtcdClient:        b + portsPerKind + idx,
				EtcdPeer:          b + 2*portsPerKind + idx,
				ControllerManager: b + 3*portsPerKind + idx,
				AgentMetrics:      b + 4*portsPerKind + idx,
				AgentHealth:       b + 5*portsPerKind + idx,
				Scheduler:         b + 6*portsPerKind + idx,
			}
		}
		l.Clusters = append(l.Clusters, c)
	}
	return l, nil
}

// AssignPorts fills in zero ports from next, which hands out free ports.
func (l *Lab) AssignPorts(next func() (int, error)) error {
	for i := range l.Clusters {
		p := &l.Clusters[i].Ports
		for _, f := range []*int{&p.APIServer, &p.EtcdClient, &p.EtcdPeer, &p.ControllerManager, &p.AgentMetrics, &p.AgentHealth, &p.Scheduler} {
			if *f != 0 {
				continue
			}
			port, err := next()
			if err != nil {
				return err
			}
			*f = port
		}
	}
	return nil
}

// UnassignedPorts reports whether any port of the plan is zero: a plan built without a port
// base, or a saved one from before a component with a port of its own was added.
func (l *Lab) UnassignedPorts() bool {
	for _, c := range l.Clusters {
		for _, p := range c.Ports.All() {
			if p.Port == 0 {
				return true
			}
		}
	}
	return false
}

// Cluster returns the named cluster.
func (l *Lab) Cluster(name string) (*Cluster, error) {
	for i := range l.Clusters {
		if l.Clusters[i].Name == name {
			return &l.Clusters[i], nil
		}
	}
	return nil, fmt.Errorf("the lab has no cluster %q; its clusters are %s", name, strings.Join(l.Names(), ", "))
}

// Names lists the cluster names in order.
func (l *Lab) Names() []string {
	names := make([]string, len(l.Clusters))
	for i, c := range l.Clusters {
		names[i] = c.Name
	}
	return names
}

// Namespaces lists every network namespace of the lab, router first.
func (l *Lab) Namespaces() []string {
	ns := []string{l.RouterNS}
	for _, c := range l.Clusters {
		ns = append(ns, c.Namespace)
	}
	return ns
}

// PortConflicts reports ports used twice within the plan (possible only with a user-given
// base that makes ranges of different labs meet, or a bug); it is a safety net.
func (l *Lab) PortConflicts() []string {
	owner := map[int]string{}
	var out []string
	for _, c := range l.Clusters {
		for _, p := range c.Ports.All() {
			who := c.Name + " " + p.Name
			if prev, ok := owner[p.Port]; ok {
				out = append(out, fmt.Sprintf("port %d is planned for both %s and %s", p.Port, prev, who))
			}
			owner[p.Port] = who
		}
	}
	sort.Strings(out)
	return out
}
