package brokercache

import (
	"context"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	mcsfake "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned/fake"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/records"
)

func registry(id string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: clusterset.RegistryName(id), Namespace: clusterset.ClustersetNamespace},
		Data: clusterset.MembershipData(clusterset.Member{ID: id})}
}

func record(id, name string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: clusterset.MemberNamespace(id),
		Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}}, AddressType: discoveryv1.AddressTypeIPv4}
}

// seen records the names of objects handlers were told about.
type seen struct {
	mu             sync.Mutex
	added, deleted []string
}

func (s *seen) handler() cache.ResourceEventHandler {
	name := func(obj any) string {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		o := obj.(metav1.Object)
		return o.GetNamespace() + "/" + o.GetName()
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { s.mu.Lock(); s.added = append(s.added, name(obj)); s.mu.Unlock() },
		DeleteFunc: func(obj any) {
			s.mu.Lock()
			s.deleted = append(s.deleted, name(obj))
			s.mu.Unlock()
		},
	}
}

func (s *seen) get() (added, deleted []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, d := slices.Clone(s.added), slices.Clone(s.deleted)
	sort.Strings(a)
	sort.Strings(d)
	return a, d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

func names(list []*discoveryv1.EndpointSlice) []string {
	var out []string
	for _, s := range list {
		out = append(out, s.Namespace+"/"+s.Name)
	}
	sort.Strings(out)
	return out
}

// Records count only in registered members' namespaces; a member that joins is watched, a
// member that leaves takes its records with it and handlers hear of each deletion.
func TestCacheFollowsTheRegistry(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset([]runtime.Object{
		registry("c1"), record("c1", "a"),
		record("c2", "b"),           // c2 is not registered (yet)
		record("ghost", "intruder"), // never registered
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app-config", Namespace: "default"}},
	}...)
	c := New(kube, mcsfake.NewSimpleClientset())
	var s seen
	if _, err := c.Slices.AddEventHandler(s.handler()); err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	waitFor(t, "synced", c.HasSynced)
	list, err := c.SliceLister().List(labels.Everything())
	if err != nil || !slices.Equal(names(list), []string{"strait-member-c1/a"}) {
		t.Fatalf("records %v (%v), want only registered c1's", names(list), err)
	}
	if _, err := c.SliceLister().EndpointSlices(clusterset.MemberNamespace("ghost")).Get("intruder"); !apierrors.IsNotFound(err) {
		t.Errorf("a record of an unregistered namespace: %v, want NotFound", err)
	}
	if !c.Registered("c1") || c.Registered("c2") {
		t.Error("Registered")
	}

	// c2 joins: its record appears and handlers registered before hear of it.
	if _, err := kube.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Create(ctx, registry("c2"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c2's record", func() bool {
		a, _ := s.get()
		return slices.Contains(a, "strait-member-c2/b")
	})
	members, err := c.Members()
	if err != nil || len(members) != 2 {
		t.Errorf("members %v (%v)", members, err)
	}

	// c1 leaves: its record goes, with a deletion for every handler.
	if err := kube.CoreV1().ConfigMaps(clusterset.ClustersetNamespace).Delete(ctx, clusterset.RegistryName("c1"), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c1's record deleted", func() bool {
		_, d := s.get()
		return slices.Contains(d, "strait-member-c1/a")
	})
	list, _ = c.SliceLister().List(labels.Everything())
	if !slices.Equal(names(list), []string{"strait-member-c2/b"}) {
		t.Errorf("records after c1 left: %v", names(list))
	}
	// An object of c1's namespace written later reaches nobody.
	if _, err := kube.DiscoveryV1().EndpointSlices(clusterset.MemberNamespace("c1")).Create(ctx, record("c1", "late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if a, _ := s.get(); slices.Contains(a, "strait-member-c1/late") {
		t.Error("a record of a member that left reached a handler")
	}
}

// A malformed registry record is an error for Members (a partial view never drops a
// member), and its namespace stays watched.
func TestMalformedRecordKeepsTheMemberWatched(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bad := registry("c1")
	bad.Data[clusterset.KeyClusterID] = "c9"
	c := New(fake.NewClientset(bad, record("c1", "a")), mcsfake.NewSimpleClientset())
	c.Start(ctx)
	waitFor(t, "synced", c.HasSynced)
	if _, err := c.Members(); err == nil {
		t.Error("Members with a malformed record: no error")
	}
	if _, err := c.SliceLister().EndpointSlices(clusterset.MemberNamespace("c1")).Get("a"); err != nil {
		t.Errorf("c1's record: %v", err)
	}
}

// The records of one Service are listed through the record index, and the result is what
// a scan would give.
func TestRecordsOfOneService(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := func(id, ns, name string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: records.SliceName(ns, name, discoveryv1.AddressTypeIPv4),
			Namespace: clusterset.MemberNamespace(id), Labels: records.Labels(id, ns, name)}, AddressType: discoveryv1.AddressTypeIPv4}
	}
	c := New(fake.NewClientset(registry("c1"), registry("c2"),
		rec("c1", "demo", "web"), rec("c2", "demo", "web"), rec("c1", "demo", "api"), rec("c1", "other", "web")), mcsfake.NewSimpleClientset())
	c.Start(ctx)
	waitFor(t, "synced", func() bool { return c.HasSynced() && len(c.snapshot()) == 2 })
	waitFor(t, "c2 synced", c.HasSynced)
	list, err := c.SliceLister().List(records.Selector("demo", "web"))
	want := []string{"strait-member-c1/" + records.SliceName("demo", "web", discoveryv1.AddressTypeIPv4), "strait-member-c2/" + records.SliceName("demo", "web", discoveryv1.AddressTypeIPv4)}
	if err != nil || !slices.Equal(names(list), want) {
		t.Errorf("records of demo/web: %v (%v), want %v", names(list), err, want)
	}
	list, err = c.SliceLister().EndpointSlices(clusterset.MemberNamespace("c2")).List(records.Selector("demo", "web"))
	if err != nil || !slices.Equal(names(list), want[1:]) {
		t.Errorf("c2's records of demo/web: %v (%v)", names(list), err)
	}
	list, err = c.SliceLister().List(labels.SelectorFromSet(labels.Set{records.LabelServiceNamespace: "demo"}))
	if err != nil || len(list) != 3 {
		t.Errorf("records of namespace demo: %v (%v)", names(list), err)
	}
}

// Every handler of a kind hears every event of every member, and a handler added after the
// members' informers synced first hears of the objects they already hold.
func TestEveryHandlerHearsEveryMember(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	kube := fake.NewClientset(registry("c1"), record("c1", "a"), registry("c2"), record("c2", "b"))
	c := New(kube, mcsfake.NewSimpleClientset())
	var early1, early2, late seen
	for _, s := range []*seen{&early1, &early2} {
		if _, err := c.Slices.AddEventHandler(s.handler()); err != nil {
			t.Fatal(err)
		}
	}
	c.Start(ctx)
	waitFor(t, "synced", c.HasSynced)
	waitFor(t, "both members' records", func() bool { a, _ := early2.get(); return len(a) == 2 })
	if _, err := c.Slices.AddEventHandler(late.handler()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a handler added late told of the records already held", func() bool {
		a, _ := late.get()
		return slices.Equal(a, []string{"strait-member-c1/a", "strait-member-c2/b"})
	})
	if err := kube.DiscoveryV1().EndpointSlices(clusterset.MemberNamespace("c2")).Delete(ctx, "b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]*seen{"first": &early1, "second": &early2, "late": &late} {
		waitFor(t, "the deletion reaching the "+name+" handler", func() bool { _, d := s.get(); return slices.Equal(d, []string{"strait-member-c2/b"}) })
	}
	if a, _ := early1.get(); !slices.Equal(a, []string{"strait-member-c1/a", "strait-member-c2/b"}) {
		t.Errorf("the first handler was told of %v, want each record once", a)
	}
}
