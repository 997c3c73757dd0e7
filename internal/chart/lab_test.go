package chart_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/ptr"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/chart"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/federation/brokerstatus"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/liveness"
)

// The chart against a real API server: it accepts every rendered object, and the
// federation controller on a dedicated broker, and the agent of the member that hosts the
// broker, write federated Services' status with no more than the chart's RBAC.
func TestChartOnAnAPIServer(t *testing.T) {
	lab := labtest.Start(t, 1)
	t.Run("DryRunApply", func(t *testing.T) { dryRunApply(t, lab) })
	t.Run("FederationControllerRBAC", func(t *testing.T) {
		statusWriterRBAC(t, lab, statusWriter{
			values:         map[string]any{"agent": map[string]any{"enabled": false}, "federation": map[string]any{"enabled": true}},
			serviceAccount: "strait-federation-controller", member: "c-fedctl", federation: "fedctl", nodePort: 30080,
			forbidden: []authorizationv1.ResourceAttributes{
				{Verb: "get", Resource: "secrets", Namespace: chart.Namespace},
				{Verb: "list", Resource: "secrets"},
				{Verb: "update", Resource: "services", Namespace: "fedctl"},
				{Verb: "delete", Resource: "services", Namespace: "fedctl"},
				{Verb: "create", Group: "discovery.k8s.io", Resource: "endpointslices", Namespace: clusterset.MemberNamespace("c-fedctl")},
				{Verb: "delete", Resource: "namespaces"},
			},
		})
	})
	// The agent of the member that hosts the broker writes the status with its own rights:
	// the chart's agent RBAC with agent.brokerHost, which strait join --install sets there.
	t.Run("AgentOnTheBrokerHostRBAC", func(t *testing.T) {
		statusWriterRBAC(t, lab, statusWriter{
			values:         map[string]any{"agent": map[string]any{"brokerHost": true}},
			serviceAccount: "strait-agent", member: "c-agent", federation: "fedagent", nodePort: 30081,
			forbidden: []authorizationv1.ResourceAttributes{
				{Verb: "list", Resource: "secrets"},
				{Verb: "get", Resource: "secrets", Namespace: chart.Namespace, Name: "someone-elses"},
				{Verb: "list", Resource: "configmaps", Namespace: "kube-system"},
				{Verb: "update", Resource: "configmaps", Namespace: clusterset.ClustersetNamespace},
			},
		})
	})
}

// statusWriter is a component of the chart that writes federated Services' status on a
// broker, and what its RBAC must not allow.
type statusWriter struct {
	values         map[string]any
	serviceAccount string
	// member and federation are the names of the test's own member and federation
	// namespace, so that subtests and the lab's own agent keep apart.
	member, federation string
	// nodePort is the federated Service's, distinct per subtest (one lab).
	nodePort  int32
	forbidden []authorizationv1.ResourceAttributes
}

// applier server-side applies rendered objects to one API server.
type applier struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newApplier(t *testing.T, cfg *rest.Config) *applier {
	t.Helper()
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &applier{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc))}
}

// apply applies o, as a dry run when dryRun is set; the error names the object.
func (a *applier) apply(ctx context.Context, o *unstructured.Unstructured, dryRun bool) error {
	gvk := o.GroupVersionKind()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("%s %s: the API server does not serve it: %w", gvk.Kind, o.GetName(), err)
	}
	var ri dynamic.ResourceInterface = a.dyn.Resource(m.Resource)
	if o.GetNamespace() != "" {
		ri = a.dyn.Resource(m.Resource).Namespace(o.GetNamespace())
	}
	opts := metav1.ApplyOptions{FieldManager: "strait-chart-test", Force: true}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := ri.Apply(ctx, o.GetName(), o, opts); err != nil {
		return fmt.Errorf("server-side apply (dry run %v) of %s %s refused: %w", dryRun, gvk.Kind, o.GetName(), err)
	}
	return nil
}

// ensureNamespace creates a namespace unless it exists.
func ensureNamespace(ctx context.Context, t *testing.T, kube kubernetes.Interface, name string) {
	t.Helper()
	_, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// A real API server accepts every object the chart renders, with every component on
// (server-side apply, dry run: its validation, RBAC escalation checks and defaulting run,
// nothing is stored), and invalid values never reach it.
func dryRunApply(t *testing.T, lab *labtest.Lab) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kube := lab.Client("cluster01")
	// strait join creates the namespace; the chart does not.
	ensureNamespace(ctx, t, kube, chart.Namespace)
	a := newApplier(t, lab.RESTConfig("cluster01"))
	objs, err := chart.Render(map[string]any{
		"dns":        map[string]any{"enabled": true, "domain": "example.com"},
		"federation": map[string]any{"enabled": true},
	}, chart.Namespace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := a.apply(ctx, o, true); err != nil {
			t.Error(err)
		}
	}
	for _, name := range []string{"strait-dns", "strait-federation-controller"} {
		if _, err := kube.AppsV1().Deployments(chart.Namespace).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Deployment %s after a dry run: %v, want not found", name, err)
		}
	}

	// An invalid value is refused before anything is sent: no objects at all.
	bad, err := chart.Render(map[string]any{"agent": map[string]any{"replicas": -1}, "dns": map[string]any{"enabled": true, "domain": "example.com"}}, chart.Namespace)
	if err == nil || len(bad) != 0 || !strings.Contains(err.Error(), "/agent/replicas") {
		t.Fatalf("Render with agent.replicas=-1: %d objects, %v", len(bad), err)
	}
	if _, err := kube.AppsV1().Deployments(chart.Namespace).Get(ctx, "strait-dns", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Deployment strait-dns after refused values: %v, want not found", err)
	}
}

// A status writer, as the chart deploys it, runs under the chart's ServiceAccount and RBAC
// only: it creates its namespace, takes the leader Lease, and writes a federated Service's
// status from a member's shard records; and the chart gives it nothing in w.forbidden.
func statusWriterRBAC(t *testing.T, lab *labtest.Lab, w statusWriter) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	admin := lab.Client("cluster01")
	ensureNamespace(ctx, t, admin, chart.Namespace)
	ensureNamespace(ctx, t, admin, clusterset.ClustersetNamespace)
	a := newApplier(t, lab.RESTConfig("cluster01"))
	objs, err := chart.RBAC(w.values, w.serviceAccount)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := a.apply(ctx, o, false); err != nil {
			t.Fatal(err)
		}
	}
	if len(objs) < 3 {
		t.Fatalf("the chart with %v rendered %d RBAC objects of %s, want its ServiceAccount, ClusterRole and binding", w.values, len(objs), w.serviceAccount)
	}

	// Act as its pod would: its ServiceAccount, nothing else.
	cfg := rest.CopyConfig(lab.RESTConfig("cluster01"))
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: chart.ServiceAccountUser(w.serviceAccount),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + chart.Namespace, "system:authenticated"},
	}
	cfg.UserAgent = "strait-federation-controller"
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	saMCS, err := mcsclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, ra := range w.forbidden {
		review, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &ra}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("the chart lets %s %s %s %s in %q; it needs no such right", w.serviceAccount, ra.Verb, ra.Resource, ra.Name, ra.Namespace)
		}
	}

	// A member's registry entry, lease and shard records, as strait join and its agent
	// write them (with the admin's rights; a federation of its own so the lab's agent
	// leaves it alone).
	member := w.member
	cfgFed := federation.Config{Namespace: w.federation, Name: w.federation, Grace: liveness.DefaultGracePeriod}
	memberNS := clusterset.MemberNamespace(member)
	reg := clusterset.BrokerRegistration(clusterset.Member{ID: member, Region: "r1", Zone: "r1a"})
	if _, err := admin.CoreV1().Namespaces().Create(ctx, reg.Namespace, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().Roles(memberNS).Create(ctx, reg.ReaderRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(memberNS).Create(ctx, reg.ReaderBinding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Create(ctx, reg.Registry, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoordinationV1().Leases(memberNS).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: liveness.LeaseName, Namespace: memberNS, Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}},
		Spec:       coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: time.Now()}, LeaseDurationSeconds: ptr.To(int32(600))},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	shard := federation.Shard{Cluster: member, Namespace: cfgFed.Namespace, Name: "web", State: federation.ShardCreated, ReadyEndpoints: 2,
		Ingress: federation.Ingress{Source: federation.IngressNodes, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")},
			Ports: []federation.Port{{Protocol: corev1.ProtocolTCP, Port: w.nodePort}}}}
	for _, r := range federation.ToRecords(memberNS, cfgFed.Name, shard) {
		if _, err := admin.DiscoveryV1().EndpointSlices(memberNS).Create(ctx, r, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- brokerstatus.Run(runCtx, brokerstatus.Options{Config: cfgFed, Broker: sa, BrokerMCS: saMCS, Workers: 1,
			Identity: "chart-test", Component: w.serviceAccount})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil && runCtx.Err() == nil {
			t.Errorf("%s ended: %v", w.serviceAccount, err)
		}
	}()

	// It creates the federation namespace itself; then the user applies a federated Service.
	var svc *corev1.Service
	for {
		if _, err := admin.CoreV1().Namespaces().Get(ctx, cfgFed.Namespace, metav1.GetOptions{}); err == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("%s under the chart's RBAC ended before creating its namespace: %v", w.serviceAccount, err)
		case <-ctx.Done():
			t.Fatalf("%s under the chart's RBAC did not create namespace %s", w.serviceAccount, cfgFed.Namespace)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if _, err := admin.CoreV1().Services(cfgFed.Namespace).Create(ctx, &corev1.Service{
		// Placed in the test's member only, on the node port its shard reports.
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: cfgFed.Namespace, Annotations: map[string]string{federation.AnnotationClusters: member}},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, NodePort: w.nodePort}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		svc, err = admin.CoreV1().Services(cfgFed.Namespace).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition(member))
		if len(svc.Status.LoadBalancer.Ingress) == 1 && svc.Status.LoadBalancer.Ingress[0].IP == "192.0.2.10" && c != nil && c.Status == metav1.ConditionTrue {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("%s under the chart's RBAC ended: %v", w.serviceAccount, err)
		case <-ctx.Done():
			t.Fatalf("status of the federated Service written by %s under the chart's RBAC: ingress %v, conditions %v; want 192.0.2.10 and %s True",
				w.serviceAccount, svc.Status.LoadBalancer.Ingress, svc.Status.Conditions, federation.ShardCondition(member))
		case <-time.After(200 * time.Millisecond):
		}
	}
	lease, err := admin.CoordinationV1().Leases(cfgFed.Namespace).Get(ctx, brokerstatus.LeaseName, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "chart-test" {
		t.Errorf("leader Lease %s/%s: %+v, %v; want held by chart-test", cfgFed.Namespace, brokerstatus.LeaseName, lease, err)
	}
}
