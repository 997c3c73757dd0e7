package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Group and Version of Strait's own API.
const (
	Group   = "strait.io"
	Version = "v1alpha1"
)

// GroupVersion is strait.io/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: Group, Version: Version}

// Resource returns a resource of this group and version, e.g. Resource("externalservices").
func Resource(resource string) schema.GroupVersionResource {
	return GroupVersion.WithResource(resource)
}

// AddToScheme registers the types of strait.io/v1alpha1, and the meta types clients send
// with them (ListOptions, DeleteOptions, ...), in a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &ExternalService{}, &ExternalServiceList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
