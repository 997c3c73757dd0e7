package dnsendpoint

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"sigs.k8s.io/yaml"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/lab/labtest"
)

var zoneCfg = zone.Config{Domain: "fed.example.com"}

func services(eastAHealthy bool) []zone.Service {
	return []zone.Service{
		{Namespace: "shop", Name: "web", Federation: "f", TTL: 60 * time.Second, Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: eastAHealthy, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
			{Cluster: "c2", Region: "east", Zone: "east-b", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.2")}},
		}},
		{Namespace: "shop", Name: "db", Federation: "f", Shards: []zone.Shard{
			{Cluster: "c1", Region: "east", Zone: "east-a", Healthy: true, Addresses: []netip.Addr{netip.MustParseAddr("2001:db8::10")}},
		}},
	}
}

func records(t *testing.T, svcs []zone.Service) []zone.Record {
	t.Helper()
	rs, err := zone.Records(zoneCfg, svcs)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestObjects(t *testing.T) {
	p := &Publisher{cfg: Config{Namespace: "dns", Owner: "lab", Domain: zoneCfg.Domain}}
	objs, err := p.Objects(records(t, services(false)))
	if err != nil {
		t.Fatal(err)
	}
	web := objs[ObjectName(zone.ServiceKey{Namespace: "shop", Name: "web", Federation: "f"})]
	if web == nil || len(objs) != 2 {
		t.Fatalf("objects: %v", objs)
	}
	got, err := yaml.Marshal(web.Object)
	if err != nil {
		t.Fatal(err)
	}
	want := `apiVersion: externaldns.k8s.io/v1alpha1
kind: DNSEndpoint
metadata:
  annotations:
    dns.strait.io/service: f/shop/web
  labels:
    app.kubernetes.io/managed-by: strait
    dns.strait.io/owner: lab
  name: ` + web.GetName() + `
  namespace: dns
spec:
  endpoints:
  - dnsName: web.shop.f.svc.east-a.east.fed.example.com
    recordTTL: 60
    recordType: CNAME
    targets:
    - web.shop.f.svc.east.fed.example.com
  - dnsName: web.shop.f.svc.east-b.east.fed.example.com
    recordTTL: 60
    recordType: A
    targets:
    - 192.0.2.2
  - dnsName: web.shop.f.svc.east.fed.example.com
    recordTTL: 60
    recordType: A
    targets:
    - 192.0.2.2
  - dnsName: web.shop.f.svc.fed.example.com
    recordTTL: 60
    recordType: A
    targets:
    - 192.0.2.2
`
	if string(got) != want {
		t.Errorf("object:\n%s\nwant:\n%s", got, want)
	}
	if _, err := p.Objects([]zone.Record{{Name: "x.example.com.", Type: zone.TypeTXT, Service: zone.ServiceKey{Name: "a", Namespace: "b", Federation: "c"}}}); err == nil {
		t.Error("a TXT record was accepted")
	}
	if _, err := p.Objects([]zone.Record{{Name: "x.example.com.", Type: zone.TypeA, Addr: netip.MustParseAddr("192.0.2.1")}}); err == nil {
		t.Error("a record without service was accepted")
	}
	if _, err := p.Objects([]zone.Record{{Name: "www.fed.example.com.", Type: zone.TypeA, Addr: netip.MustParseAddr("192.0.2.1"),
		Service: zone.ServiceKey{Name: "a", Namespace: "b", Federation: "c"}}}); err == nil || !strings.Contains(err.Error(), "not a service name") {
		t.Errorf("a name outside the service names was accepted: %v", err)
	}
	if _, err := New(nil, Config{Namespace: "dns", Owner: "x"}); err == nil || !strings.Contains(err.Error(), "invalid federation domain") {
		t.Errorf("no domain: %v", err)
	}
	if _, err := New(nil, Config{Namespace: "Bad_NS", Owner: "x"}); err == nil || !strings.Contains(err.Error(), `invalid namespace "Bad_NS"`) {
		t.Errorf("bad namespace: %v", err)
	}
}

// TestPublishOnLab publishes to a real API server: create, fail over, delete a service, the
// empty-set guard, and objects of others (same name, or just in the namespace) untouched.
func TestPublishOnLab(t *testing.T) {
	lab := labtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client, err := dynamic.NewForConfig(lab.RESTConfig("cluster01"))
	if err != nil {
		t.Fatal(err)
	}
	installCRD(ctx, t, client)
	const ns = "default"
	eps := client.Resource(GVR).Namespace(ns)

	// Someone else's objects: one unrelated, one with the name of our db object.
	dbName := ObjectName(zone.ServiceKey{Namespace: "shop", Name: "db", Federation: "f"})
	foreign := map[string]*unstructured.Unstructured{}
	for _, name := range []string{"hand-made", dbName} {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
			"metadata": map[string]any{"name": name, "namespace": ns},
			"spec": map[string]any{"endpoints": []any{map[string]any{
				"dnsName": name + ".example.com", "recordType": "A", "targets": []any{"192.0.2.200"},
			}}},
		}}
		created, err := eps.Create(ctx, u, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		foreign[name] = created
	}
	untouched := func() {
		t.Helper()
		for name, was := range foreign {
			now, err := eps.Get(ctx, name, metav1.GetOptions{})
			if err != nil || now.GetResourceVersion() != was.GetResourceVersion() {
				t.Errorf("someone else's DNSEndpoint %s changed: %v", name, err)
			}
		}
	}

	p, err := New(client, Config{Namespace: ns, Owner: "lab", Domain: zoneCfg.Domain})
	if err != nil {
		t.Fatal(err)
	}
	webName := ObjectName(zone.ServiceKey{Namespace: "shop", Name: "web", Federation: "f"})
	res, err := p.Publish(ctx, records(t, services(true)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Created, []string{webName}) || !slices.Equal(res.Conflicts, []string{dbName}) {
		t.Errorf("first publish: %+v", res)
	}
	endpoint := func(dnsName string) map[string]any {
		t.Helper()
		u, err := eps.Get(ctx, webName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		list, _, _ := unstructured.NestedSlice(u.Object, "spec", "endpoints")
		for _, e := range list {
			if e.(map[string]any)["dnsName"] == dnsName {
				return e.(map[string]any)
			}
		}
		return nil
	}
	const zoneA = "web.shop.f.svc.east-a.east.fed.example.com"
	if e := endpoint(zoneA); e == nil || e["recordType"] != "A" || e["targets"].([]any)[0] != "192.0.2.1" {
		t.Errorf("zone endpoint: %v", e)
	}
	untouched()

	// Again: nothing to do.
	if res, err := p.Publish(ctx, records(t, services(true)), Options{}); err != nil || len(res.Updated)+len(res.Created)+len(res.Deleted) != 0 {
		t.Errorf("second publish: %+v %v", res, err)
	}
	// Failover: the zone becomes a CNAME to its region.
	res, err = p.Publish(ctx, records(t, services(false)), Options{})
	if err != nil || !slices.Equal(res.Updated, []string{webName}) {
		t.Fatalf("failover publish: %+v %v", res, err)
	}
	if e := endpoint(zoneA); e == nil || e["recordType"] != "CNAME" || e["targets"].([]any)[0] != "web.shop.f.svc.east.fed.example.com" {
		t.Errorf("zone endpoint after failover: %v", e)
	}
	untouched()

	// The empty-set guard, then an allowed empty set.
	if _, err := p.Publish(ctx, nil, Options{}); !errors.Is(err, ErrEmptyDesired) {
		t.Errorf("empty set: %v", err)
	}
	if _, err := eps.Get(ctx, webName, metav1.GetOptions{}); err != nil {
		t.Errorf("the refused empty publish deleted: %v", err)
	}
	res, err = p.Publish(ctx, nil, Options{AllowEmpty: true})
	if err != nil || !slices.Equal(res.Deleted, []string{webName}) {
		t.Errorf("allowed empty publish: %+v %v", res, err)
	}
	if _, err := eps.Get(ctx, webName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("our object after the allowed empty publish: %v", err)
	}
	untouched()
}

// TestLabelsAloneAreNotOwnership: objects that carry our labels but list a name outside the
// domain's service names, or are not named after the service they name, are never updated
// or deleted, and a desired object of that name is a conflict.
func TestLabelsAloneAreNotOwnership(t *testing.T) {
	ctx := context.Background()
	ours := map[string]any{clusterset.ManagedByLabel: clusterset.ManagedByValue, OwnerLabel: "lab"}
	webName := ObjectName(zone.ServiceKey{Namespace: "shop", Name: "web", Federation: "f"})
	dbName := ObjectName(zone.ServiceKey{Namespace: "shop", Name: "db", Federation: "f"})
	obj := func(name, service, dnsName string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "externaldns.k8s.io/v1alpha1", "kind": "DNSEndpoint",
			"metadata": map[string]any{"name": name, "namespace": "dns", "labels": ours,
				"annotations": map[string]any{ServiceAnnotation: service}},
			"spec": map[string]any{"endpoints": []any{map[string]any{
				"dnsName": dnsName, "recordType": "A", "targets": []any{"192.0.2.200"},
			}}},
		}}
	}
	foreign := []*unstructured.Unstructured{
		obj(webName, "f/shop/web", "www.example.com"),                                                                // a name outside the domain
		obj("forged", "f/shop/forged", "forged.shop.f.svc.fed.example.com"),                                          // not named after its service
		obj(ObjectName(zone.ServiceKey{Namespace: "x", Name: "y", Federation: "f"}), "f/x/y", "api.fed.example.com"), // not a service name
	}
	var objs []runtime.Object
	for _, u := range foreign {
		objs = append(objs, u.DeepCopy())
	}
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{GVR: "DNSEndpointList"}, objs...)
	p, err := New(client, Config{Namespace: "dns", Owner: "lab", Domain: zoneCfg.Domain})
	if err != nil {
		t.Fatal(err)
	}
	res, err := p.Publish(ctx, records(t, services(true)), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Created, []string{dbName}) || !slices.Equal(res.Conflicts, []string{webName}) || len(res.Ignored) != 3 {
		t.Errorf("publish: %+v", res)
	}
	res, err = p.Publish(ctx, nil, Options{AllowEmpty: true})
	if err != nil || !slices.Equal(res.Deleted, []string{dbName}) {
		t.Errorf("allowed empty publish: %+v %v", res, err)
	}
	for _, u := range foreign {
		got, err := client.Resource(GVR).Namespace("dns").Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", u.GetName(), err)
		}
		if !equality.Semantic.DeepEqual(got.Object["spec"], u.Object["spec"]) {
			t.Errorf("%s changed: %v", u.GetName(), got.Object["spec"])
		}
	}
}

func installCRD(ctx context.Context, t *testing.T, client dynamic.Interface) {
	t.Helper()
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(CRD, &crd.Object); err != nil {
		t.Fatal(err)
	}
	crds := client.Resource(schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"})
	if _, err := crds.Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := client.Resource(GVR).Namespace("default").List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	if err != nil {
		t.Fatalf("DNSEndpoint API not served: %v", err)
	}
}
