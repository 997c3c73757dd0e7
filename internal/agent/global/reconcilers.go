package global

import (
	"context"
	"sort"
	"time"

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

	"github.com/strait-io/strait/internal/agent/records"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
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
	have, err := p.RecordSlices.EndpointSlices(p.MemberNamespace).List(RecordSelector(ns, name))
	if err != nil {
		return err
	}
	var want []*discoveryv1.EndpointSlice
	svc, err := p.Services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if svc != nil {
		if o := OptionsOf(svc); o.Global && o.Shared {
			local, err := p.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
			if err != nil {
				return err
			}
			want = slicesync.Mirror(local, func(s *discoveryv1.EndpointSlice) bool {
				return s.Labels[discoveryv1.LabelManagedBy] == records.EndpointSliceManagedBy
			}, func(t discoveryv1.AddressType) metav1.ObjectMeta {
				return metav1.ObjectMeta{Name: ImportedSliceName(name, ns, t), Namespace: p.MemberNamespace, Labels: RecordLabels(p.ClusterID, ns, name)}
			})
		}
	}
	return slicesync.Sync(ctx, p.Broker.DiscoveryV1().EndpointSlices(p.MemberNamespace), have, want)
}

// Liveness tells whether a member's agent is alive, from its lease on the broker.
type Liveness interface {
	// Alive reports whether the member counts as alive now, and when that may change.
	Alive(cluster string) (alive bool, recheck time.Duration)
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
	// Requeue asks for the key to be reconciled again after a delay (a lease may expire).
	Requeue func(key string, after time.Duration)
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
	have, err := im.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel: clusterset.ManagedByValue, LabelGlobalService: name}))
	if err != nil {
		return err
	}
	svc, err := im.Services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	var want []*discoveryv1.EndpointSlice
	if svc != nil {
		opts := OptionsOf(svc)
		if opts.Global {
			remotes, recheck, err := im.remotes(ns, name)
			if err != nil {
				return err
			}
			if recheck > 0 && im.Requeue != nil {
				im.Requeue(key, recheck)
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
			want, conflicts = Desired(svc, opts, ReadyCount(own), remotes)
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

// remotes gathers the live members' records, and the soonest time a member's liveness may
// change.
func (im *Importer) remotes(ns, name string) ([]Remote, time.Duration, error) {
	recs, err := im.RecordSlices.List(RecordSelector(ns, name))
	if err != nil {
		return nil, 0, err
	}
	byCluster := map[string][]*discoveryv1.EndpointSlice{}
	var recheck time.Duration
	for _, r := range recs {
		cluster, ok := clusterset.ClusterIDFromNamespace(r.Namespace)
		if !ok || cluster == im.ClusterID {
			continue
		}
		alive, after := im.Liveness.Alive(cluster)
		if after > 0 && (recheck == 0 || after < recheck) {
			recheck = after
		}
		if alive {
			byCluster[cluster] = append(byCluster[cluster], r)
		}
	}
	var out []Remote
	for _, c := range sortedKeys(byCluster) {
		out = append(out, Remote{Cluster: c, Slices: byCluster[c]})
	}
	return out, recheck, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
