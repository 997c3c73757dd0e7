// Package crd holds the CustomResourceDefinitions Strait installs (the About API
// ClusterProperty, the Multi-Cluster Services API ServiceExport and ServiceImport, and
// Strait's own ExternalService), both as kustomize resources for real clusters and embedded
// for `strait join` and the lab, so the two never differ.
package crd

import _ "embed" // the manifests are embedded

var (
	// ClusterPropertyCRD is clusterproperties.about.k8s.io (KEP-2149, v1alpha1).
	//go:embed about.k8s.io_clusterproperties.yaml
	ClusterPropertyCRD []byte
	// ServiceExportCRD is serviceexports.multicluster.x-k8s.io from sigs.k8s.io/mcs-api.
	//go:embed multicluster.x-k8s.io_serviceexports.yaml
	ServiceExportCRD []byte
	// ServiceImportCRD is serviceimports.multicluster.x-k8s.io from sigs.k8s.io/mcs-api.
	//go:embed multicluster.x-k8s.io_serviceimports.yaml
	ServiceImportCRD []byte
	// ExternalServiceCRD is externalservices.strait.io, generated from api/v1alpha1 by
	// controller-gen (go generate ./api/...).
	//go:embed strait.io_externalservices.yaml
	ExternalServiceCRD []byte
)

// All lists the definitions in the order they are installed.
func All() [][]byte {
	return [][]byte{ClusterPropertyCRD, ServiceExportCRD, ServiceImportCRD, ExternalServiceCRD}
}
