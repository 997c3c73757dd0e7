package nodesim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/klog/v2/ktesting"
	"k8s.io/utils/ptr"
)

const (
	testNode   = "east-node"
	testNodeIP = "192.168.50.10"
	testCIDR   = "10.1.0.0/16"
	pollEvery  = 10 * time.Millisecond
	pollFor    = 10 * time.Second
)

var podsGVR = corev1.SchemeGroupVersion.WithResource("pods")

// fakeCluster is a fake clientset that behaves enough like an API server for the simulator:
// the binding subresource sets spec.nodeName, and pod watches are counted so tests create
// objects only once the simulator's informer watches (the fake has no resource versions to
// replay missed events).
type fakeCluster struct {
	*fake.Clientset
	podWatches atomic.Int32
}

func newFakeCluster(objs ...runtime.Object) *fakeCluster {
	c := &fakeCluster{Clientset: fake.NewClientset(objs...)}
	c.PrependReactor("create", "pods", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := action.(k8stesting.CreateAction).GetObject().(*corev1.Binding)
		obj, err := c.Tracker().Get(podsGVR, b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		pod := obj.(*corev1.Pod)
		if pod.Spec.NodeName != "" {
			return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), b.Name, errors.New("pod is already assigned"))
		}
		if b.UID != "" && b.UID != pod.UID {
			return true, nil, apierrors.NewConflict(podsGVR.GroupResource(), b.Name, errors.New("UID precondition failed"))
		}
		pod.Spec.NodeName = b.Target.Name
		pod.Status.Conditions = append(pod.Status.Conditions, corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue})
		return true, b, c.Tracker().Update(podsGVR, pod, b.Namespace)
	})
	c.PrependWatchReactor("pods", func(action k8stesting.Action) (bool, watch.Interface, error) {
		opts := action.(k8stesting.WatchActionImpl).ListOptions
		w, err := c.Tracker().Watch(podsGVR, action.GetNamespace(), opts)
		if err != nil {
			return true, nil, err
		}
		c.podWatches.Add(1)
		return true, w, nil
	})
	return c
}

// fakeListener listens on loopback whatever pod address it is asked for, and remembers which
// real address stands for which pod address.
type fakeListener struct {
	mu        sync.Mutex
	listeners map[string]*trackedListener
}

type trackedListener struct {
	net.Listener
	closed atomic.Bool
}

func (l *trackedListener) Close() error {
	l.closed.Store(true)
	return l.Listener.Close()
}

func newFakeListener() *fakeListener {
	return &fakeListener{listeners: map[string]*trackedListener{}}
}

func (f *fakeListener) Listen(_ context.Context, network, address string) (net.Listener, error) {
	if network != "tcp" {
		return nil, fmt.Errorf("unexpected network %q", network)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tl := &trackedListener{Listener: l}
	f.mu.Lock()
	f.listeners[address] = tl
	f.mu.Unlock()
	return tl, nil
}

// get returns the listener most recently opened for a pod address.
func (f *fakeListener) get(address string) *trackedListener {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listeners[address]
}

func (f *fakeListener) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.listeners)
}

type runningSim struct {
	sim    *Simulator
	cancel context.CancelFunc
	exited chan struct{} // closed when Run has returned err
	err    error
}

// stop ends Run and waits for it.
func (r *runningSim) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.exited:
		if r.err != nil {
			t.Errorf("Run: %v", r.err)
		}
	case <-time.After(pollFor):
		t.Fatal("Run did not return after cancel")
	}
}

func testConfig(l Listener) Config {
	return Config{
		Cluster:           "east",
		NodeName:          testNode,
		NodeIP:            testNodeIP,
		PodCIDR:           testCIDR,
		Region:            "eu-west",
		Zone:              "eu-west-a",
		HeartbeatInterval: 50 * time.Millisecond,
		Listener:          l,
	}
}

// startSim runs a simulator and waits until it is ready and watching pods.
func startSim(t *testing.T, c *fakeCluster, cfg Config) *runningSim {
	t.Helper()
	sim, err := New(c, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithCancel(ctx)
	watches := c.podWatches.Load()
	r := &runningSim{sim: sim, cancel: cancel, exited: make(chan struct{})}
	go func() {
		defer close(r.exited)
		r.err = sim.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.exited
	})
	select {
	case <-sim.Ready():
	case <-r.exited:
		t.Fatalf("Run returned before ready: %v", r.err)
	case <-time.After(pollFor):
		t.Fatal("simulator not ready")
	}
	poll(t, "pod watch", func() (bool, error) { return c.podWatches.Load() > watches, nil })
	return r
}

func poll(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), pollEvery, pollFor, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func newPod(name string, ports ...int32) *corev1.Pod {
	var cports []corev1.ContainerPort
	for _, p := range ports {
		cports = append(cports, corev1.ContainerPort{ContainerPort: p})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			SchedulerName: corev1.DefaultSchedulerName,
			Containers:    []corev1.Container{{Name: "app", Image: "example/app:1", Ports: cports}},
		},
	}
}

func createPod(t *testing.T, c *fakeCluster, pod *corev1.Pod) {
	t.Helper()
	if _, err := c.CoreV1().Pods(pod.Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s: %v", pod.Name, err)
	}
}

func getPod(t *testing.T, c *fakeCluster, name string) *corev1.Pod {
	t.Helper()
	pod, err := c.CoreV1().Pods("shop").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return pod
}

// waitRunning waits until the pod is bound, Running with an IP and has the given readiness.
func waitRunning(t *testing.T, c *fakeCluster, name string, ready bool) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	poll(t, "pod "+name+" running", func() (bool, error) {
		p, err := c.CoreV1().Pods("shop").Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		pod = p
		return p.Spec.NodeName == testNode && p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" &&
			podReady(p.Status) == ready, nil
	})
	return pod
}

func httpGet(address, path string) (*http.Response, []byte, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://" + address + path)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

func TestNodeRegistration(t *testing.T) {
	c := newFakeCluster()
	startSim(t, c, testConfig(nil))
	ctx := context.Background()

	node, err := c.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	for k, v := range map[string]string{
		corev1.LabelHostname:           testNode,
		corev1.LabelOSStable:           "linux",
		corev1.LabelTopologyRegion:     "eu-west",
		corev1.LabelTopologyZone:       "eu-west-a",
		corev1.LabelInstanceTypeStable: "strait-lab",
	} {
		if node.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, node.Labels[k], v)
		}
	}
	if node.Labels[corev1.LabelArchStable] == "" {
		t.Error("arch label missing")
	}
	if node.Spec.PodCIDR != testCIDR || len(node.Spec.PodCIDRs) != 1 || node.Spec.PodCIDRs[0] != testCIDR {
		t.Errorf("podCIDR = %q, podCIDRs = %v", node.Spec.PodCIDR, node.Spec.PodCIDRs)
	}
	addrs := map[corev1.NodeAddressType]string{}
	for _, a := range node.Status.Addresses {
		addrs[a.Type] = a.Address
	}
	if addrs[corev1.NodeInternalIP] != testNodeIP || addrs[corev1.NodeHostName] != testNode {
		t.Errorf("addresses = %v", node.Status.Addresses)
	}
	conds := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, cond := range node.Status.Conditions {
		conds[cond.Type] = cond
	}
	if r := conds[corev1.NodeReady]; r.Status != corev1.ConditionTrue || r.Reason != "KubeletReady" {
		t.Errorf("Ready condition = %+v", r)
	}
	for _, typ := range []corev1.NodeConditionType{corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		if conds[typ].Status != corev1.ConditionFalse {
			t.Errorf("%s = %q, want False", typ, conds[typ].Status)
		}
	}
	if got := node.Status.Capacity[corev1.ResourcePods]; got.Value() != 250 {
		t.Errorf("pods capacity = %s", got.String())
	}
	if got := node.Status.Allocatable[corev1.ResourceMemory]; got.String() != "32Gi" {
		t.Errorf("allocatable memory = %s", got.String())
	}
	if node.Status.NodeInfo.KubeletVersion != FallbackKubeletVersion {
		t.Errorf("kubeletVersion = %q, want %q (the fake server has no usable version)", node.Status.NodeInfo.KubeletVersion, FallbackKubeletVersion)
	}

	// The lease is created and renewed, and the Ready heartbeat keeps moving.
	var firstRenew time.Time
	poll(t, "node lease", func() (bool, error) {
		l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, testNode, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		if ptr.Deref(l.Spec.HolderIdentity, "") != testNode || l.Spec.RenewTime == nil {
			return false, fmt.Errorf("lease spec = %+v", l.Spec)
		}
		firstRenew = l.Spec.RenewTime.Time
		return true, nil
	})
	poll(t, "lease renewal", func() (bool, error) {
		l, err := c.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, testNode, metav1.GetOptions{})
		return err == nil && l.Spec.RenewTime.After(firstRenew), nil
	})
	firstBeat := conds[corev1.NodeReady].LastHeartbeatTime.Time
	poll(t, "Ready heartbeat refresh", func() (bool, error) {
		n, err := c.CoreV1().Nodes().Get(ctx, testNode, metav1.GetOptions{})
		return err == nil && readyHeartbeat(n.Status).After(firstBeat), nil
	})
}

func TestNodeRegistrationUpdatesExistingNode(t *testing.T) {
	existing := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: testNode, UID: "node-uid", Labels: map[string]string{"team": "blue", corev1.LabelTopologyZone: "old"}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"},
			{Type: "example.com/Custom", Status: corev1.ConditionTrue},
		}},
	}
	c := newFakeCluster(existing)
	startSim(t, c, testConfig(nil))
	node, err := c.CoreV1().Nodes().Get(context.Background(), testNode, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get node: %v", err)
	}
	if node.Labels["team"] != "blue" || node.Labels[corev1.LabelTopologyZone] != "eu-west-a" {
		t.Errorf("labels = %v, want foreign label kept and zone updated", node.Labels)
	}
	if node.Spec.PodCIDR != testCIDR {
		t.Errorf("podCIDR = %q, want %q", node.Spec.PodCIDR, testCIDR)
	}
	var ready, custom bool
	for _, cond := range node.Status.Conditions {
		ready = ready || cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue
		custom = custom || cond.Type == "example.com/Custom"
	}
	if !ready || !custom {
		t.Errorf("conditions = %+v, want Ready True and the custom condition kept", node.Status.Conditions)
	}
}

func TestNodeWithConflictingPodCIDR(t *testing.T) {
	existing := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: testNode},
		Spec:       corev1.NodeSpec{PodCIDR: "10.9.0.0/16", PodCIDRs: []string{"10.9.0.0/16"}},
	}
	c := newFakeCluster(existing)
	sim, err := New(c, testConfig(nil))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	_, ctx := ktesting.NewTestContext(t)
	ctx, cancel := context.WithTimeout(ctx, pollFor)
	defer cancel()
	err = sim.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "10.9.0.0/16") || !strings.Contains(err.Error(), testCIDR) {
		t.Fatalf("Run error = %v, want a pod CIDR conflict naming both CIDRs", err)
	}
}

func TestPendingPodIsBoundAndServed(t *testing.T) {
	c := newFakeCluster()
	l := newFakeListener()
	startSim(t, c, testConfig(l))
	createPod(t, c, newPod("web", 8080))

	pod := waitRunning(t, c, "web", true)
	ip := netip.MustParseAddr(pod.Status.PodIP)
	prefix := netip.MustParsePrefix(testCIDR)
	if !prefix.Contains(ip) || ip == prefix.Addr() || ip == prefix.Addr().Next() || ip.String() == testNodeIP {
		t.Errorf("podIP %s is not a usable address of %s", ip, testCIDR)
	}
	if pod.Status.HostIP != testNodeIP || pod.Status.StartTime == nil {
		t.Errorf("hostIP = %q, startTime = %v", pod.Status.HostIP, pod.Status.StartTime)
	}
	if len(pod.Status.ContainerStatuses) != 1 || !pod.Status.ContainerStatuses[0].Ready {
		t.Errorf("containerStatuses = %+v", pod.Status.ContainerStatuses)
	}

	podAddr := net.JoinHostPort(pod.Status.PodIP, "8080")
	var tl *trackedListener
	poll(t, "responder on "+podAddr, func() (bool, error) { tl = l.get(podAddr); return tl != nil, nil })
	resp, body, err := httpGet(tl.Addr().String(), "/hello/world")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get(PodHeader) != "shop/web" {
		t.Errorf("status = %d, headers = %v", resp.StatusCode, resp.Header)
	}
	var got Response
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	want := Response{Cluster: "east", Namespace: "shop", Pod: "web", Node: testNode, PodIP: pod.Status.PodIP, Port: 8080, Path: "/hello/world"}
	if got != want {
		t.Errorf("response = %+v, want %+v", got, want)
	}
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		t.Fatalf("decode: %v", err)
	}
	for _, k := range []string{"cluster", "namespace", "pod", "node", "podIP", "port", "path"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("response lacks key %q: %s", k, body)
		}
	}
}

func TestPodsGetDistinctAddresses(t *testing.T) {
	c := newFakeCluster()
	startSim(t, c, testConfig(newFakeListener()))
	createPod(t, c, newPod("a", 80))
	createPod(t, c, newPod("b", 80))
	a := waitRunning(t, c, "a", true)
	b := waitRunning(t, c, "b", true)
	if a.Status.PodIP == b.Status.PodIP {
		t.Errorf("pods a and b share address %s", a.Status.PodIP)
	}
}

func TestHostNetworkPodUsesNodeIP(t *testing.T) {
	c := newFakeCluster()
	l := newFakeListener()
	startSim(t, c, testConfig(l))
	pod := newPod("agent", 9100)
	pod.Spec.HostNetwork = true
	createPod(t, c, pod)
	got := waitRunning(t, c, "agent", true)
	if got.Status.PodIP != testNodeIP {
		t.Errorf("hostNetwork podIP = %q, want node IP %s", got.Status.PodIP, testNodeIP)
	}
	if n := l.count(); n != 0 {
		t.Errorf("%d responders opened for a hostNetwork pod, want none", n)
	}
}

func TestRestartKeepsAddresses(t *testing.T) {
	c := newFakeCluster()
	first := startSim(t, c, testConfig(newFakeListener()))
	createPod(t, c, newPod("a", 80))
	createPod(t, c, newPod("b", 80))
	ipA := waitRunning(t, c, "a", true).Status.PodIP
	ipB := waitRunning(t, c, "b", true).Status.PodIP
	first.stop(t)

	l := newFakeListener()
	startSim(t, c, testConfig(l))
	createPod(t, c, newPod("c", 80))
	ipC := waitRunning(t, c, "c", true).Status.PodIP
	if ipC == ipA || ipC == ipB {
		t.Errorf("restarted simulator gave pod c address %s already used by a (%s) or b (%s)", ipC, ipA, ipB)
	}
	for name, ip := range map[string]string{"a": ipA, "b": ipB} {
		if got := getPod(t, c, name).Status.PodIP; got != ip {
			t.Errorf("pod %s address changed across restart: %s -> %s", name, ip, got)
		}
		// The restarted simulator serves the old pods again on their old addresses.
		addr := net.JoinHostPort(ip, "80")
		poll(t, "responder on "+addr, func() (bool, error) { return l.get(addr) != nil, nil })
	}
}

func TestReadinessAnnotationFlipsReady(t *testing.T) {
	c := newFakeCluster()
	l := newFakeListener()
	startSim(t, c, testConfig(l))
	createPod(t, c, newPod("web", 8080))
	pod := waitRunning(t, c, "web", true)
	statusWrites := func() int {
		n := 0
		for _, a := range c.Actions() {
			if a.Matches("update", "pods") && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := statusWrites()

	setAnnotation := func(value *string) {
		t.Helper()
		p := getPod(t, c, "web")
		if value == nil {
			delete(p.Annotations, ReadyAnnotation)
		} else {
			if p.Annotations == nil {
				p.Annotations = map[string]string{}
			}
			p.Annotations[ReadyAnnotation] = *value
		}
		if _, err := c.CoreV1().Pods("shop").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
			t.Fatalf("update pod: %v", err)
		}
	}

	setAnnotation(ptr.To("false"))
	unready := waitRunning(t, c, "web", false)
	for _, typ := range []corev1.PodConditionType{corev1.PodReady, corev1.ContainersReady} {
		if cond := condition(unready.Status, typ); cond.Status != corev1.ConditionFalse || cond.Reason != ReasonNotReady {
			t.Errorf("%s = %+v, want False/%s", typ, cond, ReasonNotReady)
		}
	}
	if unready.Status.PodIP != pod.Status.PodIP {
		t.Errorf("readiness flip changed podIP %s -> %s", pod.Status.PodIP, unready.Status.PodIP)
	}
	// An unready pod still answers.
	tl := l.get(net.JoinHostPort(pod.Status.PodIP, "8080"))
	if tl == nil {
		t.Fatal("no responder for the pod")
	}
	if _, _, err := httpGet(tl.Addr().String(), "/"); err != nil {
		t.Errorf("unready pod does not answer: %v", err)
	}

	setAnnotation(nil)
	waitRunning(t, c, "web", true)
	if got := statusWrites() - before; got != 2 {
		t.Errorf("%d status writes for two readiness flips, want 2 (steady state writes nothing)", got)
	}
}

func TestDeletionFinalizesPod(t *testing.T) {
	c := newFakeCluster()
	l := newFakeListener()
	startSim(t, c, testConfig(l))
	createPod(t, c, newPod("web", 8080))
	pod := waitRunning(t, c, "web", true)
	podAddr := net.JoinHostPort(pod.Status.PodIP, "8080")
	var tl *trackedListener
	poll(t, "responder", func() (bool, error) { tl = l.get(podAddr); return tl != nil, nil })
	realAddr := tl.Addr().String()
	if _, _, err := httpGet(realAddr, "/"); err != nil {
		t.Fatalf("responder not answering before deletion: %v", err)
	}

	// What the API server does on a graceful delete: set deletionTimestamp and wait for the
	// kubelet to finish.
	pod.DeletionTimestamp = ptr.To(metav1.Now())
	pod.DeletionGracePeriodSeconds = ptr.To[int64](30)
	if _, err := c.CoreV1().Pods("shop").Update(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("mark pod deleted: %v", err)
	}
	poll(t, "pod gone", func() (bool, error) {
		_, err := c.CoreV1().Pods("shop").Get(context.Background(), "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if !tl.closed.Load() {
		t.Error("responder listener still open after the pod was finalized")
	}
	if _, _, err := httpGet(realAddr, "/"); err == nil {
		t.Error("responder still answers after the pod was finalized")
	}
	var final *k8stesting.DeleteActionImpl
	for _, a := range c.Actions() {
		if d, ok := a.(k8stesting.DeleteActionImpl); ok && d.Matches("delete", "pods") && d.Name == "web" {
			final = &d
		}
	}
	if final == nil {
		t.Fatal("no pod delete issued")
	}
	opts := final.DeleteOptions
	if ptr.Deref(opts.GracePeriodSeconds, -1) != 0 || opts.Preconditions == nil || ptr.Deref(opts.Preconditions.UID, "") != pod.UID {
		t.Errorf("delete options = %+v, want grace 0 and UID precondition %s", opts, pod.UID)
	}
}
