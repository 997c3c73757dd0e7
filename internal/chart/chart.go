// Package chart renders Strait's embedded Helm chart (charts/strait) in-process with Helm's
// own loader, schema validation and template engine, so what `strait join --install`
// applies and what config/ holds are exactly what `helm install` would create.
package chart

import (
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/charts"
)

// Namespace is the only namespace the chart installs into: `strait join` stores the broker
// credential the agent reads there.
const Namespace = "strait-system"

// ReleaseName is the Helm release name Render uses; Strait's object names do not depend on it.
const ReleaseName = "strait"

// Load loads the embedded chart.
func Load() (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(charts.Strait, "strait", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(charts.Strait, p)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(p, "strait/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the embedded chart: %w", err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("loading the embedded chart: %w", err)
	}
	return c, nil
}

// Manifest is one rendered file of the chart: a CRD from crds/ or a template's output.
type Manifest struct {
	// Name is the file's path in the chart, e.g. crds/strait.io_externalservices.yaml or
	// templates/agent.yaml.
	Name string
	// Content is the YAML as rendered, comments included; it may hold several objects.
	Content string
}

// RenderManifests validates values against the chart's values.schema.json and renders the
// chart into namespace: the CRDs first, then every template that renders to something, in
// file name order. An invalid value is refused with Helm's error, which names it.
func RenderManifests(values map[string]any, namespace string) ([]Manifest, error) {
	c, err := Load()
	if err != nil {
		return nil, err
	}
	if values == nil {
		values = map[string]any{}
	}
	opts := chartutil.ReleaseOptions{Name: ReleaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(c, values, opts, chartutil.DefaultCapabilities)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c.Name(), err)
	}
	files, err := engine.Render(c, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", c.Name(), err)
	}
	var out []Manifest
	for _, crd := range c.CRDObjects() {
		out = append(out, Manifest{Name: strings.TrimPrefix(crd.Filename, c.Name()+"/"), Content: string(crd.File.Data)})
	}
	names := make([]string, 0, len(files))
	for name, content := range files {
		if path.Ext(name) != ".yaml" || strings.TrimSpace(content) == "" {
			continue // _helpers.tpl, NOTES.txt, templates switched off
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		out = append(out, Manifest{Name: strings.TrimPrefix(name, c.Name()+"/"), Content: files[name]})
	}
	return out, nil
}

// Render validates values (nil: the defaults) against the chart's schema, renders the chart
// into namespace and returns its objects in the order to apply them: the CRDs first, then
// the rest in Helm's install order (Namespaces, ServiceAccounts, RBAC, ..., Deployments).
// An invalid value is refused with Helm's error, which names the value and what is valid;
// nothing is rendered then.
func Render(values map[string]any, namespace string) ([]*unstructured.Unstructured, error) {
	manifests, err := RenderManifests(values, namespace)
	if err != nil {
		return nil, err
	}
	var crds []*unstructured.Unstructured
	templates := map[string]string{}
	for _, m := range manifests {
		if strings.HasPrefix(m.Name, "crds/") {
			objs, err := decode(m.Name, m.Content)
			if err != nil {
				return nil, err
			}
			crds = append(crds, objs...)
			continue
		}
		templates[m.Name] = m.Content
	}
	hooks, sorted, err := releaseutil.SortManifests(templates, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("sorting the chart's objects: %w", err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("the chart has hook %s, which Render cannot run", hooks[0].Path)
	}
	out := crds
	for _, m := range sorted {
		objs, err := decode(m.Name, m.Content)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if o.GetNamespace() == "" && namespaced(o) {
				o.SetNamespace(namespace)
			}
		}
		out = append(out, objs...)
	}
	return out, nil
}

// decode parses the objects of one rendered file.
func decode(name, content string) ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for i, doc := range releaseutil.SplitManifests(content) {
		if len(bytes.TrimSpace([]byte(doc))) == 0 {
			continue
		}
		data, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("chart file %s, %s: %w", name, i, err)
		}
		if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
			continue // only comments
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("chart file %s, %s: %w", name, i, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// clusterScoped are the kinds the chart renders that have no namespace.
var clusterScoped = map[string]bool{
	"Namespace": true, "CustomResourceDefinition": true, "ClusterRole": true, "ClusterRoleBinding": true,
}

func namespaced(o *unstructured.Unstructured) bool { return !clusterScoped[o.GetKind()] }

// rbacKinds are the kinds that make up a ServiceAccount's rights.
var rbacKinds = map[string]bool{"ServiceAccount": true, "ClusterRole": true, "ClusterRoleBinding": true, "Role": true, "RoleBinding": true}

// RBAC renders the chart with values and returns only what gives one of its ServiceAccounts
// (strait-agent, strait-dns, strait-federation-controller) its rights: the ServiceAccount
// and the roles and bindings named after it, in the order to apply them. The lab runs its
// in-process agents under exactly these rights, so the chart's RBAC is what every lab test
// exercises.
func RBAC(values map[string]any, serviceAccount string) ([]*unstructured.Unstructured, error) {
	objs, err := Render(values, Namespace)
	if err != nil {
		return nil, err
	}
	var out []*unstructured.Unstructured
	for _, o := range objs {
		if rbacKinds[o.GetKind()] && strings.HasPrefix(o.GetName(), serviceAccount) {
			out = append(out, o)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("the chart with values %v renders no ServiceAccount, role or binding named %s", values, serviceAccount)
	}
	return out, nil
}

// AgentServiceAccount is the agent's ServiceAccount in the chart.
const AgentServiceAccount = "strait-agent"

// ServiceAccountUser is the user name the API server gives a pod of the chart's
// ServiceAccount, which RBAC matches against the bindings' ServiceAccount subjects.
func ServiceAccountUser(serviceAccount string) string {
	return "system:serviceaccount:" + Namespace + ":" + serviceAccount
}
