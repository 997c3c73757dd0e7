package externalservice

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/strait-io/strait/api/v1alpha1"
	es "github.com/strait-io/strait/internal/externalservice"
	"github.com/strait-io/strait/internal/externalservice/probe"
)

// env is a reconciler against a fake API whose caches are rebuilt from the API before
// every reconcile, as synced informers would be.
type env struct {
	t      *testing.T
	client *fake.Clientset
	mu     sync.Mutex
	ext    map[string]*v1alpha1.ExternalService
	rec    *Reconciler
	probe  *fakeProber
	queued chan string
	events *record.FakeRecorder
}

type fakeProber struct {
	mu   sync.Mutex
	down map[string]bool
}

func (p *fakeProber) TCP(_ context.Context, address string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down[address] {
		return errors.New("connection refused")
	}
	return nil
}

func (p *fakeProber) HTTP(ctx context.Context, address, _ string) error { return p.TCP(ctx, address) }

func (p *fakeProber) set(address string, down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down[address] = down
}

func newEnv(t *testing.T, objs ...runtime.Object) *env {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{t: t, client: fake.NewClientset(objs...), ext: map[string]*v1alpha1.ExternalService{},
		probe: &fakeProber{down: map[string]bool{}}, queued: make(chan string, 100), events: record.NewFakeRecorder(100)}
	e.rec = &Reconciler{
		Local:            e.client,
		Status:           func(string) StatusWriter { return e },
		ExternalServices: e,
		Health:           NewChecker(ctx, e.probe, func(k string) { e.queued <- k }),
		Recorder:         e.events,
	}
	return e
}

// Get implements ExternalServiceLister.
func (e *env) Get(ns, name string) (*v1alpha1.ExternalService, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.ext[ns+"/"+name]; ok {
		return x.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(v1alpha1.Resource("externalservices").GroupResource(), name)
}

// UpdateStatus implements StatusWriter.
func (e *env) UpdateStatus(_ context.Context, obj *v1alpha1.ExternalService, _ metav1.UpdateOptions) (*v1alpha1.ExternalService, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, ok := e.ext[obj.Namespace+"/"+obj.Name]
	if !ok {
		return nil, apierrors.NewNotFound(v1alpha1.Resource("externalservices").GroupResource(), obj.Name)
	}
	cur.Status = *obj.Status.DeepCopy()
	return cur.DeepCopy(), nil
}

func (e *env) put(x *v1alpha1.ExternalService) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x = x.DeepCopy()
	if old, ok := e.ext[x.Namespace+"/"+x.Name]; ok {
		x.Status = old.Status
		x.Generation = old.Generation + 1
	} else {
		x.Generation = 1
	}
	e.ext[x.Namespace+"/"+x.Name] = x
}

func (e *env) status(name string) v1alpha1.ExternalServiceStatus {
	x, err := e.Get("test-1", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return x.Status
}

// syncCaches rebuilds the listers from the fake API.
func (e *env) syncCaches() {
	ctx := context.Background()
	svcs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	list, err := e.client.CoreV1().Services("").List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range list.Items {
		_ = svcs.Add(&list.Items[i])
	}
	slices := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	sl, err := e.client.DiscoveryV1().EndpointSlices("").List(ctx, metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for i := range sl.Items {
		_ = slices.Add(&sl.Items[i])
	}
	e.rec.Services = corelisters.NewServiceLister(svcs)
	e.rec.Slices = discoverylisters.NewEndpointSliceLister(slices)
}

func (e *env) reconcile(name string) error {
	e.syncCaches()
	e.client.ClearActions()
	return e.rec.Reconcile(context.Background(), "test-1/"+name)
}

func (e *env) mustReconcile(name string) {
	e.t.Helper()
	if err := e.reconcile(name); err != nil {
		e.t.Fatalf("reconcile %s: %v", name, err)
	}
}

// drainEvents returns the events recorded so far.
func (e *env) drainEvents() []string {
	var out []string
	for {
		select {
		case ev := <-e.events.Events:
			out = append(out, ev)
		default:
			return out
		}
	}
}

// writes lists the API writes of the last reconcile as "verb resource/name".
func (e *env) writes() []string {
	var out []string
	for _, a := range e.client.Actions() {
		switch a.GetVerb() {
		case "create", "update":
			m, _ := meta.Accessor(a.(interface{ GetObject() runtime.Object }).GetObject())
			out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+m.GetName())
		case "delete":
			out = append(out, "delete "+a.GetResource().Resource+"/"+a.(k8stesting.DeleteAction).GetName())
		}
	}
	return out
}

func (e *env) service(name string) *corev1.Service {
	e.t.Helper()
	s, err := e.client.CoreV1().Services("test-1").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) slices() []discoveryv1.EndpointSlice {
	l, err := e.client.DiscoveryV1().EndpointSlices("test-1").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

func newES(name, uid string, spec v1alpha1.ExternalServiceSpec) *v1alpha1.ExternalService {
	return &v1alpha1.ExternalService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "test-1", UID: k8stypes.UID("uid-" + uid)}, Spec: es.WithDefaults(spec)}
}

func ipSpec(targetPort int32, ips ...string) v1alpha1.ExternalServiceSpec {
	s := v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{{Name: "mysql", Port: 3306, TargetPort: targetPort}}}
	for _, ip := range ips {
		s.Targets = append(s.Targets, v1alpha1.Target{IP: ip})
	}
	return s
}

func readyCondition(t *testing.T, st v1alpha1.ExternalServiceStatus) *metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady)
	if c == nil {
		t.Fatalf("no Ready condition in %+v", st)
	}
	return c
}

func TestReconcileIPTargets(t *testing.T) {
	e := newEnv(t)
	e.put(newES("mysql", "1", ipSpec(3307, "10.1.0.5")))
	e.mustReconcile("mysql")
	// Endpoints first, then the Service that points at them.
	if got := strings.Join(e.writes(), ","); !strings.HasPrefix(got, "create endpointslices/") || !strings.Contains(got, "create services/mysql") {
		t.Errorf("writes %s", got)
	}
	svc := e.service("mysql")
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.Selector != nil || svc.Spec.Ports[0].TargetPort.IntVal != 3307 {
		t.Errorf("Service %+v", svc.Spec)
	}
	sl := e.slices()
	if len(sl) != 1 || *sl[0].Ports[0].Port != 3307 || sl[0].Endpoints[0].Addresses[0] != "10.1.0.5" {
		t.Fatalf("slices %+v", sl)
	}
	st := e.status("mysql")
	if c := readyCondition(t, st); c.Status != metav1.ConditionTrue || st.Mode != v1alpha1.ModeClusterIP || st.ReadyTargets != 1 || st.Targets[0].Health != v1alpha1.HealthUnchecked {
		t.Errorf("status %+v", st)
	}
	// Running it again changes nothing, nor does an agent restart (a fresh reconciler that
	// missed every event and finds the objects in place).
	e.mustReconcile("mysql")
	if w := e.writes(); len(w) != 0 {
		t.Errorf("second reconcile wrote %v", w)
	}
	restarted := *e.rec
	restarted.Health = NewChecker(context.Background(), e.probe, func(string) {})
	e.rec = &restarted
	e.mustReconcile("mysql")
	if w := e.writes(); len(w) != 0 {
		t.Errorf("a restarted reconciler wrote %v", w)
	}
}

func TestReconcileHostnameAndModeChanges(t *testing.T) {
	e := newEnv(t)
	host := v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{{Name: "http", Port: 80}}, Targets: []v1alpha1.Target{{Hostname: "abc.com"}}}
	e.put(newES("k8s2-s2", "1", host))
	e.mustReconcile("k8s2-s2")
	if svc := e.service("k8s2-s2"); svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "abc.com" {
		t.Fatalf("Service %+v", svc.Spec)
	}
	if st := e.status("k8s2-s2"); st.Mode != v1alpha1.ModeExternalName || readyCondition(t, st).Status != metav1.ConditionTrue {
		t.Errorf("status %+v", st)
	}

	// To IPs: slices are written before the Service stops being an alias.
	ips := v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{{Name: "http", Port: 80, TargetPort: 30099}}, Targets: []v1alpha1.Target{{IP: "10.254.0.11"}}}
	e.put(newES("k8s2-s2", "1", ips))
	e.mustReconcile("k8s2-s2")
	w := e.writes()
	if len(w) != 2 || !strings.HasPrefix(w[0], "create endpointslices/") || w[1] != "update services/k8s2-s2" {
		t.Errorf("writes %v, want the slice created before the Service is updated", w)
	}
	svc := e.service("k8s2-s2")
	if svc.Spec.Type != corev1.ServiceTypeClusterIP || svc.Spec.ExternalName != "" {
		t.Errorf("Service %+v", svc.Spec)
	}

	// Back to a hostname: the Service becomes an alias before its slices go.
	e.put(newES("k8s2-s2", "1", host))
	e.mustReconcile("k8s2-s2")
	w = e.writes()
	if len(w) != 2 || w[0] != "update services/k8s2-s2" || !strings.HasPrefix(w[1], "delete endpointslices/") {
		t.Errorf("writes %v, want the Service updated before the slice is deleted", w)
	}
	if svc := e.service("k8s2-s2"); svc.Spec.ClusterIP != "" || svc.Spec.ClusterIPs != nil || svc.Spec.ExternalName != "abc.com" {
		t.Errorf("Service %+v", svc.Spec)
	}
}

func TestReconcileNeverTakesOverAService(t *testing.T) {
	handMade := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "mysql", Namespace: "test-1"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 3306}}}}
	e := newEnv(t, handMade)
	e.put(newES("mysql", "1", ipSpec(3307, "10.1.0.5")))
	e.mustReconcile("mysql")
	if w := e.writes(); len(w) != 0 {
		t.Errorf("wrote %v next to a Service it does not own", w)
	}
	c := readyCondition(t, e.status("mysql"))
	if c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonServiceNotOwned || !strings.Contains(c.Message, "test-1/mysql") {
		t.Errorf("condition %+v", c)
	}
	if ev := e.drainEvents(); len(ev) != 1 || !strings.HasPrefix(ev[0], "Warning ServiceNotOwned") {
		t.Errorf("events %q", ev)
	}
	e.mustReconcile("mysql")
	if ev := e.drainEvents(); len(ev) != 0 {
		t.Errorf("an unchanged state recorded events again: %q", ev)
	}
	// Deleting the ExternalService leaves the Service alone too.
	e.mu.Lock()
	delete(e.ext, "test-1/mysql")
	e.mu.Unlock()
	e.mustReconcile("mysql")
	if w := e.writes(); len(w) != 0 {
		t.Errorf("wrote %v for a deleted ExternalService next to a Service it does not own", w)
	}
}

func TestReconcileWithdrawsEndpointsFromAServiceItLost(t *testing.T) {
	e := newEnv(t)
	e.put(newES("mysql", "1", ipSpec(3307, "10.1.0.5")))
	e.mustReconcile("mysql")
	// Someone deletes the Service and puts their own in its place.
	if err := e.client.CoreV1().Services("test-1").Delete(context.Background(), "mysql", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.CoreV1().Services("test-1").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "mysql", Namespace: "test-1"},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "mysql"}, Ports: []corev1.ServicePort{{Port: 3306}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile("mysql")
	if sl := e.slices(); len(sl) != 0 {
		t.Errorf("slices still feed a Service that is not ours: %+v", sl)
	}
	if c := readyCondition(t, e.status("mysql")); c.Reason != v1alpha1.ReasonServiceNotOwned {
		t.Errorf("condition %+v", c)
	}
}

func TestReconcileReplacesObjectsOfADeletedPredecessor(t *testing.T) {
	e := newEnv(t)
	e.put(newES("mysql", "old", ipSpec(3307, "10.1.0.5")))
	e.mustReconcile("mysql")
	// Deleted and created again before the garbage collector ran.
	e.mu.Lock()
	delete(e.ext, "test-1/mysql")
	e.mu.Unlock()
	e.put(newES("mysql", "new", ipSpec(3307, "10.1.0.6")))
	e.mustReconcile("mysql")
	if svc := e.service("mysql"); svc.OwnerReferences[0].UID != "uid-new" {
		t.Errorf("Service owner %v", svc.OwnerReferences)
	}
	sl := e.slices()
	if len(sl) != 1 || sl[0].OwnerReferences[0].UID != "uid-new" || sl[0].Endpoints[0].Addresses[0] != "10.1.0.6" {
		t.Errorf("slices %+v", sl)
	}
	// Deleting it removes what it wrote.
	e.mu.Lock()
	delete(e.ext, "test-1/mysql")
	e.mu.Unlock()
	e.mustReconcile("mysql")
	if _, err := e.client.CoreV1().Services("test-1").Get(context.Background(), "mysql", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("Service left: %v", err)
	}
	if sl := e.slices(); len(sl) != 0 {
		t.Errorf("slices left: %v", sl)
	}
}

func TestReconcileAPIErrorsWriteNothingHalf(t *testing.T) {
	e := newEnv(t)
	e.client.PrependReactor("create", "endpointslices", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd is down"))
	})
	e.put(newES("mysql", "1", ipSpec(3307, "10.1.0.5")))
	if err := e.reconcile("mysql"); err == nil {
		t.Fatal("reconcile succeeded with failing EndpointSlice writes")
	}
	if _, err := e.client.CoreV1().Services("test-1").Get(context.Background(), "mysql", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the Service was created without its endpoints: %v", err)
	}
	c := readyCondition(t, e.status("mysql"))
	if c.Reason != v1alpha1.ReasonApplyFailed || !strings.Contains(c.Message, "etcd is down") {
		t.Errorf("condition %+v", c)
	}
	// The API recovers: the retry converges.
	e.client.ReactionChain = e.client.ReactionChain[1:]
	e.mustReconcile("mysql")
	if c := readyCondition(t, e.status("mysql")); c.Status != metav1.ConditionTrue {
		t.Errorf("after recovery: %+v", c)
	}
}

func TestReconcileRefusalKeepsEarlierObjects(t *testing.T) {
	e := newEnv(t)
	e.put(newES("db", "1", ipSpec(3307, "10.1.0.5")))
	e.mustReconcile("db")
	mixed := ipSpec(3307, "10.1.0.5")
	mixed.Targets = append(mixed.Targets, v1alpha1.Target{Hostname: "db.example.com"})
	e.put(newES("db", "1", mixed))
	e.mustReconcile("db")
	for _, w := range e.writes() {
		t.Errorf("refused spec wrote %s", w)
	}
	c := readyCondition(t, e.status("db"))
	if c.Reason != v1alpha1.ReasonUnsupportedTargets || !strings.Contains(c.Message, "spec.targets[1].hostname") || c.ObservedGeneration != 2 {
		t.Errorf("condition %+v", c)
	}
	if len(e.slices()) != 1 {
		t.Error("the objects of the accepted spec were removed")
	}
}

func TestReconcileHealthFailover(t *testing.T) {
	e := newEnv(t)
	spec := ipSpec(3307, "10.1.0.5", "10.1.0.6")
	spec.HealthCheck = &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}, IntervalSeconds: 1, TimeoutSeconds: 1, HealthyThreshold: 1, UnhealthyThreshold: 2}
	e.put(newES("db", "1", spec))
	e.mustReconcile("db")
	if c := readyCondition(t, e.status("db")); c.Reason != v1alpha1.ReasonProbing {
		t.Errorf("before the first checks: %+v", c)
	}
	ready := func() map[string]bool {
		out := map[string]bool{}
		for _, s := range e.slices() {
			for _, ep := range s.Endpoints {
				out[ep.Addresses[0]] = *ep.Conditions.Ready
			}
		}
		return out
	}
	// await reconciles on every notification until cond holds.
	await := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for !cond() {
			select {
			case k := <-e.queued:
				if k != "test-1/db" {
					t.Fatalf("notified for %s", k)
				}
				e.mustReconcile("db")
			case <-deadline:
				t.Fatalf("timed out waiting for %s; slices %v, status %+v", what, ready(), e.status("db"))
			}
		}
	}
	await("both healthy", func() bool {
		st := e.status("db")
		return readyCondition(t, st).Reason == v1alpha1.ReasonReady && st.Targets[0].Health == v1alpha1.HealthHealthy && st.Targets[1].Health == v1alpha1.HealthHealthy
	})
	e.probe.set("10.1.0.5:3307", true)
	start := time.Now()
	await("10.1.0.5 not ready", func() bool { r := ready(); return !r["10.1.0.5"] && r["10.1.0.6"] })
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("failover took %s, want about interval x unhealthyThreshold = 2s", d)
	}
	st := e.status("db")
	if st.ReadyTargets != 1 || st.Targets[0].Health != v1alpha1.HealthUnhealthy || st.Targets[0].Message != "connection refused" {
		t.Errorf("status %+v", st)
	}
	e.probe.set("10.1.0.6:3307", true)
	await("no healthy target", func() bool { return readyCondition(t, e.status("db")).Reason == v1alpha1.ReasonNoHealthyTargets })
	e.probe.set("10.1.0.5:3307", false)
	e.probe.set("10.1.0.6:3307", false)
	await("both back", func() bool { r := ready(); return r["10.1.0.5"] && r["10.1.0.6"] })
	events := strings.Join(e.drainEvents(), "\n")
	for _, want := range []string{
		"Warning TargetUnhealthy Target 10.1.0.5:3307 failed its health check and is out of use: connection refused",
		"Warning NoHealthyTargets", "Normal TargetHealthy Target 10.1.0.6:3307 passes its health check again",
	} {
		if !strings.Contains(events, want) {
			t.Errorf("events lack %q:\n%s", want, events)
		}
	}
	if c := readyCondition(t, e.status("db")); c.Status != metav1.ConditionTrue {
		t.Errorf("condition %+v", c)
	}
}

// nameTable resolves host names from a map.
type nameTable map[string]string

func (n nameTable) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	a, ok := n[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

// pipeDialer connects every dial that gets through the guard to nothing, successfully.
type pipeDialer struct{}

func (pipeDialer) DialContext(context.Context, string, string) (net.Conn, error) {
	a, b := net.Pipe()
	b.Close()
	return a, nil
}

// TestReconcileRefusedHealthChecks runs the real prober's guard through the checker: a
// target that is, or resolves to, a metadata address is not probed, is out of use, and the
// status says why; the admin's allowance lets it be checked.
func TestReconcileRefusedHealthChecks(t *testing.T) {
	hc := &v1alpha1.HealthCheck{TCP: &v1alpha1.TCPHealthCheck{}, IntervalSeconds: 1, TimeoutSeconds: 1, HealthyThreshold: 1, UnhealthyThreshold: 3}
	run := func(t *testing.T, allow []netip.Prefix, x *v1alpha1.ExternalService, done func(v1alpha1.ExternalServiceStatus) bool) v1alpha1.ExternalServiceStatus {
		t.Helper()
		e := newEnv(t)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		prober := probe.Prober{Dialer: pipeDialer{}, AllowCIDRs: allow, Resolver: nameTable{"metadata.example.com": "169.254.169.254"}}
		e.rec.Health = NewChecker(ctx, prober, func(k string) { e.queued <- k })
		e.put(x)
		e.mustReconcile(x.Name)
		deadline := time.After(10 * time.Second)
		for !done(e.status(x.Name)) {
			select {
			case <-e.queued:
				e.mustReconcile(x.Name)
			case <-deadline:
				t.Fatalf("timed out; status %+v", e.status(x.Name))
			}
		}
		return e.status(x.Name)
	}

	// An ExternalName whose host name resolves to the metadata address.
	name := newES("meta", "1", v1alpha1.ExternalServiceSpec{Ports: []v1alpha1.ServicePort{{Port: 80}},
		Targets: []v1alpha1.Target{{Hostname: "metadata.example.com"}}, HealthCheck: hc})
	st := run(t, nil, name, func(st v1alpha1.ExternalServiceStatus) bool {
		return len(st.Targets) == 1 && st.Targets[0].Reason != ""
	})
	tg := st.Targets[0]
	if tg.Health != v1alpha1.HealthUnhealthy || tg.Reason != v1alpha1.ReasonHealthCheckRefused ||
		tg.Message != "not probed: metadata.example.com resolves to 169.254.169.254, which is a cloud metadata address; the agent checks loopback, link-local and metadata addresses only in ranges its --allow-health-check-cidrs allows" {
		t.Errorf("target %+v", tg)
	}
	if c := readyCondition(t, st); c.Status != metav1.ConditionFalse || c.Reason != v1alpha1.ReasonHealthCheckRefused || !strings.Contains(c.Message, "1 of 1 are not probed") {
		t.Errorf("condition %+v", c)
	}

	// An IP target at AWS's IPv6 metadata address beside a pod address: the pod address is
	// checked and used, the metadata address is not probed and not used.
	ips := ipSpec(80, "fd00:ec2::254", "10.1.0.5")
	ips.HealthCheck = hc
	st = run(t, nil, newES("db", "2", ips), func(st v1alpha1.ExternalServiceStatus) bool {
		return len(st.Targets) == 2 && st.Targets[0].Reason != "" && st.Targets[1].Health == v1alpha1.HealthHealthy
	})
	if c := readyCondition(t, st); c.Reason != v1alpha1.ReasonReady || st.ReadyTargets != 1 || !strings.Contains(c.Message, "[fd00:ec2::254]:80: not probed") {
		t.Errorf("condition %+v, %d ready", c, st.ReadyTargets)
	}

	// Allowed by the admin, both are checked.
	st = run(t, []netip.Prefix{netip.MustParsePrefix("fd00:ec2::254/128")}, newES("db", "3", ips), func(st v1alpha1.ExternalServiceStatus) bool {
		return len(st.Targets) == 2 && st.Targets[0].Health == v1alpha1.HealthHealthy && st.Targets[1].Health == v1alpha1.HealthHealthy
	})
	if st.Targets[0].Reason != "" || st.ReadyTargets != 2 {
		t.Errorf("allowed: %+v", st)
	}
}
