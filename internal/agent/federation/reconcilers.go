package federation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent/patch"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/records"
)

// Event reasons on member Services.
const (
	EventCreated       = "FederatedServiceCreated"
	EventAdopted       = "FederatedServiceAdopted"
	EventReleased      = "FederatedServiceReleased"
	EventConflict      = "FederatedServiceConflict"
	EventNodePortTaken = "FederatedServiceNodePortTaken"
)

// Propagator places the broker's federated Services in the member cluster. It owns the
// member Services it created or adopted (labelled managed-by=strait and with the
// federation's label) and the namespaces it created; it never writes anything else.
type Propagator struct {
	Federation, Namespace, ClusterID string
	// Host says whether the member cluster hosts the broker: its Service of a federated
	// name is then the broker Service itself and is left alone.
	Host  *BrokerHost
	Local kubernetes.Interface
	// BrokerServices lists the broker's federation namespace.
	BrokerServices corelisters.ServiceLister
	Services       corelisters.ServiceLister
	Namespaces     corelisters.NamespaceLister
	Recorder       record.EventRecorder
}

// Reconcile brings the member's Service of one federated name in line.
func (p *Propagator) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || ns != p.Namespace {
		return nil
	}
	broker, err := get(p.BrokerServices.Services(ns).Get(name))
	if err != nil {
		return err
	}
	local, err := get(p.Services.Services(ns).Get(name))
	if err != nil {
		return err
	}
	isBroker, err := p.Host.Is(ctx)
	if err != nil {
		return err
	}
	d := federation.Plan(federation.PlanInput{
		Federation: p.Federation, Cluster: p.ClusterID, Broker: broker, Local: local, LocalIsBroker: isBroker,
	})
	logger := klog.FromContext(ctx).WithValues("service", key)
	services := p.Local.CoreV1().Services(ns)
	switch d.Action {
	case federation.ActionCreate:
		if err := p.ensureNamespace(ctx, ns); err != nil {
			return err
		}
		created, err := services.Create(ctx, d.Desired, metav1.CreateOptions{})
		if refused := takenNodePorts(err, d.Desired); len(refused) > 0 {
			created, err = services.Create(ctx, federation.WithRefusedNodePorts(d.Desired, nil, refused), metav1.CreateOptions{})
			p.event(created, corev1.EventTypeWarning, EventNodePortTaken, "The broker's node ports %v are taken in this cluster; this shard uses its own and is left out of DNS", refused)
		}
		if err != nil {
			return stale(ctx, err, "creating federated Service %s: %w", key)
		}
		logger.Info("Created federated Service")
		p.event(created, corev1.EventTypeNormal, EventCreated, "Created for federated Service %s/%s on the broker", ns, name)
	case federation.ActionAdopt, federation.ActionUpdate:
		updated, err := services.Update(ctx, d.Desired, metav1.UpdateOptions{})
		if refused := takenNodePorts(err, d.Desired); len(refused) > 0 {
			updated, err = services.Update(ctx, federation.WithRefusedNodePorts(d.Desired, local, refused), metav1.UpdateOptions{})
			p.event(updated, corev1.EventTypeWarning, EventNodePortTaken, "The broker's node ports %v are taken in this cluster; this shard keeps its own and is left out of DNS", refused)
		}
		if err != nil {
			return stale(ctx, err, "updating federated Service %s: %w", key)
		}
		if d.Action == federation.ActionAdopt {
			logger.Info("Adopted federated Service", "clusterIP", updated.Spec.ClusterIP)
			p.event(updated, corev1.EventTypeNormal, EventAdopted, "Adopted by federated Service %s/%s on the broker; cluster IP and node ports kept", ns, name)
		}
	case federation.ActionRelease:
		released, err := services.Update(ctx, d.Desired, metav1.UpdateOptions{})
		if err != nil {
			return stale(ctx, err, "releasing adopted Service %s: %w", key)
		}
		logger.Info("Released adopted Service: no longer federated to this cluster")
		p.event(released, corev1.EventTypeNormal, EventReleased, "No longer federated to this cluster; Strait's labels removed, the Service is left as it is")
	case federation.ActionDelete:
		err := services.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &local.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting federated Service %s: %w", key, err)
		}
		logger.Info("Deleted federated Service: no longer federated to this cluster")
	case federation.ActionConflict:
		p.event(local, corev1.EventTypeWarning, EventConflict, "%s", d.Reason)
	case federation.ActionNone:
		if wanted, err := federation.Wanted(broker, p.ClusterID); err == nil && !wanted {
			return p.releaseNamespace(ctx, ns)
		}
	}
	return nil
}

// takenNodePorts returns the node ports of want that the API server refused because they
// are allocated in this cluster already ("provided port is already allocated").
func takenNodePorts(err error, want *corev1.Service) []int32 {
	var status apierrors.APIStatus
	if err == nil || !apierrors.IsInvalid(err) || !errors.As(err, &status) || status.Status().Details == nil {
		return nil
	}
	var out []int32
	for _, c := range status.Status().Details.Causes {
		var i int
		if _, scanErr := fmt.Sscanf(c.Field, "spec.ports[%d].nodePort", &i); scanErr != nil || i < 0 || i >= len(want.Spec.Ports) {
			continue
		}
		if n := want.Spec.Ports[i].NodePort; n != 0 && strings.Contains(c.Message, "already allocated") {
			out = append(out, n)
		}
	}
	return out
}

func (p *Propagator) event(obj *corev1.Service, typ, reason, format string, args ...any) {
	if p.Recorder != nil && obj != nil {
		p.Recorder.Eventf(obj, typ, reason, format, args...)
	}
}

// ensureNamespace creates the namespace of federated Services when the member lacks it,
// labelled so that the Propagator knows it may delete it again.
func (p *Propagator) ensureNamespace(ctx context.Context, ns string) error {
	have, err := get(p.Namespaces.Get(ns))
	if err != nil {
		return err
	}
	if have != nil {
		if have.DeletionTimestamp != nil {
			return fmt.Errorf("namespace %s is being deleted; the federated Service is created once it is gone", ns)
		}
		return nil
	}
	_, err = p.Local.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   ns,
		Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue, federation.LabelFederation: p.Federation},
	}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s for federated Services: %w", ns, err)
	}
	klog.FromContext(ctx).Info("Created namespace for federated Services", "namespace", ns)
	return nil
}

// releaseNamespace deletes a namespace the Propagator created once nothing in it is
// federated to this cluster and it holds no Service and no Pod: what users put there
// is never deleted with it.
func (p *Propagator) releaseNamespace(ctx context.Context, ns string) error {
	if isBroker, err := p.Host.Is(ctx); err != nil || isBroker {
		return err
	}
	have, err := get(p.Namespaces.Get(ns))
	if err != nil || have == nil || have.DeletionTimestamp != nil ||
		have.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue || have.Labels[federation.LabelFederation] != p.Federation {
		return err
	}
	federated, err := p.BrokerServices.Services(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	for _, svc := range federated {
		if wanted, err := federation.Wanted(svc, p.ClusterID); err != nil || wanted {
			return nil
		}
	}
	local, err := p.Services.Services(ns).List(labels.Everything())
	if err != nil || len(local) > 0 {
		return err
	}
	pods, err := p.Local.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("listing pods in namespace %s before removing it: %w", ns, err)
	}
	if len(pods.Items) > 0 {
		return nil
	}
	err = p.Local.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &have.UID}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting namespace %s that Strait created for federated Services: %w", ns, err)
	}
	klog.FromContext(ctx).Info("Deleted the namespace Strait had created for federated Services", "namespace", ns)
	return nil
}

// Reporter writes the member's shard records of the federated Services to its broker
// namespace, and removes them when the broker no longer asks for the shard.
type Reporter struct {
	Federation, Namespace, ClusterID, MemberNamespace string
	Host                                              *BrokerHost
	Broker                                            kubernetes.Interface
	BrokerServices                                    corelisters.ServiceLister
	Services                                          corelisters.ServiceLister
	Slices                                            discoverylisters.EndpointSliceLister
	Nodes                                             corelisters.NodeLister
	// Records lists Strait's EndpointSlices on the broker (the shard records among them).
	Records discoverylisters.EndpointSliceLister
}

// Reconcile writes or removes the record of one federated name.
func (r *Reporter) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || ns != r.Namespace {
		return nil
	}
	have, err := r.Records.EndpointSlices(r.MemberNamespace).List(federation.RecordSelector(r.Federation, ns, name))
	if err != nil {
		return err
	}
	broker, err := get(r.BrokerServices.Services(ns).Get(name))
	if err != nil {
		return err
	}
	wanted, err := federation.Wanted(broker, r.ClusterID)
	if err != nil {
		return nil // an unreadable selection changes nothing; the broker status says why
	}
	var want []*discoveryv1.EndpointSlice
	if wanted {
		isBroker, err := r.Host.Is(ctx)
		if err != nil {
			return err
		}
		shard, err := r.shard(ns, name, broker, isBroker)
		if err != nil {
			return err
		}
		want = federation.ToRecords(r.MemberNamespace, r.Federation, shard)
	}
	return SyncRecords(ctx, r.Broker.DiscoveryV1().EndpointSlices(r.MemberNamespace), have, want)
}

// shard describes the member's shard of one federated Service.
func (r *Reporter) shard(ns, name string, broker *corev1.Service, isBroker bool) (federation.Shard, error) {
	s := federation.Shard{Cluster: r.ClusterID, Namespace: ns, Name: name, State: federation.ShardPending}
	local, err := get(r.Services.Services(ns).Get(name))
	if err != nil {
		return s, err
	}
	nodes, err := r.Nodes.List(labels.Everything())
	if err != nil {
		return s, err
	}
	s.Region, s.Zone = clusterset.TopologyFromNodes(nodeList(nodes))
	switch {
	case local == nil || local.DeletionTimestamp != nil:
		return s, nil
	case isBroker:
		s.State = federation.ShardBroker
	default:
		switch federation.OwnershipOf(local, r.Federation) {
		case federation.OwnedCreated:
			s.State = federation.ShardCreated
		case federation.OwnedAdopted:
			s.State = federation.ShardAdopted
		case federation.OwnedElsewhere:
			s.State = federation.ShardConflict
			s.Problem = federation.Plan(federation.PlanInput{Federation: r.Federation, Cluster: r.ClusterID, Broker: broker, Local: local}).Reason
			return s, nil
		default:
			return s, nil // about to be adopted
		}
	}
	slices, err := r.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
	if err != nil {
		return s, err
	}
	s.ReadyEndpoints = records.ReadyEndpoints(ownSlices(slices))
	s.Ingress = federation.ShardIngress(local, nodes, isBroker)
	s.ClusterIPs = federation.ClusterIPs(local)
	return s, nil
}

// SyncRecords makes have (the records the member owns, from its cache) equal to want,
// annotations included.
func SyncRecords(ctx context.Context, c slicesync.Client, have, want []*discoveryv1.EndpointSlice) error {
	wanted := map[string]*discoveryv1.EndpointSlice{}
	for _, w := range want {
		wanted[w.Name] = w
	}
	for _, h := range have {
		w, ok := wanted[h.Name]
		if !ok {
			err := c.Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return stale(ctx, err, "deleting shard record %s: %w", h.Namespace+"/"+h.Name)
			}
			continue
		}
		delete(wanted, h.Name)
		if federation.RecordsEqual(h, w) {
			continue
		}
		// A merge patch: a cache behind the member's own last write does not make it fail.
		fields := func(s *discoveryv1.EndpointSlice) patch.Fields {
			f := slicesync.Fields(s)
			f["metadata"] = patch.Meta(s.Labels, s.Annotations)
			f["addressType"] = s.AddressType
			return f
		}
		p, err := patch.Merge(fields(h), fields(w))
		if err != nil {
			return err
		}
		if p == nil {
			continue
		}
		if _, err := c.Patch(ctx, h.Name, types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
			return stale(ctx, err, "updating shard record %s: %w", h.Namespace+"/"+h.Name)
		}
	}
	names := make([]string, 0, len(wanted))
	for n := range wanted {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := c.Create(ctx, wanted[n], metav1.CreateOptions{}); err != nil {
			return stale(ctx, err, "creating shard record %s: %w", wanted[n].Namespace+"/"+n)
		}
	}
	return nil
}

// stale handles a write that failed because the cache was behind: an object that already
// exists, or a newer version. The informer delivers that object, which queues the key again,
// so it is not an error. Anything else is, wrapped with what was being done.
func stale(ctx context.Context, err error, format, what string) error {
	if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
		klog.FromContext(ctx).V(2).Info("Cache behind the API server; waiting for the update", "what", what, "err", err)
		return nil
	}
	return fmt.Errorf(format, what, err)
}

// get turns a lister's not-found into nil.
func get[T any](obj *T, err error) (*T, error) {
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return obj, nil
}
