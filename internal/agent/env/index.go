package env

import (
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// IndexedSlices returns a lister of the EndpointSlices of informer that lists the slices
// of one Service through an index: of every label in byLabel, by namespace and value.
// Reconcilers list slices by a Service-name label once per reconcile; scanning the
// namespace each time would make a resync cost the square of the Services. Call it
// before the informer starts.
func IndexedSlices(informer cache.SharedIndexInformer, byLabel ...string) (discoverylisters.EndpointSliceLister, error) {
	indexers := cache.Indexers{}
	for _, key := range byLabel {
		indexers[labelIndex(key)] = func(obj any) ([]string, error) {
			m, err := apimeta.Accessor(obj)
			if err != nil {
				return nil, nil
			}
			if v, ok := m.GetLabels()[key]; ok {
				return []string{m.GetNamespace() + "/" + v}, nil
			}
			return nil, nil
		}
	}
	if err := informer.AddIndexers(indexers); err != nil {
		return nil, err
	}
	return indexedSlices{informer.GetIndexer(), byLabel}, nil
}

func labelIndex(key string) string { return "label:" + key }

type indexedSlices struct {
	idx     cache.Indexer
	byLabel []string
}

func (l indexedSlices) List(sel labels.Selector) ([]*discoveryv1.EndpointSlice, error) {
	var out []*discoveryv1.EndpointSlice
	err := cache.ListAll(l.idx, sel, func(obj any) { out = append(out, obj.(*discoveryv1.EndpointSlice)) })
	return out, err
}

func (l indexedSlices) EndpointSlices(ns string) discoverylisters.EndpointSliceNamespaceLister {
	return indexedNamespace{l, ns}
}

type indexedNamespace struct {
	indexedSlices
	ns string
}

func (l indexedNamespace) List(sel labels.Selector) ([]*discoveryv1.EndpointSlice, error) {
	var out []*discoveryv1.EndpointSlice
	add := func(obj any) { out = append(out, obj.(*discoveryv1.EndpointSlice)) }
	for _, key := range l.byLabel {
		v, ok := sel.RequiresExactMatch(key)
		if !ok {
			continue
		}
		objs, err := l.idx.ByIndex(labelIndex(key), l.ns+"/"+v)
		if err != nil {
			return nil, err
		}
		for _, obj := range objs {
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok && sel.Matches(labels.Set(s.Labels)) {
				add(obj)
			}
		}
		return out, nil
	}
	err := cache.ListAllByNamespace(l.idx, l.ns, sel, add)
	return out, err
}

func (l indexedNamespace) Get(name string) (*discoveryv1.EndpointSlice, error) {
	obj, exists, err := l.idx.GetByKey(l.ns + "/" + name)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, apierrors.NewNotFound(discoveryv1.Resource("endpointslice"), name)
	}
	return obj.(*discoveryv1.EndpointSlice), nil
}
