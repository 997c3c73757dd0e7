// Package exporter is the export side of the agent: for every ServiceExport of its cluster it
// validates the export, publishes the Service's MCS properties and ready endpoints as records
// in the member's broker namespace, withdraws them when the export, the Service or the
// namespace goes away, and reports the standard Valid, Ready and Conflict conditions on the
// ServiceExport.
package exporter

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/patch"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/policy"
	"github.com/strait-io/strait/internal/records"
)

// Exporter reconciles one ServiceExport ("namespace/name") at a time.
type Exporter struct {
	ClusterID       string
	MemberNamespace string // the member's namespace on the broker

	Local     kubernetes.Interface
	LocalMCS  mcsclient.Interface
	Broker    kubernetes.Interface
	BrokerMCS mcsclient.Interface

	Exports    mcslisters.ServiceExportLister
	Services   corelisters.ServiceLister
	Slices     discoverylisters.EndpointSliceLister
	Namespaces corelisters.NamespaceLister
	Nodes      corelisters.NodeLister
	Ingresses  networkinglisters.IngressLister
	// Records and RecordSlices list the broker's records of every member.
	Records      mcslisters.ServiceImportLister
	RecordSlices discoverylisters.EndpointSliceLister
	// Policy returns the clusterset's namespace policy; nil skips it.
	Policy func() (policy.Clusterset, error)
}

// Reconcile publishes or withdraws the export of one Service and updates its conditions.
func (e *Exporter) Reconcile(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	exp, err := e.Exports.ServiceExports(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return e.withdraw(ctx, ns, name)
	}
	if err != nil {
		return err
	}
	svc, err := e.Services.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	via := exp.Annotations[AnnotationExportVia]
	valid, route := e.validate(ns, name, exp, svc)
	if valid.Status != metav1.ConditionTrue {
		if err := e.withdraw(ctx, ns, name); err != nil {
			return err
		}
		ready := cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonPending,
			"not exported: "+valid.Message)
		return e.setConditions(ctx, exp, valid, ready, nil)
	}

	export := mcs.ExportFromService(e.ClusterID, svc, exp)
	exported := "exported to the clusterset as cluster " + e.ClusterID
	if route.Host != "" {
		// Reached by name, not by address: the type and IP families of the Service do not
		// matter to importers, so they must not conflict with another cluster's.
		export.Host, export.Ports, export.Type, export.IPFamilies = route.Host, []mcsv1beta1.ServicePort{route.Port}, mcsv1beta1.ClusterSetIP, nil
		exported += fmt.Sprintf(" through host %s port %d of Ingress %s", route.Host, route.Port.Port, route.Ingress)
	}
	record, err := e.publishRecord(ctx, export)
	if err != nil {
		return err
	}
	if err := e.publishEndpoints(ctx, svc, via); err != nil {
		return err
	}
	conflicts, err := e.conflicts(ns, name, record)
	if err != nil {
		return err
	}
	ready := cond(mcsv1beta1.ServiceExportConditionReady, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonExported, exported)
	cc := mcs.ConflictCondition(conflicts, exp.Generation)
	return e.setConditions(ctx, exp, valid, ready, &cc)
}

// validate returns the Valid condition of an export and, for an export through an Ingress,
// the route.
func (e *Exporter) validate(ns, name string, exp *mcsv1beta1.ServiceExport, svc *corev1.Service) (metav1.Condition, IngressRoute) {
	invalid := func(reason mcsv1beta1.ServiceExportConditionReason, msg string) (metav1.Condition, IngressRoute) {
		return cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionFalse, reason, msg), IngressRoute{}
	}
	switch {
	case svc == nil:
		return invalid(mcsv1beta1.ServiceExportReasonNoService, fmt.Sprintf("Service %s/%s does not exist", ns, name))
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		return invalid(mcsv1beta1.ServiceExportReasonInvalidServiceType, fmt.Sprintf("Service %s/%s is of type ExternalName, which cannot be exported", ns, name))
	}
	if msg, ok := policy.ExportAllowed(e.Namespaces, ns); !ok {
		return invalid(policy.ReasonNamespaceNotAllowed, msg)
	}
	if e.Policy != nil {
		// Importers enforce the clusterset's policy whatever this member does; saying so
		// here tells the exporting team why nobody imports it.
		if p, err := e.Policy(); err == nil {
			if msg, ok := p.Allows(ns, e.ClusterID); !ok {
				return invalid(policy.ReasonNamespaceNotAllowed, msg)
			}
		}
	}
	via := exp.Annotations[AnnotationExportVia]
	if err := CheckVia(via, svc); err != nil {
		return invalid(ReasonInvalidExportVia, err.Error())
	}
	var route IngressRoute
	if via == ViaIngress {
		ingresses, err := e.Ingresses.Ingresses(ns).List(labels.Everything())
		if err == nil {
			route, err = FindIngressRoute(svc, ingresses, exp.Annotations[AnnotationIngressHost])
		}
		if err != nil {
			return invalid(ReasonInvalidExportVia, err.Error())
		}
	}
	return cond(mcsv1beta1.ServiceExportConditionValid, metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid, "the Service can be exported"), route
}

func cond(t mcsv1beta1.ServiceExportConditionType, s metav1.ConditionStatus, r mcsv1beta1.ServiceExportConditionReason, msg string) metav1.Condition {
	return metav1.Condition{Type: string(t), Status: s, Reason: string(r), Message: msg}
}

// publishRecord creates or updates the member's ServiceImport record and returns it as the
// broker has it (with the broker-assigned creation time).
func (e *Exporter) publishRecord(ctx context.Context, export mcs.Export) (*mcsv1beta1.ServiceImport, error) {
	want := records.ToServiceImport(e.MemberNamespace, export)
	client := e.BrokerMCS.MulticlusterV1beta1().ServiceImports(e.MemberNamespace)
	have, err := e.Records.ServiceImports(e.MemberNamespace).Get(want.Name)
	if apierrors.IsNotFound(err) {
		created, err := client.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return client.Get(ctx, want.Name, metav1.GetOptions{})
		}
		return created, err
	}
	if err != nil {
		return nil, err
	}
	if equality.Semantic.DeepEqual(have.Spec, want.Spec) && equality.Semantic.DeepEqual(have.Labels, want.Labels) &&
		equality.Semantic.DeepEqual(nilIfEmpty(have.Annotations), nilIfEmpty(want.Annotations)) {
		return have, nil
	}
	// A merge patch: a cache that lags behind this member's own previous write of the
	// record does not make it fail (package patch).
	fields := func(si *mcsv1beta1.ServiceImport) patch.Fields {
		return patch.Fields{"metadata": patch.Meta(si.Labels, nilIfEmpty(si.Annotations)), "spec": si.Spec}
	}
	p, err := patch.Merge(fields(have), fields(want))
	if err != nil || p == nil {
		return have, err
	}
	return client.Patch(ctx, want.Name, types.MergePatchType, p, metav1.PatchOptions{})
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

// publishEndpoints publishes the Service's endpoints, one broker slice per address type:
// its pods' addresses, or its node ports or load balancer as the export asks. An export
// through an Ingress host has none.
func (e *Exporter) publishEndpoints(ctx context.Context, svc *corev1.Service, via string) error {
	ns, name := svc.Namespace, svc.Name
	local, err := e.Slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
	if err != nil {
		return err
	}
	have, err := e.RecordSlices.EndpointSlices(e.MemberNamespace).List(records.Selector(ns, name))
	if err != nil {
		return err
	}
	want := DesiredSlices(e.MemberNamespace, e.ClusterID, ns, name, local)
	switch via {
	case ViaPods:
	case ViaIngress:
		want = nil
	default:
		nodes, err := e.Nodes.List(labels.Everything())
		if err != nil {
			return err
		}
		ready := false
		for _, s := range want {
			for _, ep := range s.Endpoints {
				ready = ready || ep.Conditions.Ready == nil || *ep.Conditions.Ready
			}
		}
		want = ViaSlices(via, svc, nodes, ready, func(t discoveryv1.AddressType) metav1.ObjectMeta {
			return metav1.ObjectMeta{Name: records.SliceName(ns, name, t), Namespace: e.MemberNamespace, Labels: records.Labels(e.ClusterID, ns, name)}
		})
	}
	return slicesync.Sync(ctx, e.Broker.DiscoveryV1().EndpointSlices(e.MemberNamespace), have, want)
}

// DesiredSlices computes the broker slices of a Service from its local EndpointSlices: one
// per address type. Slices the agent itself wrote (imports) are never re-exported.
func DesiredSlices(memberNS, cluster, ns, name string, local []*discoveryv1.EndpointSlice) []*discoveryv1.EndpointSlice {
	return slicesync.Mirror(local, func(s *discoveryv1.EndpointSlice) bool {
		return s.Labels[discoveryv1.LabelManagedBy] == records.EndpointSliceManagedBy
	}, func(t discoveryv1.AddressType) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: records.SliceName(ns, name, t), Namespace: memberNS, Labels: records.Labels(cluster, ns, name)}
	})
}

// withdraw deletes the member's records of a Service; it only acts on records the broker
// cache shows, so withdrawing what was never published costs no API call.
func (e *Exporter) withdraw(ctx context.Context, ns, name string) error {
	sel := records.Selector(ns, name)
	sis, err := e.Records.ServiceImports(e.MemberNamespace).List(sel)
	if err != nil {
		return err
	}
	for _, si := range sis {
		err := e.BrokerMCS.MulticlusterV1beta1().ServiceImports(e.MemberNamespace).Delete(ctx, si.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	slices, err := e.RecordSlices.EndpointSlices(e.MemberNamespace).List(sel)
	if err != nil {
		return err
	}
	for _, s := range slices {
		err := e.Broker.DiscoveryV1().EndpointSlices(e.MemberNamespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// conflicts aggregates every member's record of the Service, with this member's record as
// the broker returned it, and returns this member's conflicts. Exports through a host and
// through addresses are imported apart, so only exports of this member's kind count.
func (e *Exporter) conflicts(ns, name string, own *mcsv1beta1.ServiceImport) ([]mcs.Conflict, error) {
	all, err := e.Records.List(records.Selector(ns, name))
	if err != nil {
		return nil, err
	}
	var exports []mcs.Export
	for _, si := range all {
		if si.Namespace == e.MemberNamespace {
			continue
		}
		if x, ok := records.FromServiceImport(si); ok {
			exports = append(exports, x)
		}
	}
	x, ok := records.FromServiceImport(own)
	if !ok {
		return nil, nil
	}
	exports = append(exports, x)
	if addresses, hosts := mcs.SplitByHost(exports); x.Host == "" {
		exports = addresses
	} else {
		exports = hosts
	}
	// Other members' bad records are left out (the importers report them); they never
	// keep this member's conditions from updating.
	res, err := mcs.Aggregate(x.Namespace, x.Name, exports)
	if errors.Is(err, mcs.ErrNoExports) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return res.Conflicts[e.ClusterID], nil
}

// setConditions writes the conditions if any changed; a nil conflict removes the Conflict
// condition.
func (e *Exporter) setConditions(ctx context.Context, exp *mcsv1beta1.ServiceExport, valid, ready metav1.Condition, conflict *metav1.Condition) error {
	update := exp.DeepCopy()
	for _, c := range []metav1.Condition{valid, ready} {
		c.ObservedGeneration = exp.Generation
		meta.SetStatusCondition(&update.Status.Conditions, c)
	}
	if conflict == nil {
		meta.RemoveStatusCondition(&update.Status.Conditions, string(mcsv1beta1.ServiceExportConditionConflict))
	} else {
		c := *conflict
		c.ObservedGeneration = exp.Generation
		meta.SetStatusCondition(&update.Status.Conditions, c)
	}
	if equality.Semantic.DeepEqual(exp.Status, update.Status) {
		return nil
	}
	// A merge patch of status.conditions: the exporter is the only writer of a
	// ServiceExport's conditions, and a cache that has not seen its previous write yet
	// does not make the write fail.
	p, err := patch.Merge(patch.Fields{"status": exp.Status}, patch.Fields{"status": update.Status})
	if err != nil || p == nil {
		return err
	}
	_, err = e.LocalMCS.MulticlusterV1beta1().ServiceExports(exp.Namespace).Patch(ctx, exp.Name, types.MergePatchType, p, metav1.PatchOptions{}, "status")
	return err
}

// Setup declares the export loop and what it watches.
func Setup(e *env.Env) error {
	m := e.Member.Informers
	exports := e.Member.MCSInformers.Multicluster().V1beta1().ServiceExports()
	services, slices, namespaces := m.Core().V1().Services(), m.Discovery().V1().EndpointSlices(), m.Core().V1().Namespaces()
	nodes, ingresses := m.Core().V1().Nodes(), m.Networking().V1().Ingresses()
	recordSIs, recordSILister := e.Records.Imports, e.Records.ImportLister()
	recordSliceLister := e.Records.SliceLister()
	loop := e.Manager.NewLoop("export", &Exporter{
		ClusterID: e.ClusterID, MemberNamespace: e.MemberNamespace,
		Local: e.Member.Kube, LocalMCS: e.Member.MCS, Broker: e.Broker.Kube, BrokerMCS: e.Broker.MCS,
		Exports: exports.Lister(), Services: services.Lister(), Slices: e.Member.Slices, Namespaces: namespaces.Lister(),
		Nodes: nodes.Lister(), Ingresses: ingresses.Lister(),
		Records: recordSILister, RecordSlices: recordSliceLister, Policy: e.Records.Policy,
	})
	// exportsOf lists the exports of a namespace ("" for all) that want to be reached a
	// given way (any way if via is "").
	exportsOf := func(ns, via string) []string {
		var keys []string
		list, _ := exports.Lister().ServiceExports(ns).List(labels.Everything())
		for _, x := range list {
			if via == "" || x.Annotations[AnnotationExportVia] == via {
				keys = append(keys, x.Namespace+"/"+x.Name)
			}
		}
		return keys
	}
	inNamespace := func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			return exportsOf(o.GetName(), "")
		}
		return nil
	}
	recordKey := func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			if k, ok := records.Key(o); ok {
				return []string{k}
			}
		}
		return nil
	}
	loop.Watch(exports.Informer(), controller.ObjectKey)
	loop.Watch(services.Informer(), controller.ObjectKey)
	loop.Watch(slices.Informer(), controller.LabelKey(discoveryv1.LabelServiceName))
	loop.Watch(recordSIs, recordKey)
	// The member's own record slices: their writes are patches computed from this cache,
	// which may lag behind them. A slice the cache showed as wanted while the broker held
	// another version would stay wrong; seeing the cache catch up reconciles it again.
	loop.Watch(e.Records.Slices, func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok && o.GetNamespace() == e.MemberNamespace {
			return recordKey(obj)
		}
		return nil
	})
	loop.Watch(namespaces.Informer(), inNamespace)
	// The clusterset's namespace policy changing can change every export's Valid condition.
	e.OnPolicy(loop, func() []string { return exportsOf(metav1.NamespaceAll, "") })
	// Node changes (addresses, readiness) matter to exports through node ports.
	loop.Watch(nodes.Informer(), func(any) []string { return exportsOf(metav1.NamespaceAll, ViaNodePort) })
	// Ingress changes matter to the exports through an Ingress host in their namespace.
	loop.Watch(ingresses.Informer(), func(obj any) []string {
		if o, ok := obj.(metav1.Object); ok {
			return exportsOf(o.GetNamespace(), ViaIngress)
		}
		return nil
	})
	return nil
}
