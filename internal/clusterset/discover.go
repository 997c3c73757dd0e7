package clusterset

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// facts is what join learns about a member cluster from its API.
type facts struct {
	// ClusterUID is the uid of the kube-system namespace.
	ClusterUID   string
	PodCIDRs     []string
	ServiceCIDRs []string
	Region, Zone string
}

// discover reads the member's identity and, unless given, its CIDRs and topology. Only what
// is missing is looked up, so a cluster whose API lacks ServiceCIDR objects can still join
// with --service-cidr.
func discover(ctx context.Context, cs kubernetes.Interface, given facts) (facts, error) {
	f := given
	var err error
	if f.ClusterUID, err = clusterUID(ctx, cs); err != nil {
		return f, err
	}
	if len(f.PodCIDRs) == 0 || f.Region == "" || f.Zone == "" {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return f, fmt.Errorf("listing nodes for pod CIDRs and topology: %w", err)
		}
		if len(f.PodCIDRs) == 0 {
			f.PodCIDRs = PodCIDRsFromNodes(nodes.Items)
		}
		region, zone := TopologyFromNodes(nodes.Items)
		if f.Region == "" {
			f.Region = region
		}
		if f.Zone == "" {
			f.Zone = zone
		}
	}
	if len(f.ServiceCIDRs) == 0 {
		list, err := cs.NetworkingV1().ServiceCIDRs().List(ctx, metav1.ListOptions{})
		if err != nil {
			return f, fmt.Errorf("listing ServiceCIDRs (networking.k8s.io/v1) for the service CIDRs; pass --service-cidr if the cluster does not serve them: %w", err)
		}
		f.ServiceCIDRs = ServiceCIDRsFrom(list.Items)
	}
	return f, nil
}

// clusterUID is the uid of the kube-system namespace: it lives as long as the cluster and
// is unique to it.
func clusterUID(ctx context.Context, cs kubernetes.Interface) (string, error) {
	ns, err := cs.CoreV1().Namespaces().Get(ctx, metav1.NamespaceSystem, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("reading the kube-system namespace, the cluster's identity: %w", err)
	}
	return string(ns.UID), nil
}

// PodCIDRsFromNodes is the union of the nodes' pod CIDRs.
func PodCIDRsFromNodes(nodes []corev1.Node) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, n.Spec.PodCIDRs...)
		if len(n.Spec.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
			out = append(out, n.Spec.PodCIDR)
		}
	}
	return out
}

// ServiceCIDRsFrom is the union of the ServiceCIDR objects' ranges, except those being
// deleted.
func ServiceCIDRsFrom(list []networkingv1.ServiceCIDR) []string {
	var out []string
	for _, s := range list {
		if s.DeletionTimestamp == nil {
			out = append(out, s.Spec.CIDRs...)
		}
	}
	return out
}

// TopologyFromNodes returns the region and zone most nodes carry in their
// topology.kubernetes.io labels (ties go to the first name in order), or empty strings.
func TopologyFromNodes(nodes []corev1.Node) (region, zone string) {
	pick := func(label string) string {
		counts := map[string]int{}
		for _, n := range nodes {
			if v := n.Labels[label]; v != "" {
				counts[v]++
			}
		}
		values := make([]string, 0, len(counts))
		for v := range counts {
			values = append(values, v)
		}
		slices.SortFunc(values, func(a, b string) int {
			if counts[a] != counts[b] {
				return counts[b] - counts[a]
			}
			return strings.Compare(a, b)
		})
		if len(values) == 0 {
			return ""
		}
		return values[0]
	}
	return pick(corev1.LabelTopologyRegion), pick(corev1.LabelTopologyZone)
}
