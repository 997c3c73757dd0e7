// Package env is what every reconciler of the agent is set up with: the manager that runs
// it, the member cluster and the broker (clients and shared informer factories), the
// member's liveness tracker and the agent's settings. A reconciler package exposes
// Setup(*env.Env) error, which declares its informers, loops and tasks; the agent lists the
// Setup functions and nothing else (internal/agent).
package env

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/strait-io/strait/internal/brokercache"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/externalservice/probe"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/liveness"
)

// Cluster is one API server of the agent: its clients and shared informer factories. The
// manager starts the factories; informers requested from them in Setup are synced before
// any loop runs.
type Cluster struct {
	Config *rest.Config
	Kube   kubernetes.Interface
	// Control is a client on a rate limiter of its own, for the requests that tell whether
	// this API server answers (the member lease's heartbeat): never queued behind lists.
	Control      kubernetes.Interface
	MCS          mcsclient.Interface
	Informers    informers.SharedInformerFactory
	MCSInformers mcsinformers.SharedInformerFactory
	// Slices lists the EndpointSlices of Informers through indexes of the Service-name
	// labels (IndexedSlices); reconcilers list slices with it rather than the factory's
	// own lister.
	Slices discoverylisters.EndpointSliceLister
}

// Settings are the agent's settings that reconcilers read.
type Settings struct {
	// HeartbeatInterval is how often the member's lease on the broker is renewed.
	HeartbeatInterval time.Duration
	// Federation names the federation and its namespace on the broker.
	Federation federation.Config
	// FederationBrokerStatus makes the agent of the cluster hosting the broker write the
	// federated Services' status there.
	FederationBrokerStatus bool
	// Prober runs ExternalService health checks; the zero value dials directly.
	Prober probe.Prober
	// Identity names this replica (leader leases).
	Identity string
}

// Env is the agent's environment for reconciler setup.
type Env struct {
	Manager *controller.Manager
	// ClusterID is the member's cluster ID; MemberNamespace its namespace on the broker.
	ClusterID       string
	MemberNamespace string
	// Member is the member cluster, with informers on everything.
	Member *Cluster
	// Broker is the broker, with the member's credential (clients only: a member may read
	// only what Strait keeps there, namespace by namespace).
	Broker *Cluster
	// Records is what the broker holds of the registered members: the registry, their
	// records and heartbeat Leases (package brokercache).
	Records *brokercache.Cache
	// Liveness is the member's view of the other members (see package liveness). Its
	// verdicts change on a timer: Watch it to reconcile again when they do.
	Liveness *liveness.Tracker
	// Recorder records events in the member cluster.
	Recorder record.EventRecorder
	Settings Settings
}

// OnPolicy has loop reconcile the keys keys returns whenever the clusterset's namespace
// policy changes.
func (e *Env) OnPolicy(loop *controller.Loop, keys func() []string) {
	loop.Watch(e.Records.Registry, func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok && o.GetName() == clusterset.NamespacePolicyConfigMap {
			return keys()
		}
		return nil
	})
}

// OnLiveness registers fn to run when a member's verdict or the freeze changes.
func (e *Env) OnLiveness(fn func(liveness.View, []liveness.Change)) { e.Liveness.OnChange(fn) }
