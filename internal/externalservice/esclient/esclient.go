// Package esclient is a small typed client, informer and lister for ExternalServices
// (strait.io/v1alpha1), built on client-go's REST client. It spares the project a generated
// clientset for one resource.
package esclient

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/strait-io/strait/api/v1alpha1"
)

// Resource is the plural resource name.
const Resource = "externalservices"

// Client talks to the externalservices resource.
type Client struct {
	rest   rest.Interface
	params runtime.ParameterCodec
}

// New returns a client for the cluster of cfg.
func New(cfg *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &v1alpha1.GroupVersion
	c.APIPath = "/apis"
	c.ContentType = runtime.ContentTypeJSON
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("ExternalService client: %w", err)
	}
	return &Client{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// Served reports whether the API server serves ExternalServices (the CRD is installed).
func Served(d discovery.DiscoveryInterface) (bool, error) {
	list, err := d.ServerResourcesForGroupVersion(v1alpha1.GroupVersion.String())
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("discovering %s: %w", v1alpha1.GroupVersion, err)
	}
	for _, r := range list.APIResources {
		if r.Name == Resource {
			return true, nil
		}
	}
	return false, nil
}

// Namespaced is the client of one namespace ("" for all, in List and Watch).
type Namespaced struct {
	c  *Client
	ns string
}

// ExternalServices returns the client of a namespace.
func (c *Client) ExternalServices(namespace string) *Namespaced {
	return &Namespaced{c: c, ns: namespace}
}

func (n *Namespaced) req(verb string) *rest.Request {
	var r *rest.Request
	switch verb {
	case "GET":
		r = n.c.rest.Get()
	case "POST":
		r = n.c.rest.Post()
	case "PUT":
		r = n.c.rest.Put()
	case "PATCH":
		r = n.c.rest.Patch(types.ApplyPatchType)
	default:
		r = n.c.rest.Delete()
	}
	return r.NamespaceIfScoped(n.ns, n.ns != "").Resource(Resource)
}

// Get reads one ExternalService.
func (n *Namespaced) Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1alpha1.ExternalService, error) {
	out := &v1alpha1.ExternalService{}
	err := n.req("GET").Name(name).VersionedParams(&opts, n.c.params).Do(ctx).Into(out)
	return out, err
}

// List lists ExternalServices.
func (n *Namespaced) List(ctx context.Context, opts metav1.ListOptions) (*v1alpha1.ExternalServiceList, error) {
	out := &v1alpha1.ExternalServiceList{}
	err := n.req("GET").VersionedParams(&opts, n.c.params).Do(ctx).Into(out)
	return out, err
}

// Watch watches ExternalServices.
func (n *Namespaced) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return n.req("GET").VersionedParams(&opts, n.c.params).Watch(ctx)
}

// Create creates an ExternalService.
func (n *Namespaced) Create(ctx context.Context, es *v1alpha1.ExternalService, opts metav1.CreateOptions) (*v1alpha1.ExternalService, error) {
	out := &v1alpha1.ExternalService{}
	err := n.req("POST").VersionedParams(&opts, n.c.params).Body(es).Do(ctx).Into(out)
	return out, err
}

// Update replaces an ExternalService's spec and metadata.
func (n *Namespaced) Update(ctx context.Context, es *v1alpha1.ExternalService, opts metav1.UpdateOptions) (*v1alpha1.ExternalService, error) {
	out := &v1alpha1.ExternalService{}
	err := n.req("PUT").Name(es.Name).VersionedParams(&opts, n.c.params).Body(es).Do(ctx).Into(out)
	return out, err
}

// UpdateStatus replaces an ExternalService's status.
func (n *Namespaced) UpdateStatus(ctx context.Context, es *v1alpha1.ExternalService, opts metav1.UpdateOptions) (*v1alpha1.ExternalService, error) {
	out := &v1alpha1.ExternalService{}
	err := n.req("PUT").Name(es.Name).SubResource("status").VersionedParams(&opts, n.c.params).Body(es).Do(ctx).Into(out)
	return out, err
}

// Apply applies es with server-side apply as fieldManager.
func (n *Namespaced) Apply(ctx context.Context, es *v1alpha1.ExternalService, opts metav1.PatchOptions) (*v1alpha1.ExternalService, error) {
	in := es.DeepCopy()
	in.APIVersion, in.Kind = v1alpha1.GroupVersion.String(), "ExternalService"
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	out := &v1alpha1.ExternalService{}
	err = n.req("PATCH").Name(es.Name).VersionedParams(&opts, n.c.params).Body(body).Do(ctx).Into(out)
	return out, err
}

// Delete deletes an ExternalService.
func (n *Namespaced) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return n.req("DELETE").Name(name).Body(&opts).Do(ctx).Error()
}

// NewInformer returns an informer of the ExternalServices of a namespace ("" for all).
func NewInformer(c *Client, namespace string, resync time.Duration) cache.SharedIndexInformer {
	n := c.ExternalServices(namespace)
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return n.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return n.Watch(ctx, opts)
		},
	}
	return cache.NewSharedIndexInformer(lw, &v1alpha1.ExternalService{}, resync,
		cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
}

// Lister reads ExternalServices from an informer's cache.
type Lister struct{ indexer cache.Indexer }

// NewLister returns a lister over an informer's indexer.
func NewLister(indexer cache.Indexer) Lister { return Lister{indexer: indexer} }

// Get returns one ExternalService, or a NotFound error.
func (l Lister) Get(namespace, name string) (*v1alpha1.ExternalService, error) {
	obj, ok, err := l.indexer.GetByKey(namespace + "/" + name)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierrors.NewNotFound(v1alpha1.Resource(Resource).GroupResource(), name)
	}
	return obj.(*v1alpha1.ExternalService), nil
}

// List returns the ExternalServices of a namespace ("" for all) matching a selector.
func (l Lister) List(namespace string, sel labels.Selector) ([]*v1alpha1.ExternalService, error) {
	var out []*v1alpha1.ExternalService
	err := cache.ListAllByNamespace(l.indexer, namespace, sel, func(obj any) {
		out = append(out, obj.(*v1alpha1.ExternalService))
	})
	return out, err
}
