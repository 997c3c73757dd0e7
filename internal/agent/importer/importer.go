// Package importer is the import side of the agent: for every Service any member exports, it
// aggregates the members' records from the broker and writes the standard objects in its own
// cluster: a ServiceImport, a derived Service that gives a ClusterSetIP import a routable IP
// (headless for a headless import), and per source cluster an EndpointSlice with the MCS
// labels. Exports through an Ingress host are imported as an ExternalName Service of the
// Service's own name instead, where the namespace has no Service of that name. It deletes
// only objects it labelled as its own, and what no record backs any more.
package importer

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/policy"
	"github.com/strait-io/strait/internal/agent/records"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/names"
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
}

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
	var exports []mcs.Export
	for _, r := range recs {
		e, ok := records.FromServiceImport(r)
		if !ok {
			continue
		}
		if msg, allowed := policy.Import(ns, e.Cluster, namespace); !allowed {
			klog.FromContext(ctx).V(2).Info("Ignoring export", "key", key, "cluster", e.Cluster, "reason", msg)
			continue
		}
		exports = append(exports, e)
	}
	exports, hosts := mcs.SplitByHost(exports)
	if err := im.ensureHostService(ctx, ns, name, hosts); err != nil {
		return err
	}
	if len(exports) == 0 {
		return im.remove(ctx, ns, name)
	}
	res, err := mcs.Aggregate(exports)
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
	if err := im.ensureSlices(ctx, res.Import, svc.Name); err != nil {
		return err
	}
	return im.ensureServiceImport(ctx, res.Import, svc)
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
	res, err := mcs.Aggregate(hosts)
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
	update := have.DeepCopy()
	update.Labels, update.Spec = want.Labels, want.Spec
	_, err = client.Update(ctx, update, metav1.UpdateOptions{})
	return err
}

func (im *Importer) ensureDerivedService(ctx context.Context, imp mcs.Import) (*corev1.Service, error) {
	want := DerivedService(imp)
	client := im.Local.CoreV1().Services(imp.Namespace)
	have, err := im.Services.Services(imp.Namespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		return client.Create(ctx, want, metav1.CreateOptions{})
	}
	if err != nil {
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
	update := have.DeepCopy()
	update.Labels = want.Labels
	update.Spec.Ports, update.Spec.SessionAffinity, update.Spec.SessionAffinityConfig = want.Spec.Ports, want.Spec.SessionAffinity, want.Spec.SessionAffinityConfig
	if update.Spec.SessionAffinity == corev1.ServiceAffinityNone {
		update.Spec.SessionAffinityConfig = nil
	}
	return client.Update(ctx, update, metav1.UpdateOptions{})
}

// ImportedSlices are the local EndpointSlices of an import: one per source cluster and
// address type, copied from the broker records.
func ImportedSlices(imp mcs.Import, derived string, recordSlices []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	clusters := map[string]bool{}
	for _, c := range imp.Clusters {
		clusters[c] = true
	}
	var out []*discoveryv1.EndpointSlice
	for _, rs := range recordSlices {
		cluster, ok := clusterset.ClusterIDFromNamespace(rs.Namespace)
		if !ok || !clusters[cluster] {
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

func (im *Importer) ensureSlices(ctx context.Context, imp mcs.Import, derived string) error {
	recordSlices, err := im.RecordSlices.List(records.Selector(imp.Namespace, imp.Name))
	if err != nil {
		return err
	}
	have, err := im.Slices.EndpointSlices(imp.Namespace).List(ownSlices(imp.Name))
	if err != nil {
		return err
	}
	return slicesync.Sync(ctx, im.Local.DiscoveryV1().EndpointSlices(imp.Namespace), have, ImportedSlices(imp, derived, recordSlices))
}

func ownSlices(name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel:   clusterset.ManagedByValue,
		mcsv1beta1.LabelServiceName: name,
		discoveryv1.LabelManagedBy:  records.EndpointSliceManagedBy,
	})
}

func (im *Importer) ensureServiceImport(ctx context.Context, imp mcs.Import, derived *corev1.Service) error {
	want := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{
			Name: imp.Name, Namespace: imp.Namespace,
			Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue},
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
	var status []mcsv1beta1.ClusterStatus
	for _, c := range imp.Clusters {
		status = append(status, mcsv1beta1.ClusterStatus{Cluster: c})
	}
	client := im.LocalMCS.MulticlusterV1beta1().ServiceImports(imp.Namespace)
	have, err := im.Imports.ServiceImports(imp.Namespace).Get(imp.Name)
	if apierrors.IsNotFound(err) {
		created, err := client.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("ServiceImport %s/%s was created meanwhile; retrying with the current one", imp.Namespace, imp.Name)
		}
		if err != nil {
			return err
		}
		created.Status.Clusters = status
		_, err = client.UpdateStatus(ctx, created, metav1.UpdateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	if !owned(have) {
		klog.FromContext(ctx).Info("Not importing: a ServiceImport exists and was not created by strait", "serviceimport", imp.Namespace+"/"+imp.Name)
		return nil
	}
	if !equality.Semantic.DeepEqual(have.Spec, want.Spec) {
		update := have.DeepCopy()
		update.Spec = want.Spec
		if have, err = client.Update(ctx, update, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	if equality.Semantic.DeepEqual(have.Status.Clusters, status) {
		return nil
	}
	update := have.DeepCopy()
	update.Status.Clusters = status
	_, err = client.UpdateStatus(ctx, update, metav1.UpdateOptions{})
	return err
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
