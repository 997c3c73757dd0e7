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

// MemberFromRegistry reads a member's registry ConfigMap (RegistryName(id) in
// ClustersetNamespace). The ID in it must match its name, so a record can never claim
// another member's ID.
func MemberFromRegistry(cm *corev1.ConfigMap) (Member, error) {
	where := cm.Namespace + "/" + cm.Name
	nsID, ok := ClusterIDFromRegistryName(cm.Name)
	if cm.Namespace != ClustersetNamespace || !ok || ValidateClusterID(nsID) != nil {
		return Member{}, fmt.Errorf("ConfigMap %s is not a membership record (%s/%s<cluster ID>)", where, ClustersetNamespace, RegistryPrefix)
	}
	d := cm.Data
	if d[KeyClusterID] != nsID {
		return Member{}, fmt.Errorf("membership record %s has %s %q, but its name belongs to %q", where, KeyClusterID, d[KeyClusterID], nsID)
	}
	m := Member{
		ID: nsID, ClusterUID: d[KeyClusterUID], ClusterSet: d[KeyClusterSet],
		Region: d[KeyRegion], Zone: d[KeyZone], Namespace: MemberNamespace(nsID),
	}
	var err error
	if m.PodCIDRs, err = NormalizeCIDRs("pod", []string{d[KeyPodCIDRs]}); err != nil {
		return Member{}, fmt.Errorf("membership record %s: %w", where, err)
	}
	if m.ServiceCIDRs, err = NormalizeCIDRs("service", []string{d[KeyServiceCIDRs]}); err != nil {
		return Member{}, fmt.Errorf("membership record %s: %w", where, err)
	}
	if s := d[KeyJoinedAt]; s != "" {
		if m.JoinedAt, err = time.Parse(time.RFC3339, s); err != nil {
			return Member{}, fmt.Errorf("membership record %s: %s %q is not an RFC 3339 time", where, KeyJoinedAt, s)
		}
	}
	return m, nil
}

// IsRegistryRecord reports whether a ConfigMap is a membership record (it may still be
// malformed: MemberFromRegistry says).
func IsRegistryRecord(cm *corev1.ConfigMap) bool {
	_, ok := ClusterIDFromRegistryName(cm.Name)
	return ok && cm.Namespace == ClustersetNamespace
}

// MembersFromRegistry reads the membership records among cms, sorted by ID. A malformed
// record is an error rather than a missing member, so callers never act on a partial view.
func MembersFromRegistry(cms []*corev1.ConfigMap) ([]Member, error) {
	var members []Member
	var errs []error
	for _, cm := range cms {
		if !IsRegistryRecord(cm) {
			continue
		}
		m, err := MemberFromRegistry(cm)
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

// ReadMembers lists the members of the broker's registry, sorted by ID (see
// MembersFromRegistry).
func ReadMembers(ctx context.Context, broker kubernetes.Interface) ([]Member, error) {
	list, err := broker.CoreV1().ConfigMaps(ClustersetNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the membership registry %s on the broker: %w", ClustersetNamespace, err)
	}
	cms := make([]*corev1.ConfigMap, len(list.Items))
	for i := range list.Items {
		cms[i] = &list.Items[i]
	}
	return MembersFromRegistry(cms)
}
