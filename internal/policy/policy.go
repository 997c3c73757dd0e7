// Package policy decides which namespaces may take part in the clusterset. Exports from
// kube-system and default are refused unless the namespace says otherwise, and a namespace
// can name the clusters allowed to export into it: each importing cluster enforces that list
// itself, so a compromised member cannot join its endpoints to another team's Service.
package policy

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	corelisters "k8s.io/client-go/listers/core/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Namespace annotations.
const (
	// AnnotationAllowExport: "true" on kube-system or default allows exports from them.
	AnnotationAllowExport = "strait.io/allow-export"
	// AnnotationAllowedClusters: a comma-separated list of cluster IDs whose exports this
	// cluster imports into the namespace; absent means every member.
	AnnotationAllowedClusters = "strait.io/allowed-clusters"
)

// ReasonNamespaceNotAllowed is the Valid=False reason of an export from a refused namespace.
const ReasonNamespaceNotAllowed mcsv1beta1.ServiceExportConditionReason = "NamespaceNotAllowed"

// restricted namespaces hold cluster infrastructure; exporting from them is an accident more
// often than not.
var restricted = map[string]bool{"kube-system": true, "default": true}

// Export decides whether a Service of namespace may be exported, given the namespace object
// (nil if unknown). The message says why not, and how to allow it.
func Export(namespace string, ns *corev1.Namespace) (string, bool) {
	if !restricted[namespace] {
		return "", true
	}
	if ns != nil && ns.Annotations[AnnotationAllowExport] == "true" {
		return "", true
	}
	return fmt.Sprintf("exports from namespace %s are refused; annotate the namespace %s=\"true\" to allow them",
		namespace, AnnotationAllowExport), false
}

// Import decides whether this cluster imports cluster's export into namespace.
func Import(namespace, cluster string, ns *corev1.Namespace) (string, bool) {
	if restricted[namespace] && (ns == nil || ns.Annotations[AnnotationAllowExport] != "true") {
		return fmt.Sprintf("namespace %s does not allow clusterset Services (annotation %s)", namespace, AnnotationAllowExport), false
	}
	if ns == nil {
		return "", true
	}
	list, ok := ns.Annotations[AnnotationAllowedClusters]
	if !ok {
		return "", true
	}
	for _, c := range strings.Split(list, ",") {
		if strings.TrimSpace(c) == cluster {
			return "", true
		}
	}
	return fmt.Sprintf("cluster %s is not in the %s annotation of namespace %s (%q)", cluster, AnnotationAllowedClusters, namespace, list), false
}

// ExportAllowed looks the namespace up and applies Export.
func ExportAllowed(namespaces corelisters.NamespaceLister, namespace string) (string, bool) {
	ns, err := namespaces.Get(namespace)
	if err != nil && !apierrors.IsNotFound(err) {
		ns = nil
	}
	return Export(namespace, ns)
}
