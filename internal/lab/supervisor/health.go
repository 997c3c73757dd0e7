package supervisor

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/lab/binaries"
	"github.com/strait-io/strait/internal/lab/images"

	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// checker holds the HTTP clients one cluster's health checks use.
type checker struct {
	plan       plan.Cluster
	labDNSAddr string       // where the lab's strait dns listens (host:port)
	host       *http.Client // plain HTTP on the host's loopback
	api        *http.Client // TLS with the admin certificate
	anyTLS     *http.Client // TLS to self-signed component endpoints
	inNetns    *http.Client // plain HTTP from inside the cluster's namespace
	egressSock string       // the egress proxy's socket
	ctr        string       // containerd's ctr
	socket     string       // the node's containerd socket
	agentPods  bool         // the agent runs as the chart's Deployment
}

func newChecker(cd state.ClusterDir, c plan.Cluster, labDNSAddr string, bins binaries.Set) (*checker, error) {
	tlsCfg, err := rest.TLSConfigFor(state.RESTConfig(cd, c, state.Admin))
	if err != nil {
		return nil, fmt.Errorf("TLS configuration of cluster %s: %w", c.Name, err)
	}
	client := func(t *http.Transport) *http.Client {
		t.DisableKeepAlives = true
		return &http.Client{Transport: t, Timeout: 5 * time.Second}
	}
	return &checker{
		plan:       c,
		labDNSAddr: labDNSAddr,
		host:       client(&http.Transport{}),
		api:        client(&http.Transport{TLSClientConfig: tlsCfg}),
		anyTLS:     client(&http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}), // #nosec G402 -- health endpoint of a local component, no data exchanged
		inNetns:    client(&http.Transport{DialContext: netns.Dialer{Namespace: c.Namespace}.DialContext}),
		egressSock: cd.EgressSocket(),
		ctr:        bins.Path(binaries.Ctr),
		socket:     cd.ContainerdSocket(),
	}, nil
}

// get fetches url and fails unless the status is 200; the body is returned for more checks.
func get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return string(body), nil
}

func (h *checker) etcd(ctx context.Context) error {
	body, err := get(ctx, h.host, fmt.Sprintf("http://127.0.0.1:%d/health", h.plan.Ports.EtcdClient))
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("etcd reports %s", strings.TrimSpace(body))
	}
	return nil
}

func (h *checker) apiServer(ctx context.Context) error {
	_, err := get(ctx, h.api, state.APIServerURL(h.plan)+"/readyz")
	return err
}

func (h *checker) controllerManager(ctx context.Context) error {
	_, err := get(ctx, h.anyTLS, fmt.Sprintf("https://127.0.0.1:%d/healthz", h.plan.Ports.ControllerManager))
	return err
}

func (h *checker) scheduler(ctx context.Context) error {
	_, err := get(ctx, h.anyTLS, fmt.Sprintf("https://127.0.0.1:%d/healthz", h.plan.Ports.Scheduler))
	return err
}

// egress checks that the egress proxy takes connections.
func (h *checker) egress(ctx context.Context) error {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", h.egressSock)
	if err != nil {
		return err
	}
	return conn.Close()
}

// registry asks the node's registry address, from inside the node, for the lab's pause
// image, as the node's containerd would.
func (h *checker) registry(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, "http://"+registryAddr+"/v2/lab/pause/manifests/"+images.LabTag, nil)
	if err != nil {
		return err
	}
	resp, err := h.inNetns.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the registry has no %s: %s", images.Pause, resp.Status)
	}
	return nil
}

// containerd asks the node's containerd for its version over its socket, as the kubelet
// and ctr talk to it.
func (h *checker) containerd(ctx context.Context) error {
	out, err := exec.CommandContext(ctx, h.ctr, "--address", h.socket, "version").CombinedOutput()
	if err != nil {
		return fmt.Errorf("ctr version: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if !strings.Contains(string(out), "Server:") {
		return fmt.Errorf("ctr version: no server version in %q", out)
	}
	return nil
}

// kubelet checks the kubelet's own health endpoint inside the node, and that its Node is
// registered and Ready.
func (h *checker) kubelet(ctx context.Context) error {
	if _, err := get(ctx, h.inNetns, fmt.Sprintf("http://127.0.0.1:%d/healthz", kubeletHealthzPort)); err != nil {
		return err
	}
	body, err := get(ctx, h.api, state.APIServerURL(h.plan)+"/api/v1/nodes/"+h.plan.NodeName)
	if err != nil {
		return err
	}
	var node corev1.Node
	if err := json.Unmarshal([]byte(body), &node); err != nil {
		return err
	}
	for _, c := range node.Status.Conditions {
		if c.Type == corev1.NodeReady {
			if c.Status == corev1.ConditionTrue {
				return nil
			}
			return fmt.Errorf("node %s is not Ready: %s: %s", h.plan.NodeName, c.Reason, c.Message)
		}
	}
	return fmt.Errorf("node %s has no Ready condition yet", h.plan.NodeName)
}

func (h *checker) kubeProxy(ctx context.Context) error {
	_, err := get(ctx, h.inNetns, "http://"+kubeProxyHealthz+"/healthz")
	return err
}

func (h *checker) coreDNS(ctx context.Context) error {
	_, err := get(ctx, h.inNetns, "http://"+coreDNSReady+"/ready")
	return err
}

// forwarder checks that the API is reachable from inside the cluster on the node address.
func (h *checker) forwarder(ctx context.Context) error {
	conn, err := netns.Dialer{Namespace: h.plan.Namespace}.DialContext(ctx, "tcp", net.JoinHostPort(h.plan.NodeIP, fmt.Sprint(h.plan.Ports.APIServer)))
	if err != nil {
		return err
	}
	return conn.Close()
}

// clusterDNS resolves the kubernetes Service the way a pod does: through the kube-dns
// ClusterIP, which only works when kube-proxy routes it to a ready CoreDNS.
func (h *checker) clusterDNS(ctx context.Context) error {
	return h.resolves(ctx, net.JoinHostPort(h.plan.DNSServiceIP, "53"), "kubernetes.default.svc.cluster.local.", h.plan.APIServiceIP)
}

// labDNS asks the lab's strait dns, from this cluster's node, for its own nameserver, whose
// address it serves as glue: the answer proves it listens there and serves the lab domain.
func (h *checker) labDNS(ctx context.Context) error {
	host, _, err := net.SplitHostPort(h.labDNSAddr)
	if err != nil {
		return fmt.Errorf("lab DNS address %q: %w", h.labDNSAddr, err)
	}
	return h.resolves(ctx, h.labDNSAddr, "ns."+LabDomain+".", host)
}

// resolves checks that the DNS server at server, asked from inside the cluster's namespace,
// resolves name to an answer that includes want.
func (h *checker) resolves(ctx context.Context, server, name, want string) error {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return netns.Dialer{Namespace: h.plan.Namespace}.DialContext(ctx, network, server)
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := r.LookupHost(ctx, name)
	if err != nil {
		return fmt.Errorf("resolving %s through %s: %w", name, server, err)
	}
	if slices.Contains(addrs, want) {
		return nil
	}
	return errors.New(name + " resolved to " + strings.Join(addrs, ",") + " through " + server + ", want " + want)
}

// agent is ready when its /readyz answers: the in-process agent's on the host, or with
// agents in pods, each pod's through its readiness probe, which the Deployment's status
// reflects.
func (h *checker) agent(ctx context.Context) error {
	if !h.agentPods {
		_, err := get(ctx, h.host, fmt.Sprintf("http://127.0.0.1:%d/readyz", h.plan.Ports.AgentHealth))
		return err
	}
	body, err := get(ctx, h.api, fmt.Sprintf("%s/apis/apps/v1/namespaces/%s/deployments/%s", state.APIServerURL(h.plan), chart.Namespace, agentDeployment))
	if err != nil {
		return err
	}
	var d appsv1.Deployment
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		return err
	}
	return agentDeploymentReady(&d)
}
