package clusterset

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/config/crd"
)

// crdGVR is the resource of CustomResourceDefinitions. They are handled as unstructured
// objects, which spares a dependency on the apiextensions module for three manifests.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// manifestDigestAnnotation records which manifest strait installed, so re-running join
// updates a definition only when the manifest changed.
const manifestDigestAnnotation = "strait.io/manifest-sha256"

// definition is a CRD strait installs and the versions the clusterset needs it to serve.
type definition struct {
	manifest []byte
	versions []string
}

var (
	aboutDefinition = definition{crd.ClusterPropertyCRD, []string{AboutVersion}}
	// Stock CoreDNS reads ServiceImports through v1alpha1; Strait uses v1beta1.
	mcsDefinitions = []definition{
		{crd.ServiceExportCRD, []string{"v1alpha1", "v1beta1"}},
		{crd.ServiceImportCRD, []string{"v1alpha1", "v1beta1"}},
	}
)

// desiredCRD parses a manifest and marks it as strait's.
func desiredCRD(d definition) (*unstructured.Unstructured, error) {
	data, err := yaml.YAMLToJSON(d.manifest)
	if err != nil {
		return nil, err
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(d.manifest)
	l := obj.GetLabels()
	if l == nil {
		l = map[string]string{}
	}
	l[ManagedByLabel] = ManagedByValue
	obj.SetLabels(l)
	a := obj.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[manifestDigestAnnotation] = hex.EncodeToString(sum[:])
	obj.SetAnnotations(a)
	return obj, nil
}

// reconcileCRD updates definitions strait installed when the manifest changed. A definition
// installed by someone else is left alone if it serves the versions the clusterset needs.
func reconcileCRD(versions []string) reconcileFunc[*unstructured.Unstructured] {
	return func(existing, desired *unstructured.Unstructured) (bool, error) {
		if existing.GetLabels()[ManagedByLabel] != ManagedByValue {
			if missing := missingVersions(existing, versions); len(missing) > 0 {
				return false, fmt.Errorf("it was not installed by strait and does not serve %s; upgrade it (sigs.k8s.io/mcs-api v0.5.2 or later, about.k8s.io %s) or delete it",
					strings.Join(missing, ", "), AboutVersion)
			}
			return false, errKeep

		}
		if existing.GetAnnotations()[manifestDigestAnnotation] == desired.GetAnnotations()[manifestDigestAnnotation] {
			return false, nil
		}
		existing.Object["spec"] = desired.Object["spec"]
		return true, nil
	}
}

// missingVersions lists versions the definition does not serve.
func missingVersions(obj *unstructured.Unstructured, want []string) []string {
	list, _, _ := unstructured.NestedSlice(obj.Object, "spec", "versions")
	var served []string
	for _, v := range list {
		m, _ := v.(map[string]any)
		if ok, _ := m["served"].(bool); ok {
			name, _ := m["name"].(string)
			served = append(served, name)
		}
	}
	var missing []string
	for _, v := range want {
		if !slices.Contains(served, v) {
			missing = append(missing, v)
		}
	}
	return missing
}

// installCRDs ensures the definitions and waits until the API server serves them.
func installCRDs(ctx context.Context, j *journal, cluster string, dyn dynamic.Interface, defs []definition, timeout time.Duration) error {
	client := dynamicClient{dyn.Resource(crdGVR)}
	var names []string
	for _, d := range defs {
		desired, err := desiredCRD(d)
		if err != nil {
			return fmt.Errorf("embedded CRD manifest: %w", err)
		}
		if desired.GetLabels()[ManagedByLabel] != ManagedByValue {
			return fmt.Errorf("embedded CRD %s lacks the managed-by label", desired.GetName())
		}
		if _, err := ensure(ctx, j, cluster, "CustomResourceDefinition", client, desired, reconcileCRD(d.versions)); err != nil {
			return err
		}
		names = append(names, desired.GetName())
	}
	for _, name := range names {
		if err := waitEstablished(ctx, dyn, name, timeout); err != nil {
			return fmt.Errorf("CustomResourceDefinition %s in %s: %w", name, cluster, err)
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, dyn dynamic.Interface, name string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		obj, err := dynamicClient{dyn.Resource(crdGVR)}.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
		established, accepted := false, false
		for _, c := range conds {
			m, _ := c.(map[string]any)
			switch m["type"] {
			case "Established":
				established = m["status"] == "True"
			case "NamesAccepted":
				accepted = m["status"] == "True"
				if !accepted {
					last, _ = m["message"].(string)
				}
			}
		}
		return established && accepted, nil
	})
	if err != nil {
		return fmt.Errorf("not established within %s (%s): %w", timeout, last, err)
	}
	return nil
}
