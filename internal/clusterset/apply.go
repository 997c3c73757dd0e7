package clusterset

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/util/retry"
)

// Verbs of an Action.
const (
	Created = "created"
	Updated = "updated"
	Deleted = "deleted"
)

// Action is one change join or leave made to a cluster.
type Action struct {
	// Cluster names the cluster written (its kubeconfig context).
	Cluster   string `json:"cluster"`
	Verb      string `json:"action"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

func (a Action) String() string {
	name := a.Name
	if a.Namespace != "" {
		name = a.Namespace + "/" + a.Name
	}
	return fmt.Sprintf("%s %s %s in %s", a.Verb, a.Kind, name, a.Cluster)
}

// journal records what a run changed and how to undo what it created, so a failed join
// leaves the clusters as it found them (objects that existed before are never deleted).
type journal struct {
	actions []Action
	undo    []undoStep
}

type undoStep struct {
	action Action
	delete func(context.Context) error
}

func (j *journal) record(a Action, del func(context.Context) error) {
	j.actions = append(j.actions, a)
	if a.Verb == Created && del != nil {
		j.undo = append(j.undo, undoStep{a, del})
	}
}

// rollback deletes what the run created, newest first. It runs on its own deadline because
// the run's context may be the reason it failed.
func (j *journal) rollback() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var errs []error
	for i := len(j.undo) - 1; i >= 0; i-- {
		u := j.undo[i]
		if err := u.delete(ctx); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("undoing: %s: %w", u.action, err))
		}
	}
	return errors.Join(errs...)
}

// errKeep tells ensure to leave an existing object exactly as it is.
var errKeep = errors.New("keep the existing object")

// kubeClient is the part of a typed (or adapted dynamic) client that ensure needs.
type kubeClient[T metav1.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error)
	Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// reconcileFunc copies the desired fields onto the existing object and reports whether it
// changed anything. Labels and annotations are merged by ensure itself, unless reconcile
// returns errKeep: the object is someone else's and fits as it is.
type reconcileFunc[T metav1.Object] func(existing, desired T) (bool, error)

// ensure creates desired, or brings an existing object to it. It never removes labels,
// annotations or fields that others set.
func ensure[T metav1.Object](ctx context.Context, j *journal, cluster, kind string, c kubeClient[T], desired T, reconcile reconcileFunc[T]) (T, error) {
	a := Action{Cluster: cluster, Kind: kind, Namespace: desired.GetNamespace(), Name: desired.GetName()}
	var result T
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		existing, err := c.Get(ctx, desired.GetName(), metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			created, err := c.Create(ctx, desired, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(schema.GroupResource{Resource: kind}, desired.GetName(), err)
			}
			if err != nil {
				return err
			}
			a.Verb = Created
			name := desired.GetName()
			j.record(a, func(ctx context.Context) error { return c.Delete(ctx, name, metav1.DeleteOptions{}) })
			result = created
			return nil
		}
		if err != nil {
			return err
		}
		if existing.GetDeletionTimestamp() != nil {
			return fmt.Errorf("%s is being deleted; run the command again when it is gone", a.objectName())
		}
		result = existing
		more, err := reconcile(existing, desired)
		if errors.Is(err, errKeep) {
			return nil
		}
		if err != nil {
			return err
		}
		changed := mergeStrings(existing.GetLabels(), desired.GetLabels(), existing.SetLabels)
		changed = mergeStrings(existing.GetAnnotations(), desired.GetAnnotations(), existing.SetAnnotations) || changed
		if !changed && !more {
			return nil
		}
		updated, err := c.Update(ctx, existing, metav1.UpdateOptions{})
		if err != nil {
			return err
		}
		a.Verb = Updated
		j.record(a, nil)
		result = updated
		return nil
	})
	if err != nil {
		return result, fmt.Errorf("%s in %s: %w", a.objectName(), cluster, err)
	}
	return result, nil
}

func (a Action) objectName() string {
	if a.Namespace != "" {
		return fmt.Sprintf("%s %s/%s", a.Kind, a.Namespace, a.Name)
	}
	return fmt.Sprintf("%s %s", a.Kind, a.Name)
}

// mergeStrings adds want's entries to have (through set) and reports whether any changed.
func mergeStrings(have, want map[string]string, set func(map[string]string)) bool {
	changed := false
	for k, v := range want {
		if old, ok := have[k]; !ok || old != v {
			changed = true
		}
	}
	if !changed {
		return false
	}
	merged := maps.Clone(have)
	if merged == nil {
		merged = map[string]string{}
	}
	maps.Copy(merged, want)
	set(merged)
	return true
}

// dynamicClient adapts a dynamic resource client to kubeClient.
type dynamicClient struct{ r dynamic.ResourceInterface }

func (d dynamicClient) Get(ctx context.Context, name string, opts metav1.GetOptions) (*unstructured.Unstructured, error) {
	return d.r.Get(ctx, name, opts)
}

func (d dynamicClient) Create(ctx context.Context, obj *unstructured.Unstructured, opts metav1.CreateOptions) (*unstructured.Unstructured, error) {
	return d.r.Create(ctx, obj, opts)
}

func (d dynamicClient) Update(ctx context.Context, obj *unstructured.Unstructured, opts metav1.UpdateOptions) (*unstructured.Unstructured, error) {
	return d.r.Update(ctx, obj, opts)
}

func (d dynamicClient) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return d.r.Delete(ctx, name, opts)
}
