package diagnose

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"time"
)

// The test workload: in every member, a namespace with an echo pod, its Service
// diag-<cluster ID> exported to the clusterset, and a probe pod that tries every other
// member's Service. Both pods run Strait's own image (`strait diagnose echo|probe`), so
// the check needs nothing but the image the agent runs.
const (
	Namespace = "strait-diagnose"
	EchoPort  = 8080
	// ServicePort is the port of the exported Service.
	ServicePort = 80
	// TargetsEnv carries the probe's targets, as JSON.
	TargetsEnv = "STRAIT_DIAGNOSE_TARGETS"
)

// ServiceName is the exported Service of a member.
func ServiceName(clusterID string) string { return "diag-" + clusterID }

// Target is one member's Service, as the probe pod tries it.
type Target struct {
	Cluster string `json:"cluster"` // the member (context name)
	ID      string `json:"id"`      // its cluster ID: the echo pod answers with it
	// Name is the clusterset name; ClusterSetIP is the ServiceImport's IP in the prober's
	// cluster; PodIP is the echo pod's IP in the target's cluster.
	Name         string `json:"name"`
	ClusterSetIP string `json:"clustersetIP"`
	PodIP        string `json:"podIP"`
}

// Answer is what the probe saw of one target; an empty error is success.
type Answer struct {
	Cluster       string   `json:"cluster"`
	Resolved      []string `json:"resolved,omitempty"`
	DNSError      string   `json:"dnsError,omitempty"`
	ServiceError  string   `json:"serviceError,omitempty"`
	PodError      string   `json:"podError,omitempty"`
	ServiceAnswer string   `json:"serviceAnswer,omitempty"` // the cluster ID that answered
}

// echoReply is the echo pod's answer.
type echoReply struct {
	Cluster string `json:"cluster"`
	Pod     string `json:"pod"`
}

// Echo answers every request with the cluster ID and the pod's name.
func Echo(clusterID string) http.Handler {
	host, _ := os.Hostname()
	body, _ := json.Marshal(echoReply{Cluster: clusterID, Pod: host})
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(append(body, '\n'))
	})
}

// Resolver looks names up (net.Resolver).
type Resolver interface {
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Prober tries targets with its resolver and HTTP client.
type Prober struct {
	Resolver Resolver
	Client   *http.Client
	// Port of the Service (ServicePort) and of the echo pods (EchoPort): other values in tests.
	ServicePort, PodPort int
}

// NewProber is the prober of the probe pod: the pod's resolver (its resolv.conf) and a
// client that times out each attempt.
func NewProber() *Prober {
	return &Prober{Resolver: net.DefaultResolver, Client: &http.Client{Timeout: 3 * time.Second},
		ServicePort: ServicePort, PodPort: EchoPort}
}

// Probe tries a target: the name resolves to its ClusterSet IP, the ClusterSet IP answers
// from the target's cluster, and the target's pod IP answers. Each is tried for up to attempts times.
func (p *Prober) Probe(ctx context.Context, t Target, attempts int) Answer {
	a := Answer{Cluster: t.Cluster}
	retry := func(f func() error) string {
		var err error
		for i := 0; i < attempts; i++ {
			if err = f(); err == nil {
				return ""
			}
			select {
			case <-ctx.Done():
				return err.Error()
			case <-time.After(time.Second):
			}
		}
		return err.Error()
	}
	a.DNSError = retry(func() error {
		addrs, err := p.Resolver.LookupHost(ctx, t.Name)
		if err != nil {
			return err
		}
		a.Resolved = addrs
		if t.ClusterSetIP != "" && !slices.Contains(addrs, t.ClusterSetIP) {
			return fmt.Errorf("%s resolves to %v, not to its ClusterSet IP %s", t.Name, addrs, t.ClusterSetIP)
		}
		return nil
	})
	// The IP, not the name: with the name checked above, this tells routing from DNS.
	host := t.ClusterSetIP
	if host == "" {
		host = t.Name
	}
	a.ServiceError = retry(func() error {
		id, err := p.get(ctx, net.JoinHostPort(host, strconv.Itoa(p.ServicePort)))
		a.ServiceAnswer = id
		if err == nil && id != t.ID {
			return fmt.Errorf("answered by cluster %q, not %q", id, t.ID)
		}
		return err
	})
	a.PodError = retry(func() error {
		id, err := p.get(ctx, net.JoinHostPort(t.PodIP, strconv.Itoa(p.PodPort)))
		if err == nil && id != t.ID {
			return fmt.Errorf("pod IP %s answered as cluster %q, not %q", t.PodIP, id, t.ID)
		}
		return err
	})
	return a
}

func (p *Prober) get(ctx context.Context, hostport string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostport+"/", nil)
	if err != nil {
		return "", err
	}
	resp, err := p.Client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", err
	}
	var r echoReply
	if err := json.Unmarshal(data, &r); err != nil {
		return "", fmt.Errorf("http://%s/ did not answer as the diagnose echo pod: %q", hostport, data)
	}
	return r.Cluster, nil
}

// Pair judges what a probe pod in cluster saw of target.
func Pair(cluster string, t Target, a Answer) []Result {
	res := func(check string, errText, ok, fix string) Result {
		if errText == "" {
			return Result{Check: check, Cluster: cluster, Peer: t.Cluster, Status: Passed, Detail: ok}
		}
		return Result{Check: check, Cluster: cluster, Peer: t.Cluster, Status: Failed, Detail: errText, Fix: fix}
	}
	return []Result{
		res(CheckDNS, a.DNSError, fmt.Sprintf("%s -> %s", t.Name, t.ClusterSetIP),
			fmt.Sprintf("CoreDNS of %s does not answer clusterset.local: see its coredns check, and CoreDNS's logs (kubectl --context %s -n kube-system logs -l k8s-app=kube-dns)", cluster, cluster)),
		res(CheckClusterSetIP, a.ServiceError, fmt.Sprintf("answered by %s", t.ID),
			fmt.Sprintf("kube-proxy of %s sends the ClusterSet IP %s to %s's pods: check the imported EndpointSlices (kubectl --context %s -n %s get endpointslices) and the pod routes below", cluster, t.ClusterSetIP, t.Cluster, cluster, Namespace)),
		res(CheckPodIP, a.PodError, fmt.Sprintf("%s answered", t.PodIP),
			fmt.Sprintf("pods of %s cannot reach pod IPs of %s: route %s's pod CIDR from %s's nodes (or export with the annotation export.strait.io/via: nodeport|loadbalancer when pod IPs are not routable), and check firewalls and NetworkPolicies", cluster, t.Cluster, t.Cluster, cluster)),
	}
}
