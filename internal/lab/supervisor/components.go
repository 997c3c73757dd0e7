package supervisor

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/process"
	"github.com/strait-io/strait/internal/lab/state"
)

// Names of the components of a lab cluster, in start order. etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler run on the host and listen on 127.0.0.1; the
// node's containerd and kubelet, kube-proxy and CoreDNS run inside the cluster's network
// namespace; the egress proxy (the API server's way to the kubelet), the API forwarder (the
// node's way to the API server), the image registry the node pulls lab images from, and the
// Strait agent of each cluster run inside the supervisor, the agent once the lab has joined
// the clusters into a clusterset (or, with agents in pods, the component stands for the
// chart's Deployment: stopped, it is scaled to 0). strait dns serves the whole lab, but components belong to
// a cluster: it is a component of the broker cluster, whose API it reads, and of no other.
const (
	Etcd              = "etcd"
	EgressProxy       = "egress-proxy"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	Scheduler         = "kube-scheduler"
	APIForwarder      = "api-forwarder"
	ImageRegistry     = "image-registry"
	Containerd        = "containerd"
	Kubelet           = "kubelet"
	KubeProxy         = "kube-proxy"
	CoreDNSConfig     = "coredns-config"
	CoreDNS           = "coredns"
	Agent             = "strait-agent"
	StraitDNS         = "strait-dns"
)

// ComponentNames lists every component in start order.
var ComponentNames = []string{Etcd, EgressProxy, APIServer, ControllerManager, Scheduler, APIForwarder, ImageRegistry,
	Containerd, Kubelet, KubeProxy, CoreDNSConfig, CoreDNS, Agent, StraitDNS}

// clusterComponents lists the components of one cluster in start order: all but strait dns,
// which only the broker cluster runs.
func clusterComponents(broker bool) []string {
	if broker {
		return slices.Clone(ComponentNames)
	}
	return slices.DeleteFunc(slices.Clone(ComponentNames), func(n string) bool { return n == StraitDNS })
}

// Addresses that components inside a cluster namespace use for health and metrics. Each
// namespace has its own loopback, so every cluster can use the same ones.
const (
	kubeProxyHealthz = "127.0.0.1:10256"
	kubeProxyMetrics = "127.0.0.1:10249"
	coreDNSHealth    = "127.0.0.1:8080"
	coreDNSReady     = "127.0.0.1:8181"
	coreDNSMetrics   = "127.0.0.1:9153"
)

// sbinPath makes sure kube-proxy finds nft even when the caller's PATH lacks the sbin dirs.
const sbinPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// specs returns the process specs of one cluster's external components. It is pure, so the
// command lines are reviewed in tests rather than discovered in logs.
func specs(bins binaries.Set, cd state.ClusterDir, c plan.Cluster) map[string]process.Spec {
	nodeSpec := func(name, binary string, args []string) process.Spec {
		return process.Spec{Name: name, Cluster: c.Name, Path: bins.Path(binary), Args: args,
			Netns: c.Namespace, HostMounts: true, LogFile: cd.Log(name), Env: []string{sbinPath}}
	}
	pkiFile := cd.File
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", c.Ports.EtcdClient)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", c.Ports.EtcdPeer)
	spec := func(name, binary, netns string, args []string, env ...string) process.Spec {
		return process.Spec{Name: name, Cluster: c.Name, Path: bins.Path(binary), Args: args,
			Netns: netns, LogFile: cd.Log(name), Env: env}
	}
	return map[string]process.Spec{
		Etcd: spec(Etcd, binaries.Etcd, "", []string{
			"--name=" + c.Name,
			"--data-dir=" + cd.EtcdData(),
			"--listen-client-urls=" + etcdURL,
			"--advertise-client-urls=" + etcdURL,
			"--listen-peer-urls=" + peerURL,
			"--initial-advertise-peer-urls=" + peerURL,
			"--initial-cluster=" + c.Name + "=" + peerURL,
			"--initial-cluster-token=strait-lab-" + c.Name,
			// A lab's data is disposable; fsync would make every write wait for the disk.
			"--unsafe-no-fsync=true",
			"--snapshot-count=10000",
			"--quota-backend-bytes=2147483648",
			"--log-level=warn",
		}),
		APIServer: spec(APIServer, binaries.KubeAPIServer, "", []string{
			"--etcd-servers=" + etcdURL,
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", c.Ports.APIServer),
			// The kubernetes Service points at the node address, where the lab's forwarder
			// passes connections from inside the cluster to this loopback port.
			"--advertise-address=" + c.NodeIP,
			"--service-cluster-ip-range=" + c.ServiceCIDR,
			"--tls-cert-file=" + pkiFile(state.APIServerCert),
			"--tls-private-key-file=" + pkiFile(state.APIServerKey),
			"--client-ca-file=" + pkiFile(state.CACert),
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			// The kubelets: a client certificate of the cluster's CA towards them, their
			// serving certificates checked against it, and their addresses (which exist only
			// inside the node's namespace) reached through the egress proxy.
			"--kubelet-client-certificate=" + pkiFile(state.CertFile(state.KubeletClient)),
			"--kubelet-client-key=" + pkiFile(state.KeyFile(state.KubeletClient)),
			"--kubelet-certificate-authority=" + pkiFile(state.CACert),
			"--kubelet-preferred-address-types=InternalIP",
			"--egress-selector-config-file=" + cd.EgressSelectorConfig(),
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file=" + pkiFile(state.ServiceAccountPub),
			"--service-account-signing-key-file=" + pkiFile(state.ServiceAccountKey),
			"--allow-privileged=true",
			"--profiling=false",
			"--event-ttl=1h",
			"--v=1",
		}),
		ControllerManager: spec(ControllerManager, binaries.KubeControllerManager, "", []string{
			"--kubeconfig=" + cd.Kubeconfig(state.ControllerManager),
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", c.Ports.ControllerManager),
			"--cluster-name=" + c.Name,
			"--root-ca-file=" + pkiFile(state.CACert),
			"--service-account-private-key-file=" + pkiFile(state.ServiceAccountKey),
			"--cluster-signing-cert-file=" + pkiFile(state.CACert),
			"--cluster-signing-key-file=" + pkiFile(state.CAKey),
			"--use-service-account-credentials=true",
			"--service-cluster-ip-range=" + c.ServiceCIDR,
			"--cluster-cidr=" + c.PodCIDR,
			// The one node gets the whole pod CIDR as its spec.podCIDR, which its CNI
			// (host-local IPAM on the same range) hands out.
			"--allocate-node-cidrs=true",
			fmt.Sprintf("--node-cidr-mask-size=%s", prefixOf(c.PodCIDR)),
			"--leader-elect=false",
			"--kube-api-qps=100",
			"--kube-api-burst=200",
			"--profiling=false",
			"--v=1",
		}),
		Scheduler: spec(Scheduler, binaries.KubeScheduler, "", []string{
			"--kubeconfig=" + cd.Kubeconfig(state.Scheduler),
			"--authentication-kubeconfig=" + cd.Kubeconfig(state.Scheduler),
			"--authorization-kubeconfig=" + cd.Kubeconfig(state.Scheduler),
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", c.Ports.Scheduler),
			"--leader-elect=false",
			"--profiling=false",
			"--v=1",
		}),
		Containerd: nodeSpec(Containerd, binaries.Containerd, []string{
			"--config", cd.ContainerdConfig(), "--log-level", "warn",
		}),
		Kubelet: nodeSpec(Kubelet, binaries.Kubelet, []string{
			"--config=" + cd.KubeletConfig(),
			"--kubeconfig=" + cd.Kubeconfig(state.Kubelet),
			"--root-dir=" + cd.KubeletRoot(),
			"--hostname-override=" + c.NodeName,
			"--node-ip=" + c.NodeIP,
			"--node-labels=" + kubeletLabels(c),
			"--v=1",
		}),
		KubeProxy: spec(KubeProxy, binaries.KubeProxy, c.Namespace, []string{
			"--kubeconfig=" + cd.Kubeconfig(state.KubeProxy),
			"--proxy-mode=nftables",
			"--hostname-override=" + c.NodeName,
			"--cluster-cidr=" + c.PodCIDR,
			// A network namespace cannot change the host's conntrack table size or timeouts;
			// zero tells kube-proxy to leave them alone.
			"--conntrack-max-per-core=0",
			"--conntrack-min=0",
			"--conntrack-tcp-timeout-established=0",
			"--conntrack-tcp-timeout-close-wait=0",
			"--metrics-bind-address=" + kubeProxyMetrics,
			"--healthz-bind-address=" + kubeProxyHealthz,
			"--v=1",
		}, sbinPath),
		CoreDNS: spec(CoreDNS, binaries.CoreDNS, c.Namespace, []string{
			"-conf", cd.Corefile(),
		}),
	}
}

// ClusterSetDomain is the zone of multi-cluster Services, served by stock CoreDNS from the
// ServiceImports and EndpointSlices the Strait agent writes.
const ClusterSetDomain = "clusterset.local"

// Corefile returns the configuration of the cluster's stock CoreDNS: the usual kubeadm
// Corefile with the multicluster option for clusterset.local, bound to the node address,
// reading the API through the lab forwarder, and a block forwarding the federation's short
// names and the lab domain to the lab's strait dns at labDNS (host:port). Queries leave the
// node from its address, which is how strait dns tells the clusters apart.
// Health, readiness and metrics listen on the namespace's own loopback.
func Corefile(cd state.ClusterDir, c plan.Cluster, labDNS string) string {
	lines := []string{
		".:53 {",
		"    bind " + c.NodeIP,
		"    errors",
		"    health " + coreDNSHealth,
		"    ready " + coreDNSReady,
		"    kubernetes cluster.local " + ClusterSetDomain + " in-addr.arpa ip6.arpa {",
		"        kubeconfig " + cd.Kubeconfig(state.CoreDNS),
		"        pods insecure",
		"        multicluster " + ClusterSetDomain,
		"        fallthrough in-addr.arpa ip6.arpa",
		"        ttl 30",
		"    }",
		"    prometheus " + coreDNSMetrics,
		"    cache 30",
		"    loop",
		// The ConfigMap kube-system/coredns is copied to this file (corefileSync): an
		// edit of it is seen within seconds, as CoreDNS sees its ConfigMap volume change.
		"    reload 2s 1s",
		"    loadbalance",
		"}",
		federation.DefaultName + " " + LabDomain + " {",
		"    bind " + c.NodeIP,
		"    errors",
		"    forward . " + labDNS,
		// Caps what CoreDNS keeps, even of a service whose own TTL is longer, so a shard
		// failing over shows within seconds.
		"    cache " + fmt.Sprint(int(labDNSTTL/time.Second)),
		"}",
	}
	return strings.Join(lines, "\n") + "\n"
}

// ResolvConf is what a pod of the cluster gets from the kubelet with dnsPolicy ClusterFirst
// in the default namespace.
func ResolvConf(c plan.Cluster) string {
	return "search default.svc.cluster.local svc.cluster.local cluster.local\n" +
		"nameserver " + c.DNSServiceIP + "\n" +
		"options ndots:5\n"
}

// prefixOf returns the prefix length of a CIDR ("16" of 10.1.0.0/16).
func prefixOf(cidr string) string {
	if _, bits, ok := strings.Cut(cidr, "/"); ok {
		return bits
	}
	return "32"
}
