// Command rebel-base is the lab's demo responder (image strait.io/lab/rebel-base, also tagged
// strait.io/lab/echo). It answers HTTP on every container port its pod declares with the
// same JSON document the lab has always answered with: cluster, namespace, pod, node, pod
// IP, port and path, and the header X-Strait-Pod naming the pod.
//
// A container cannot see its pod's spec, and the lab's manifests stay as they are (no env,
// no downward API), so the program reads its own Pod from the API with the pod's service
// account: pod name from $HOSTNAME, namespace from the token's namespace file, node from
// spec.nodeName. The cluster's name is the node's lab.strait.io/cluster label when it has
// one (a node may read its Node only if RBAC allows: the lab binds get on pods and nodes to
// system:serviceaccounts), otherwise the node's name less its "-node" suffix, which is how
// the lab names nodes. It listens on the TCP container ports of the pod's containers that
// run this image; when none does (the image was retagged), on every TCP container port of
// the pod; when the pod declares none, on 8080.
//
// Every path answers 200 with that JSON, except /readyz while the pod is annotated
// lab.strait.io/ready: "false": then it answers 503, so a readinessProbe on /readyz makes
// the pod unready on demand (kubectl annotate).
//
// Only the standard library is used, so the image stays small; internal/lab/images embeds
// this source and builds it statically.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// podHeader names the pod (namespace/name) that answered, as the node simulator does.
	podHeader = "X-Strait-Pod"
	// clusterLabel on a Node names its lab cluster.
	clusterLabel = "lab.strait.io/cluster"
	// nodeSuffix ends every lab node's name: <cluster>-node.
	nodeSuffix = "-node"
	// defaultPort is served when the pod declares no TCP container port.
	defaultPort = 8080
	// readyPath fails (503) while the pod is annotated readyAnnotation: "false", for a
	// readinessProbe; every other path always answers.
	readyPath       = "/readyz"
	readyAnnotation = "lab.strait.io/ready"
	serviceAcctDir  = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// imageRepos are the repositories this program's image is published under.
var imageRepos = []string{"strait.io/lab/rebel-base", "strait.io/lab/echo"}

// response is the document every request gets; the docs, the demo and the tests parse its
// fields, in this order.
type response struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	PodIP     string `json:"podIP"`
	Port      int32  `json:"port"`
	Path      string `json:"path"`
}

// The few fields of the API's Pod and Node the responder reads.
type (
	objectMeta struct {
		Name      string            `json:"name"`
		Namespace string            `json:"namespace"`
		Labels    map[string]string `json:"labels"`
	}
	containerPort struct {
		ContainerPort int32  `json:"containerPort"`
		Protocol      string `json:"protocol"`
	}
	container struct {
		Name          string          `json:"name"`
		Image         string          `json:"image"`
		RestartPolicy string          `json:"restartPolicy"`
		Ports         []containerPort `json:"ports"`
	}
	pod struct {
		Metadata struct {
			objectMeta
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			NodeName       string      `json:"nodeName"`
			Containers     []container `json:"containers"`
			InitContainers []container `json:"initContainers"`
		} `json:"spec"`
		Status struct {
			PodIP string `json:"podIP"`
		} `json:"status"`
	}
	node struct {
		Metadata objectMeta `json:"metadata"`
	}
)

// env is where the responder finds the API and itself; in a pod it comes from envFromOS.
type env struct {
	apiURL        string // https://host:port
	tokenFile     string
	caFile        string
	namespaceFile string
	podName       string
	listenHost    string // "" listens on every address of the pod
	logf          func(format string, args ...any)
}

func envFromOS() (env, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return env{}, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: " +
			"rebel-base runs in a pod and reads its own Pod from the Kubernetes API")
	}
	name := os.Getenv("HOSTNAME")
	if name == "" {
		var err error
		if name, err = os.Hostname(); err != nil {
			return env{}, fmt.Errorf("finding the pod name: %w", err)
		}
	}
	return env{
		apiURL:        "https://" + net.JoinHostPort(host, port),
		tokenFile:     serviceAcctDir + "/token",
		caFile:        serviceAcctDir + "/ca.crt",
		namespaceFile: serviceAcctDir + "/namespace",
		podName:       name,
		logf:          log.Printf,
	}, nil
}

// identity is what the responder says about itself, and where it listens.
type identity struct {
	cluster, namespace, pod, node, podIP string
	ports                                []int32
	// unready reports whether the pod asks to fail its readiness (ReadyPath); nil never.
	unready func(ctx context.Context) bool
}

// apiClient reads objects with the pod's service account token. The token file is read for
// every request: the kubelet rotates it.
type apiClient struct {
	base      string
	tokenFile string
	http      *http.Client
}

func newAPIClient(e env) (*apiClient, error) {
	pem, err := os.ReadFile(e.caFile)
	if err != nil {
		return nil, fmt.Errorf("reading the cluster CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", e.caFile)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &apiClient{base: e.apiURL, tokenFile: e.tokenFile, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}, nil
}

func (c *apiClient) get(ctx context.Context, path string, into any) error {
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		return fmt.Errorf("reading the service account token: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return json.Unmarshal(body, into)
}

// discover reads the Pod, retrying until the API answers (the pod may start before its
// network reaches the API server), and the Node for its cluster label.
func discover(ctx context.Context, e env) (identity, error) {
	nsData, err := os.ReadFile(e.namespaceFile)
	if err != nil {
		return identity{}, fmt.Errorf("reading the pod's namespace: %w", err)
	}
	ns := strings.TrimSpace(string(nsData))
	c, err := newAPIClient(e)
	if err != nil {
		return identity{}, err
	}
	var p pod
	podPath := "/api/v1/namespaces/" + url.PathEscape(ns) + "/pods/" + url.PathEscape(e.podName)
	for delay := 250 * time.Millisecond; ; delay = min(2*delay, 5*time.Second) {
		err := c.get(ctx, podPath, &p)
		if err == nil {
			break
		}
		e.logf("Reading my Pod %s/%s failed, retrying in %s: %v", ns, e.podName, delay, err)
		select {
		case <-ctx.Done():
			return identity{}, fmt.Errorf("reading my Pod %s/%s: %w", ns, e.podName, err)
		case <-time.After(delay):
		}
	}
	id := identity{namespace: ns, pod: e.podName, node: p.Spec.NodeName, podIP: p.Status.PodIP, ports: servedPorts(p, imageRepos)}
	var labels map[string]string
	if id.node != "" {
		var n node
		if err := c.get(ctx, "/api/v1/nodes/"+url.PathEscape(id.node), &n); err != nil {
			e.logf("Reading my Node %s failed, naming the cluster after the node: %v", id.node, err)
		} else {
			labels = n.Metadata.Labels
		}
	}
	id.cluster = clusterName(labels, id.node)
	id.unready = unreadyFunc(c, podPath, p.Metadata.Annotations[readyAnnotation] == "false", e.logf)
	if id.podIP == "" {
		id.podIP = localIP()
	}
	return id, nil
}

// unreadyFunc reads the pod's readiness annotation at every call. When the API does not
// answer it keeps the last answer, so a readiness probe does not flap with the API server.
func unreadyFunc(c *apiClient, podPath string, initial bool, logf func(string, ...any)) func(context.Context) bool {
	var mu sync.Mutex
	last := initial
	return func(ctx context.Context) bool {
		var p pod
		err := c.get(ctx, podPath, &p)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			logf("Reading my Pod for readiness failed, keeping the last answer (unready=%v): %v", last, err)
			return last
		}
		last = p.Metadata.Annotations[readyAnnotation] == "false"
		return last
	}
}

// clusterName is the node's cluster label, or its name less the lab's "-node" suffix.
func clusterName(labels map[string]string, nodeName string) string {
	if c := labels[clusterLabel]; c != "" {
		return c
	}
	return strings.TrimSuffix(nodeName, nodeSuffix)
}

// repository strips the tag and digest from an image reference.
func repository(image string) string {
	if i := strings.Index(image, "@"); i >= 0 {
		image = image[:i]
	}
	if i := strings.LastIndex(image, ":"); i > strings.LastIndex(image, "/") {
		image = image[:i]
	}
	return image
}

// servedPorts lists the distinct TCP container ports the responder serves, ascending: those
// of the containers (and sidecars) that run this image, else those of every container,
// else the default port.
func servedPorts(p pod, repos []string) []int32 {
	all := slices.Clone(p.Spec.Containers)
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy == "Always" {
			all = append(all, c)
		}
	}
	var mine []container
	for _, c := range all {
		if slices.Contains(repos, repository(c.Image)) {
			mine = append(mine, c)
		}
	}
	if len(mine) == 0 {
		mine = all
	}
	var ports []int32
	for _, c := range mine {
		for _, cp := range c.Ports {
			if (cp.Protocol != "" && cp.Protocol != "TCP") || cp.ContainerPort <= 0 {
				continue
			}
			ports = append(ports, cp.ContainerPort)
		}
	}
	if len(ports) == 0 {
		return []int32{defaultPort}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// localIP is the first global unicast address of the pod, for when the Pod's status does
// not have its IP yet.
func localIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	var v6 string
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || !ipn.IP.IsGlobalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP.String()
		}
		if v6 == "" {
			v6 = ipn.IP.String()
		}
	}
	return v6
}

// handler answers every request on one port.
func handler(id identity, port int32, logf func(string, ...any)) http.Handler {
	base := response{Cluster: id.cluster, Namespace: id.namespace, Pod: id.pod, Node: id.node, PodIP: id.podIP, Port: port}
	podName := id.namespace + "/" + id.pod
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		resp := base
		resp.Path = req.URL.Path
		status := http.StatusOK
		if req.URL.Path == readyPath && id.unready != nil && id.unready(req.Context()) {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(podHeader, podName)
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(resp); err != nil {
			logf("Writing a response failed: %v", err)
		}
	})
}

// serve listens on every port of id until ctx ends. A port already in use is a sibling
// container of the same image serving it: it is tried again every few seconds, in case that
// container goes away. Any other listen error ends serve.
func serve(ctx context.Context, id identity, host string, logf func(string, ...any)) error {
	errs := make(chan error, len(id.ports))
	var servers []*http.Server
	for _, port := range id.ports {
		srv := &http.Server{Handler: handler(id, port, logf), ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, srv)
		addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
		go func() {
			told := false
			for {
				l, err := net.Listen("tcp", addr)
				if errors.Is(err, syscall.EADDRINUSE) {
					if !told {
						logf("Port %s is in use, another container may serve it; trying again", addr)
						told = true
					}
					select {
					case <-ctx.Done():
						return
					case <-time.After(3 * time.Second):
						continue
					}
				}
				if err != nil {
					errs <- fmt.Errorf("listening on %s: %w", addr, err)
					return
				}
				logf("Serving %s/%s on %s (cluster %s, node %s, pod IP %s)", id.namespace, id.pod, addr, id.cluster, id.node, id.podIP)
				if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
					errs <- fmt.Errorf("serving %s: %w", addr, err)
				}
				return
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, srv := range servers {
		srv.Close()
	}
	return err
}

func run(ctx context.Context, e env) error {
	id, err := discover(ctx, e)
	if err != nil {
		return err
	}
	return serve(ctx, id, e.listenHost, e.logf)
}

func main() {
	log.SetFlags(log.LstdFlags | log.LUTC)
	e, err := envFromOS()
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, e); err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}
