package clusterset

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// Member is what the broker records about one member cluster.
type Member struct {
	// ID is the cluster ID (ClusterProperty cluster.clusterset.k8s.io).
	ID string `json:"id"`
	// ClusterSet is the clusterset name (ClusterProperty clusterset.k8s.io).
	ClusterSet string `json:"clusterSet,omitempty"`
	// ClusterUID is the uid of the member's kube-system namespace: a stable identity that
	// tells a cluster re-joining under its ID from another cluster claiming the same ID.
	ClusterUID   string   `json:"clusterUID,omitempty"`
	Region       string   `json:"region,omitempty"`
	Zone         string   `json:"zone,omitempty"`
	PodCIDRs     []string `json:"podCIDRs,omitempty"`
	ServiceCIDRs []string `json:"serviceCIDRs,omitempty"`
	// Namespace is the member's broker namespace.
	Namespace string    `json:"namespace"`
	JoinedAt  time.Time `json:"joinedAt"`
}

// MembershipData is the content of the member's MembershipConfigMap.
func MembershipData(m Member) map[string]string {
	return map[string]string{
		KeyClusterID:    m.ID,
		KeyClusterUID:   m.ClusterUID,
		KeyClusterSet:   m.ClusterSet,
		KeyRegion:       m.Region,
		KeyZone:         m.Zone,
		KeyPodCIDRs:     strings.Join(m.PodCIDRs, ","),
		KeyServiceCIDRs: strings.Join(m.ServiceCIDRs, ","),
		KeyJoinedAt:     m.JoinedAt.UTC().Format(time.RFC3339),
	}
}

// MemberFromConfigMap reads a MembershipConfigMap. The ID must match the namespace, so a
// record can never claim another member's ID.
func MemberFromConfigMap(cm *corev1.ConfigMap) (Member, error) {
	where := cm.Namespace + "/" + cm.Name
	nsID, ok := ClusterIDFromNamespace(cm.Namespace)
	if !ok {
		return Member{}, fmt.Errorf("membership ConfigMap %s is not in a member namespace (%s<cluster ID>)", where, MemberNamespacePrefix)
	}
	d := cm.Data
	if d[KeyClusterID] != nsID {
		return Member{}, fmt.Errorf("membership ConfigMap %s has %s %q, but its namespace belongs to %q", where, KeyClusterID, d[KeyClusterID], nsID)
	}
	m := Member{
		ID: nsID, ClusterUID: d[KeyClusterUID], ClusterSet: d[KeyClusterSet],
		Region: d[KeyRegion], Zone: d[KeyZone], Namespace: cm.Namespace,
	}
	var err error
	if m.PodCIDRs, err = NormalizeCIDRs("pod", []string{d[KeyPodCIDRs]}); err != nil {
		return Member{}, fmt.Errorf("membership ConfigMap %s: %w", where, err)
	}
	if m.ServiceCIDRs, err = NormalizeCIDRs("service", []string{d[KeyServiceCIDRs]}); err != nil {
		return Member{}, fmt.Errorf("membership ConfigMap %s: %w", where, err)
	}
	if s := d[KeyJoinedAt]; s != "" {
		if m.JoinedAt, err = time.Parse(time.RFC3339, s); err != nil {
			return Member{}, fmt.Errorf("membership ConfigMap %s: %s %q is not an RFC 3339 time", where, KeyJoinedAt, s)
		}
	}
	return m, nil
}

// ReadMembers lists the members recorded on the broker, sorted by ID. A malformed record is
// an error rather than a missing member, so callers never act on a partial view.
func ReadMembers(ctx context.Context, broker kubernetes.Interface) ([]Member, error) {
	list, err := broker.CoreV1().ConfigMaps(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", MembershipConfigMap).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing membership ConfigMaps on the broker: %w", err)
	}
	var members []Member
	var errs []error
	for i := range list.Items {
		cm := &list.Items[i]
		if !strings.HasPrefix(cm.Namespace, MemberNamespacePrefix) {
			continue
		}
		m, err := MemberFromConfigMap(cm)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		members = append(members, m)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return members, nil
}
