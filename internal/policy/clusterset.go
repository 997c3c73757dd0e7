package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// PolicyKey is the key of the clusterset policy in its ConfigMap
// (strait-clusterset/namespace-policy on the broker, written by the clusterset
// administrator, readable by every member, writable by none).
const PolicyKey = "policy.yaml"

// closedByDefault are the namespaces no member may export into unless the clusterset policy
// names who may: cluster infrastructure, and the namespace readable by anyone.
var closedByDefault = []string{"kube-system", "kube-public"}

// Clusterset is the clusterset-wide namespace policy: which clusters may export into which
// namespaces, and where an import may take a Service's own cluster.local name. Every path
// that imports (MCS, global Services, federation, imports through an Ingress host) asks it.
//
//	# policy.yaml
//	namespaces:                 # a namespace listed here takes exports only from these clusters
//	  payments: [cluster01, cluster02]
//	  kube-system: []           # closed (kube-system and kube-public are closed unless listed)
//	hostImports: [shop]         # namespaces where an export through an Ingress host may
//	                            # become an ExternalName Service of the Service's own name
//
// A namespace not listed takes exports from every member.
type Clusterset struct {
	Namespaces  map[string][]string `json:"namespaces,omitempty"`
	HostImports []string            `json:"hostImports,omitempty"`
}

// ParseClusterset reads the policy from its ConfigMap; nil (no ConfigMap) is the default
// policy. An invalid policy is an error naming the bad value: callers keep what they have
// rather than guess.
func ParseClusterset(cm *corev1.ConfigMap) (Clusterset, error) {
	var p Clusterset
	if cm == nil || strings.TrimSpace(cm.Data[PolicyKey]) == "" {
		return p, nil
	}
	where := fmt.Sprintf("namespace policy %s/%s, key %s", cm.Namespace, cm.Name, PolicyKey)
	if err := yaml.UnmarshalStrict([]byte(cm.Data[PolicyKey]), &p); err != nil {
		return Clusterset{}, fmt.Errorf("%s: %w", where, err)
	}
	for ns, clusters := range p.Namespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return Clusterset{}, fmt.Errorf("%s: namespaces: %q is not a namespace name: %s", where, ns, errs[0])
		}
		for _, c := range clusters {
			if errs := validation.IsDNS1123Label(c); len(errs) > 0 && c != "*" {
				return Clusterset{}, fmt.Errorf("%s: namespaces.%s: %q is not a cluster ID (or \"*\" for every member): %s", where, ns, c, errs[0])
			}
		}
	}
	for _, ns := range p.HostImports {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return Clusterset{}, fmt.Errorf("%s: hostImports: %q is not a namespace name: %s", where, ns, errs[0])
		}
	}
	return p, nil
}

// Allows reports whether cluster may export into namespace, and why not.
func (p Clusterset) Allows(namespace, cluster string) (string, bool) {
	clusters, listed := p.Namespaces[namespace]
	switch {
	case listed && (slices.Contains(clusters, cluster) || slices.Contains(clusters, "*")):
		return "", true
	case listed:
		allowed := slices.Clone(clusters)
		sort.Strings(allowed)
		return fmt.Sprintf("the clusterset's namespace policy lets only [%s] export into namespace %s", strings.Join(allowed, ", "), namespace), false
	case slices.Contains(closedByDefault, namespace):
		return fmt.Sprintf("namespace %s is closed to clusterset exports unless the clusterset's namespace policy names who may export into it", namespace), false
	}
	return "", true
}

// AllowsHostImport reports whether an export through an Ingress host may take the Service's
// own name in namespace (an ExternalName Service of that name in every importer).
func (p Clusterset) AllowsHostImport(namespace string) bool {
	return slices.Contains(p.HostImports, namespace)
}
