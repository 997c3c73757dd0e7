// Package v1alpha1 holds Strait's own API types, group strait.io, version v1alpha1. It has
// only what no standard API covers: ExternalService, which maps outside services (a
// database by IP, a host behind an Ingress) to a local Service name. The CRD manifest in
// charts/strait/crds (copied to config/crd by `make manifests`) and the deepcopy functions
// are generated from these types by controller-gen.
//
// +kubebuilder:object:generate=true
// +groupName=strait.io
package v1alpha1

//go:generate go run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.19.0 object paths=./... crd:maxDescLen=400 output:crd:dir=../../charts/strait/crds
