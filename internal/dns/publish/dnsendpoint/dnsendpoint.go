// Package dnsendpoint publishes the federation's records as ExternalDNS DNSEndpoint objects
// (externaldns.k8s.io/v1alpha1), one per federated service, so that ExternalDNS running with
// `--source=crd` pushes them to Route 53, Cloud DNS, Azure DNS and the rest; ExternalDNS's
// own TXT registry then guards the records at the provider.
//
// On the Kubernetes side the publisher owns only the objects it created: they carry the
// managed-by label and its owner label, it lists by those labels, and it never updates or
// deletes an object without them (a same-named object someone else made is a conflict, left
// alone). Deletes are preconditioned on the UID and resourceVersion it read. It publishes
// only the service names its zone model derives under its federation domain, and an object
// carrying its labels that lists any other name, or whose name does not match the service
// it names, is not its own either: it is never updated or deleted. Owner IDs are unique per
// clusterset and domain by default (see internal/dns.DefaultOwner), so two installations
// sharing a namespace never take each other's objects for their own.
package dnsendpoint

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/dns/zone"
	"github.com/strait-io/strait/internal/names"
)

// CRD is the DNSEndpoint CustomResourceDefinition (YAML), for labs and tests; clusters running
// ExternalDNS with the CRD source have it already.
//
//go:embed crd.yaml
var CRD []byte

// GVR is the DNSEndpoint resource.
var GVR = schema.GroupVersionResource{Group: "externaldns.k8s.io", Version: "v1alpha1", Resource: "dnsendpoints"}

const (
	// OwnerLabel names the publisher that owns an object (Config.Owner).
	OwnerLabel = "dns.strait.io/owner"
	// ServiceAnnotation names the federated service (federation/namespace/name) of an object.
	ServiceAnnotation = "dns.strait.io/service"
)

// Config configures a publisher.
type Config struct {
	// Namespace holds the DNSEndpoint objects (the one ExternalDNS watches).
	Namespace string
	// Owner identifies this publisher; a label value.
	Owner string
	// Domain is the federation domain: only its service names are published.
	Domain string
}

// Options qualify one Publish.
type Options struct {
	// AllowEmpty lets an empty desired set delete every object published before.
	AllowEmpty bool
}

// Result tells what a Publish did, by object name.
type Result struct {
	Created, Updated, Deleted []string
	// Conflicts are desired objects whose name is taken by an object this publisher does not own.
	Conflicts []string
	// Ignored are objects with this publisher's labels that are not its own (they list a
	// name outside its domain's service names, or do not match the service they name);
	// they were left alone.
	Ignored []string
}

// ErrEmptyDesired is returned when an empty desired set would delete published objects.
var ErrEmptyDesired = errors.New("the desired record set is empty")

// Publisher keeps DNSEndpoint objects in line with the desired records.
type Publisher struct {
	client dynamic.NamespaceableResourceInterface
	cfg    Config
}

// New validates the configuration.
func New(client dynamic.Interface, cfg Config) (*Publisher, error) {
	if errs := validation.IsDNS1123Label(cfg.Namespace); len(errs) > 0 {
		return nil, fmt.Errorf("invalid namespace %q: %s", cfg.Namespace, strings.Join(errs, "; "))
	}
	if errs := validation.IsValidLabelValue(cfg.Owner); len(errs) > 0 || cfg.Owner == "" {
		return nil, fmt.Errorf("invalid owner %q: a non-empty label value", cfg.Owner)
	}
	if err := (zone.Config{Domain: cfg.Domain}).Validate(); err != nil {
		return nil, fmt.Errorf("invalid federation domain: %w", err)
	}
	return &Publisher{client: client.Resource(GVR), cfg: cfg}, nil
}

// ObjectName is the DNSEndpoint name of a federated service: deterministic, and distinct for
// distinct services however long their names.
func ObjectName(k zone.ServiceKey) string {
	return names.Unique(k.Federation, k.Namespace, k.Name)
}

func (p *Publisher) selector() string {
	return labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue, OwnerLabel: p.cfg.Owner}).String()
}

// Objects returns the desired DNSEndpoint objects for records, by name.
func (p *Publisher) Objects(desired []zone.Record) (map[string]*unstructured.Unstructured, error) {
	type rrset struct {
		name, rtype string
		ttl         int64
		targets     []string
	}
	bySvc := map[zone.ServiceKey]map[string]*rrset{}
	for _, r := range desired {
		if r.Service == (zone.ServiceKey{}) {
			return nil, fmt.Errorf("record %s names no federated service", r)
		}
		name := strings.TrimSuffix(strings.ToLower(r.Name), ".")
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("record %s: invalid name: %s", r, strings.Join(errs, "; "))
		}
		if !zone.IsServiceName(p.cfg.Domain, name) {
			return nil, fmt.Errorf("record %s is not a service name of the federation domain %s", r, p.cfg.Domain)
		}
		var target string
		switch {
		case (r.Type == zone.TypeA && r.Addr.Is4()) || (r.Type == zone.TypeAAAA && r.Addr.Is6() && !r.Addr.Is4In6()):
			target = r.Addr.String()
		case r.Type == zone.TypeCNAME && r.Target != "":
			target = strings.TrimSuffix(strings.ToLower(r.Target), ".")
		default:
			return nil, fmt.Errorf("record %s: only A, AAAA and CNAME records with data are published", r)
		}
		sets := bySvc[r.Service]
		if sets == nil {
			sets = map[string]*rrset{}
			bySvc[r.Service] = sets
		}
		key := name + " " + r.Type.String()
		s := sets[key]
		if s == nil {
			s = &rrset{name: name, rtype: r.Type.String(), ttl: int64(r.TTL)}
			sets[key] = s
		}
		s.ttl = min(s.ttl, int64(r.TTL))
		if !slices.Contains(s.targets, target) {
			s.targets = append(s.targets, target)
		}
	}
	out := map[string]*unstructured.Unstructured{}
	for svc, sets := range bySvc {
		var endpoints []any
		for _, key := range slices.Sorted(maps.Keys(sets)) {
			s := sets[key]
			slices.Sort(s.targets)
			targets := make([]any, len(s.targets))
			for i, t := range s.targets {
				targets[i] = t
			}
			endpoints = append(endpoints, map[string]any{
				"dnsName": s.name, "recordType": s.rtype, "recordTTL": s.ttl, "targets": targets,
			})
		}
		name := ObjectName(svc)
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "externaldns.k8s.io/v1alpha1",
			"kind":       "DNSEndpoint",
			"metadata": map[string]any{
				"name":        name,
				"namespace":   p.cfg.Namespace,
				"labels":      map[string]any{clusterset.ManagedByLabel: clusterset.ManagedByValue, OwnerLabel: p.cfg.Owner},
				"annotations": map[string]any{ServiceAnnotation: svc.String()},
			},
			"spec": map[string]any{"endpoints": endpoints},
		}}
		out[name] = u
	}
	return out, nil
}

// own reports whether an object with this publisher's labels is its own: named after the
// service its annotation names, listing only service names of the federation domain.
// Labels alone prove nothing (anyone who may create DNSEndpoints can set them).
func (p *Publisher) own(u *unstructured.Unstructured) bool {
	parts := strings.Split(u.GetAnnotations()[ServiceAnnotation], "/")
	if len(parts) != 3 || u.GetName() != ObjectName(zone.ServiceKey{Federation: parts[0], Namespace: parts[1], Name: parts[2]}) {
		return false
	}
	endpoints, _, err := unstructured.NestedSlice(u.Object, "spec", "endpoints")
	if err != nil {
		return false
	}
	for _, e := range endpoints {
		m, ok := e.(map[string]any)
		name, _ := m["dnsName"].(string)
		if !ok || !zone.IsServiceName(p.cfg.Domain, name) {
			return false
		}
	}
	return true
}

// Publish makes the owned DNSEndpoint objects describe exactly desired: it creates, updates
// and deletes only objects carrying this publisher's labels. desired must be complete and
// authoritative; an empty set that would delete objects is refused unless allowed.
func (p *Publisher) Publish(ctx context.Context, desired []zone.Record, opts Options) (Result, error) {
	var res Result
	want, err := p.Objects(desired)
	if err != nil {
		return res, err
	}
	list, err := p.client.Namespace(p.cfg.Namespace).List(ctx, metav1.ListOptions{LabelSelector: p.selector()})
	if err != nil {
		return res, fmt.Errorf("listing DNSEndpoints in %s: %w", p.cfg.Namespace, err)
	}
	have := map[string]*unstructured.Unstructured{}
	notOurs := map[string]bool{}
	for i := range list.Items {
		u := &list.Items[i]
		if !p.own(u) {
			notOurs[u.GetName()] = true
			res.Ignored = append(res.Ignored, u.GetName())
			continue
		}
		have[u.GetName()] = u
	}
	if len(want) == 0 && len(have) > 0 && !opts.AllowEmpty {
		return res, fmt.Errorf("%w: refusing to delete the %d DNSEndpoints published in %s (allow an empty set explicitly to do that)",
			ErrEmptyDesired, len(have), p.cfg.Namespace)
	}
	var errs []error
	ns := p.client.Namespace(p.cfg.Namespace)
	for _, name := range slices.Sorted(maps.Keys(want)) {
		obj := want[name]
		cur, ok := have[name]
		if notOurs[name] {
			res.Conflicts = append(res.Conflicts, name)
			continue
		}
		if !ok {
			_, err := ns.Create(ctx, obj, metav1.CreateOptions{FieldManager: "strait-dns"})
			switch {
			case apierrors.IsAlreadyExists(err):
				// Someone else's object (it lacks our labels, or the list would have had it).
				res.Conflicts = append(res.Conflicts, name)
			case err != nil:
				errs = append(errs, fmt.Errorf("creating DNSEndpoint %s/%s: %w", p.cfg.Namespace, name, err))
			default:
				res.Created = append(res.Created, name)
			}
			continue
		}
		if equality.Semantic.DeepEqual(cur.Object["spec"], obj.Object["spec"]) &&
			cur.GetAnnotations()[ServiceAnnotation] == obj.GetAnnotations()[ServiceAnnotation] {
			continue
		}
		upd := cur.DeepCopy()
		upd.Object["spec"] = obj.Object["spec"]
		ann := upd.GetAnnotations()
		if ann == nil {
			ann = map[string]string{}
		}
		ann[ServiceAnnotation] = obj.GetAnnotations()[ServiceAnnotation]
		upd.SetAnnotations(ann)
		// The resourceVersion read makes the update fail, rather than overwrite, if the
		// object changed (or was replaced by someone else's) since the list.
		if _, err := ns.Update(ctx, upd, metav1.UpdateOptions{FieldManager: "strait-dns"}); err != nil {
			errs = append(errs, fmt.Errorf("updating DNSEndpoint %s/%s: %w", p.cfg.Namespace, name, err))
			continue
		}
		res.Updated = append(res.Updated, name)
	}
	for _, name := range slices.Sorted(maps.Keys(have)) {
		if _, ok := want[name]; ok {
			continue
		}
		cur := have[name]
		uid, rv := cur.GetUID(), cur.GetResourceVersion()
		err := ns.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid, ResourceVersion: &rv}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting DNSEndpoint %s/%s: %w", p.cfg.Namespace, name, err))
			continue
		}
		res.Deleted = append(res.Deleted, name)
	}
	return res, errors.Join(errs...)
}
