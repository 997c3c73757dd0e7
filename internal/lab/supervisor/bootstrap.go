package supervisor

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	discoveryv1ac "k8s.io/client-go/applyconfigurations/discovery/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// fieldManager owns what the lab writes into its clusters.
const fieldManager = "strait-lab"

// ManagedBy is the endpointslice.kubernetes.io/managed-by value of slices the lab writes, so
// the endpointslice controller leaves them alone.
const ManagedBy = "lab.strait.io"

// DNSServiceName is the conventional name of the cluster DNS Service.
const DNSServiceName = "kube-dns"

// bootstrap writes what a cluster needs beyond what the API server creates itself: RBAC for
// CoreDNS, for the API server towards the kubelets and for the lab's responder pods, and the
// kube-dns Service whose endpoint is the CoreDNS that listens on the node address.
// Everything is server-side applied, so it is safe to repeat.
func bootstrap(ctx context.Context, cs kubernetes.Interface, c plan.Cluster) error {
	apply := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	rbac := cs.RbacV1()
	roles := []*rbacv1ac.ClusterRoleApplyConfiguration{
		rbacv1ac.ClusterRole("system:coredns").WithRules(
			rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("endpoints", "services", "pods", "namespaces").WithVerbs("list", "watch"),
			rbacv1ac.PolicyRule().WithAPIGroups("discovery.k8s.io").WithResources("endpointslices").WithVerbs("list", "watch"),
			rbacv1ac.PolicyRule().WithAPIGroups("multicluster.x-k8s.io").WithResources("serviceimports").WithVerbs("list", "watch"),
		),
	}
	users := map[string]string{"system:coredns": "system:coredns"}
	for _, role := range roles {
		if _, err := rbac.ClusterRoles().Apply(ctx, role, apply); err != nil {
			return fmt.Errorf("applying ClusterRole %s: %w", *role.Name, err)
		}
		binding := rbacv1ac.ClusterRoleBinding(*role.Name).
			WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(*role.Name)).
			WithSubjects(rbacv1ac.Subject().WithAPIGroup("rbac.authorization.k8s.io").WithKind("User").WithName(users[*role.Name]))
		if _, err := rbac.ClusterRoleBindings().Apply(ctx, binding, apply); err != nil {
			return fmt.Errorf("applying ClusterRoleBinding %s: %w", *role.Name, err)
		}
	}
	// The API server's client identity towards the kubelets gets the built-in role for
	// that (logs, exec, port-forward, metrics), as kubeadm binds it.
	kubeletAPI := rbacv1ac.ClusterRoleBinding("strait-lab:kubelet-api-admin").
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName("system:kubelet-api-admin")).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup("rbac.authorization.k8s.io").WithKind("User").WithName(state.KubeletClientUser))
	if _, err := rbac.ClusterRoleBindings().Apply(ctx, kubeletAPI, apply); err != nil {
		return fmt.Errorf("applying ClusterRoleBinding %s: %w", *kubeletAPI.Name, err)
	}
	if err := ApplyResponderRBAC(ctx, cs); err != nil {
		return err
	}

	ports := []struct {
		name     string
		protocol corev1.Protocol
	}{{"dns", corev1.ProtocolUDP}, {"dns-tcp", corev1.ProtocolTCP}}
	svc := corev1ac.Service(DNSServiceName, metav1.NamespaceSystem).
		WithLabels(map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}).
		WithSpec(corev1ac.ServiceSpec().WithClusterIP(c.DNSServiceIP))
	slice := discoveryv1ac.EndpointSlice(DNSServiceName+"-lab", metav1.NamespaceSystem).
		WithLabels(map[string]string{
			discoveryv1.LabelServiceName: DNSServiceName,
			discoveryv1.LabelManagedBy:   ManagedBy,
		}).
		WithAddressType(discoveryv1.AddressTypeIPv4).
		WithEndpoints(discoveryv1ac.Endpoint().WithAddresses(c.NodeIP).
			WithConditions(discoveryv1ac.EndpointConditions().WithReady(true).WithServing(true).WithTerminating(false)).
			WithNodeName(c.NodeName))
	for _, p := range ports {
		svc.Spec.WithPorts(corev1ac.ServicePort().WithName(p.name).WithProtocol(p.protocol).WithPort(53).WithTargetPort(intstr.FromInt32(53)))
		slice.WithPorts(discoveryv1ac.EndpointPort().WithName(p.name).WithProtocol(p.protocol).WithPort(53))
	}
	// kube-system appears shortly after the API server reports ready; wait for it.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Services(metav1.NamespaceSystem).Apply(ctx, svc, apply)
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		return fmt.Errorf("applying Service kube-system/%s: %w", DNSServiceName, err)
	}
	if _, err := cs.DiscoveryV1().EndpointSlices(metav1.NamespaceSystem).Apply(ctx, slice, apply); err != nil {
		return fmt.Errorf("applying EndpointSlice kube-system/%s: %w", *slice.Name, err)
	}
	return nil
}

// ResponderRole is the ClusterRole that lets lab pods read their own Pod and Node: the
// rebel-base image (internal/lab/images) reads them to learn its container ports, node and
// cluster, since the lab's manifests give it neither env nor downward API.
const ResponderRole = "strait-lab:responder"

// responderRBAC is the ClusterRole ResponderRole (get pods and nodes, nothing else: no list,
// no watch, no secrets) and its binding to every service account of the cluster.
func responderRBAC() (*rbacv1ac.ClusterRoleApplyConfiguration, *rbacv1ac.ClusterRoleBindingApplyConfiguration) {
	labels := map[string]string{"app.kubernetes.io/managed-by": ManagedBy}
	role := rbacv1ac.ClusterRole(ResponderRole).WithLabels(labels).WithRules(
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods", "nodes").WithVerbs("get"),
	)
	binding := rbacv1ac.ClusterRoleBinding(ResponderRole).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("ClusterRole").WithName(ResponderRole)).
		WithSubjects(rbacv1ac.Subject().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Group").WithName("system:serviceaccounts"))
	return role, binding
}

// ApplyResponderRBAC writes responderRBAC into a cluster; repeating it changes nothing.
// bootstrap calls it, so it is there before the first rebel-base pod starts.
func ApplyResponderRBAC(ctx context.Context, cs kubernetes.Interface) error {
	apply := metav1.ApplyOptions{FieldManager: fieldManager, Force: true}
	role, binding := responderRBAC()
	if _, err := cs.RbacV1().ClusterRoles().Apply(ctx, role, apply); err != nil {
		return fmt.Errorf("applying ClusterRole %s: %w", ResponderRole, err)
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Apply(ctx, binding, apply); err != nil {
		return fmt.Errorf("applying ClusterRoleBinding %s: %w", ResponderRole, err)
	}
	return nil
}

// waitServiceAccount waits until the controller manager has created the default service
// account, without which no pod can be created in the default namespace.
func waitServiceAccount(ctx context.Context, cs kubernetes.Interface) error {
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}
