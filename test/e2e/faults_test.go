package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"

	"github.com/strait-io/strait/internal/agent"
	"github.com/strait-io/strait/internal/agent/importer"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/bindtest"
	"github.com/strait-io/strait/internal/federation"
	"github.com/strait-io/strait/internal/lab/labtest"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/supervisor"
	"github.com/strait-io/strait/internal/records"
)

// faultWorld is a 3-cluster lab (cluster01 is the broker) with traffic on every path that
// learns from the broker: a global Service rebel-base in cluster02 and cluster03, a Service
// echo exported by cluster01 and cluster03 and imported by cluster02, a federated Service
// echo with shards in cluster02 and cluster03, and strait dns publishing to a real BIND.
type faultWorld struct {
	lab       *labtest.Lab
	cs        map[string]kubernetes.Interface
	mcs       map[string]mcsCluster
	bind      *bindtest.Server
	dnsAddr   string
	shortName string
	bindNames []string
	localIP02 string
}

const (
	faultNS  = "demo"
	rebelURL = "http://rebel-base.demo/"
)

// TestFaults is the failure model of docs/failure-model.md, tried on the lab with real
// clients: the broker's API server stopped for two minutes, a member's agent stopped, a
// member's API server stopped, a poisoned record, and the importing agent killed a hundred
// times during endpoint churn with API errors injected. `make test-faults` runs it alone.
func TestFaults(t *testing.T) {
	w := newFaultWorld(t)
	// Each scenario leaves the world as it found it.
	t.Run("BrokerOutage", w.brokerOutage)
	t.Run("AgentStopped", w.agentStopped)
	t.Run("MemberAPIServerStopped", w.memberAPIServerStopped)
	t.Run("PoisonedRecord", w.poisonedRecord)
	t.Run("AgentKilledDuringChurn", w.agentKilledDuringChurn)
}

func newFaultWorld(t *testing.T) *faultWorld {
	lab, err := labtest.Try(t, labtest.Options{Names: plan.DefaultNames(3)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	w := &faultWorld{lab: lab, cs: map[string]kubernetes.Interface{}, mcs: map[string]mcsCluster{}}
	for _, c := range mcsClusters(t, lab) {
		w.cs[c.name], w.mcs[c.name] = c.kube, c
	}
	for _, n := range lab.Names() {
		createNamespace(t, w.cs[n], faultNS)
	}
	for _, n := range []string{"cluster02", "cluster03"} {
		mustCreate(t, w.cs[n], deployment(faultNS, "rebel-base", 2, 80), service(faultNS, "rebel-base", 80))
		annotate(t, w.cs[n], faultNS, "rebel-base", map[string]any{"service.strait.io/global": "true"})
	}
	for _, n := range []string{"cluster01", "cluster03"} {
		mustCreate(t, w.cs[n], deployment(faultNS, "echo", 2, 80), service(faultNS, "echo", 80))
		export(t, w.mcs[n], faultNS, "echo")
	}
	// The federated Service, with backends in cluster02 and cluster03.
	fns := federation.DefaultNamespace
	poll(t, time.Minute, "federation namespace on the broker", func(ctx context.Context) (bool, error) {
		_, err := w.cs["cluster01"].CoreV1().Namespaces().Get(ctx, fns, metav1.GetOptions{})
		return err == nil, err
	})
	for _, n := range []string{"cluster02", "cluster03"} {
		createNamespace(t, w.cs[n], fns)
		mustCreate(t, w.cs[n], deployment(fns, "echo", 2, 80))
	}
	fed := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: fns, Annotations: map[string]string{federation.AnnotationClusters: "cluster02,cluster03"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Selector: map[string]string{"app": "echo"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := w.cs["cluster01"].CoreV1().Services(fns).Create(ctx, fed, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	w.bind = bindtest.Start(t, bindtest.Options{Zone: "example.com"})
	w.dnsAddr = startStraitDNS(t, lab, w.bind)
	w.shortName = "echo." + fns + "." + federation.DefaultName
	base := "echo." + fns + ".federation.svc."
	w.bindNames = []string{base + "example.com", base + "region1.example.com", base + "region1b.region1.example.com",
		base + "region2.example.com", base + "region2a.region2.example.com"}

	w.healthy(t, 3*time.Minute)
	local02, err := w.cs["cluster02"].CoreV1().Services(fns).Get(ctx, "echo", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w.localIP02 = local02.Spec.ClusterIP
	poll(t, time.Minute, "short name in cluster02: its own ClusterIP", shortNameIs(lab, "cluster02", w.shortName, w.localIP02))
	return w
}

// mustCreate creates Deployments and Services.
// node is a cluster's node address, which a NodePort shard is published as.
func (w *faultWorld) node(cluster string) string { return w.lab.Cluster(cluster).NodeIP }

func mustCreate(t *testing.T, cs kubernetes.Interface, objs ...runtime.Object) {
	t.Helper()
	ctx := context.Background()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Service:
			_, err = cs.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.Deployment:
			_, err = cs.AppsV1().Deployments(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			err = fmt.Errorf("mustCreate: %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// healthy waits until every path serves both clusters: requests from cluster02 reach
// cluster03's rebel-base pods, cluster02 imports echo from cluster01 and cluster03, and
// BIND has A records for both federation shards' zones.
func (w *faultWorld) healthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	poll(t, timeout, "global Service: cluster02 reaches both clusters", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, w.lab, "cluster02", rebelURL, 20)
		return err == nil && counts["cluster02"] > 0 && counts["cluster03"] > 0, fmt.Errorf("replies %v, %v", counts, err)
	})
	poll(t, timeout, "MCS: cluster02 imports echo from cluster01 and cluster03", func(ctx context.Context) (bool, error) {
		clusters, _, ok, err := importedFrom(ctx, w.mcs["cluster02"], faultNS, "echo")
		return ok && slices.Equal(clusters, []string{"cluster01", "cluster03"}), fmt.Errorf("imported from %v (%v)", clusters, err)
	})
	poll(t, timeout, "BIND: each shard's zone answers its own node", func(ctx context.Context) (bool, error) {
		z2, z3 := digShort(t, w.bind.Addr, w.bindNames[2], "A"), digShort(t, w.bind.Addr, w.bindNames[4], "A")
		return slices.Equal(z2, []string{w.node("cluster02")}) && slices.Equal(z3, []string{w.node("cluster03")}),
			fmt.Errorf("zone of cluster02 %v, of cluster03 %v", z2, z3)
	})
}

// published is what BIND answers for the federation's names.
func (w *faultWorld) published(t *testing.T) map[string][]string {
	out := map[string][]string{}
	for _, n := range w.bindNames {
		for _, typ := range []string{"A", "CNAME"} {
			got := digShort(t, w.bind.Addr, n, typ)
			sort.Strings(got)
			out[n+" "+typ] = got
		}
	}
	return out
}

// deletions records every deletion of an object Strait manages in a cluster (EndpointSlices,
// Services, ServiceImports labelled app.kubernetes.io/managed-by=strait), optionally in one
// namespace only, so a scenario can check each one against what should exist.
type deletions struct {
	mu  sync.Mutex
	got []string
}

func (d *deletions) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.got)
}

func watchDeletions(t *testing.T, w *faultWorld, cluster, namespace string) *deletions {
	t.Helper()
	d := &deletions{}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	opts := []informers.SharedInformerOption{informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = clusterset.ManagedByLabel + "=" + clusterset.ManagedByValue
	})}
	if namespace != "" {
		opts = append(opts, informers.WithNamespace(namespace))
	}
	f := informers.NewSharedInformerFactoryWithOptions(w.cs[cluster], 0, opts...)
	m := mcsinformers.NewSharedInformerFactoryWithOptions(w.mcs[cluster].mcs, 0, mcsinformers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.LabelSelector = clusterset.ManagedByLabel + "=" + clusterset.ManagedByValue
	}), mcsinformers.WithNamespace(namespace))
	record := func(kind string) cache.ResourceEventHandler {
		return cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
			if u, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = u.Obj
			}
			if o, ok := obj.(metav1.Object); ok {
				d.mu.Lock()
				d.got = append(d.got, fmt.Sprintf("%s %s %s/%s (labels %v) at %s", cluster, kind, o.GetNamespace(), o.GetName(), o.GetLabels(), time.Now().Format(time.StampMilli)))
				d.mu.Unlock()
			}
		}}
	}
	for kind, inf := range map[string]cache.SharedIndexInformer{
		"EndpointSlice": f.Discovery().V1().EndpointSlices().Informer(),
		"Service":       f.Core().V1().Services().Informer(),
		"ServiceImport": m.Multicluster().V1beta1().ServiceImports().Informer(),
	} {
		if _, err := inf.AddEventHandler(record(kind)); err != nil {
			t.Fatal(err)
		}
	}
	f.Start(ctx.Done())
	m.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	m.WaitForCacheSync(ctx.Done())
	return d
}

// brokerOutage: the broker's API server stopped for two minutes. Requests from cluster02 to
// the global Service keep reaching cluster03's pods throughout, the federation's short name
// keeps resolving to an address, BIND's records do not change, strait status shows the
// outage; once it is back nothing was deleted and updates flow again.
func (w *faultWorld) brokerOutage(t *testing.T) {
	before := w.published(t)
	gone := []*deletions{watchDeletions(t, w, "cluster02", ""), watchDeletions(t, w, "cluster03", "")}

	type round struct {
		at     time.Time
		counts map[string]int
		err    error
		dns    []string
	}
	var mu sync.Mutex
	var rounds []round
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			counts, err := replies(ctx, t, w.lab, "cluster02", rebelURL, 20)
			out, _ := w.lab.Exec(ctx, "cluster02", "dig", "+short", "+tries=1", "+time=2", w.shortName, "A")
			if ctx.Err() != nil {
				return
			}
			mu.Lock()
			rounds = append(rounds, round{time.Now(), counts, err, strings.Fields(out)})
			mu.Unlock()
			time.Sleep(time.Second)
		}
	}()

	start := time.Now()
	w.lab.StopComponent("cluster01", supervisor.APIServer)
	restarted := false
	defer func() {
		if !restarted {
			w.lab.StartComponent("cluster01", supervisor.APIServer)
		}
	}()
	poll(t, 30*time.Second, "strait status in cluster02 shows the broker unreachable and the freeze", func(ctx context.Context) (bool, error) {
		out := straitStatus(ctx, w.lab, "cluster02")
		return strings.Contains(out, "broker UNREACHABLE since") && strings.Contains(out, "withdrawals FROZEN"), fmt.Errorf("strait status:\n%s", out)
	})
	for time.Since(start) < 2*time.Minute {
		if got := w.published(t); !equalRecords(got, before) {
			t.Errorf("BIND records changed during the outage (%s in):\n got %v\nwant %v", time.Since(start).Round(time.Second), got, before)
			break
		}
		time.Sleep(5 * time.Second)
	}
	w.lab.StartComponent("cluster01", supervisor.APIServer)
	restarted = true
	back := time.Now()
	// A minute after the broker returned: traffic as before, and no deletion burst.
	time.Sleep(time.Until(back.Add(time.Minute)))
	stop()
	wg.Wait()
	// Updates flow again: cluster03 scaled to 3 shows in cluster02's global Service.
	scaled := time.Now()
	scaleTo(t, w.cs["cluster03"], faultNS, "rebel-base", 3)
	poll(t, 2*time.Minute, "after the outage cluster02 sees cluster03's third endpoint", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, w.cs["cluster02"], faultNS, "rebel-base")
		return err == nil && src["cluster03"] == 3, fmt.Errorf("remote slices %v, %v", src, err)
	})
	t.Logf("after the outage, a scale change in cluster03 reached cluster02's Service in %s", time.Since(scaled).Round(100*time.Millisecond))
	scaleTo(t, w.cs["cluster03"], faultNS, "rebel-base", 2)
	poll(t, time.Minute, "back to two endpoints of cluster03", func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, w.cs["cluster02"], faultNS, "rebel-base")
		return err == nil && src["cluster03"] == 2, fmt.Errorf("remote slices %v, %v", src, err)
	})

	var lost, withoutRemote, noAddress int
	for _, r := range rounds {
		if r.err != nil {
			lost++
			t.Errorf("round at %s: %v (%v)", r.at.Format(time.StampMilli), r.err, r.counts)
		}
		if r.counts["cluster03"] == 0 {
			withoutRemote++
			t.Errorf("round at %s reached no cluster03 pod: %v", r.at.Format(time.StampMilli), r.counts)
		}
		if len(r.dns) == 0 || !isAddress(r.dns[len(r.dns)-1]) {
			noAddress++
			t.Errorf("round at %s: the short name resolved to %q", r.at.Format(time.StampMilli), r.dns)
		}
	}
	t.Logf("outage of %s: %d rounds of 20 requests from cluster02, %d with a lost request, %d without cluster03, %d without a DNS address",
		back.Sub(start).Round(time.Second), len(rounds), lost, withoutRemote, noAddress)
	if len(rounds) < 30 {
		t.Errorf("only %d rounds of requests ran", len(rounds))
	}
	for _, d := range gone {
		for _, g := range d.list() {
			t.Errorf("deleted during or after the outage: %s", g)
		}
	}
	if got := w.published(t); !equalRecords(got, before) {
		t.Errorf("BIND records changed after the outage:\n got %v\nwant %v", got, before)
	}
}

func equalRecords(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func straitStatus(ctx context.Context, lab *labtest.Lab, cluster string) string {
	cmd := exec.CommandContext(ctx, straitBin, "status", "--kubeconfig", lab.Kubeconfig(), "--context", cluster, "--broker-server", lab.BrokerURL())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run()
	return out.String()
}

func scaleTo(t *testing.T, cs kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	if _, err := cs.AppsV1().Deployments(ns).UpdateScale(context.Background(), name, scale(ns, name, n), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// agentStopped: cluster03's agent stopped. Within its lease and grace period its endpoints
// leave cluster02's import of echo, cluster02's global Service, and DNS; started again they
// return.
func (w *faultWorld) agentStopped(t *testing.T) {
	start := time.Now()
	w.lab.StopComponent("cluster03", supervisor.Agent)
	restarted := false
	defer func() {
		if !restarted {
			w.lab.StartComponent("cluster03", supervisor.Agent)
		}
	}()
	withdrawn := func(ctx context.Context) (bool, error) {
		src, err := remoteSources(ctx, w.cs["cluster02"], faultNS, "rebel-base")
		if err != nil || src["cluster03"] != 0 {
			return false, fmt.Errorf("global slices %v, %v", src, err)
		}
		clusters, _, _, err := importedFrom(ctx, w.mcs["cluster02"], faultNS, "echo")
		if err != nil || !slices.Equal(clusters, []string{"cluster01"}) {
			return false, fmt.Errorf("echo imported from %v (%v)", clusters, err)
		}
		if z := digShort(t, w.bind.Addr, w.bindNames[4], "A"); slices.Contains(z, w.node("cluster03")) {
			return false, fmt.Errorf("BIND still answers cluster03's zone with its node: %v", z)
		}
		return true, nil
	}
	// Lease (15 s) and grace (10 s), plus a reconcile: well within a minute.
	poll(t, time.Minute, "cluster03 withdrawn from imports, the global Service and DNS", withdrawn)
	t.Logf("agent stopped to withdrawn everywhere: %s", time.Since(start).Round(100*time.Millisecond))
	if time.Since(start) < 20*time.Second {
		t.Errorf("withdrawn after %s, before the lease and grace period ran out: a single missed renewal must change nothing", time.Since(start))
	}
	// kube-proxy follows the API within seconds (its own watch, then a rules sync).
	withdrawnAt := time.Now()
	poll(t, 20*time.Second, "cluster02's requests stop reaching cluster03 once it is withdrawn", func(ctx context.Context) (bool, error) {
		counts, err := replies(ctx, t, w.lab, "cluster02", rebelURL, 20)
		return err == nil && counts["cluster03"] == 0 && counts["cluster02"] == 20, fmt.Errorf("replies %v (%v), want all 20 from cluster02", counts, err)
	})
	t.Logf("withdrawn in the API to no request reaching cluster03: %s", time.Since(withdrawnAt).Round(100*time.Millisecond))
	w.lab.StartComponent("cluster03", supervisor.Agent)
	restarted = true
	w.healthy(t, time.Minute)
}

// memberAPIServerStopped: cluster03's API server stopped while its agent still renews its
// lease: cluster03's pods still serve, so nothing is withdrawn.
func (w *faultWorld) memberAPIServerStopped(t *testing.T) {
	gone := watchDeletions(t, w, "cluster02", "")
	w.lab.StopComponent("cluster03", supervisor.APIServer)
	restarted := false
	defer func() {
		if !restarted {
			w.lab.StartComponent("cluster03", supervisor.APIServer)
		}
	}()
	start := time.Now()
	for time.Since(start) < time.Minute { // well past lease and grace
		counts, err := replies(context.Background(), t, w.lab, "cluster02", rebelURL, 20)
		if err != nil || counts["cluster03"] == 0 {
			t.Errorf("%s after cluster03's API server stopped: replies %v (%v), want cluster03's pods still reached", time.Since(start).Round(time.Second), counts, err)
		}
		time.Sleep(2 * time.Second)
	}
	clusters, _, _, err := importedFrom(context.Background(), w.mcs["cluster02"], faultNS, "echo")
	if err != nil || !slices.Equal(clusters, []string{"cluster01", "cluster03"}) {
		t.Errorf("echo imported from %v (%v), want cluster03 kept", clusters, err)
	}
	w.lab.StartComponent("cluster03", supervisor.APIServer)
	restarted = true
	for _, g := range gone.list() {
		t.Errorf("deleted while cluster03's API server was down: %s", g)
	}
	w.healthy(t, time.Minute)
}

// poisonedRecord: a second record of echo appears in cluster03's broker namespace. cluster02
// drops cluster03's records of echo, names it in a condition and an Event, and keeps
// following cluster01's endpoints; removed, cluster03 is imported again.
func (w *faultWorld) poisonedRecord(t *testing.T) {
	ctx := context.Background()
	brokerMCS := w.mcs["cluster01"].mcs.MulticlusterV1beta1().ServiceImports(clusterset.MemberNamespace("cluster03"))
	own, err := brokerMCS.Get(ctx, records.Name(faultNS, "echo"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dup := &mcsv1beta1.ServiceImport{ObjectMeta: metav1.ObjectMeta{Name: "echo-duplicate", Namespace: own.Namespace, Labels: own.Labels}, Spec: own.Spec}
	if _, err := brokerMCS.Create(ctx, dup, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	imports := w.mcs["cluster02"].mcs.MulticlusterV1beta1().ServiceImports(faultNS)
	poll(t, time.Minute, "cluster02 names cluster03's duplicated record in a condition", func(ctx context.Context) (bool, error) {
		si, err := imports.Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(si.Status.Conditions, importer.ConditionRecordsValid)
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, "cluster03"), fmt.Errorf("condition %+v", c)
	})
	poll(t, 30*time.Second, "a RecordDropped event naming cluster03", func(ctx context.Context) (bool, error) {
		events, err := w.cs["cluster02"].CoreV1().Events(faultNS).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range events.Items {
			if e.Reason == importer.EventRecordDropped && strings.Contains(e.Message, "cluster03") {
				return true, nil
			}
		}
		return false, fmt.Errorf("no %s event among %d", importer.EventRecordDropped, len(events.Items))
	})
	// cluster01's export keeps flowing: scaled to 3, cluster02 follows.
	scaleTo(t, w.cs["cluster01"], faultNS, "echo", 3)
	poll(t, time.Minute, "cluster02 follows cluster01's echo while cluster03's record is poisoned", func(ctx context.Context) (bool, error) {
		n, err := importedEndpoints(ctx, w.cs["cluster02"], "cluster01")
		return err == nil && n == 3, fmt.Errorf("%d endpoints from cluster01 (%v)", n, err)
	})
	scaleTo(t, w.cs["cluster01"], faultNS, "echo", 2)
	if err := brokerMCS.Delete(ctx, dup.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, time.Minute, "cluster03 imported again once the duplicate is gone", func(ctx context.Context) (bool, error) {
		si, err := imports.Get(ctx, "echo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := apimeta.FindStatusCondition(si.Status.Conditions, importer.ConditionRecordsValid)
		clusters, _, _, err := importedFrom(ctx, w.mcs["cluster02"], faultNS, "echo")
		return c != nil && c.Status == metav1.ConditionTrue && slices.Equal(clusters, []string{"cluster01", "cluster03"}),
			fmt.Errorf("condition %+v, imported from %v (%v)", c, clusters, err)
	})
}

func importedEndpoints(ctx context.Context, cs kubernetes.Interface, from string) (int, error) {
	list, err := cs.DiscoveryV1().EndpointSlices(faultNS).List(ctx, metav1.ListOptions{
		LabelSelector: mcsv1beta1.LabelServiceName + "=echo," + mcsv1beta1.LabelSourceCluster + "=" + from})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready == nil || *e.Conditions.Ready {
				n++
			}
		}
	}
	return n, nil
}

// agentKilledDuringChurn: cluster02's agent is replaced by one that the test kills at
// random points a hundred times, with one API request in twenty failing, while cluster03's
// endpoints churn. Every deletion of what Strait manages in cluster02, and of cluster02's
// records on the broker, is wrong here (every export stays, only endpoints change): there
// must be none. When it ends, cluster02 serves exactly cluster03's endpoints.
func (w *faultWorld) agentKilledDuringChurn(t *testing.T) {
	kills := 100
	if v := os.Getenv("STRAIT_FAULT_KILLS"); v != "" {
		fmt.Sscan(v, &kills)
	}
	w.lab.StopComponent("cluster02", supervisor.Agent)
	restarted := false
	defer func() {
		if !restarted {
			w.lab.StartComponent("cluster02", supervisor.Agent)
		}
	}()
	gone := []*deletions{watchDeletions(t, w, "cluster02", ""), watchDeletions(t, w, "cluster01", clusterset.MemberNamespace("cluster02"))}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // churn: cluster03's endpoints between 1 and 3, never none
		defer wg.Done()
		rng := rand.New(rand.NewPCG(7, 11))
		for ctx.Err() == nil {
			for _, name := range []string{"rebel-base", "echo"} {
				n := int32(1 + rng.IntN(3))
				_, _ = w.cs["cluster03"].AppsV1().Deployments(faultNS).UpdateScale(ctx, name, scale(faultNS, name, n), metav1.UpdateOptions{})
			}
			select {
			case <-ctx.Done():
			case <-time.After(1500 * time.Millisecond):
			}
		}
	}()

	faults := &faultInjector{rng: rand.New(rand.NewPCG(3, 5)), rate: 0.05}
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	for i := range kills {
		cfg := agent.DefaultConfig()
		cfg.Kubeconfig = w.lab.AgentKubeconfig("cluster02")
		cfg.BrokerServer = w.lab.BrokerURL() // the stored one may be the node address, which only pods reach
		cfg.MetricsAddress, cfg.HealthAddress = "0", "0"
		cfg.LeaderElect = false
		cfg.Identity = fmt.Sprintf("fault-test-%d", i)
		cfg.WrapTransport = faults.wrap
		actx, kill := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			a, err := agent.New(actx, cfg)
			if err != nil {
				return // an injected error at start: the next run tries again
			}
			_ = a.Run(actx)
		}()
		time.Sleep(time.Duration(300+rng.IntN(2700)) * time.Millisecond)
		kill()
		<-done
	}
	t.Logf("%d agent kills in %s; %d of %d API requests failed on purpose", kills, time.Since(start).Round(time.Second), faults.failed(), faults.total())
	stop()
	wg.Wait()
	scaleTo(t, w.cs["cluster03"], faultNS, "rebel-base", 2)
	scaleTo(t, w.cs["cluster03"], faultNS, "echo", 2)
	w.lab.StartComponent("cluster02", supervisor.Agent)
	restarted = true
	w.healthy(t, 2*time.Minute)
	// Exactly: every endpoint cluster03's own slices hold, with the same conditions, and no
	// other. Pods scaled away stay in them as terminating until their node has stopped them,
	// which took over two minutes on a loaded node in one run; the copies must hold them too.
	poll(t, 2*time.Minute, "cluster02 serves exactly cluster03's endpoints, 2 of them ready", func(ctx context.Context) (bool, error) {
		own := discoveryv1.LabelManagedBy + "=endpointslice-controller.k8s.io," + discoveryv1.LabelServiceName + "="
		var problems []string
		for _, c := range []struct{ what, service, copies string }{
			{"global Service", "rebel-base", "strait.io/global-service=rebel-base," + mcsv1beta1.LabelSourceCluster + "=cluster03"},
			{"MCS import", "echo", mcsv1beta1.LabelServiceName + "=echo," + mcsv1beta1.LabelSourceCluster + "=cluster03"},
		} {
			want, err := endpointSet(ctx, w.cs["cluster03"], faultNS, own+c.service)
			if err != nil {
				return false, err
			}
			got, err := endpointSet(ctx, w.cs["cluster02"], faultNS, c.copies)
			if err != nil {
				return false, err
			}
			if !maps.Equal(got, want) || want.ready() != 2 {
				problems = append(problems, fmt.Sprintf("%s of %s: cluster03 has %v, cluster02 serves %v", c.what, c.service, want, got))
			}
		}
		if len(problems) > 0 {
			return false, errors.New(strings.Join(problems, "; "))
		}
		return true, nil
	})
	var wrong []string
	for _, d := range gone {
		wrong = append(wrong, d.list()...)
	}
	t.Logf("wrong deletions over %d kills: %d", kills, len(wrong))
	for _, g := range wrong {
		t.Errorf("wrong deletion: %s", g)
	}
}

// faultInjector fails a share of API requests the way a struggling API server does: a 500,
// a 429, or a connection reset.
type faultInjector struct {
	mu         sync.Mutex
	rng        *rand.Rand
	rate       float64
	n, injured int
}

func (f *faultInjector) total() int  { f.mu.Lock(); defer f.mu.Unlock(); return f.n }
func (f *faultInjector) failed() int { f.mu.Lock(); defer f.mu.Unlock(); return f.injured }

func (f *faultInjector) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		f.mu.Lock()
		f.n++
		fail, kind := f.rng.Float64() < f.rate, f.rng.IntN(3)
		if fail {
			f.injured++
		}
		f.mu.Unlock()
		if !fail {
			return rt.RoundTrip(r)
		}
		switch kind {
		case 0:
			return statusResponse(r, http.StatusInternalServerError, "InternalError", "injected: etcdserver: request timed out"), nil
		case 1:
			return statusResponse(r, http.StatusTooManyRequests, "TooManyRequests", "injected: too many requests"), nil
		}
		return nil, errors.New("injected: connection reset by peer")
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func statusResponse(r *http.Request, code int, reason, msg string) *http.Response {
	body := fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":%q,"reason":%q,"code":%d}`, msg, reason, code)
	h := http.Header{"Content-Type": []string{"application/json"}}
	if code == http.StatusTooManyRequests {
		h.Set("Retry-After", "1")
	}
	return &http.Response{StatusCode: code, Header: h, Body: io.NopCloser(strings.NewReader(body)), Request: r, ContentLength: int64(len(body))}
}

// endpoints maps each endpoint address to its conditions.
type endpoints map[string]string

func (e endpoints) ready() int {
	n := 0
	for _, c := range e {
		if c == "ready" {
			n++
		}
	}
	return n
}

// endpointSet reads the endpoints of the slices a selector picks in a namespace.
func endpointSet(ctx context.Context, cs kubernetes.Interface, ns, selector string) (endpoints, error) {
	list, err := cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	out := endpoints{}
	for _, s := range list.Items {
		for _, e := range s.Endpoints {
			c := e.Conditions
			state := "ready"
			switch {
			case c.Terminating != nil && *c.Terminating:
				state = "terminating"
			case c.Ready != nil && !*c.Ready:
				state = "not ready"
			}
			for _, a := range e.Addresses {
				out[a] = state
			}
		}
	}
	return out, nil
}
