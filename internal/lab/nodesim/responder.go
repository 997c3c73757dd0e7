package nodesim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
)

// PodHeader is the response header naming the pod (namespace/name) that answered.
const PodHeader = "X-Strait-Pod"

// Response is the JSON document every pod responder answers with.
type Response struct {
	Cluster   string `json:"cluster"`
	Namespace string `json:"namespace"`
	Pod       string `json:"pod"`
	Node      string `json:"node"`
	PodIP     string `json:"podIP"`
	Port      int32  `json:"port"`
	Path      string `json:"path"`
}

// responder is one HTTP server on one pod address and port.
type responder struct {
	ip   string
	srv  *http.Server
	done chan struct{}
}

// podResponders are the responders of one pod incarnation, by port.
type podResponders struct {
	uid    types.UID
	byPort map[int32]*responder
}

// responders serves HTTP on pod addresses. They are keyed by pod key and remember the pod UID,
// so a pod recreated under the same name never inherits its predecessor's servers.
type responders struct {
	cluster  string
	node     string
	listener Listener

	mu    sync.Mutex
	byPod map[string]*podResponders
}

func newResponders(cluster, node string, l Listener) *responders {
	return &responders{cluster: cluster, node: node, listener: l, byPod: map[string]*podResponders{}}
}

// tcpPorts lists the distinct TCP container ports of pod, in ascending order.
func tcpPorts(pod *corev1.Pod) []int32 {
	var ports []int32
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if (p.Protocol != "" && p.Protocol != corev1.ProtocolTCP) || p.ContainerPort <= 0 {
				continue
			}
			ports = append(ports, p.ContainerPort)
		}
	}
	slices.Sort(ports)
	return slices.Compact(ports)
}

// ensure makes the responders of pod exactly one per TCP container port on podIP. Ports
// that fail to listen are reported and tried again on the next call.
func (r *responders) ensure(ctx context.Context, key string, pod *corev1.Pod, podIP string) error {
	if r.listener == nil {
		return nil
	}
	ports := tcpPorts(pod)
	r.mu.Lock()
	defer r.mu.Unlock()
	set := r.byPod[key]
	if set != nil && set.uid != pod.UID {
		r.stopLocked(ctx, key)
		set = nil
	}
	if set == nil {
		set = &podResponders{uid: pod.UID, byPort: map[int32]*responder{}}
		r.byPod[key] = set
	}
	for port, rs := range set.byPort {
		if rs.ip != podIP || !slices.Contains(ports, port) {
			rs.stop(ctx)
			delete(set.byPort, port)
		}
	}
	var errs []error
	for _, port := range ports {
		if _, ok := set.byPort[port]; ok {
			continue
		}
		rs, err := r.start(ctx, pod, podIP, port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.byPort[port] = rs
	}
	if len(set.byPort) == 0 {
		delete(r.byPod, key)
	}
	return errors.Join(errs...)
}

func (r *responders) start(ctx context.Context, pod *corev1.Pod, podIP string, port int32) (*responder, error) {
	addr := net.JoinHostPort(podIP, strconv.Itoa(int(port)))
	l, err := r.listener.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s for pod %s/%s: %w", addr, pod.Namespace, pod.Name, err)
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "pod", klog.KObj(pod), "address", addr)
	base := Response{Cluster: r.cluster, Namespace: pod.Namespace, Pod: pod.Name, Node: r.node, PodIP: podIP, Port: port}
	podName := pod.Namespace + "/" + pod.Name
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		resp := base
		resp.Path = req.URL.Path
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(PodHeader, podName)
		w.WriteHeader(http.StatusOK)
		if err := json.NewEncoder(w).Encode(resp); err != nil {
			logger.V(4).Info("Writing response failed", "err", err)
		}
	})
	rs := &responder{
		ip:   podIP,
		srv:  &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(rs.done)
		if err := rs.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error(err, "Pod responder stopped")
		}
	}()
	logger.V(2).Info("Serving pod responder")
	return rs, nil
}

// stop closes the server and its listener and waits for it to finish.
func (rs *responder) stop(ctx context.Context) {
	if err := rs.srv.Close(); err != nil {
		klog.FromContext(ctx).V(4).Info("Closing pod responder failed", "err", err)
	}
	<-rs.done
}

// stop stops every responder of key.
func (r *responders) stop(ctx context.Context, key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopLocked(ctx, key)
}

// stopStale stops the responders of key unless they belong to the pod with uid.
func (r *responders) stopStale(ctx context.Context, key string, uid types.UID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if set := r.byPod[key]; set != nil && set.uid != uid {
		r.stopLocked(ctx, key)
	}
}

func (r *responders) stopLocked(ctx context.Context, key string) {
	set := r.byPod[key]
	if set == nil {
		return
	}
	for _, rs := range set.byPort {
		rs.stop(ctx)
	}
	delete(r.byPod, key)
}

// stopAll stops every responder; Run calls it on the way out.
func (r *responders) stopAll(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key := range r.byPod {
		r.stopLocked(ctx, key)
	}
}
