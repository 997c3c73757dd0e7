// Package install puts into a member cluster everything it runs (the objects of Strait's
// chart, server-side applied) and configures its CoreDNS for clusterset.local, with the
// RBAC CoreDNS needs; and takes both back. An install checks everything it can before it
// writes (the cluster answers, the API server accepts every object in a dry run), and an
// install that fails (an image the nodes cannot pull, a rollout that never completes)
// puts back the objects it changed, deletes those it created and restores CoreDNS, so
// nothing is left half-installed.
package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager owns what the installer applies.
const FieldManager = "strait-install"

// Options say what to install where.
type Options struct {
	Config *rest.Config
	// Cluster names the cluster in messages (its kubeconfig context).
	Cluster string
	// Objects are the chart's rendered objects, CRDs first.
	Objects []*unstructured.Unstructured
	// CoreDNS makes the install configure CoreDNS for clusterset.local.
	CoreDNS bool
	// Timeout bounds the wait for the Deployments to be available.
	Timeout time.Duration
	// Progress receives a line per step; may be nil.
	Progress io.Writer
}

// Action is one change made to the cluster.
type Action struct {
	Verb      string `json:"action"` // created, configured, unchanged, deleted, restored
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// Result is what an install or uninstall did.
type Result struct {
	Cluster string   `json:"cluster"`
	Actions []Action `json:"actions"`
}

type target struct {
	obj      *unstructured.Unstructured
	resource dynamic.ResourceInterface
}

type installer struct {
	o      Options
	kube   kubernetes.Interface
	dyn    dynamic.Interface
	mapper meta.RESTMapper
	// created are the objects this run created; previous the objects it changed, as they
	// were before: a failed install deletes the first and puts the second back.
	created, previous []target
	coredns           *corednsChange
	result            Result
}

func (in *installer) say(format string, a ...any) {
	if in.o.Progress != nil {
		fmt.Fprintf(in.o.Progress, "install: "+format+"\n", a...)
	}
}

func newInstaller(o Options) (*installer, error) {
	in := &installer{o: o, result: Result{Cluster: o.Cluster}}
	var err error
	if in.kube, err = kubernetes.NewForConfig(o.Config); err != nil {
		return nil, err
	}
	if in.dyn, err = dynamic.NewForConfig(o.Config); err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(o.Config)
	if err != nil {
		return nil, err
	}
	in.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return in, nil
}

// Reachable checks that the cluster answers, naming it and its server when it does not.
func Reachable(ctx context.Context, cfg *rest.Config, cluster string) error {
	c := rest.CopyConfig(cfg)
	c.Timeout = 15 * time.Second
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return err
	}
	if _, err := dc.ServerVersion(); err != nil {
		return fmt.Errorf("cluster %s (%s) cannot be reached, so nothing was installed: %w", cluster, cfg.Host, err)
	}
	return nil
}

// Install applies the objects, configures CoreDNS and waits for the Deployments. On a
// failure it deletes what it created and restores CoreDNS.
func Install(ctx context.Context, o Options) (res *Result, err error) {
	if err := Reachable(ctx, o.Config, o.Cluster); err != nil {
		return nil, err
	}
	in, err := newInstaller(o)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if rerr := in.rollback(); rerr != nil {
				err = fmt.Errorf("%w; and undoing the install failed: %v", err, rerr)
			} else {
				err = fmt.Errorf("%w (nothing of this install is left: what it changed was put back, what it created deleted)", err)
			}
			res = nil
		}
	}()
	in.say("checking %d objects with the API server of %s (dry run)", len(o.Objects), o.Cluster)
	if err := in.apply(ctx, true); err != nil {
		return nil, err
	}
	in.say("applying %d objects", len(o.Objects))
	if err := in.apply(ctx, false); err != nil {
		return nil, err
	}
	if o.CoreDNS {
		in.say("configuring CoreDNS for %s", ClusterSetZone)
		if err := in.configureCoreDNS(ctx); err != nil {
			return nil, err
		}
	}
	if err := in.waitDeployments(ctx); err != nil {
		return nil, err
	}
	return &in.result, nil
}

// resourceFor maps an object to its resource client.
func (in *installer) resourceFor(obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := obj.GroupVersionKind()
	m, err := in.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if meta.IsNoMatchError(err) {
		// A CRD applied moments ago: read the API again.
		if r, ok := in.mapper.(meta.ResettableRESTMapper); ok {
			r.Reset()
		}
		m, err = in.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: the cluster does not serve this kind: %w", gvk.Kind, obj.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		return in.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
	}
	return in.dyn.Resource(m.Resource), nil
}

// apply server-side applies every object (dryRun: only checks them). Kinds the cluster
// does not serve yet because their CRD is in the same install are checked after it.
func (in *installer) apply(ctx context.Context, dryRun bool) error {
	for _, obj := range in.o.Objects {
		r, err := in.resourceFor(obj)
		if err != nil && dryRun && meta.IsNoMatchError(errors.Unwrap(err)) {
			continue
		}
		if err != nil {
			return err
		}
		opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
		if dryRun {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		existed := true
		if !dryRun {
			prev, err := r.Get(ctx, obj.GetName(), metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				existed = false
			case err != nil:
				return fmt.Errorf("reading %s: %w", describe(obj), err)
			default:
				in.previous = append(in.previous, target{restorable(prev), r})
			}
		}
		if _, err := r.Apply(ctx, obj.GetName(), obj, opts); err != nil {
			if dryRun && obj.GetKind() != "Namespace" && apierrors.IsNotFound(err) && strings.Contains(err.Error(), "namespaces") {
				continue // its namespace is created by the same install
			}
			return fmt.Errorf("applying %s to %s: %w", describe(obj), in.o.Cluster, err)
		}
		if dryRun {
			continue
		}
		verb := "configured"
		if !existed {
			verb = "created"
			in.created = append(in.created, target{obj, r})
		}
		in.result.Actions = append(in.result.Actions, Action{Verb: verb, Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()})
		if obj.GetKind() == "CustomResourceDefinition" {
			if err := waitEstablished(ctx, r, obj.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

// restorable is an object as read, made fit to be applied again: without the fields the
// API server keeps (identity, versions, managed fields, status).
func restorable(obj *unstructured.Unstructured) *unstructured.Unstructured {
	o := obj.DeepCopy()
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds"} {
		unstructured.RemoveNestedField(o.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(o.Object, "status")
	return o
}

func describe(obj *unstructured.Unstructured) string {
	if obj.GetNamespace() != "" {
		return fmt.Sprintf("%s %s/%s", obj.GetKind(), obj.GetNamespace(), obj.GetName())
	}
	return fmt.Sprintf("%s %s", obj.GetKind(), obj.GetName())
}

func waitEstablished(ctx context.Context, r dynamic.ResourceInterface, name string) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		crd, err := r.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CustomResourceDefinition %s was not established within a minute", name)
	}
	return nil
}

// waitDeployments waits until every Deployment installed is available, and fails at once
// when a pod of one cannot pull its image.
func (in *installer) waitDeployments(ctx context.Context) error {
	for _, obj := range in.o.Objects {
		if obj.GetKind() != "Deployment" {
			continue
		}
		var d appsv1.Deployment
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, &d); err != nil {
			return err
		}
		in.say("waiting for Deployment %s/%s to be available (up to %s)", d.Namespace, d.Name, in.o.Timeout)
		if err := WaitAvailable(ctx, in.kube, &d, in.o.Timeout); err != nil {
			return fmt.Errorf("cluster %s: %w", in.o.Cluster, err)
		}
	}
	return nil
}

// WaitAvailable waits until the Deployment has its replicas available and updated. A pod
// that cannot pull its image fails it at once, naming the image.
func WaitAvailable(ctx context.Context, kube kubernetes.Interface, want *appsv1.Deployment, timeout time.Duration) error {
	var problem error
	var last *appsv1.Deployment
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		d, err := kube.AppsV1().Deployments(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = d
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		if d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == replicas && d.Status.AvailableReplicas == replicas {
			return true, nil
		}
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil {
			return false, err
		}
		pods, err := kube.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
		if err != nil {
			return false, nil
		}
		if problem = imageProblem(pods.Items); problem != nil {
			return false, problem
		}
		return false, nil
	})
	switch {
	case problem != nil:
		return problem
	case err != nil && last != nil:
		return fmt.Errorf("Deployment %s/%s is not available after %s: %d of %d replicas available; see kubectl -n %s describe deployment %s",
			want.Namespace, want.Name, timeout, last.Status.AvailableReplicas, ptrOr(last.Spec.Replicas, 1), want.Namespace, want.Name)
	case err != nil:
		return fmt.Errorf("Deployment %s/%s did not appear within %s", want.Namespace, want.Name, timeout)
	}
	return nil
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// imageProblem reports a container of the pods that waits for an image it cannot pull.
func imageProblem(pods []corev1.Pod) error {
	for _, p := range pods {
		for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
			w := cs.State.Waiting
			if w == nil {
				continue
			}
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull":
				return fmt.Errorf("the nodes cannot pull the image %s (pod %s/%s: %s: %s); push it to a registry the nodes can reach, or load it into them, and give its name with --set image.repository=...,image.tag=...",
					cs.Image, p.Namespace, p.Name, w.Reason, w.Message)
			}
		}
	}
	return nil
}

// rollback puts back what this run changed and deletes what it created, newest first, and
// restores CoreDNS.
func (in *installer) rollback() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	if in.coredns != nil {
		if err := in.coredns.undo(ctx, in.kube); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(in.previous) - 1; i >= 0; i-- {
		t := in.previous[i]
		if _, err := t.resource.Apply(ctx, t.obj.GetName(), t.obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("putting back %s as it was: %w", describe(t.obj), err))
		}
	}
	policy := metav1.DeletePropagationForeground
	for i := len(in.created) - 1; i >= 0; i-- {
		t := in.created[i]
		if t.obj.GetKind() == "CustomResourceDefinition" {
			continue // deleting a CRD deletes every object of it, others' included
		}
		if err := t.resource.Delete(ctx, t.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("deleting %s: %w", describe(t.obj), err))
		}
	}
	return errors.Join(errs...)
}

// Uninstall restores CoreDNS and deletes the objects. CRDs stay (deleting them would delete
// every ServiceExport and ServiceImport of the cluster), and so do namespaces (strait join
// keeps the broker credential in strait-system; strait leave deletes it).
func Uninstall(ctx context.Context, o Options) (*Result, error) {
	if err := Reachable(ctx, o.Config, o.Cluster); err != nil {
		return nil, err
	}
	in, err := newInstaller(o)
	if err != nil {
		return nil, err
	}
	return in.uninstall(ctx)
}

// uninstall deletes the objects newest first: the Deployments before the ServiceAccounts
// and RBAC they run with. It stops at the first object it cannot delete, so what is left is
// an install that still works (never a Deployment without its rights), and the error names
// that object and says that running the uninstall again resumes it.
func (in *installer) uninstall(ctx context.Context) (*Result, error) {
	var errs []error
	if in.o.CoreDNS {
		restored, err := restoreCoreDNS(ctx, in.kube)
		if err != nil {
			errs = append(errs, err)
		}
		in.result.Actions = append(in.result.Actions, restored...)
	}
	for i := len(in.o.Objects) - 1; i >= 0; i-- {
		obj := in.o.Objects[i]
		if k := obj.GetKind(); k == "CustomResourceDefinition" || k == "Namespace" {
			continue
		}
		r, err := in.resourceFor(obj)
		if err != nil && meta.IsNoMatchError(errors.Unwrap(err)) {
			continue // a kind the cluster does not serve (ServiceMonitor): none to delete
		}
		if err == nil {
			err = r.Delete(ctx, obj.GetName(), metav1.DeleteOptions{})
		}
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			errs = append(errs, fmt.Errorf("deleting %s from %s: %w; it and the objects installed before it are kept, so what is left still works: "+
				"run the uninstall again once the cause is fixed, and it goes on from there", describe(obj), in.o.Cluster, err))
			return &in.result, errors.Join(errs...)
		default:
			in.result.Actions = append(in.result.Actions, Action{Verb: "deleted", Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName()})
		}
	}
	if err := errors.Join(errs...); err != nil {
		return &in.result, err
	}
	return &in.result, nil
}
