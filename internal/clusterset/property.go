package clusterset

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// The About API (KEP-2149).
const (
	AboutGroup   = "about.k8s.io"
	AboutVersion = "v1alpha1"
	// ClusterIDProperty holds the cluster ID.
	ClusterIDProperty = "cluster.clusterset.k8s.io"
	// ClusterSetProperty holds the name of the clusterset the cluster belongs to.
	ClusterSetProperty = "clusterset.k8s.io"
)

// ClusterPropertyGVR is the resource of ClusterProperty objects.
var ClusterPropertyGVR = schema.GroupVersionResource{Group: AboutGroup, Version: AboutVersion, Resource: "clusterproperties"}

// ErrNoClusterID is returned (wrapped) by LocalClusterID when the cluster has no ID.
var ErrNoClusterID = errors.New("cluster has no cluster ID")

// LocalClusterID returns the cluster's ID from its ClusterProperty cluster.clusterset.k8s.io.
func LocalClusterID(ctx context.Context, dyn dynamic.Interface) (string, error) {
	id, found, err := getProperty(ctx, dyn, ClusterIDProperty)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("%w: ClusterProperty %s not found; run strait join", ErrNoClusterID, ClusterIDProperty)
	}
	if err := ValidateClusterID(id); err != nil {
		return "", fmt.Errorf("ClusterProperty %s: %w", ClusterIDProperty, err)
	}
	return id, nil
}

// getProperty reads a ClusterProperty value; a missing object or a missing CRD is not found.
func getProperty(ctx context.Context, dyn dynamic.Interface, name string) (string, bool, error) {
	obj, err := dyn.Resource(ClusterPropertyGVR).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading ClusterProperty %s: %w", name, err)
	}
	value, _, _ := unstructured.NestedString(obj.Object, "spec", "value")
	return value, value != "", nil
}

// clusterProperty is the desired ClusterProperty object.
func clusterProperty(name, value, id string) *unstructured.Unstructured {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": AboutGroup + "/" + AboutVersion,
		"kind":       "ClusterProperty",
		"spec":       map[string]any{"value": value},
	}}
	obj.SetName(name)
	obj.SetLabels(labels(id))
	return obj
}
