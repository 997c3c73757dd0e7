// Package records defines the export records a member keeps on the broker, shared by the
// agent's export side (which writes its own) and import side (which reads everyone's): a
// ServiceImport per exported Service, carrying the Service's MCS properties, and EndpointSlices
// with its ready endpoints, both in the member's broker namespace and labelled with the
// Service's namespace and name. The source cluster of a record is always the broker namespace
// it lives in (RBAC lets a member write only its own), never a label the member wrote.
package records

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/names"
)

// Labels and annotations of records and of the objects the agent writes.
const (
	// LabelServiceNamespace names the namespace of the exported Service on a broker record.
	LabelServiceNamespace = "strait.io/service-namespace"
	// EndpointSliceManagedBy is the endpointslice.kubernetes.io/managed-by of every slice the
	// agent writes, so kube-controller-manager's controllers leave them alone.
	EndpointSliceManagedBy = "agent.strait.io"
	// AnnotationExportedLabels and AnnotationExportedAnnotations carry the ServiceExport's
	// exportedLabels/exportedAnnotations, which ServiceImport has no field for.
	AnnotationExportedLabels      = "strait.io/exported-labels"
	AnnotationExportedAnnotations = "strait.io/exported-annotations"
	// AnnotationHost carries the Ingress host of an export through an Ingress.
	AnnotationHost = "strait.io/ingress-host"
)

// Name is the name of the records of namespace/name in a member's broker namespace.
func Name(namespace, name string) string { return names.BrokerRecordName(namespace, name) }

// Labels are the labels of the records of namespace/name exported by cluster.
func Labels(cluster, namespace, name string) map[string]string {
	return map[string]string{
		clusterset.ManagedByLabel:        clusterset.ManagedByValue,
		mcsv1beta1.LabelServiceName:      name,
		LabelServiceNamespace:            namespace,
		mcsv1beta1.LabelSourceCluster:    cluster,
		clusterset.ServiceProxyNameLabel: clusterset.RecordsProxyName,
	}
}

// Selector selects the records of namespace/name in any member namespace.
func Selector(namespace, name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{
		clusterset.ManagedByLabel:   clusterset.ManagedByValue,
		mcsv1beta1.LabelServiceName: name,
		LabelServiceNamespace:       namespace,
	})
}

// Key returns the "namespace/name" of the Service a record (ServiceImport or EndpointSlice)
// belongs to, and false for objects that are not records.
func Key(obj metav1.Object) (string, bool) {
	l := obj.GetLabels()
	ns, name := l[LabelServiceNamespace], l[mcsv1beta1.LabelServiceName]
	if ns == "" || name == "" || l[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
		return "", false
	}
	return ns + "/" + name, true
}

// ToServiceImport is the broker record of an export.
func ToServiceImport(memberNamespace string, e mcs.Export) *mcsv1beta1.ServiceImport {
	si := &mcsv1beta1.ServiceImport{
		ObjectMeta: metav1.ObjectMeta{
			Name:      Name(e.Namespace, e.Name),
			Namespace: memberNamespace,
			Labels:    Labels(e.Cluster, e.Namespace, e.Name),
		},
		Spec: mcsv1beta1.ServiceImportSpec{
			Type:                  e.Type,
			Ports:                 e.Ports,
			SessionAffinity:       e.SessionAffinity,
			SessionAffinityConfig: e.SessionAffinityConfig,
			IPFamilies:            e.IPFamilies,
			InternalTrafficPolicy: e.InternalTrafficPolicy,
			TrafficDistribution:   e.TrafficDistribution,
		},
	}
	annotations := map[string]string{}
	if len(e.Labels) > 0 {
		data, _ := json.Marshal(e.Labels)
		annotations[AnnotationExportedLabels] = string(data)
	}
	if len(e.Annotations) > 0 {
		data, _ := json.Marshal(e.Annotations)
		annotations[AnnotationExportedAnnotations] = string(data)
	}
	if e.Host != "" {
		annotations[AnnotationHost] = e.Host
	}
	if len(annotations) > 0 {
		si.Annotations = annotations
	}
	return si
}

// FromServiceImport reads an export back from a broker record. ok is false when the record
// is not in a member namespace or lacks its labels. What cannot be read (a malformed
// annotation) is named in the export's Unreadable, so aggregation drops that member's
// export, and only it.
func FromServiceImport(si *mcsv1beta1.ServiceImport) (e mcs.Export, ok bool) {
	cluster, isMember := clusterset.ClusterIDFromNamespace(si.Namespace)
	_, isRecord := Key(si)
	if !isMember || !isRecord {
		return mcs.Export{}, false
	}
	e = mcs.Export{
		Cluster:               cluster,
		Created:               si.CreationTimestamp.Time,
		Namespace:             si.Labels[LabelServiceNamespace],
		Name:                  si.Labels[mcsv1beta1.LabelServiceName],
		Type:                  si.Spec.Type,
		Ports:                 si.Spec.Ports,
		SessionAffinity:       si.Spec.SessionAffinity,
		SessionAffinityConfig: si.Spec.SessionAffinityConfig,
		IPFamilies:            si.Spec.IPFamilies,
		InternalTrafficPolicy: si.Spec.InternalTrafficPolicy,
		TrafficDistribution:   si.Spec.TrafficDistribution,
		Host:                  si.Annotations[AnnotationHost],
	}
	var problems []string
	for key, into := range map[string]*map[string]string{AnnotationExportedLabels: &e.Labels, AnnotationExportedAnnotations: &e.Annotations} {
		if v := si.Annotations[key]; v != "" {
			if err := json.Unmarshal([]byte(v), into); err != nil {
				problems = append(problems, fmt.Sprintf("annotation %s of record %s/%s is not a JSON object of strings: %v", key, si.Namespace, si.Name, err))
			}
		}
	}
	sort.Strings(problems)
	e.Unreadable = strings.Join(problems, "; ")
	return e, true
}

// SliceName is the name of a member's endpoint record of namespace/name for one address type.
func SliceName(namespace, name string, family discoveryv1.AddressType) string {
	return names.BrokerRecordName(namespace, name+"-"+suffix(family))
}

func suffix(family discoveryv1.AddressType) string {
	switch family {
	case discoveryv1.AddressTypeIPv6:
		return "ipv6"
	case discoveryv1.AddressTypeFQDN:
		return "fqdn"
	}
	return "ipv4"
}

// ReadyEndpoints counts the ready endpoints of slices (a missing condition counts as
// ready, as the EndpointSlice API says).
func ReadyEndpoints(slices []*discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}
