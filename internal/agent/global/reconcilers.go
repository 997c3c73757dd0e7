// Package global runs global Services in the agent (the rules are in
// internal/globalservice): the Publisher writes the member's endpoints of its shared global
// Services to its broker namespace; the Importer adds the other members' endpoints to the
// local Service as extra EndpointSlices, following the Service's affinity and the members'
// liveness.
package global

import (
	"context"
	"sort"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	gs "github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/policy"
	"github.com/strait-io/strait/internal/records"
)

// Publisher writes the member's endpoints of its shared global Services to its broker
// namespace, and withdraws them when the Service stops being global or shared.
type Publisher struct {
	ClusterID       string
	MemberNamespace string
	Broker          kubernetes.Interface
	Services        corelisters.ServiceLister
	Slices          discoverylisters.EndpointSliceLister
	// RecordSlices lists the broker's global records.
	RecordSlices discoverylisters.EndpointSliceLister
}

// Reconcile publishes or withdraws the endpoints of one Service.
func (p *Publisher) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if _, isMember := clusterset.ClusterIDFromNamespace(ns); isMember {
		return nil
	}
	have, err := p.RecordSlices.EndpointSlices(p.MemberNamespace).List(gs.RecordSelector(ns, name))
	if err != nil {
		return err
	}
	var want []*discoveryv1.EndpointSlice
	svc, err := p.Services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if svc != nil {
		if o := gs.OptionsOf(svc); o.Global && o.Shared {
			local, err := p.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
			if err != nil {
				return err
			}
			want = slicesync.Mirror(local, func(s *discoveryv1.EndpointSlice) bool {
				return s.Labels[discoveryv1.LabelManagedBy] == records.EndpointSliceManagedBy
			}, func(t discoveryv1.AddressType) metav1.ObjectMeta {
				return metav1.ObjectMeta{Name: gs.ImportedSliceName(name, ns, t), Namespace: p.MemberNamespace, Labels: gs.RecordLabels(p.ClusterID, ns, name)}
			})
		}
	}
	return slicesync.Sync(ctx, p.Broker.DiscoveryV1().EndpointSlices(p.MemberNamespace), have, want)
}

// Liveness gives the reader's verdict on a member (package liveness).
type Liveness interface {
	State(cluster string) liveness.State
}

// Importer adds the other members' endpoints of a global Service to the local Service.
type Importer struct {
	ClusterID    string
	Local        kubernetes.Interface
	Services     corelisters.ServiceLister
	Slices       discoverylisters.EndpointSliceLister
	RecordSlices discoverylisters.EndpointSliceLister
	Liveness     Liveness
	Recorder     record.EventRecorder
	// Policy returns the clusterset's namespace policy; nil is the default policy.
	Policy func() (policy.Clusterset, error)
}

// Reconcile writes the remote slices of one Service.
func (im *Importer) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if _, isMember := clusterset.ClusterIDFromNamespace(ns); isMember {
		return nil
	}
	// The remote slices name the Service as kubernetes.io/service-name too, which the
	// agent's cache indexes (env.IndexedSlices).
	have, err := im.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel: clusterset.ManagedByValue, gs.LabelGlobalService: name, discoveryv1.LabelServiceName: name}))
	if err != nil {
		return err
	}
	svc, err := im.Services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var want []*discoveryv1.EndpointSlice
	if svc != nil {
		opts := gs.OptionsOf(svc)
		if opts.Global {
			remotes, err := im.remotes(ns, name, have)
			if err != nil {
				return err
			}
			local, err := im.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
			if err != nil {
				return err
			}
			var own []*discoveryv1.EndpointSlice
			for _, s := range local {
				if s.Labels[discoveryv1.LabelManagedBy] != records.EndpointSliceManagedBy {
					own = append(own, s)
				}
			}
			var conflicts []string
			want, conflicts = gs.Desired(svc, opts, records.ReadyEndpoints(own), remotes)
			if im.Recorder != nil {
				if opts.Problem != "" {
					im.Recorder.Event(svc, corev1.EventTypeWarning, "GlobalServiceAnnotation", opts.Problem)
				}
				for _, c := range conflicts {
					im.Recorder.Event(svc, corev1.EventTypeWarning, "GlobalServicePortConflict", c)
				}
			}
		}
	}
	return slicesync.Sync(ctx, im.Local.DiscoveryV1().EndpointSlices(ns), have, want)
}

// remotes gathers the records of the members whose endpoints are served: alive ones, and
// those without a verdict (Held) whose endpoints are served now.
func (im *Importer) remotes(ns, name string, have []*discoveryv1.EndpointSlice) ([]gs.Remote, error) {
	recs, err := im.RecordSlices.List(gs.RecordSelector(ns, name))
	if err != nil {
		return nil, err
	}
	clustersetPolicy := policy.Clusterset{}
	if im.Policy != nil {
		if clustersetPolicy, err = im.Policy(); err != nil {
			return nil, err // a malformed policy changes nothing
		}
	}
	served := map[string]bool{}
	for _, s := range have {
		served[s.Labels[mcsv1beta1.LabelSourceCluster]] = true
	}
	byCluster := map[string][]*discoveryv1.EndpointSlice{}
	for _, r := range recs {
		cluster, ok := clusterset.ClusterIDFromNamespace(r.Namespace)
		if !ok || cluster == im.ClusterID {
			continue
		}
		if _, allowed := clustersetPolicy.Allows(ns, cluster); !allowed {
			continue
		}
		if im.Liveness.State(cluster).Serve(served[cluster]) {
			byCluster[cluster] = append(byCluster[cluster], r)
		}
	}
	var out []gs.Remote
	for _, c := range sortedKeys(byCluster) {
		out = append(out, gs.Remote{Cluster: c, Slices: byCluster[c]})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Setup declares the publisher's and the importer's loops and what they watch.
func Setup(e *env.Env) error {
	services := e.Member.Informers.Core().V1().Services()
	slices := e.Member.Informers.Discovery().V1().EndpointSlices()
	recordSlices, recordSliceLister := e.Records.Slices, e.Records.SliceLister()
	pub := e.Manager.NewLoop("global-publish", &Publisher{
		ClusterID: e.ClusterID, MemberNamespace: e.MemberNamespace, Broker: e.Broker.Kube,
		Services: services.Lister(), Slices: e.Member.Slices, RecordSlices: recordSliceLister,
	})
	imp := e.Manager.NewLoop("global-import", &Importer{
		ClusterID: e.ClusterID, Local: e.Member.Kube,
		Services: services.Lister(), Slices: e.Member.Slices, RecordSlices: recordSliceLister,
		Liveness: e.Liveness, Recorder: e.Recorder, Policy: e.Records.Policy,
	})
	recordKey := func(obj any) []string {
		if m, ok := obj.(metav1.Object); ok {
			if k, ok := gs.RecordKey(m); ok {
				return []string{k}
			}
		}
		return nil
	}
	for _, l := range []*controller.Loop{pub, imp} {
		l.Watch(services.Informer(), controller.ObjectKey)
		l.Watch(slices.Informer(), controller.LabelKey(discoveryv1.LabelServiceName))
		l.Watch(recordSlices, recordKey)
	}
	// A member's verdict, or the namespace policy, changing changes what every global
	// Service serves.
	all := func() []string {
		var keys []string
		list, _ := services.Lister().List(labels.Everything())
		for _, svc := range list {
			if gs.OptionsOf(svc).Global {
				keys = append(keys, svc.Namespace+"/"+svc.Name)
			}
		}
		return keys
	}
	e.OnLiveness(func(liveness.View, []liveness.Change) {
		for _, k := range all() {
			imp.Enqueue(k)
		}
	})
	e.OnPolicy(imp, all)
	return nil
}
