// Package federation is the member side of federated Services: the Propagator places the
// broker's federated Services in the member cluster (creating the namespace when missing,
// adopting a Service of the same name, removing what it created or adopted when the broker
// Service goes), and the Reporter writes the member's shard record (ingress addresses,
// ready endpoints) to its broker namespace. When the member cluster is also the broker, the
// agent runs the broker-side status writer too (internal/federation/brokerstatus).
package federation

import (
	"context"

	"sync"
	"time"

	"github.com/spf13/pflag"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/federation/brokerstatus"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
	"github.com/strait-io/strait/internal/records"
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

// Setup declares the Propagator's and the Reporter's loops and what they watch, and, when
// the member cluster hosts the broker, the broker-side status writer.
func Setup(e *env.Env) error {
	cfg := e.Settings.Federation
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The broker's federated Services: an informer of its own, since the agent's broker
	// informers see only objects labelled as Strait's.
	fedFactory := informers.NewSharedInformerFactoryWithOptions(e.Broker.Kube, 0, informers.WithNamespace(cfg.Namespace))
	e.Manager.AddInformers(fedFactory)
	brokerServices := fedFactory.Core().V1().Services()
	m := e.Member.Informers
	services, slices, namespaces, nodes := m.Core().V1().Services(), m.Discovery().V1().EndpointSlices(), m.Core().V1().Namespaces(), m.Core().V1().Nodes()
	recordSlices, recordSliceLister := e.Records.Slices, e.Records.SliceLister()
	host := &BrokerHost{Local: e.Member.Kube, Broker: e.Broker.Kube}

	prop := e.Manager.NewLoop("federation-propagate", &Propagator{
		Federation: cfg.Name, Namespace: cfg.Namespace, ClusterID: e.ClusterID, Host: host,
		Local: e.Member.Kube, BrokerServices: brokerServices.Lister(), Services: services.Lister(), Namespaces: namespaces.Lister(),
		Recorder: e.Recorder,
	})
	rep := e.Manager.NewLoop("federation-report", &Reporter{
		Federation: cfg.Name, Namespace: cfg.Namespace, ClusterID: e.ClusterID, MemberNamespace: e.MemberNamespace, Host: host,
		Broker: e.Broker.Kube, BrokerServices: brokerServices.Lister(), Services: services.Lister(), Slices: e.Member.Slices, Nodes: nodes.Lister(),
		Records: recordSliceLister,
	})
	inNamespace := func(obj any) []string {
		o, ok := obj.(metav1.Object)
		if !ok || o.GetNamespace() != cfg.Namespace {
			return nil
		}
		return []string{o.GetNamespace() + "/" + o.GetName()}
	}
	sliceKey := func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok && o.GetNamespace() == cfg.Namespace {
			return controller.LabelKey(discoveryv1.LabelServiceName)(obj)
		}
		return nil
	}
	recordKey := func(obj any) []string {
		o, ok := obj.(metav1.Object)
		if !ok || o.GetNamespace() != e.MemberNamespace {
			return nil
		}
		if k, ok := federation.RecordKey(o, cfg.Name); ok {
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
	prop.Watch(brokerServices.Informer(), inNamespace)
	prop.Watch(services.Informer(), inNamespace)
	prop.Watch(namespaces.Informer(), func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok && o.GetName() == cfg.Namespace {
			return allFederated(obj)
		}
		return nil
	})
	rep.Watch(brokerServices.Informer(), inNamespace)
	rep.Watch(services.Informer(), inNamespace)
	rep.Watch(slices.Informer(), sliceKey)
	rep.Watch(nodes.Informer(), allFederated)
	rep.Watch(recordSlices, recordKey)

	if e.Settings.FederationBrokerStatus {
		e.Manager.Go("federation status writer", func(ctx context.Context) error {
			isBroker, err := host.Is(ctx)
			if err != nil || !isBroker {
				return nil
			}
			// With the agent's own credentials: in this cluster they are the broker's. A
			// failure (no rights yet, the lease lost) is retried; the member side keeps
			// running.
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				err := brokerstatus.Run(ctx, brokerstatus.Options{
					Config: cfg, Broker: e.Member.Kube, BrokerMCS: e.Member.MCS, Ping: leasewatch.Readyz(e.Member.Kube.Discovery().RESTClient()),
					Registry: e.Manager.Registry(), Workers: e.Manager.Workers(),
					Identity: e.Settings.Identity, Component: "strait-agent",
				})
				if err != nil {
					klog.FromContext(ctx).Error(err, "Federation status writer stopped; restarting")
				}
			}, 10*time.Second)
			return nil
		})
	}
	return nil
}

// BrokerHost tells whether the member cluster is the broker cluster: the two API servers
// share their kube-system namespace (its uid is a cluster's identity, as in join). It asks
// once, when first needed, and retries until both answer.
type BrokerHost struct {
	Local, Broker kubernetes.Interface

	mu    sync.Mutex
	known bool
	is    bool
}

// FixedHost is a BrokerHost whose answer is known.
func FixedHost(is bool) *BrokerHost { return &BrokerHost{known: true, is: is} }

// Is reports whether the member cluster hosts the broker. A nil BrokerHost says no.
func (h *BrokerHost) Is(ctx context.Context) (bool, error) {
	if h == nil {
		return false, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.known {
		return h.is, nil
	}
	err := wait.PollUntilContextCancel(ctx, 2*time.Second, true, func(ctx context.Context) (bool, error) {
		l, err := h.Local.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Reading kube-system of the member cluster", "err", err)
			return false, nil
		}
		b, err := h.Broker.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
		if err != nil {
			klog.FromContext(ctx).V(2).Info("Reading kube-system of the broker", "err", err)
			return false, nil
		}
		h.is, h.known = l.UID == b.UID, true
		return true, nil
	})
	return h.is, err
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

// nodeList converts lister output for clusterset.TopologyFromNodes.
func nodeList(nodes []*corev1.Node) []corev1.Node {
	out := make([]corev1.Node, len(nodes))
	for i, n := range nodes {
		out[i] = *n
	}
	return out
}
