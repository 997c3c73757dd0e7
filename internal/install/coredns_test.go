package install

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/coredns"
)

const original = `.:53 {
    errors
    health
    kubernetes cluster.local in-addr.arpa ip6.arpa {
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
}
`

// installedCluster is a cluster as an install leaves it: the Corefile with clusterset.local,
// its backup, and CoreDNS's RBAC.
func installedCluster(t *testing.T, corefile string) (*fake.Clientset, string) {
	t.Helper()
	installed, changed, err := coredns.AddMulticluster(original)
	if err != nil || !changed {
		t.Fatalf("AddMulticluster: %v (changed %v)", err, changed)
	}
	if corefile == "" {
		corefile = installed
	}
	return fake.NewClientset(
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: CoreDNSNamespace, Name: CoreDNSConfigMap}, Data: map[string]string{CorefileKey: corefile}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: clusterset.SystemNamespace, Name: BackupConfigMap},
			Data: map[string]string{backupOriginal: original, backupInstalled: installed}},
		&rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: CoreDNSRole}},
		&rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: CoreDNSRole}},
	), installed
}

func corefile(t *testing.T, kube *fake.Clientset) string {
	t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(CoreDNSNamespace).Get(context.Background(), CoreDNSConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return cm.Data[CorefileKey]
}

func exists(kube *fake.Clientset, what string) bool {
	ctx := context.Background()
	var err error
	switch what {
	case "backup":
		_, err = kube.CoreV1().ConfigMaps(clusterset.SystemNamespace).Get(ctx, BackupConfigMap, metav1.GetOptions{})
	case "role":
		_, err = kube.RbacV1().ClusterRoles().Get(ctx, CoreDNSRole, metav1.GetOptions{})
	}
	return !apierrors.IsNotFound(err)
}

// Uninstalling from a Corefile untouched since the install puts back the original exactly.
func TestRestoreCoreDNSUnchangedSinceInstall(t *testing.T) {
	kube, _ := installedCluster(t, "")
	if _, err := restoreCoreDNS(context.Background(), kube); err != nil {
		t.Fatal(err)
	}
	if got := corefile(t, kube); got != original {
		t.Errorf("Corefile after uninstall:\n%s\nwant the original:\n%s", got, original)
	}
	if exists(kube, "backup") || exists(kube, "role") {
		t.Error("the backup or CoreDNS's ClusterRole is left after uninstall")
	}
}

// Someone edited the Corefile after the install: uninstall takes only clusterset.local out
// and keeps their edit, rather than putting back the backup over it.
func TestRestoreCoreDNSKeepsLaterEdits(t *testing.T) {
	_, installed := installedCluster(t, "")
	edited := strings.Replace(installed, "    cache 30\n", "    cache 30\n    log\n", 1)
	kube, _ := installedCluster(t, edited)
	if _, err := restoreCoreDNS(context.Background(), kube); err != nil {
		t.Fatal(err)
	}
	got := corefile(t, kube)
	if ok, _ := coredns.Configured(got); ok {
		t.Errorf("Corefile still serves %s after uninstall:\n%s", ClusterSetZone, got)
	}
	if !strings.Contains(got, "    log\n") {
		t.Errorf("the edit made after the install (log) is gone:\n%s", got)
	}
	if exists(kube, "backup") {
		t.Error("the backup is left after uninstall")
	}
}

// When the Corefile cannot be written back, uninstall says which ConfigMap and keeps the
// backup and CoreDNS's RBAC, so that running it again can still restore the original.
func TestRestoreCoreDNSWriteFailsKeepsTheBackup(t *testing.T) {
	kube, installed := installedCluster(t, "")
	kube.PrependReactor("update", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewServiceUnavailable("etcd leader changed")
	})
	_, err := restoreCoreDNS(context.Background(), kube)
	if err == nil || !strings.Contains(err.Error(), "restoring ConfigMap kube-system/coredns") {
		t.Fatalf("err = %v, want one naming kube-system/coredns", err)
	}
	if got := corefile(t, kube); got != installed {
		t.Errorf("Corefile after a failed restore:\n%s\nwant it as installed", got)
	}
	if !exists(kube, "backup") || !exists(kube, "role") {
		t.Error("a failed restore deleted the backup or CoreDNS's ClusterRole: a second uninstall could not restore the original")
	}

	// The API answers again: the second uninstall restores the original.
	kube.ReactionChain = kube.ReactionChain[1:]
	if _, err := restoreCoreDNS(context.Background(), kube); err != nil {
		t.Fatal(err)
	}
	if got := corefile(t, kube); got != original {
		t.Errorf("Corefile after the second uninstall:\n%s\nwant the original", got)
	}
}

// A backup that cannot be read (not "not found") stops the restore before anything changes.
func TestRestoreCoreDNSBackupUnreadable(t *testing.T) {
	kube, installed := installedCluster(t, "")
	kube.PrependReactor("get", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.GetAction).GetName() == BackupConfigMap {
			return true, nil, errors.New("connection refused")
		}
		return false, nil, nil
	})
	if _, err := restoreCoreDNS(context.Background(), kube); err == nil || !strings.Contains(err.Error(), BackupConfigMap) {
		t.Fatalf("err = %v, want one naming the backup", err)
	}
	if got := corefile(t, kube); got != installed {
		t.Errorf("Corefile after an unreadable backup:\n%s\nwant it untouched", got)
	}
	if !exists(kube, "role") {
		t.Error("CoreDNS's ClusterRole was deleted although the Corefile was not restored")
	}
}
