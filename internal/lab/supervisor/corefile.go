package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/lab/state"
)

// CoreDNSConfigMap is where a cluster's CoreDNS configuration lives, as on kubeadm and kind
// clusters: the ConfigMap kube-system/coredns, key Corefile.
const (
	CoreDNSConfigMap = "coredns"
	CorefileKey      = "Corefile"
)

// corefileSync keeps the node's Corefile in step with the ConfigMap kube-system/coredns, as
// the kubelet keeps CoreDNS's ConfigMap volume on a kubeadm cluster: the ConfigMap is made
// from the lab's Corefile when it is missing, and an edit of it reaches CoreDNS within a
// few seconds through CoreDNS's reload plugin. So `kubectl edit configmap coredns`,
// `strait diagnose` and installers see and change the lab's CoreDNS as on a real cluster.
type corefileSync struct {
	client kubernetes.Interface
	path   string

	mu      sync.Mutex
	lastErr error
	synced  bool
}

// corefilePeriod is how often the ConfigMap is read.
const corefilePeriod = 2 * time.Second

// ensure creates the ConfigMap from the node's Corefile when it is missing (a ConfigMap
// kept from an earlier run, edits included, wins), and writes the file from it once.
func (s *corefileSync) ensure(ctx context.Context) error {
	data, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSConfigMap, Namespace: metav1.NamespaceSystem},
		Data:       map[string]string{CorefileKey: string(data)},
	}
	if _, err := s.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating ConfigMap kube-system/%s: %w", CoreDNSConfigMap, err)
	}
	return s.once(ctx)
}

// once writes the ConfigMap's Corefile to the node when it differs.
func (s *corefileSync) once(ctx context.Context) error {
	err := func() error {
		cm, err := s.client.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading ConfigMap kube-system/%s: %w", CoreDNSConfigMap, err)
		}
		want, ok := cm.Data[CorefileKey]
		if !ok {
			return fmt.Errorf("ConfigMap kube-system/%s has no key %s", CoreDNSConfigMap, CorefileKey)
		}
		if have, err := os.ReadFile(s.path); err == nil && bytes.Equal(have, []byte(want)) {
			return nil
		}
		return state.WriteFileAtomic(s.path, []byte(want), 0o644)
	}()
	s.mu.Lock()
	s.lastErr, s.synced = err, s.synced || err == nil
	s.mu.Unlock()
	return err
}

// run keeps the file in step until ctx ends.
func (s *corefileSync) run(ctx context.Context) error {
	t := time.NewTicker(corefilePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_ = s.once(ctx) // kept for the health check; the next round tries again
		}
	}
}

// check is the component's health: the last round succeeded.
func (s *corefileSync) check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.synced && s.lastErr == nil {
		return errors.New("not synced yet")
	}
	return s.lastErr
}
