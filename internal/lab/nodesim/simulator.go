package nodesim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
)

// workers is the number of pods synced in parallel.
const workers = 2

// Simulator stands in for the kubelet of the one node of a lab cluster. Create it with New
// and start it with Run.
type Simulator struct {
	client kubernetes.Interface
	cfg    validated
	ips    *allocator
	resp   *responders
	ready  chan struct{}
	ran    atomic.Bool

	// Set by Run before any goroutine reads them.
	kubeletVersion string
	pods           corelisters.PodLister
	queue          workqueue.TypedRateLimitingInterface[string]
}

// New validates cfg and returns a Simulator that talks to the cluster through client.
func New(client kubernetes.Interface, cfg Config) (*Simulator, error) {
	if client == nil {
		return nil, errors.New("node simulator needs a Kubernetes client")
	}
	v, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	return &Simulator{
		client: client,
		cfg:    v,
		ips:    newAllocator(v.podCIDR, v.nodeAddr),
		resp:   newResponders(v.Cluster, v.NodeName, v.Listener),
		ready:  make(chan struct{}),
	}, nil
}

// Ready is closed once the Node is registered and the pod cache is synced; from then on the
// simulator binds, runs and finalizes pods. It stays open if Run returns before that.
func (s *Simulator) Ready() <-chan struct{} {
	return s.ready
}

// Run registers the Node, keeps it healthy and runs its pods until ctx is done. It returns
// nil when ctx ends and an error only when the simulator cannot work at all (a second call,
// or a Node whose pod CIDR contradicts the configuration). Every responder is stopped
// before it returns.
func (s *Simulator) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("node simulator: Run called twice")
	}
	logger := klog.LoggerWithValues(klog.FromContext(ctx), "cluster", s.cfg.Cluster, "node", s.cfg.NodeName)
	ctx, cancel := context.WithCancel(klog.NewContext(ctx, logger))
	factory := informers.NewSharedInformerFactory(s.client, 0)
	podInformer := factory.Core().V1().Pods()
	s.pods = podInformer.Lister()
	s.queue = workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodesim_" + s.cfg.Cluster + "_" + s.cfg.NodeName},
	)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		s.queue.ShutDown()
		factory.Shutdown()
		wg.Wait()
		s.resp.stopAll(ctx)
	}()

	s.kubeletVersion = s.lookupKubeletVersion(ctx)
	if err := s.registerUntilDone(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	logger.Info("Registered node", "podCIDR", s.cfg.podCIDR, "nodeIP", s.cfg.nodeAddr, "kubeletVersion", s.kubeletVersion)
	wg.Go(func() { s.heartbeatLoop(ctx) })

	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueue,
		UpdateFunc: func(_, obj any) { s.enqueue(obj) },
		DeleteFunc: s.enqueue,
	}); err != nil {
		return fmt.Errorf("watch pods: %w", err)
	}
	factory.Start(ctx.Done())
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("sync %v cache: informer stopped", typ)
		}
	}
	if err := s.restoreAddresses(ctx); err != nil {
		return err
	}
	close(s.ready)
	logger.V(2).Info("Node simulator ready")

	for range workers {
		wg.Go(func() { wait.UntilWithContext(ctx, s.runWorker, time.Second) })
	}
	<-ctx.Done()
	return nil
}

// registerUntilDone registers the Node, retrying with backoff while the API server is not
// reachable yet; only a pod CIDR conflict is final.
func (s *Simulator) registerUntilDone(ctx context.Context) error {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: math.MaxInt32, Cap: 5 * time.Second}
	for {
		_, err := s.registerNode(ctx)
		if err == nil {
			return nil
		}
		if errors.Is(err, errPodCIDRConflict) || ctx.Err() != nil {
			return err
		}
		klog.FromContext(ctx).Error(err, "Registering node failed, retrying")
		t := time.NewTimer(backoff.Step())
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (s *Simulator) heartbeatLoop(ctx context.Context) {
	logger := klog.FromContext(ctx)
	t := time.NewTicker(s.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		if err := s.heartbeat(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Node heartbeat failed")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// restoreAddresses rebuilds the used addresses from the pods already bound to this node, so
// a restarted simulator keeps every pod's address and never hands it out twice.
func (s *Simulator) restoreAddresses(ctx context.Context) error {
	logger := klog.FromContext(ctx)
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("list cached pods: %w", err)
	}
	restored := 0
	for _, pod := range pods {
		if pod.Spec.NodeName != s.cfg.NodeName || pod.Spec.HostNetwork || pod.Status.PodIP == "" {
			continue
		}
		key := cache.MetaObjectToName(pod).String()
		addr, err := parseAddr(pod.Status.PodIP)
		if err == nil {
			err = s.ips.reserve(key, pod.UID, addr)
		}
		if err != nil {
			// The pod gets a fresh address on its first sync.
			logger.Info("Not keeping pod address", "pod", klog.KObj(pod), "podIP", pod.Status.PodIP, "reason", err.Error())
			continue
		}
		restored++
	}
	logger.V(2).Info("Restored pod addresses", "count", restored)
	return nil
}

// enqueue queues pods this node is responsible for: unscheduled ones and its own.
func (s *Simulator) enqueue(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		tomb, isTomb := obj.(cache.DeletedFinalStateUnknown)
		if !isTomb {
			return
		}
		if pod, ok = tomb.Obj.(*corev1.Pod); !ok {
			return
		}
	}
	if pod.Spec.NodeName != "" && pod.Spec.NodeName != s.cfg.NodeName {
		return
	}
	s.queue.Add(cache.MetaObjectToName(pod).String())
}

func (s *Simulator) runWorker(ctx context.Context) {
	for s.processNext(ctx) {
	}
}

func (s *Simulator) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	if err := s.syncPod(ctx, key); err != nil {
		if ctx.Err() == nil {
			klog.FromContext(ctx).Error(err, "Syncing pod failed, retrying", "pod", key)
		}
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}
