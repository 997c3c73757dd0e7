package supervisor

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/rest"

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
}

func newChecker(cd state.ClusterDir, c plan.Cluster, labDNSAddr string) (*checker, error) {
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

func (h *checker) agent(ctx context.Context) error {
	_, err := get(ctx, h.host, fmt.Sprintf("http://127.0.0.1:%d/readyz", h.plan.Ports.AgentHealth))
	return err
}
