package brokerstatus

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/ptr"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/controller"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/metricstest"
)

func objects(now time.Time, selector string) []runtime.Object {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: federation.DefaultNamespace, Name: "web", Generation: 1},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, Ports: []corev1.ServicePort{{Port: 80, NodePort: 30080}}},
	}
	if selector != "" {
		svc.Annotations = map[string]string{federation.AnnotationClusters: selector}
	}
	objs := []runtime.Object{svc}
	for i, id := range []string{"c1", "c2"} {
		ns := clusterset.MemberNamespace(id)
		objs = append(objs,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName(id), Namespace: clusterset.ClustersetNamespace},
				Data: clusterset.MembershipData(clusterset.Member{ID: id, Region: "r1", Zone: "r1" + string(rune('a'+i))})},
			&coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: liveness.LeaseName, Namespace: ns},
				Spec: coordinationv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: now}, LeaseDurationSeconds: ptr.To(int32(15))}})
		shard := federation.Shard{Cluster: id, Namespace: federation.DefaultNamespace, Name: "web", State: federation.ShardCreated, ReadyEndpoints: i,
			Ingress: federation.Ingress{Source: federation.IngressNodes, IPs: []netip.Addr{netip.MustParseAddr("192.168.0." + string(rune('1'+i)))},
				Ports: []federation.Port{{Protocol: corev1.ProtocolTCP, Port: 30080}}}}
		for _, r := range federation.ToRecords(ns, federation.DefaultName, shard) {
			objs = append(objs, r)
		}
	}
	return objs
}

func statusUpdates(cs *fake.Clientset) int {
	n := 0
	for _, a := range cs.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			n++
		}
	}
	return n
}

func setup(t *testing.T, selector string) (*Reconciler, *fake.Clientset, *record.FakeRecorder) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	now := time.Now()
	cs := fake.NewClientset(objects(now, selector)...)
	m, err := controller.NewManager(controller.Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	c := federation.NewCache(m, cs, mcsfake.NewSimpleClientset(), federation.DefaultConfig(), nil, nil)
	go func() { _ = m.Start(ctx) }()
	for deadline := time.Now().Add(10 * time.Second); !c.Synced(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("caches did not sync")
		}
	}
	rec := record.NewFakeRecorder(10)
	return &Reconciler{Namespace: federation.DefaultNamespace, Cache: c, Client: cs, Recorder: rec, Now: func() time.Time { return now }}, cs, rec
}

func TestReconcileWritesStatusOnce(t *testing.T) {
	r, cs, rec := setup(t, "")
	ctx := context.Background()
	key := federation.DefaultNamespace + "/web"
	if err := r.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services(federation.DefaultNamespace).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var ingress []string
	for _, in := range svc.Status.LoadBalancer.Ingress {
		ingress = append(ingress, in.IP)
	}
	if strings.Join(ingress, ",") != "192.168.0.1,192.168.0.2" {
		t.Errorf("ingress %v", ingress)
	}
	if c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("c1")); c == nil || c.Reason != federation.ReasonNoReadyEndpoints {
		t.Errorf("c1 condition %+v", c)
	}
	if c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("c2")); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("c2 condition %+v", c)
	}
	if len(rec.Events) != 0 {
		t.Errorf("events for a valid Service: %v", <-rec.Events)
	}
	// The cache now has the written status; nothing changed, so nothing is written again.
	updates := statusUpdates(cs)
	deadline := time.Now().Add(5 * time.Second)
	for {
		cached, _ := r.Cache.Service("web")
		if len(cached.Status.Conditions) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Reconcile(ctx, key); err != nil {
		t.Fatal(err)
	}
	if statusUpdates(cs) != updates {
		t.Error("a second reconcile wrote the unchanged status again")
	}
	if err := r.Reconcile(ctx, federation.DefaultNamespace+"/absent"); err != nil {
		t.Errorf("a deleted Service: %v", err)
	}
}

func TestUnknownClusterIsAConditionAndAnEvent(t *testing.T) {
	r, cs, rec := setup(t, "c1,ghost")
	ctx := context.Background()
	if err := r.Reconcile(ctx, federation.DefaultNamespace+"/web"); err != nil {
		t.Fatal(err)
	}
	svc, _ := cs.CoreV1().Services(federation.DefaultNamespace).Get(ctx, "web", metav1.GetOptions{})
	c := apimeta.FindStatusCondition(svc.Status.Conditions, federation.ConditionFederated)
	if c == nil || c.Status != metav1.ConditionFalse || c.Reason != federation.ReasonUnknownCluster || !strings.Contains(c.Message, "ghost") {
		t.Errorf("condition %+v", c)
	}
	if apimeta.FindStatusCondition(svc.Status.Conditions, federation.ShardCondition("c2")) != nil {
		t.Error("c2 is not selected")
	}
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "UnknownCluster") || !strings.Contains(e, "ghost") {
			t.Errorf("event %q", e)
		}
	default:
		t.Error("no event")
	}
}

func TestUpdateErrorIsReturned(t *testing.T) {
	r, cs, _ := setup(t, "")
	cs.PrependReactor("update", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("broker down")
	})
	if err := r.Reconcile(context.Background(), federation.DefaultNamespace+"/web"); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Errorf("error %v", err)
	}
}

func TestEnsureNamespace(t *testing.T) {
	cs := fake.NewClientset()
	ctx := context.Background()
	for range 2 {
		if err := ensureNamespace(ctx, cs, "fed-ns"); err != nil {
			t.Fatal(err)
		}
	}
	ns, err := cs.CoreV1().Namespaces().Get(ctx, "fed-ns", metav1.GetOptions{})
	if err != nil || ns.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue {
		t.Errorf("namespace %+v, %v", ns, err)
	}
}

// TestRunServesMetricsAndHealth runs what `strait federation controller` runs, against a
// broker that refuses the status writes: /healthz and /readyz answer, and /metrics shows
// the shards by health (c1's has no ready endpoint, c2's is healthy) and the refused
// writes as forbidden reconcile errors.
func TestRunServesMetricsAndHealth(t *testing.T) {
	cs := fake.NewClientset(objects(time.Now(), "")...)
	cs.PrependReactor("update", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("services"), "web", errors.New("RBAC: access denied"))
	})
	metrics, health := metricstest.FreeAddr(t), metricstest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{Config: federation.DefaultConfig(), Broker: cs, BrokerMCS: mcsfake.NewSimpleClientset(),
			Component: "strait-federation-controller", MetricsAddress: metrics, HealthAddress: health})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	metricstest.WaitFor(t, health, "/healthz", 10*time.Second, "ok")
	metricstest.WaitFor(t, health, "/readyz", 10*time.Second, "ok")
	metricstest.WaitFor(t, metrics, "/metrics", 10*time.Second,
		"strait_federation_services 1\n",
		"strait_federation_services_without_healthy_shards 0\n",
		`strait_federation_shards{reason="Healthy"} 1`,
		`strait_federation_shards{reason="NoReadyEndpoints"} 1`,
		`strait_federation_shards{reason="MemberDown"} 0`,
		`strait_reconcile_errors_total{reason="forbidden",reconciler="federation-status"}`,
		"go_goroutines")
}
