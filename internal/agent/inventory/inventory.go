// Package inventory reports, as Prometheus gauges, what the agent holds in its member
// cluster: the ServiceExports by the state the exporter gave them, the ServiceImports it
// wrote and the ready endpoints it imported from other members. The gauges are computed
// from the informers' caches at each scrape rather than kept up to date by the
// reconcilers, so they cannot drift from what the cluster holds, and they are reported
// only while the leading replica's caches are complete (controller.Manager.Collect).
package inventory

import (
	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1beta1"

	"github.com/strait-io/strait/internal/agent/env"
	"github.com/strait-io/strait/internal/agent/slicesync"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/records"
)

// The states of a ServiceExport in strait_exports. Every export is in exactly one, so
// their sum is the number of exports.
const (
	// StateValid: exported, no conflict with other members' exports.
	StateValid = "valid"
	// StateConflict: exported, but in conflict with an older export of another member
	// (condition Conflict=True); the clusterset uses the older one's properties.
	StateConflict = "conflict"
	// StateInvalid: not exported (condition Valid=False: no Service, ExternalName, a
	// namespace the policy does not allow, a bad annotation).
	StateInvalid = "invalid"
	// StatePending: not reconciled yet (no Valid condition).
	StatePending = "pending"
)

var states = []string{StateValid, StateConflict, StateInvalid, StatePending}

var (
	exportsDesc = prometheus.NewDesc("strait_exports",
		"ServiceExports of this member cluster by state: valid, conflict (exported, but in conflict with another member's older export), invalid (not exported), pending (not reconciled yet).",
		[]string{"state"}, nil)
	importsDesc = prometheus.NewDesc("strait_imports",
		"ServiceImports the agent wrote in this member cluster from other members' exports.", nil, nil)
	endpointsDesc = prometheus.NewDesc("strait_imported_endpoints",
		"Ready endpoints in the EndpointSlices the agent imported into this member cluster (the ServiceImports' source clusters).", nil, nil)
)

// Collector computes the gauges from listers of the member cluster.
type Collector struct {
	Exports mcslisters.ServiceExportLister
	Imports mcslisters.ServiceImportLister
	Slices  discoverylisters.EndpointSliceLister
}

// Setup has the manager report the member's inventory while it runs.
func Setup(e *env.Env) error {
	mcs := e.Member.MCSInformers.Multicluster().V1beta1()
	e.Manager.Collect(&Collector{Exports: mcs.ServiceExports().Lister(), Imports: mcs.ServiceImports().Lister(), Slices: e.Member.Slices})
	return nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- exportsDesc
	ch <- importsDesc
	ch <- endpointsDesc
}

// Collect implements prometheus.Collector. A lister that fails reports nothing for its
// gauges: a missing series, not a false zero.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if exports, err := c.Exports.List(labels.Everything()); err == nil {
		counts := make(map[string]int, len(states))
		for _, exp := range exports {
			counts[ExportState(exp)]++
		}
		for _, s := range states {
			ch <- prometheus.MustNewConstMetric(exportsDesc, prometheus.GaugeValue, float64(counts[s]), s)
		}
	}
	if imports, err := c.Imports.List(managed); err == nil {
		n := 0
		for _, imp := range imports {
			if !inMemberNamespace(imp) {
				n++
			}
		}
		ch <- prometheus.MustNewConstMetric(importsDesc, prometheus.GaugeValue, float64(n))
	}
	if slices, err := c.Slices.List(importedSlices); err == nil {
		n := 0
		for _, s := range slices {
			if !inMemberNamespace(s) {
				n += slicesync.ReadyEndpoints(s)
			}
		}
		ch <- prometheus.MustNewConstMetric(endpointsDesc, prometheus.GaugeValue, float64(n))
	}
}

// ExportState is the state of an export in strait_exports, read from the conditions the
// exporter sets.
func ExportState(exp *mcsv1beta1.ServiceExport) string {
	conds := exp.Status.Conditions
	valid := apimeta.FindStatusCondition(conds, string(mcsv1beta1.ServiceExportConditionValid))
	switch {
	case valid == nil:
		return StatePending
	case valid.Status != metav1.ConditionTrue:
		return StateInvalid
	case apimeta.IsStatusConditionTrue(conds, string(mcsv1beta1.ServiceExportConditionConflict)):
		return StateConflict
	}
	return StateValid
}

// inMemberNamespace: where the member is also the broker, the records of every member
// live in its strait-member-* namespaces with the same labels; they are not imports.
func inMemberNamespace(o metav1.Object) bool {
	_, ok := clusterset.ClusterIDFromNamespace(o.GetNamespace())
	return ok
}

var (
	managed        = labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue})
	importedSlices = func() labels.Selector {
		sel := labels.SelectorFromSet(labels.Set{
			clusterset.ManagedByLabel:  clusterset.ManagedByValue,
			discoveryv1.LabelManagedBy: records.EndpointSliceManagedBy,
		})
		for _, key := range []string{mcsv1beta1.LabelServiceName, mcsv1beta1.LabelSourceCluster} {
			r, err := labels.NewRequirement(key, selection.Exists, nil)
			if err != nil {
				panic(err)
			}
			sel = sel.Add(*r)
		}
		return sel
	}()
)
