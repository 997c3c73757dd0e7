// Package importer is the import side of the agent: for every Service any member exports, it
// aggregates the members' records from the broker and writes the standard objects in its own
// cluster: a ServiceImport, a derived Service that gives a ClusterSetIP import a routable IP
// (headless for a headless import), and per source cluster an EndpointSlice with the MCS
// labels. Exports through an Ingress host are imported as an ExternalName Service of the
// Service's own name instead, where the namespace has no Service of that name. It deletes
// only objects it labelled as its own, and what no record backs any more.
//
// Faults are contained: a member whose agent stopped renewing its lease has its endpoints
// withdrawn (and served again when it renews); while the reader cannot judge (package
// liveness: Held) it keeps what it served. A member's malformed or duplicated record is
// dropped with an Event and a condition naming the member; the other members' exports
// keep flowing.
package importer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/patch"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/names"
	"github.com/strait-io/strait/internal/policy"
	"github.com/strait-io/strait/internal/records"
)

// Importer reconciles the import of one Service ("namespace/name").
type Importer struct {
	Local    kubernetes.Interface
	LocalMCS mcsclient.Interface

	// Records and RecordSlices list every member's records on the broker.
	Records      mcslisters.ServiceImportLister
	RecordSlices discoverylisters.EndpointSliceLister

	Namespaces corelisters.NamespaceLister
	Imports    mcslisters.ServiceImportLister
	Services   corelisters.ServiceLister
	Slices     discoverylisters.EndpointSliceLister

	// Liveness gives the verdict on each member (package liveness).
	Liveness Liveness
	// Policy returns the clusterset's namespace policy; nil is the default policy.
	Policy func() (policy.Clusterset, error)
	// Recorder records events on ServiceImports; nil records none.
	Recorder record.EventRecorder
}

// Liveness gives the reader's verdict on a member.
type Liveness interface {
	State(cluster string) liveness.State
}

// Conditions Strait sets on the ServiceImports it writes, besides the standard Ready.
const (
	// ConditionRecordsValid is False when a member's record of the Service was dropped.
	ConditionRecordsValid = "strait.io/RecordsValid"
	ReasonAllValid        = "AllValid"
	ReasonRecordsDropped  = "RecordsDropped"
	// Events on ServiceImports.
	EventRecordDropped    = "RecordDropped"
	EventMemberWithdrawn  = "MemberWithdrawn"
	EventMemberServed     = "MemberServed"
	EventRecordsValidated = "RecordsValid"
)

// owned reports whether the import side created an object. Broker records carry the same
// managed-by label (a cluster can be member and broker at once) but also name their
// Service's namespace; imported objects never do.
func owned(obj metav1.Object) bool {
	if _, isRecord := records.Key(obj); isRecord {
		return false
	}
	return obj.GetLabels()[clusterset.ManagedByLabel] == clusterset.ManagedByValue
}

// Reconcile brings the imported objects of one Service in line with the broker's records.
func (im *Importer) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	if _, isMember := clusterset.ClusterIDFromNamespace(ns); isMember {
		return nil // a broker namespace, when this cluster is also the broker: records, not Services
	}
	namespace, err := im.Namespaces.Get(ns)
	if apierrors.IsNotFound(err) {
		return nil // namespace sameness: nothing is imported where the namespace does not exist
	}
	if err != nil {
		return err
	}
	if namespace.DeletionTimestamp != nil {
		return nil
	}
	recs, err := im.Records.List(records.Selector(ns, name))
	if err != nil {
		return err
	}
	clustersetPolicy, err := im.policy()
	if err != nil {
		return err // a malformed policy changes nothing
	}
	var exports []mcs.Export
	for _, r := range recs {
		e, ok := records.FromServiceImport(r)
		if !ok {
			continue
		}
		msg, allowed := clustersetPolicy.Allows(ns, e.Cluster)
		if allowed {
			msg, allowed = policy.Import(ns, e.Cluster, namespace)
		}
		if !allowed {
			klog.FromContext(ctx).V(2).Info("Ignoring export", "key", key, "cluster", e.Cluster, "reason", msg)
			continue
		}
		exports = append(exports, e)
	}
	exports, hosts := mcs.SplitByHost(exports)
	if len(hosts) > 0 && !clustersetPolicy.AllowsHostImport(ns) {
		klog.FromContext(ctx).V(2).Info("Not importing through an Ingress host: the clusterset's namespace policy does not list the namespace in hostImports", "key", key)
		hosts = nil
	}
	if err := im.ensureHostService(ctx, ns, name, hosts); err != nil {
		return err
	}
	if len(exports) == 0 {
		return im.remove(ctx, ns, name)
	}
	res, err := mcs.Aggregate(ns, name, exports)
	if errors.Is(err, mcs.ErrNoExports) {
		// Every record is malformed: a bad record is no reason to withdraw what was
		// imported. Say so on the ServiceImport, if there is one, and keep the rest.
		return im.reportDropped(ctx, ns, name, res.Dropped)
	}
	if err != nil {
		return err
	}
	svc, err := im.ensureDerivedService(ctx, res.Import)
	if err != nil {
		return err
	}
	if svc == nil {
		return nil // a Service of that name exists and is not ours
	}
	served, err := im.ensureSlices(ctx, res.Import, svc.Name)
	if err != nil {
		return err
	}
	return im.ensureServiceImport(ctx, res, svc, served)
}

func (im *Importer) policy() (policy.Clusterset, error) {
	if im.Policy == nil {
		return policy.Clusterset{}, nil
	}
	return im.Policy()
}

// DerivedService is the Service that backs an import.
func DerivedService(imp mcs.Import) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      names.DerivedServiceName(imp.Name),
			Namespace: imp.Namespace,
			Labels: map[string]string{
				clusterset.ManagedByLabel:   clusterset.ManagedByValue,
				mcsv1beta1.LabelServiceName: imp.Name,
			},
		},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeClusterIP,
			SessionAffinity:       imp.SessionAffinity,
			SessionAffinityConfig: imp.SessionAffinityConfig,
			InternalTrafficPolicy: imp.InternalTrafficPolicy,
			TrafficDistribution:   imp.TrafficDistribution,
		},
	}
	if svc.Spec.SessionAffinity == "" {
		svc.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if imp.Type == mcsv1beta1.Headless {
		svc.Spec.ClusterIP = corev1.ClusterIPNone
	}
	for _, p := range imp.Ports {
		protocol := p.Protocol
		if protocol == "" {
			protocol = corev1.ProtocolTCP
		}
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{
			Name: p.Name, Protocol: protocol, AppProtocol: p.AppProtocol, Port: p.Port,
			TargetPort: intstr.FromInt32(p.Port),
		})
	}
	return svc
}

// LabelHostImport marks the ExternalName Service an import through an Ingress host writes.
const LabelHostImport = "strait.io/imported-host"

// HostService is the ExternalName Service that maps the name of an import through Ingress
// hosts to the host of the oldest export. It carries the Ingress ports: an ExternalName
// cannot remap ports, so clients use the Ingress's port (80, or 443 with TLS).
func HostService(imp mcs.Import) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name:      imp.Name,
			Namespace: imp.Namespace,
			Labels: map[string]string{
				clusterset.ManagedByLabel:   clusterset.ManagedByValue,
				mcsv1beta1.LabelServiceName: imp.Name,
				LabelHostImport:             "true",
			},
		},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: imp.Host},
	}
	for _, p := range imp.Ports {
		svc.Spec.Ports = append(svc.Spec.Ports, corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port, TargetPort: intstr.FromInt32(p.Port)})
	}
	return svc
}

// ensureHostService writes, updates or deletes the ExternalName Service of the exports
// through Ingress hosts. A Service of that name it did not write is never touched: the
// cluster's own Service (it may export the same name itself) wins over the import.
func (im *Importer) ensureHostService(ctx context.Context, ns, name string, hosts []mcs.Export) error {
	client := im.Local.CoreV1().Services(ns)
	have, err := im.Services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		have = nil
	case err != nil:
		return err
	case have.Labels[LabelHostImport] == "" || !owned(have):
		if len(hosts) > 0 {
			klog.FromContext(ctx).V(2).Info("Not importing through the Ingress host: the namespace has its own Service of that name", "service", ns+"/"+name)
		}
		return nil
	}
	if len(hosts) == 0 {
		if have == nil {
			return nil
		}
		err := client.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &have.UID}})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	res, err := mcs.Aggregate(ns, name, hosts)
	for _, d := range res.Dropped {
		klog.FromContext(ctx).Info("Ignoring a member's record of an export through an Ingress host", "service", ns+"/"+name, "cluster", d.Cluster, "reason", d.Reason)
	}
	if errors.Is(err, mcs.ErrNoExports) {
		return nil // keep what was imported; a bad record withdraws nothing
	}
	if err != nil {
		return err
	}
	want := HostService(res.Import)
	if have == nil {
		_, err := client.Create(ctx, want, metav1.CreateOptions{})
		return err
	}
	if have.Spec.Type == want.Spec.Type && have.Spec.ExternalName == want.Spec.ExternalName &&
		equality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports) && equality.Semantic.DeepEqual(have.Labels, want.Labels) {
		return nil
	}
	fields := func(s *corev1.Service) patch.Fields {
		return patch.Fields{"metadata": patch.Meta(s.Labels, nil),
			"spec": patch.Fields{"type": s.Spec.Type, "externalName": s.Spec.ExternalName, "ports": s.Spec.Ports}}
	}
	return patchService(ctx, client, have.Name, fields(have), fields(want))
}

// patchService writes the owned fields of a Service with a merge patch (package patch).
func patchService(ctx context.Context, client corev1client.ServiceInterface, name string, have, want patch.Fields) error {
	p, err := patch.Merge(have, want)
	if err != nil || p == nil {
		return err
	}
	_, err = client.Patch(ctx, name, types.MergePatchType, p, metav1.PatchOptions{})
	return err
}

func (im *Importer) ensureDerivedService(ctx context.Context, imp mcs.Import) (*corev1.Service, error) {
	want := DerivedService(imp)
	client := im.Local.CoreV1().Services(imp.Namespace)
	have, err := im.Services.Services(imp.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		created, err := client.Create(ctx, want, metav1.CreateOptions{})
		if !apierrors.IsAlreadyExists(err) {
			return created, err
		}
		// The cache has not seen it yet (most likely our own create): read it.
		if have, err = client.Get(ctx, want.Name, metav1.GetOptions{}); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if !owned(have) {
		klog.FromContext(ctx).Info("Not importing: a Service with the derived name exists and was not created by strait",
			"service", imp.Namespace+"/"+want.Name)
		return nil, nil
	}
	headless := have.Spec.ClusterIP == corev1.ClusterIPNone
	if headless != (want.Spec.ClusterIP == corev1.ClusterIPNone) {
		// The cluster IP cannot change in place: replace the Service.
		if err := client.Delete(ctx, have.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &have.UID}}); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, fmt.Errorf("derived Service %s/%s changes between headless and ClusterSetIP; recreating it", imp.Namespace, want.Name)
	}
	if equality.Semantic.DeepEqual(have.Spec.Ports, want.Spec.Ports) && have.Spec.SessionAffinity == want.Spec.SessionAffinity &&
		equality.Semantic.DeepEqual(have.Spec.SessionAffinityConfig, want.Spec.SessionAffinityConfig) &&
		equality.Semantic.DeepEqual(have.Labels, want.Labels) {
		return have, nil
	}
	if want.Spec.SessionAffinity == corev1.ServiceAffinityNone {
		want.Spec.SessionAffinityConfig = nil
	}
	fields := func(s *corev1.Service) patch.Fields {
		return patch.Fields{"metadata": patch.Meta(s.Labels, nil), "spec": patch.Fields{
			"ports": s.Spec.Ports, "sessionAffinity": s.Spec.SessionAffinity, "sessionAffinityConfig": s.Spec.SessionAffinityConfig}}
	}
	p, err := patch.Merge(fields(have), fields(want))
	if err != nil || p == nil {
		return have, err
	}
	return client.Patch(ctx, have.Name, types.MergePatchType, p, metav1.PatchOptions{})
}

// ImportedSlices are the local EndpointSlices of an import: one per served source cluster
// and address type, copied from the broker records. serve says whether a cluster's
// endpoints are served.
func ImportedSlices(imp mcs.Import, derived string, recordSlices []*discoveryv1.EndpointSlice, serve func(cluster string) bool) []*discoveryv1.EndpointSlice {
	clusters := map[string]bool{}
	for _, c := range imp.Clusters {
		clusters[c] = true
	}
	var out []*discoveryv1.EndpointSlice
	for _, rs := range recordSlices {
		cluster, ok := clusterset.ClusterIDFromNamespace(rs.Namespace)
		if !ok || !clusters[cluster] || !serve(cluster) {
			continue
		}
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:      names.Unique(imp.Name, cluster, strings.ToLower(string(rs.AddressType))),
				Namespace: imp.Namespace,
				Labels: map[string]string{
					clusterset.ManagedByLabel:     clusterset.ManagedByValue,
					mcsv1beta1.LabelServiceName:   imp.Name,
					mcsv1beta1.LabelSourceCluster: cluster,
					discoveryv1.LabelManagedBy:    records.EndpointSliceManagedBy,
					discoveryv1.LabelServiceName:  derived,
				},
			},
			AddressType: rs.AddressType,
			Endpoints:   rs.Endpoints,
			Ports:       rs.Ports,
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ensureSlices writes the slices of the served clusters and returns those clusters,
// sorted. A cluster is served while alive, and while Held if it is served now.
func (im *Importer) ensureSlices(ctx context.Context, imp mcs.Import, derived string) ([]string, error) {
	recordSlices, err := im.RecordSlices.List(records.Selector(imp.Namespace, imp.Name))
	if err != nil {
		return nil, err
	}
	have, err := im.Slices.EndpointSlices(imp.Namespace).List(ownSlices(imp.Name))
	if err != nil {
		return nil, err
	}
	servedNow := map[string]bool{}
	for _, s := range have {
		servedNow[s.Labels[mcsv1beta1.LabelSourceCluster]] = true
	}
	var served []string
	serve := func(cluster string) bool {
		return im.Liveness.State(cluster).Serve(servedNow[cluster])
	}
	for _, c := range imp.Clusters {
		if serve(c) {
			served = append(served, c)
		}
	}
	err = slicesync.Sync(ctx, im.Local.DiscoveryV1().EndpointSlices(imp.Namespace), have, ImportedSlices(imp, derived, recordSlices, serve))
	return served, err
}

// ownSlices selects the imported slices of a Service. They name the derived Service too,
// which lets the agent's cache find them through its one index (env.IndexedSlices).
func ownSlices(name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel:    clusterset.ManagedByValue,
		mcsv1beta1.LabelServiceName:  name,
		discoveryv1.LabelManagedBy:   records.EndpointSliceManagedBy,
		discoveryv1.LabelServiceName: names.DerivedServiceName(name),
	})
}

func (im *Importer) ensureServiceImport(ctx context.Context, res mcs.Result, derived *corev1.Service, served []string) error {
	imp := res.Import
	want := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{
			Name: imp.Name, Namespace: imp.Namespace,
			Labels: importLabels(imp), Annotations: importAnnotations(imp),
		},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:                  imp.Type,
			Ports:                 imp.Ports,
			SessionAffinity:       imp.SessionAffinity,
			SessionAffinityConfig: imp.SessionAffinityConfig,
			IPFamilies:            imp.IPFamilies,
			InternalTrafficPolicy: imp.InternalTrafficPolicy,
			TrafficDistribution:   imp.TrafficDistribution,
		},
	}
	if imp.Type == mcsv1beta1.ClusterSetIP && derived.Spec.ClusterIP != "" && derived.Spec.ClusterIP != corev1.ClusterIPNone {
		want.Spec.IPs = derived.Spec.ClusterIPs
	}
	client := im.LocalMCS.MulticlusterV1beta1().ServiceImports(imp.Namespace)
	have, err := im.Imports.ServiceImports(imp.Namespace).Get(imp.Name)
	if apierrors.IsNotFound(err) {
		have, err = client.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// The cache has not seen it yet (most likely our own create): read it.
			have, err = client.Get(ctx, imp.Name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return err
	}
	if !owned(have) {
		klog.FromContext(ctx).Info("Not importing: a ServiceImport exists and was not created by strait", "serviceimport", imp.Namespace+"/"+imp.Name)
		return nil
	}
	if !equality.Semantic.DeepEqual(have.Spec, want.Spec) || !maps.Equal(have.Labels, want.Labels) || !maps.Equal(have.Annotations, want.Annotations) {
		fields := func(si *mcsv1beta1.ServiceImport) patch.Fields {
			return patch.Fields{"metadata": patch.Meta(si.Labels, si.Annotations), "spec": si.Spec}
		}
		p, err := patch.Merge(fields(have), fields(want))
		if err != nil {
			return err
		}
		if p != nil {
			if have, err = client.Patch(ctx, imp.Name, types.MergePatchType, p, metav1.PatchOptions{}); err != nil {
				return err
			}
		}
	}
	return im.updateStatus(ctx, have, served, res.Dropped)
}

// importLabels are the labels of a ServiceImport: the exportedLabels of the export that
// wins conflict resolution (the oldest, KEP-1645), and Strait's own label, which an exported
// label cannot override. Strait owns the ServiceImport, so these are all its labels: a label
// no longer exported goes away.
func importLabels(imp mcs.Import) map[string]string {
	l := maps.Clone(imp.Labels)
	if l == nil {
		l = map[string]string{}
	}
	l[clusterset.ManagedByLabel] = clusterset.ManagedByValue
	return l
}

// importAnnotations are the exportedAnnotations of the winning export, and nothing else.
func importAnnotations(imp mcs.Import) map[string]string {
	if len(imp.Annotations) == 0 {
		return nil
	}
	return maps.Clone(imp.Annotations)
}

// updateStatus writes status.clusters (the clusters whose endpoints are served) and the
// RecordsValid condition, and records an event for each change a user should hear of.
func (im *Importer) updateStatus(ctx context.Context, have *mcsv1beta1.ServiceImport, served []string, dropped []mcs.Dropped) error {
	update := have.DeepCopy()
	update.Status.Clusters = nil
	for _, c := range served {
		update.Status.Clusters = append(update.Status.Clusters, mcsv1beta1.ClusterStatus{Cluster: c})
	}
	cond := metav1.Condition{Type: ConditionRecordsValid, Status: metav1.ConditionTrue, Reason: ReasonAllValid,
		Message: "every member's record of the Service is valid", ObservedGeneration: have.Generation}
	if len(dropped) > 0 {
		var msgs []string
		for _, d := range dropped {
			msgs = append(msgs, fmt.Sprintf("cluster %s: %s", d.Cluster, d.Reason))
		}
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonRecordsDropped
		cond.Message = "records ignored: " + strings.Join(msgs, "; ")
	}
	before := apimeta.FindStatusCondition(have.Status.Conditions, ConditionRecordsValid)
	apimeta.SetStatusCondition(&update.Status.Conditions, cond)
	if equality.Semantic.DeepEqual(have.Status, update.Status) {
		return nil
	}
	// A merge patch of status.clusters and status.conditions, which the importer alone
	// writes: a cache that has not seen its previous write yet does not make it fail.
	p, err := patch.Merge(patch.Fields{"status": have.Status}, patch.Fields{"status": update.Status})
	if err != nil {
		return err
	}
	if p == nil {
		return nil
	}
	if _, err := im.LocalMCS.MulticlusterV1beta1().ServiceImports(have.Namespace).Patch(ctx, have.Name, types.MergePatchType, p, metav1.PatchOptions{}, "status"); err != nil {
		return err
	}
	if im.Recorder == nil {
		return nil
	}
	if before == nil || before.Message != cond.Message {
		if len(dropped) > 0 {
			for _, d := range dropped {
				im.Recorder.Eventf(have, corev1.EventTypeWarning, EventRecordDropped, "Ignoring the record of cluster %s: %s", d.Cluster, d.Reason)
			}
		} else if before != nil && before.Status == metav1.ConditionFalse {
			im.Recorder.Event(have, corev1.EventTypeNormal, EventRecordsValidated, cond.Message)
		}
	}
	was := map[string]bool{}
	for _, c := range have.Status.Clusters {
		was[c.Cluster] = true
	}
	for _, c := range served {
		if !was[c] && len(have.Status.Clusters) > 0 {
			im.Recorder.Eventf(have, corev1.EventTypeNormal, EventMemberServed, "Serving the endpoints of cluster %s", c)
		}
		delete(was, c)
	}
	for c := range was {
		im.Recorder.Eventf(have, corev1.EventTypeWarning, EventMemberWithdrawn, "Withdrew the endpoints of cluster %s: %s", c, withdrawReason(c, im.Liveness.State(c), dropped))
	}
	return nil
}

func withdrawReason(cluster string, s liveness.State, dropped []mcs.Dropped) string {
	for _, d := range dropped {
		if d.Cluster == cluster {
			return "its record is ignored: " + d.Reason
		}
	}
	if s == liveness.Withdrawn {
		return "its agent stopped renewing its lease on the broker"
	}
	return "it no longer exports the Service"
}

// reportDropped puts the RecordsValid condition on an existing ServiceImport when every
// record was dropped; its endpoints and clusters stay as they were.
func (im *Importer) reportDropped(ctx context.Context, ns, name string, dropped []mcs.Dropped) error {
	have, err := im.Imports.ServiceImports(ns).Get(name)
	if apierrors.IsNotFound(err) {
		for _, d := range dropped {
			klog.FromContext(ctx).Info("Ignoring a member's record", "service", ns+"/"+name, "cluster", d.Cluster, "reason", d.Reason)
		}
		return nil
	}
	if err != nil || !owned(have) {
		return err
	}
	var served []string
	for _, c := range have.Status.Clusters {
		served = append(served, c.Cluster)
	}
	return im.updateStatus(ctx, have, served, dropped)
}

// remove deletes everything the agent imported for a Service.
func (im *Importer) remove(ctx context.Context, ns, name string) error {
	if si, err := im.Imports.ServiceImports(ns).Get(name); err == nil && owned(si) {
		err := im.LocalMCS.MulticlusterV1beta1().ServiceImports(ns).Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &si.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if svc, err := im.Services.Services(ns).Get(names.DerivedServiceName(name)); err == nil && owned(svc) {
		err := im.Local.CoreV1().Services(ns).Delete(ctx, svc.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	slices, err := im.Slices.EndpointSlices(ns).List(ownSlices(name))
	if err != nil {
		return err
	}
	for _, s := range slices {
		if err := im.Local.DiscoveryV1().EndpointSlices(ns).Delete(ctx, s.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// Setup declares the import loop and what it watches.
func Setup(e *env.Env) error {
	m := e.Member.Informers
	services, slices, namespaces := m.Core().V1().Services(), m.Discovery().V1().EndpointSlices(), m.Core().V1().Namespaces()
	imports := e.Member.MCSInformers.Multicluster().V1beta1().ServiceImports()
	recordSIs, recordSILister := e.Records.Imports, e.Records.ImportLister()
	recordSlices, recordSliceLister := e.Records.Slices, e.Records.SliceLister()
	loop := e.Manager.NewLoop("import", &Importer{
		Local: e.Member.Kube, LocalMCS: e.Member.MCS,
		Records: recordSILister, RecordSlices: recordSliceLister,
		Namespaces: namespaces.Lister(), Imports: imports.Lister(), Services: services.Lister(), Slices: e.Member.Slices,
		Liveness: e.Liveness, Recorder: e.Recorder, Policy: e.Records.Policy,
	})
	recordKey := func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			if k, ok := records.Key(o); ok {
				return []string{k}
			}
		}
		return nil
	}
	// recordKeys lists the Services with records, in one namespace or ("") all.
	recordKeys := func(ns string) []string {
		sel := labels.Everything()
		if ns != "" {
			sel = labels.SelectorFromSet(labels.Set{records.LabelServiceNamespace: ns})
		}
		recs, _ := recordSILister.List(sel)
		var keys []string
		for _, r := range recs {
			keys = append(keys, recordKey(r)...)
		}
		return keys
	}
	loop.Watch(recordSIs, recordKey)
	// The namespace policy changing can change every import.
	e.OnPolicy(loop, func() []string { return recordKeys("") })
	loop.Watch(recordSlices, recordKey)
	loop.Watch(namespaces.Informer(), func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			return recordKeys(o.GetName())
		}
		return nil
	})
	loop.Watch(imports.Informer(), controller.ObjectKey)
	loop.Watch(services.Informer(), controller.LabelKey(mcsv1beta1.LabelServiceName))
	// A Service of the same name appearing or going decides where an import through an
	// Ingress host may write its ExternalName Service.
	loop.Watch(services.Informer(), controller.ObjectKey)
	loop.Watch(slices.Informer(), controller.LabelKey(mcsv1beta1.LabelServiceName))
	// A member withdrawn or back changes the slices of every import.
	e.OnLiveness(func(liveness.View, []liveness.Change) {
		for _, k := range recordKeys("") {
			loop.Enqueue(k)
		}
	})
	return nil
}
