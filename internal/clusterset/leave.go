package clusterset

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
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

// Leave removes a member from the clusterset: on the broker its namespace (with every record
// it published, so the other members drop its endpoints) and its ClusterRoleBinding; in the
// member its broker credential and its About API ClusterProperty objects. The CRDs stay:
// other software may keep data in them. Leave refuses to remove a broker record that
// belongs to another cluster.
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

	// What exists, and whose it is.
	nsName := MemberNamespace(id)
	ns, err := broker.kube.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
	nsExists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: reading namespace %s: %w", o.BrokerName, nsName, err)
	}
	if nsExists {
		cm, err := broker.kube.CoreV1().ConfigMaps(nsName).Get(ctx, legacyMembershipConfigMap, metav1.GetOptions{})
		switch {
		case err == nil && cm.Data[KeyClusterUID] != uid:
			return nil, fmt.Errorf("cluster ID %q on %s belongs to another cluster (kube-system uid %s, this is %s); not removing it",
				id, o.BrokerName, orUnknown(cm.Data[KeyClusterUID]), uid)
		case apierrors.IsNotFound(err) && ns.Labels[ManagedByLabel] != ManagedByValue:
			return nil, fmt.Errorf("namespace %s on %s was not created by strait; not removing it", nsName, o.BrokerName)
		case err != nil && !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("%s: reading %s/%s: %w", o.BrokerName, nsName, legacyMembershipConfigMap, err)
		}
	}
	_, err = member.kube.CoreV1().Secrets(SystemNamespace).Get(ctx, BrokerSecretName, metav1.GetOptions{})
	secretExists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("%s: reading Secret %s/%s: %w", o.MemberName, SystemNamespace, BrokerSecretName, err)
	}
	if !nsExists && !secretExists && localID == "" {
		return nil, fmt.Errorf("%s is %w on %s: there is no namespace %s on the broker, no Secret %s/%s and no ClusterProperty %s",
			o.MemberName, ErrNotMember, o.BrokerName, nsName, SystemNamespace, BrokerSecretName, ClusterIDProperty)
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

	// The broker first: once its namespace is gone the other members drop this member's
	// endpoints, and the member keeps its credential until then, so a failed leave can be
	// run again.
	rbac := broker.kube.RbacV1()
	if err := deleted(o.BrokerName, "ClusterRoleBinding", "", legacyReaderBinding(id),
		rbac.ClusterRoleBindings().Delete(ctx, legacyReaderBinding(id), metav1.DeleteOptions{})); err != nil {
		return res, err
	}
	if nsExists {
		if err := deleted(o.BrokerName, "Namespace", "", nsName,
			broker.kube.CoreV1().Namespaces().Delete(ctx, nsName, metav1.DeleteOptions{})); err != nil {
			return res, err
		}
		if err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, o.Timeout, true, func(ctx context.Context) (bool, error) {
			_, err := broker.kube.CoreV1().Namespaces().Get(ctx, nsName, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		}); err != nil {
			return res, fmt.Errorf("namespace %s on %s was not deleted within %s; run leave again: %w", nsName, o.BrokerName, o.Timeout, err)
		}
	}
	// The reader role is shared; the last member to leave removes it.
	bindings, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return res, fmt.Errorf("%s: listing ClusterRoleBindings: %w", o.BrokerName, err)
	}
	inUse := false
	for _, b := range bindings.Items {
		if b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == legacyReaderClusterRole {
			inUse = true
		}
	}
	if !inUse {
		if err := deleted(o.BrokerName, "ClusterRole", "", legacyReaderClusterRole,
			rbac.ClusterRoles().Delete(ctx, legacyReaderClusterRole, metav1.DeleteOptions{})); err != nil {
			return res, err
		}
	}

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
