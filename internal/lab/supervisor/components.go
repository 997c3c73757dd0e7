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

// Names of the components of a lab cluster, in start order. etcd, kube-apiserver and
// kube-controller-manager run on the host and listen on 127.0.0.1; kube-proxy and CoreDNS run
// inside the cluster's network namespace; the node simulator and the API forwarder run inside
// the supervisor, and so does the Strait agent of each cluster once the lab has joined them
// into a clusterset. strait dns serves the whole lab, but components belong to a cluster: it
// is a component of the broker cluster, whose API it reads, and of no other.
const (
	Etcd              = "etcd"
	APIServer         = "kube-apiserver"
	ControllerManager = "kube-controller-manager"
	NodeSim           = "node-simulator"
	APIForwarder      = "api-forwarder"
	KubeProxy         = "kube-proxy"
	CoreDNS           = "coredns"
	Agent             = "strait-agent"
	StraitDNS         = "strait-dns"
)

// ComponentNames lists every component in start order.
var ComponentNames = []string{Etcd, APIServer, ControllerManager, NodeSim, APIForwarder, KubeProxy, CoreDNS, Agent, StraitDNS}

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
			// The node simulator assigns pod CIDRs itself, as a CNI with its own IPAM would.
			"--allocate-node-cidrs=false",
			"--leader-elect=false",
			"--kube-api-qps=100",
			"--kube-api-burst=200",
			"--profiling=false",
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
		"    reload",
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
