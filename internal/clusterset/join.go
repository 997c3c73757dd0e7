package clusterset

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultTimeout bounds each wait of join and leave (CRDs established, token issued,
// namespace deleted).
const DefaultTimeout = 2 * time.Minute

// JoinOptions says which cluster joins which broker, and how.
type JoinOptions struct {
	// Member and Broker are administrator configurations of the joining cluster and of the
	// broker; they may point at the same cluster.
	Member, Broker *rest.Config
	// MemberName and BrokerName name the two in messages (their kubeconfig contexts).
	MemberName, BrokerName string
	// ClusterID defaults to the cluster's existing cluster ID, else to MemberName.
	ClusterID string
	// ClusterSet defaults to the cluster's existing clusterset, else the broker's, else
	// DefaultClusterSet.
	ClusterSet string
	// Region and Zone default to the topology labels most nodes carry.
	Region, Zone string
	// PodCIDRs default to the union of the nodes' spec.podCIDRs; ServiceCIDRs to the
	// ServiceCIDR objects (networking.k8s.io/v1).
	PodCIDRs, ServiceCIDRs []string
	// AllowOverlappingCIDRs skips the overlap check, for data planes that translate
	// addresses between clusters.
	AllowOverlappingCIDRs bool
	// BrokerServer is the broker URL members use; it defaults to the Broker config's host.
	BrokerServer string
	// Timeout bounds each wait; zero means DefaultTimeout.
	Timeout time.Duration

	// beforeStep, in tests, fails the write step it returns an error for.
	beforeStep func(step string) error
}

// JoinResult is what join did.
type JoinResult struct {
	Member  Member   `json:"member"`
	Broker  string   `json:"broker"`
	Actions []Action `json:"actions"`
}

// clients of one cluster.
type clients struct {
	name string
	kube kubernetes.Interface
	dyn  dynamic.Interface
}

func newClients(name string, cfg *rest.Config) (clients, error) {
	cfg = WithRateLimits(cfg)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return clients{}, fmt.Errorf("client for %s: %w", name, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return clients{}, fmt.Errorf("client for %s: %w", name, err)
	}
	return clients{name: name, kube: kube, dyn: dyn}, nil
}

// Join makes a cluster a member of the clusterset the broker holds. Everything is validated
// before anything is written; then the member's side is prepared first and its membership
// ConfigMap, the record other members go by, is written last. If a step fails, what this
// run created is removed again. Running Join again for a member changes nothing or repairs
// what is missing.
func Join(ctx context.Context, o JoinOptions) (*JoinResult, error) {
	if o.Member == nil || o.Broker == nil {
		return nil, errors.New("join needs the member's and the broker's client configuration")
	}
	if o.MemberName == "" {
		o.MemberName = "member"
	}
	if o.BrokerName == "" {
		o.BrokerName = "broker"
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	p, err := planJoin(ctx, o)
	if err != nil {
		return nil, err
	}
	j := &journal{}
	if err := p.write(ctx, j); err != nil {
		if rerr := j.rollback(); rerr != nil {
			return nil, fmt.Errorf("joining %s failed: %w; removing what this run created also failed: %w", o.MemberName, err, rerr)
		}
		return nil, fmt.Errorf("joining %s failed, removed the %d objects this run had created: %w", o.MemberName, len(j.undo), err)
	}
	return &JoinResult{Member: p.joining, Broker: o.BrokerName, Actions: append([]Action{}, j.actions...)}, nil
}

// joinPlan is a validated join, ready to be written.
type joinPlan struct {
	o              JoinOptions
	member, broker clients
	joining        Member
	endpoint       BrokerEndpoint
}

// planJoin gathers and validates everything join needs, without writing.
func planJoin(ctx context.Context, o JoinOptions) (*joinPlan, error) {
	if o.ClusterID != "" {
		if err := ValidateClusterID(o.ClusterID); err != nil {
			return nil, err
		}
	}
	if o.ClusterSet != "" {
		if err := ValidateClusterSetName(o.ClusterSet); err != nil {
			return nil, err
		}
	}
	pods, err := NormalizeCIDRs("pod", o.PodCIDRs)
	if err != nil {
		return nil, err
	}
	services, err := NormalizeCIDRs("service", o.ServiceCIDRs)
	if err != nil {
		return nil, err
	}
	p := &joinPlan{o: o}
	if p.member, err = newClients(o.MemberName, o.Member); err != nil {
		return nil, err
	}
	if p.broker, err = newClients(o.BrokerName, o.Broker); err != nil {
		return nil, err
	}

	existingID, _, err := getProperty(ctx, p.member.dyn, ClusterIDProperty)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.MemberName, err)
	}
	existingSet, _, err := getProperty(ctx, p.member.dyn, ClusterSetProperty)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.MemberName, err)
	}
	id := o.ClusterID
	switch {
	case id != "":
	case existingID != "":
		id = existingID
	default:
		id = o.MemberName
		if err := ValidateClusterID(id); err != nil {
			return nil, fmt.Errorf("%w (taken from the context name; pass --cluster-id)", err)
		}
	}

	f, err := discover(ctx, p.member.kube, facts{PodCIDRs: pods, ServiceCIDRs: services, Region: o.Region, Zone: o.Zone})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.MemberName, err)
	}
	if f.PodCIDRs, err = NormalizeCIDRs("pod", f.PodCIDRs); err != nil {
		return nil, fmt.Errorf("%s: %w (pass --pod-cidr)", o.MemberName, err)
	}
	if f.ServiceCIDRs, err = NormalizeCIDRs("service", f.ServiceCIDRs); err != nil {
		return nil, fmt.Errorf("%s: %w (pass --service-cidr)", o.MemberName, err)
	}
	if len(f.PodCIDRs) == 0 {
		return nil, fmt.Errorf("no pod CIDRs found in %s: its nodes have no spec.podCIDRs; pass --pod-cidr", o.MemberName)
	}
	if len(f.ServiceCIDRs) == 0 {
		return nil, fmt.Errorf("no service CIDRs found in %s: it has no ServiceCIDR objects; pass --service-cidr", o.MemberName)
	}
	if err := ValidateTopology("region", f.Region); err != nil {
		return nil, err
	}
	if err := ValidateTopology("zone", f.Zone); err != nil {
		return nil, err
	}

	members, err := ReadMembers(ctx, p.broker.kube)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.BrokerName, err)
	}
	set := o.ClusterSet
	if set == "" {
		set = existingSet
	}
	for _, m := range members {
		if set == "" && m.ClusterSet != "" && m.ClusterUID != f.ClusterUID {
			set = m.ClusterSet
		}
	}
	if set == "" {
		set = DefaultClusterSet
	}
	p.joining = Member{
		ID: id, ClusterSet: set, ClusterUID: f.ClusterUID,
		Region: f.Region, Zone: f.Zone,
		PodCIDRs: f.PodCIDRs, ServiceCIDRs: f.ServiceCIDRs,
		Namespace: MemberNamespace(id), JoinedAt: time.Now().UTC().Truncate(time.Second),
	}
	for _, m := range members {
		if m.ID == id && m.ClusterUID == f.ClusterUID && !m.JoinedAt.IsZero() {
			p.joining.JoinedAt = m.JoinedAt
		}
	}
	if err := CheckLocalProperties(existingID, existingSet, p.joining); err != nil {
		return nil, err
	}
	if err := CheckMembership(p.joining, members); err != nil {
		return nil, err
	}
	if !o.AllowOverlappingCIDRs {
		if err := CheckOverlaps(p.joining, members); err != nil {
			return nil, err
		}
	}
	if err := p.checkBrokerNamespace(ctx); err != nil {
		return nil, err
	}

	if p.endpoint, err = EndpointFromConfig(o.Broker); err != nil {
		return nil, err
	}
	if o.BrokerServer != "" {
		p.endpoint.Server = o.BrokerServer
	}
	return p, nil
}

// checkBrokerNamespace refuses a member namespace that is being deleted (a leave in
// progress) or that strait did not create.
func (p *joinPlan) checkBrokerNamespace(ctx context.Context) error {
	ns, err := p.broker.kube.CoreV1().Namespaces().Get(ctx, p.joining.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: reading namespace %s: %w", p.o.BrokerName, p.joining.Namespace, err)
	}
	if ns.DeletionTimestamp != nil {
		return fmt.Errorf("namespace %s on %s is being deleted (a leave in progress); run join again when it is gone", ns.Name, p.o.BrokerName)
	}
	if ns.Labels[ManagedByLabel] != ManagedByValue {
		return fmt.Errorf("namespace %s on %s exists but was not created by strait (no %s=%s label); delete it or choose another cluster ID",
			ns.Name, p.o.BrokerName, ManagedByLabel, ManagedByValue)
	}
	return nil
}

// write applies the plan in an order that keeps a half-done join invisible: the membership
// ConfigMap, which makes the member known to the others, comes last.
func (p *joinPlan) write(ctx context.Context, j *journal) error {
	id := p.joining.ID
	var token []byte
	steps := []struct {
		name string
		run  func(context.Context) error
	}{
		{"member-namespace", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.member.name, "Namespace", p.member.kube.CoreV1().Namespaces(), namespace(SystemNamespace, ""), noSpec[*corev1.Namespace])
			return err
		}},
		{"member-crds", func(ctx context.Context) error {
			return installCRDs(ctx, j, p.member.name, p.member.dyn, memberDefinitions(), p.o.Timeout)
		}},
		{"broker-crds", func(ctx context.Context) error {
			return installCRDs(ctx, j, p.broker.name, p.broker.dyn, mcsDefinitions, p.o.Timeout)
		}},
		{"broker-reader-role", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ClusterRole", p.broker.kube.RbacV1().ClusterRoles(), readerClusterRole(), reconcileClusterRole)
			return err
		}},
		{"broker-namespace", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "Namespace", p.broker.kube.CoreV1().Namespaces(), namespace(MemberNamespace(id), id), noSpec[*corev1.Namespace])
			return err
		}},
		{"broker-service-account", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ServiceAccount", p.broker.kube.CoreV1().ServiceAccounts(MemberNamespace(id)), agentServiceAccount(id), reconcileServiceAccount)
			return err
		}},
		{"broker-token", func(ctx context.Context) error {
			secrets := p.broker.kube.CoreV1().Secrets(MemberNamespace(id))
			if _, err := ensure(ctx, j, p.broker.name, "Secret", secrets, agentTokenSecret(id), reconcileTokenSecret); err != nil {
				return err
			}
			var err error
			token, err = waitToken(ctx, secrets, p.o.Timeout)
			return err
		}},
		{"broker-role", func(ctx context.Context) error {
			ns := MemberNamespace(id)
			if _, err := ensure(ctx, j, p.broker.name, "Role", p.broker.kube.RbacV1().Roles(ns), memberRole(id), reconcileRole); err != nil {
				return err
			}
			_, err := ensure(ctx, j, p.broker.name, "RoleBinding", p.broker.kube.RbacV1().RoleBindings(ns), memberRoleBinding(id), reconcileRoleBinding)
			return err
		}},
		{"broker-reader-binding", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ClusterRoleBinding", p.broker.kube.RbacV1().ClusterRoleBindings(), readerBinding(id), reconcileClusterRoleBinding)
			return err
		}},
		{"member-broker-secret", func(ctx context.Context) error {
			kubeconfig, err := BrokerKubeconfig(p.endpoint, id, token)
			if err != nil {
				return err
			}
			_, err = ensure(ctx, j, p.member.name, "Secret", p.member.kube.CoreV1().Secrets(SystemNamespace), brokerSecret(id, kubeconfig), reconcileSecret)
			return err
		}},
		{"member-properties", func(ctx context.Context) error {
			props := dynamicClient{p.member.dyn.Resource(ClusterPropertyGVR)}
			if _, err := ensure(ctx, j, p.member.name, "ClusterProperty", props, clusterProperty(ClusterIDProperty, id, id), reconcileProperty); err != nil {
				return err
			}
			_, err := ensure(ctx, j, p.member.name, "ClusterProperty", props, clusterProperty(ClusterSetProperty, p.joining.ClusterSet, id), reconcileProperty)
			return err
		}},
		{"broker-membership", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ConfigMap", p.broker.kube.CoreV1().ConfigMaps(MemberNamespace(id)), membershipConfigMap(p.joining), reconcileConfigMap)
			return err
		}},
	}
	for _, s := range steps {
		if p.o.beforeStep != nil {
			if err := p.o.beforeStep(s.name); err != nil {
				return err
			}
		}
		if err := s.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// waitToken waits for the token controller to fill the service account token Secret.
func waitToken(ctx context.Context, secrets interface {
	Get(context.Context, string, metav1.GetOptions) (*corev1.Secret, error)
}, timeout time.Duration) ([]byte, error) {
	var token []byte
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		s, err := secrets.Get(ctx, legacyAgentTokenSecret, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		token = s.Data[corev1.ServiceAccountTokenKey]
		return len(token) > 0, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the token controller did not issue a token in Secret %s within %s (is kube-controller-manager running?): %w", legacyAgentTokenSecret, timeout, err)
	}
	return token, nil
}

func noSpec[T any](T, T) (bool, error) { return false, nil }

func reconcileServiceAccount(have, want *corev1.ServiceAccount) (bool, error) {
	if reflect.DeepEqual(have.AutomountServiceAccountToken, want.AutomountServiceAccountToken) {
		return false, nil
	}
	have.AutomountServiceAccountToken = want.AutomountServiceAccountToken
	return true, nil
}

func reconcileTokenSecret(have, want *corev1.Secret) (bool, error) {
	if have.Type != want.Type {
		return false, fmt.Errorf("it has type %s, not %s; delete it and run join again", have.Type, want.Type)
	}
	return false, nil
}

func reconcileSecret(have, want *corev1.Secret) (bool, error) {
	if have.Type != want.Type {
		return false, fmt.Errorf("it has type %s, not %s; delete it and run join again", have.Type, want.Type)
	}
	if reflect.DeepEqual(have.Data, want.Data) {
		return false, nil
	}
	have.Data = want.Data
	return true, nil
}

// reconcileConfigMap updates a membership record, unless another cluster wrote it in the
// meantime (two clusters joining with the same ID at once).
func reconcileConfigMap(have, want *corev1.ConfigMap) (bool, error) {
	if uid := have.Data[KeyClusterUID]; uid != "" && uid != want.Data[KeyClusterUID] {
		return false, fmt.Errorf("it belongs to another cluster (kube-system namespace uid %s): %w", uid, ErrIDTaken)
	}
	if reflect.DeepEqual(have.Data, want.Data) {
		return false, nil
	}
	have.Data = want.Data
	return true, nil
}

func reconcileRole(have, want *rbacv1.Role) (bool, error) { return setRules(&have.Rules, want.Rules) }

func reconcileClusterRole(have, want *rbacv1.ClusterRole) (bool, error) {
	return setRules(&have.Rules, want.Rules)
}

func reconcileRoleBinding(have, want *rbacv1.RoleBinding) (bool, error) {
	return setSubjects(have.RoleRef, want.RoleRef, &have.Subjects, want.Subjects)
}

func reconcileClusterRoleBinding(have, want *rbacv1.ClusterRoleBinding) (bool, error) {
	return setSubjects(have.RoleRef, want.RoleRef, &have.Subjects, want.Subjects)
}

// setRules brings a role's rules in line and reports whether they changed.
func setRules(have *[]rbacv1.PolicyRule, want []rbacv1.PolicyRule) (bool, error) {
	if reflect.DeepEqual(*have, want) {
		return false, nil
	}
	*have = want
	return true, nil
}

// setSubjects brings a binding's subjects in line. Role references are immutable, so a
// binding to another role is an error, not an update.
func setSubjects(haveRef, wantRef rbacv1.RoleRef, have *[]rbacv1.Subject, want []rbacv1.Subject) (bool, error) {
	if haveRef != wantRef {
		return false, fmt.Errorf("it refers to %s %s; delete it and run join again", haveRef.Kind, haveRef.Name)
	}
	if reflect.DeepEqual(*have, want) {
		return false, nil
	}
	*have = want
	return true, nil
}

func reconcileProperty(have, want *unstructured.Unstructured) (bool, error) {
	hv, _, _ := unstructured.NestedString(have.Object, "spec", "value")
	wv, _, _ := unstructured.NestedString(want.Object, "spec", "value")
	if hv == wv {
		return false, nil
	}
	return true, unstructured.SetNestedField(have.Object, wv, "spec", "value")
}
