package install

import (
	"context"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/coredns"
)

// ClusterSetZone is the zone CoreDNS is configured for.
const ClusterSetZone = coredns.Zone

// Where CoreDNS's configuration is (kubeadm, kind, k3s, most managed clusters), and what
// the install adds: a ClusterRole to list and watch ServiceImports bound to CoreDNS's
// ServiceAccount, and a backup of the Corefile it changed.
const (
	CoreDNSNamespace  = metav1.NamespaceSystem
	CoreDNSConfigMap  = "coredns"
	CorefileKey       = "Corefile"
	CoreDNSDeployment = "coredns"
	CoreDNSRole       = "strait:coredns-multicluster"
	BackupConfigMap   = "strait-coredns-backup"
	backupOriginal    = "original"
	backupInstalled   = "installed"
)

// corednsChange is what configureCoreDNS changed, for the rollback of a failed install.
type corednsChange struct {
	original, installed string
	createdRBAC         bool
}

// configureCoreDNS adds clusterset.local to CoreDNS's Corefile (keeping the rest), keeps
// the Corefile as it was in strait-system/strait-coredns-backup for strait leave
// --uninstall, and lets CoreDNS's ServiceAccount list and watch ServiceImports.
func (in *installer) configureCoreDNS(ctx context.Context) error {
	cms := in.kube.CoreV1().ConfigMaps(CoreDNSNamespace)
	cm, err := cms.Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("cluster %s has no ConfigMap %s/%s, so its DNS is not CoreDNS configured the usual way; configure %s by hand (docs/multicluster-services.md, \"CoreDNS\"), or install without CoreDNS (--install-coredns=false)",
			in.o.Cluster, CoreDNSNamespace, CoreDNSConfigMap, ClusterSetZone)
	}
	if err != nil {
		return fmt.Errorf("reading CoreDNS's configuration in %s: %w", in.o.Cluster, err)
	}
	original := cm.Data[CorefileKey]
	edited, changed, err := coredns.AddMulticluster(original)
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s in %s: %w", CoreDNSNamespace, CoreDNSConfigMap, in.o.Cluster, err)
	}
	createdRBAC, err := in.corednsRBAC(ctx)
	if err != nil {
		return err
	}
	in.coredns = &corednsChange{createdRBAC: createdRBAC}
	if !changed {
		in.result.Actions = append(in.result.Actions, Action{Verb: "unchanged", Kind: "ConfigMap", Namespace: CoreDNSNamespace, Name: CoreDNSConfigMap})
		return nil
	}
	backup := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: BackupConfigMap, Namespace: clusterset.SystemNamespace,
			Labels: map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}},
		Data: map[string]string{backupOriginal: original, backupInstalled: edited},
	}
	// A backup of an earlier install is kept: it holds the Corefile from before Strait.
	if _, err := in.kube.CoreV1().ConfigMaps(clusterset.SystemNamespace).Create(ctx, backup, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("keeping a copy of the Corefile in %s/%s: %w", clusterset.SystemNamespace, BackupConfigMap, err)
	}
	cm.Data[CorefileKey] = edited
	// The update carries the resourceVersion read: an edit made meanwhile is not overwritten.
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s in %s: %w", CoreDNSNamespace, CoreDNSConfigMap, in.o.Cluster, err)
	}
	in.coredns.original, in.coredns.installed = original, edited
	in.result.Actions = append(in.result.Actions, Action{Verb: "configured", Kind: "ConfigMap", Namespace: CoreDNSNamespace, Name: CoreDNSConfigMap})
	return nil
}

// corednsRBAC lets CoreDNS's ServiceAccount (that of Deployment kube-system/coredns) list
// and watch ServiceImports; it reports whether it created the role. Without such a
// Deployment (CoreDNS run another way) it binds nothing.
func (in *installer) corednsRBAC(ctx context.Context) (bool, error) {
	d, err := in.kube.AppsV1().Deployments(CoreDNSNamespace).Get(ctx, CoreDNSDeployment, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading Deployment %s/%s in %s: %w", CoreDNSNamespace, CoreDNSDeployment, in.o.Cluster, err)
	}
	sa := d.Spec.Template.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	labels := map[string]string{clusterset.ManagedByLabel: clusterset.ManagedByValue}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSRole, Labels: labels},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"multicluster.x-k8s.io"}, Resources: []string{"serviceimports"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: CoreDNSRole, Labels: labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: CoreDNSRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: CoreDNSNamespace, Name: sa}},
	}
	created := false
	rbac := in.kube.RbacV1()
	if _, err := rbac.ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err == nil {
		created = true
	} else if !apierrors.IsAlreadyExists(err) {
		return false, fmt.Errorf("creating ClusterRole %s in %s: %w", CoreDNSRole, in.o.Cluster, err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return created, fmt.Errorf("creating ClusterRoleBinding %s in %s: %w", CoreDNSRole, in.o.Cluster, err)
	}
	in.result.Actions = append(in.result.Actions, Action{Verb: "configured", Kind: "ClusterRoleBinding", Name: CoreDNSRole})
	return created, nil
}

// undo takes back a configureCoreDNS of this run.
func (c *corednsChange) undo(ctx context.Context, kube kubernetes.Interface) error {
	var errs []error
	if c.installed != "" {
		cms := kube.CoreV1().ConfigMaps(CoreDNSNamespace)
		cm, err := cms.Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
		if err == nil && cm.Data[CorefileKey] == c.installed {
			cm.Data[CorefileKey] = c.original
			_, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restoring CoreDNS's Corefile: %w", err))
		}
		if err := kube.CoreV1().ConfigMaps(clusterset.SystemNamespace).Delete(ctx, BackupConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if c.createdRBAC {
		errs = append(errs, deleteRBAC(ctx, kube))
	}
	return errors.Join(errs...)
}

func deleteRBAC(ctx context.Context, kube kubernetes.Interface) error {
	var errs []error
	if err := kube.RbacV1().ClusterRoleBindings().Delete(ctx, CoreDNSRole, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	if err := kube.RbacV1().ClusterRoles().Delete(ctx, CoreDNSRole, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restoreCoreDNS takes back what installs did to CoreDNS: the Corefile as it was before,
// when nobody changed it since; else only clusterset.local is taken out of it, keeping the
// later edits. Without a backup (the install found CoreDNS configured already) the
// Corefile is left alone.
func restoreCoreDNS(ctx context.Context, kube kubernetes.Interface) ([]Action, error) {
	var actions []Action
	backups := kube.CoreV1().ConfigMaps(clusterset.SystemNamespace)
	backup, err := backups.Get(ctx, BackupConfigMap, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("reading the Corefile's backup %s/%s: %w", clusterset.SystemNamespace, BackupConfigMap, err)
	default:
		cms := kube.CoreV1().ConfigMaps(CoreDNSNamespace)
		cm, err := cms.Get(ctx, CoreDNSConfigMap, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		restored := backup.Data[backupOriginal]
		if cm.Data[CorefileKey] != backup.Data[backupInstalled] {
			if restored, err = coredns.RemoveMulticluster(cm.Data[CorefileKey]); err != nil {
				return nil, fmt.Errorf("ConfigMap %s/%s was edited since the install and %s cannot be taken out of it: %w", CoreDNSNamespace, CoreDNSConfigMap, ClusterSetZone, err)
			}
		}
		cm.Data[CorefileKey] = restored
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
			return nil, fmt.Errorf("restoring ConfigMap %s/%s: %w", CoreDNSNamespace, CoreDNSConfigMap, err)
		}
		actions = append(actions, Action{Verb: "restored", Kind: "ConfigMap", Namespace: CoreDNSNamespace, Name: CoreDNSConfigMap})
		if err := backups.Delete(ctx, BackupConfigMap, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return actions, err
		}
	}
	if err := deleteRBAC(ctx, kube); err != nil {
		return actions, err
	}
	return actions, nil
}
