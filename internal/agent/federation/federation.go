// Package federation is the member side of federated Services: the Propagator places the
// broker's federated Services in the member cluster (creating the namespace when missing,
// adopting a Service of the same name, removing what it created or adopted when the broker
// Service goes), and the Reporter writes the member's shard record (ingress addresses,
// ready endpoints) to its broker namespace. When the member cluster is also the broker, the
// agent runs the broker-side status writer too (internal/federation/brokerstatus).
package federation

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent/controller"
	"github.com/strait-io/strait/internal/agent/records"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/federation/brokerstatus"
)

// Config configures the member side.
type Config struct {
	federation.Config
	// BrokerStatus makes the agent of the cluster that hosts the broker write the
	// federated Services' status there.
	BrokerStatus bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Config: federation.DefaultConfig(), BrokerStatus: true}
}

// AddFlags registers the flags.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	c.Config.AddFlags(fs)
	fs.BoolVar(&c.BrokerStatus, "federation-broker-status", c.BrokerStatus,
		"when this cluster hosts the broker, write the federated Services' status (ingress union, per-cluster shard conditions) there")
}

// Options wire the member side into the agent.
type Options struct {
	Config    Config
	ClusterID string
	// Local and Broker are clients of the member cluster and (with the member's broker
	// credential) of the broker.
	Local, Broker kubernetes.Interface
	// LocalFactory is the agent's informer factory of the member cluster; its Services,
	// EndpointSlices and Namespaces informers are shared, a Nodes informer is added.
	LocalFactory informers.SharedInformerFactory
	// RecordSlices is the agent's broker informer of Strait's EndpointSlices (every member
	// namespace, labelled managed-by=strait): the shard records are among them.
	RecordSlices discoveryinformers.EndpointSliceInformer
	Metrics      *controller.Metrics
	Workers      int
	Recorder     record.EventRecorder
	// Identity names this agent in the status writer's leader lease.
	Identity string
}

// Run wires and runs the member side until ctx ends. The agent calls it once its own caches
// have synced; Run starts the informers it adds and waits for them before reconciling.
func Run(ctx context.Context, o Options) error {
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := klog.FromContext(ctx).WithValues("federationNamespace", cfg.Namespace, "federation", cfg.Name)
	ctx = klog.NewContext(ctx, logger)
	// The broker's federated Services: an informer of its own, since the agent's broker
	// informers see only objects labelled as Strait's.
	fedFactory := informers.NewSharedInformerFactoryWithOptions(o.Broker, 0, informers.WithNamespace(cfg.Namespace))
	brokerServices := fedFactory.Core().V1().Services()
	services := o.LocalFactory.Core().V1().Services()
	slices := o.LocalFactory.Discovery().V1().EndpointSlices()
	namespaces := o.LocalFactory.Core().V1().Namespaces()
	nodes := o.LocalFactory.Core().V1().Nodes()

	isBroker, err := hostsBroker(ctx, o.Local, o.Broker)
	if err != nil {
		return err
	}
	memberNS := clusterset.MemberNamespace(o.ClusterID)
	prop := &Propagator{
		Federation: cfg.Name, Namespace: cfg.Namespace, ClusterID: o.ClusterID, LocalIsBroker: isBroker,
		Local: o.Local, BrokerServices: brokerServices.Lister(), Services: services.Lister(), Namespaces: namespaces.Lister(),
		Recorder: o.Recorder,
	}
	rep := &Reporter{
		Federation: cfg.Name, Namespace: cfg.Namespace, ClusterID: o.ClusterID, MemberNamespace: memberNS, LocalIsBroker: isBroker,
		Broker: o.Broker, BrokerServices: brokerServices.Lister(), Services: services.Lister(), Slices: slices.Lister(), Nodes: nodes.Lister(),
		Records: o.RecordSlices.Lister(),
	}
	propLoop := controller.New("federation-propagate", o.Metrics)
	repLoop := controller.New("federation-report", o.Metrics)

	inNamespace := func(obj any) []string {
		m, ok := obj.(metav1.Object)
		if !ok || m.GetNamespace() != cfg.Namespace {
			return nil
		}
		return []string{m.GetNamespace() + "/" + m.GetName()}
	}
	sliceKey := func(obj any) []string {
		m, ok := obj.(metav1.Object)
		if !ok || m.GetNamespace() != cfg.Namespace || m.GetLabels()[discoveryv1.LabelServiceName] == "" {
			return nil
		}
		return []string{m.GetNamespace() + "/" + m.GetLabels()[discoveryv1.LabelServiceName]}
	}
	recordKey := func(obj any) []string {
		m, ok := obj.(metav1.Object)
		if !ok || m.GetNamespace() != memberNS {
			return nil
		}
		if k, ok := federation.RecordKey(m, cfg.Name); ok {
			return []string{k}
		}
		return nil
	}
	allFederated := func(any) []string {
		list, _ := brokerServices.Lister().Services(cfg.Namespace).List(labels.Everything())
		keys := make([]string, 0, len(list))
		for _, s := range list {
			keys = append(keys, s.Namespace+"/"+s.Name)
		}
		return keys
	}
	namespaceKeys := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok && m.GetName() == cfg.Namespace {
			return allFederated(obj)
		}
		return nil
	}
	for _, reg := range []struct {
		informer cache.SharedIndexInformer
		handler  cache.ResourceEventHandler
	}{
		{brokerServices.Informer(), propLoop.Handler(inNamespace)},
		{services.Informer(), propLoop.Handler(inNamespace)},
		{namespaces.Informer(), propLoop.Handler(namespaceKeys)},
		{brokerServices.Informer(), repLoop.Handler(inNamespace)},
		{services.Informer(), repLoop.Handler(inNamespace)},
		{slices.Informer(), repLoop.Handler(sliceKey)},
		{nodes.Informer(), repLoop.Handler(allFederated)},
		{o.RecordSlices.Informer(), repLoop.Handler(recordKey)},
	} {
		if _, err := reg.informer.AddEventHandler(reg.handler); err != nil {
			return err
		}
	}
	fedFactory.Start(ctx.Done())
	o.LocalFactory.Start(ctx.Done()) // starts the Nodes informer; the others already run
	for name, synced := range map[string]map[string]bool{
		"broker federation namespace": typeNames(fedFactory.WaitForCacheSync(ctx.Done())),
		"member cluster":              typeNames(o.LocalFactory.WaitForCacheSync(ctx.Done())),
	} {
		for typ, ok := range synced {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("the %s cache of %s did not sync", typ, name)
			}
		}
	}
	if !cache.WaitForCacheSync(ctx.Done(), o.RecordSlices.Informer().HasSynced) {
		return nil
	}
	logger.Info("Federated Services running", "hostsBroker", isBroker)
	if isBroker && cfg.BrokerStatus {
		// With the agent's own credentials: in this cluster they are the broker's. A failure
		// (no rights yet, the lease lost) is retried, the member side keeps running.
		go wait.UntilWithContext(ctx, func(ctx context.Context) {
			err := brokerstatus.Run(ctx, brokerstatus.Options{
				Config: cfg.Config, Broker: o.Local, Metrics: o.Metrics, Workers: o.Workers,
				Identity: o.Identity, Component: "strait-agent",
			})
			if err != nil {
				logger.Error(err, "Federation status writer stopped; restarting")
			}
		}, 10*time.Second)
	}
	go propLoop.Run(ctx, o.Workers, prop)
	repLoop.Run(ctx, o.Workers, rep)
	return nil
}

func typeNames[K comparable](m map[K]bool) map[string]bool {
	out := map[string]bool{}
	for k, v := range m {
		out[fmt.Sprint(k)] = v
	}
	return out
}

// hostsBroker reports whether the member cluster is the broker cluster: the two API servers
// share their kube-system namespace (its uid is a cluster's identity, as in join). Members
// may read namespaces on the broker. It retries until the broker answers or ctx ends.
func hostsBroker(ctx context.Context, local, broker kubernetes.Interface) (bool, error) {
	var same bool
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := local.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Reading kube-system of the member cluster", "err", err)
			return false, nil
		}
		b, err := broker.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Reading kube-system of the broker", "err", err)
			return false, nil
		}
		same = l.UID == b.UID
		return true, nil
	})
	if err != nil && ctx.Err() != nil {
		return false, ctx.Err()
	}
	return same, err
}

// ownSlices are a Service's EndpointSlices in the member, without those the agent writes for
// remote endpoints (global Services): a shard's health is about its own cluster. The
// endpointslice managed-by label tells them apart; app.kubernetes.io/managed-by does not,
// since the EndpointSlice controller copies a Service's labels (ours included) to its slices.
func ownSlices(list []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, s := range list {
		if s.Labels[discoveryv1.LabelManagedBy] != records.EndpointSliceManagedBy {
			out = append(out, s)
		}
	}
	return out
}

// readyEndpoints counts ready endpoints (a missing condition counts as ready).
func readyEndpoints(list []*discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range list {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// nodeList converts lister output for clusterset.TopologyFromNodes.
func nodeList(nodes []*corev1.Node) []corev1.Node {
	out := make([]corev1.Node, len(nodes))
	for i, n := range nodes {
		out[i] = *n
	}
	return out
}
