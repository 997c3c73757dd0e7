package clusterset

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ErrNotMember is returned (wrapped) by Leave for a cluster that is not a member.
var ErrNotMember = errors.New("not a member of the clusterset")

// LeaveOptions says which cluster leaves which broker.
type LeaveOptions struct {
	// Member and Broker are administrator configurations; they may be the same cluster.
	Member, Broker *rest.Config
	// MemberName and BrokerName name the two in messages (their kubeconfig contexts).
	MemberName, BrokerName string
	// ClusterID defaults to the cluster's ClusterProperty, else to the broker record with
	// the cluster's kube-system uid.
	ClusterID string
	// Timeout bounds the wait for the broker namespace to be deleted; zero means
	// DefaultTimeout.
	Timeout time.Duration
}

// LeaveResult is what leave did.
type LeaveResult struct {
	ClusterID string   `json:"clusterID"`
	Broker    string   `json:"broker"`
	Actions   []Action `json:"actions"`
}

// Leave removes a member from the clusterset. On the broker: first its registry record, so
// it stops counting as a member at once; then its identity (ServiceAccount
// strait-clusterset/member-<id>, which voids its tokens) and the Role that let it renew its
// token; then its namespace, with every record it published, so the other members drop its
// endpoints. In the member: its broker credential and its About API ClusterProperty objects.
// The CRDs stay (other software may keep data in them), and so do the clusterset namespace
// and the reader roles all members share, even when the last member leaves. Leave refuses to
// remove a broker record that belongs to another cluster. A member still in the old layout
// (before the registry) is removed as well.
func Leave(ctx context.Context, o LeaveOptions) (*LeaveResult, error) {
	if o.Member == nil || o.Broker == nil {
		return nil, errors.New("leave needs the member's and the broker's client configuration")
	}
	if o.MemberName == "" {
		o.MemberName = "member"
	}
	if o.BrokerName == "" {
		o.BrokerName = "broker"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	member, err := newClients(o.MemberName, o.Member)
	if err != nil {
		return nil, err
	}
	broker, err := newClients(o.BrokerName, o.Broker)
	if err != nil {
		return nil, err
	}
	uid, err := clusterUID(ctx, member.kube)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.MemberName, err)
	}
	localID, _, err := getProperty(ctx, member.dyn, ClusterIDProperty)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.MemberName, err)
	}
	if o.ClusterID != "" && localID != "" && o.ClusterID != localID {
		return nil, fmt.Errorf("%s has cluster ID %q, not %q", o.MemberName, localID, o.ClusterID)
	}
	id := o.ClusterID
	if id == "" {
		id = localID
	}
	if id == "" {
		members, err := ReadMembers(ctx, broker.kube)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.BrokerName, err)
		}
		for _, m := range members {
			if m.ClusterUID == uid {
				id = m.ID
			}
		}
	}
	if id == "" {
		return nil, fmt.Errorf("%s is %w on %s: it has no ClusterProperty %s and the broker has no membership for its kube-system uid %s",
			o.MemberName, ErrNotMember, o.BrokerName, ClusterIDProperty, uid)
	}

	// What exists, and whose it is: the registry record, else the record of the old layout,
	// else the label of the member namespace says.
	core := broker.kube.CoreV1()
	owner := func(cm *corev1.ConfigMap) error {
		if got := cm.Data[KeyClusterUID]; got != uid {
			return fmt.Errorf("cluster ID %q on %s belongs to another cluster (kube-system uid %s, this is %s); not removing it",
				id, o.BrokerName, orUnknown(got), uid)
		}
		return nil
	}
	record, err := core.ConfigMaps(ClustersetNamespace).Get(ctx, RegistryName(id), metav1.GetOptions{})
	registered := err == nil
	switch {
	case registered:
		if err := owner(record); err != nil {
			return nil, err
		}
	case !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%s: reading %s/%s: %w", o.BrokerName, ClustersetNamespace, RegistryName(id), err)
	}
	nsName := MemberNamespace(id)
	ns, err := core.Namespaces().Get(ctx, nsName, metav1.GetOptions{})
	nsExists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: reading namespace %s: %w", o.BrokerName, nsName, err)
	}
	if nsExists && !registered {
		cm, err := core.ConfigMaps(nsName).Get(ctx, legacyMembershipConfigMap, metav1.GetOptions{})
		switch {
		case err == nil:
			if err := owner(cm); err != nil {
				return nil, err
			}
		case apierrors.IsNotFound(err) && ns.Labels[ManagedByLabel] != ManagedByValue:
			return nil, fmt.Errorf("namespace %s on %s was not created by strait; not removing it", nsName, o.BrokerName)
		case !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("%s: reading %s/%s: %w", o.BrokerName, nsName, legacyMembershipConfigMap, err)
		}
	}
	_, err = member.kube.CoreV1().Secrets(SystemNamespace).Get(ctx, BrokerSecretName, metav1.GetOptions{})
	secretExists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: reading Secret %s/%s: %w", o.MemberName, SystemNamespace, BrokerSecretName, err)
	}
	if !registered && !nsExists && !secretExists && localID == "" {
		return nil, fmt.Errorf("%s is %w on %s: there is no record %s/%s and no namespace %s on the broker, no Secret %s/%s and no ClusterProperty %s",
			o.MemberName, ErrNotMember, o.BrokerName, ClustersetNamespace, RegistryName(id), nsName, SystemNamespace, BrokerSecretName, ClusterIDProperty)
	}

	res := &LeaveResult{ClusterID: id, Broker: o.BrokerName, Actions: []Action{}}
	deleted := func(cluster, kind, namespace, name string, err error) error {
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("deleting %s %s in %s: %w", kind, strings.TrimPrefix(namespace+"/"+name, "/"), cluster, err)
		}
		res.Actions = append(res.Actions, Action{Cluster: cluster, Verb: Deleted, Kind: kind, Namespace: namespace, Name: name})
		return nil
	}

	// The broker first, the record before anything else: from then on the member does not
	// count, and the member keeps its credential until the broker is done, so a failed leave
	// can be run again.
	rbac := broker.kube.RbacV1()
	if registered {
		uid := record.UID
		if err := deleted(o.BrokerName, "ConfigMap", ClustersetNamespace, RegistryName(id),
			core.ConfigMaps(ClustersetNamespace).Delete(ctx, RegistryName(id), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})); err != nil {
			return res, err
		}
	}
	if err := deleted(o.BrokerName, "ServiceAccount", ClustersetNamespace, RegistryName(id),
		core.ServiceAccounts(ClustersetNamespace).Delete(ctx, RegistryName(id), metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	if err := deleted(o.BrokerName, "RoleBinding", ClustersetNamespace, MemberTokenRole(id),
		rbac.RoleBindings(ClustersetNamespace).Delete(ctx, MemberTokenRole(id), metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	if err := deleted(o.BrokerName, "Role", ClustersetNamespace, MemberTokenRole(id),
		rbac.Roles(ClustersetNamespace).Delete(ctx, MemberTokenRole(id), metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	if nsExists {
		if err := deleted(o.BrokerName, "Namespace", "", nsName,
			core.Namespaces().Delete(ctx, nsName, metav1.DeleteOptions{})); err != nil {
			return res, err
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, o.Timeout, true, func(ctx context.Context) (bool, error) {
			_, err := core.Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}); err != nil {
			return res, fmt.Errorf("namespace %s on %s was not deleted within %s; run leave again: %w", nsName, o.BrokerName, o.Timeout, err)
		}
	}
	// A member of the old layout had a ClusterRoleBinding of its own.
	if err := deleted(o.BrokerName, "ClusterRoleBinding", "", legacyReaderBinding(id),
		rbac.ClusterRoleBindings().Delete(ctx, legacyReaderBinding(id), metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	j := &journal{}
	if err := releaseLegacyReaderRole(ctx, j, o.BrokerName, broker.kube); err != nil {
		return res, err
	}
	res.Actions = append(res.Actions, j.actions...)

	if err := deleted(o.MemberName, "Secret", SystemNamespace, BrokerSecretName,
		member.kube.CoreV1().Secrets(SystemNamespace).Delete(ctx, BrokerSecretName, metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	for _, name := range []string{ClusterIDProperty, ClusterSetProperty} {
		if err := deleted(o.MemberName, "ClusterProperty", "", name,
			member.dyn.Resource(ClusterPropertyGVR).Delete(ctx, name, metav1.DeleteOptions{})); err != nil {
			return res, err
		}
	}
	return res, nil
}

// releaseLegacyReaderRole settles ClusterRole strait-member-reader once no member of the old
// layout uses it: with its old, wide rules it is brought to the new ones and bound to the
// members' group when the broker holds the new layout (the join that would have done it
// migrated a member that left since), and deleted otherwise, as the old leave did for the
// last member. The new ClusterRole is never deleted.
func releaseLegacyReaderRole(ctx context.Context, j *journal, cluster string, kube kubernetes.Interface) error {
	legacy, err := legacyReaderBindings(ctx, kube)
	if err != nil || len(legacy) > 0 {
		return err
	}
	role, err := kube.RbacV1().ClusterRoles().Get(ctx, legacyReaderClusterRole, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: reading ClusterRole %s: %w", cluster, legacyReaderClusterRole, err)
	}
	if role.Labels[ManagedByLabel] != ManagedByValue || reflect.DeepEqual(role.Rules, readerClusterRole().Rules) {
		return nil
	}
	_, err = kube.CoreV1().Namespaces().Get(ctx, ClustersetNamespace, metav1.GetOptions{})
	switch {
	case err == nil:
		return ensureClusterReader(ctx, j, cluster, kube)
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("%s: reading namespace %s: %w", cluster, ClustersetNamespace, err)
	}
	uid := role.UID
	err = kube.RbacV1().ClusterRoles().Delete(ctx, legacyReaderClusterRole, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("deleting ClusterRole %s in %s: %w", legacyReaderClusterRole, cluster, err)
	}
	j.record(Action{Cluster: cluster, Verb: Deleted, Kind: "ClusterRole", Name: legacyReaderClusterRole}, nil)
	return nil
}
