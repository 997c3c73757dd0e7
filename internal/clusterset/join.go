package clusterset

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// DefaultTimeout bounds each wait of join and leave (CRDs established, namespace deleted).
const DefaultTimeout = 2 * time.Minute

// Lifetimes of the token join gives a member; its agent renews it long before it expires.
const (
	DefaultCredentialTTL = 24 * time.Hour
	// MinCredentialTTL is the shortest lifetime the TokenRequest API issues.
	MinCredentialTTL = 10 * time.Minute
	MaxCredentialTTL = 365 * 24 * time.Hour
)

// ValidateCredentialTTL checks the lifetime of a member's broker token.
func ValidateCredentialTTL(ttl time.Duration) error {
	switch {
	case ttl < MinCredentialTTL:
		return fmt.Errorf("credential TTL %s is too short: the TokenRequest API issues tokens for at least %s", ttl, MinCredentialTTL)
	case ttl > MaxCredentialTTL:
		return fmt.Errorf("credential TTL %s is too long: at most %s (one year) is allowed, and the agent renews its token, so a short one costs nothing", ttl, MaxCredentialTTL)
	}
	return nil
}

// ValidateFederationNamespace checks the broker namespace of federated Services, which
// every member may read: a namespace name, and neither the clusterset's own namespace nor a
// member's, whose reader grants are other ones.
func ValidateFederationNamespace(ns string) error {
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return fmt.Errorf("federation namespace %q is not a DNS-1123 label: %s", ns, strings.Join(errs, "; "))
	}
	if ns == ClustersetNamespace || strings.HasPrefix(ns, MemberNamespacePrefix) {
		return fmt.Errorf("federation namespace %q is reserved: %s and %s<id> hold the clusterset and its members", ns, ClustersetNamespace, MemberNamespacePrefix)
	}
	return nil
}

// JoinOptions says which cluster joins which broker, and how.
type JoinOptions struct {
	// Member and Broker are administrator configurations of the joining cluster and of the
	// broker; they may point at the same cluster, and may authenticate in any way (exec
	// plugins included): nothing of how the administrator authenticates reaches the member.
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
	// FederationNamespace is the broker namespace whose Services are federated; every member
	// may read its Services and EndpointSlices. Join creates it when missing. It defaults to
	// DefaultFederationNamespace.
	FederationNamespace string
	// CredentialTTL is the lifetime of the token stored in the member (see
	// ValidateCredentialTTL); zero means DefaultCredentialTTL.
	CredentialTTL time.Duration
	// AllowInsecureBroker stores a credential that skips TLS verification when the Broker
	// config does (labs); without it join refuses such a broker.
	AllowInsecureBroker bool
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
	// CredentialExpiry is when the token stored in the member expires (the agent renews it
	// before).
	CredentialExpiry time.Time `json:"credentialExpiry"`
	// Warnings are what the administrator must know although join succeeded.
	Warnings []string `json:"warnings,omitempty"`
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
// before anything is written; then the member's identity, grants and credential are prepared
// and its registry record, which makes it count as a member, is written last. If a step
// fails, what this run created is removed again. Once the record is written, what is left of
// the old broker layout for this member is removed. Running Join again for a member repairs
// what is missing and gives it a fresh token; nothing else changes.
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
	if o.CredentialTTL == 0 {
		o.CredentialTTL = DefaultCredentialTTL
	}
	if o.FederationNamespace == "" {
		o.FederationNamespace = DefaultFederationNamespace
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
	// The member counts from here on; a failure below undoes nothing (the new layout works
	// on its own) and the next join finishes it.
	if err := p.migrate(ctx, j); err != nil {
		return nil, fmt.Errorf("%s joined, but removing what is left of the old broker layout failed; run join again to finish: %w", o.MemberName, err)
	}
	return &JoinResult{
		Member: p.joining, Broker: o.BrokerName, Actions: append([]Action{}, j.actions...),
		CredentialExpiry: p.expiry, Warnings: p.warnings,
	}, nil
}

// joinPlan is a validated join, ready to be written.
type joinPlan struct {
	o              JoinOptions
	member, broker clients
	joining        Member
	endpoint       BrokerEndpoint
	warnings       []string
	// expiry is the expiry of the token written, once it is.
	expiry time.Time
	// legacyBindings are the ClusterRoleBindings of members of the old layout that still
	// use ClusterRole strait-member-reader (see grantClusterReader).
	legacyBindings []string
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
	if err := ValidateCredentialTTL(o.CredentialTTL); err != nil {
		return nil, err
	}
	if err := ValidateFederationNamespace(o.FederationNamespace); err != nil {
		return nil, err
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
	if p.endpoint, p.warnings, err = memberEndpoint(o); err != nil {
		return nil, err
	}
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
	if err := p.checkBrokerNamespace(ctx, members); err != nil {
		return nil, err
	}
	return p, nil
}

// memberEndpoint is where and how the member's agent reaches the broker: the server and how
// to verify it, taken from the administrator's configuration of the broker, which may use
// anything to authenticate; the credential built from it must pass the agent's own check
// (ParseBrokerCredential), and is checked here with a stand-in token before anything is
// written.
func memberEndpoint(o JoinOptions) (BrokerEndpoint, []string, error) {
	ep, err := EndpointFromConfig(o.Broker)
	if err != nil {
		return ep, nil, fmt.Errorf("%s: %w", o.BrokerName, err)
	}
	if o.BrokerServer != "" {
		ep.Server = o.BrokerServer
	}
	var warnings []string
	switch {
	case ep.Insecure && !o.AllowInsecureBroker:
		return ep, nil, fmt.Errorf("the broker context %s skips TLS verification (insecure-skip-tls-verify), and a member's agent would then accept any server as its broker; "+
			"give the context the broker's CA, or pass --allow-insecure-broker to store such a credential anyway (labs only)", o.BrokerName)
	case ep.Insecure:
		warnings = append(warnings, fmt.Sprintf("the broker credential stored in %s skips TLS verification (--allow-insecure-broker): its agent accepts any server as the broker %s, and must itself be allowed to use such a credential",
			o.MemberName, o.BrokerName))
	case len(ep.CAData) == 0:
		return ep, nil, fmt.Errorf("the broker context %s names no CA (certificate-authority or certificate-authority-data): the credential stored in the member carries the broker's CA, so that its agent can verify the broker; add the CA to the context", o.BrokerName)
	}
	data, err := ep.Credential("stand-in").Kubeconfig("check")
	if err == nil {
		_, err = ParseBrokerCredential(data, o.AllowInsecureBroker)
	}
	if err != nil {
		return ep, nil, fmt.Errorf("the broker credential a member would get from the context %s: %w", o.BrokerName, err)
	}
	return ep, warnings, nil
}

// checkBrokerNamespace refuses a member namespace that is being deleted (a leave in
// progress), that strait did not create, or that holds another cluster's membership in the
// old layout (before the registry).
func (p *joinPlan) checkBrokerNamespace(ctx context.Context, members []Member) error {
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
	old, err := p.broker.kube.CoreV1().ConfigMaps(ns.Name).Get(ctx, legacyMembershipConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: reading %s/%s: %w", p.o.BrokerName, ns.Name, legacyMembershipConfigMap, err)
	}
	if uid := old.Data[KeyClusterUID]; uid != "" && uid != p.joining.ClusterUID {
		return fmt.Errorf("cluster ID %q is already used by another cluster of the clusterset (kube-system namespace uid %s, in the old layout: ConfigMap %s/%s); choose another cluster ID: %w",
			p.joining.ID, uid, ns.Name, legacyMembershipConfigMap, ErrIDTaken)
	}
	// A member of the old layout moves to the registry with its join time.
	registered := false
	for _, m := range members {
		registered = registered || m.ID == p.joining.ID
	}
	if at, err := time.Parse(time.RFC3339, old.Data[KeyJoinedAt]); err == nil && !registered {
		p.joining.JoinedAt = at
	}
	return nil
}

// write applies the plan in an order that keeps a half-done join invisible: the registry
// record, which makes the member known to the others, comes last.
func (p *joinPlan) write(ctx context.Context, j *journal) error {
	id := p.joining.ID
	bk := p.broker.kube
	var token string
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
		{"broker-clusterset-namespace", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "Namespace", bk.CoreV1().Namespaces(), namespace(ClustersetNamespace, ""), noSpec[*corev1.Namespace])
			return err
		}},
		{"broker-service-account", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ServiceAccount", bk.CoreV1().ServiceAccounts(ClustersetNamespace), memberServiceAccount(id), reconcileServiceAccount)
			return err
		}},
		{"broker-namespace", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "Namespace", bk.CoreV1().Namespaces(), namespace(MemberNamespace(id), id), noSpec[*corev1.Namespace])
			return err
		}},
		{"broker-role", func(ctx context.Context) error {
			return ensureRole(ctx, j, p.broker.name, bk, memberRole(id), memberRoleBinding(id))
		}},
		{"broker-reader-roles", func(ctx context.Context) error {
			// The federation namespace may be someone else's: it is created when missing,
			// and left as it is otherwise.
			if _, err := ensure(ctx, j, p.broker.name, "Namespace", bk.CoreV1().Namespaces(), namespace(p.o.FederationNamespace, ""), keepExisting[*corev1.Namespace]); err != nil {
				return err
			}
			for _, r := range []struct {
				ns, id string
				scope  readerScope
			}{
				{MemberNamespace(id), id, readMemberRecords},
				{ClustersetNamespace, "", readRegistry},
				{p.o.FederationNamespace, "", readFederation},
			} {
				if err := ensureRole(ctx, j, p.broker.name, bk, readerRole(r.ns, r.id, r.scope), readerRoleBinding(r.ns, r.id)); err != nil {
					return err
				}
			}
			return p.grantClusterReader(ctx, j)
		}},
		{"broker-token-role", func(ctx context.Context) error {
			return ensureRole(ctx, j, p.broker.name, bk, memberTokenRole(id), memberTokenRoleBinding(id))
		}},
		{"broker-token", func(ctx context.Context) error {
			var err error
			token, p.expiry, err = requestToken(ctx, bk, id, p.o.CredentialTTL)
			if err != nil {
				return fmt.Errorf("%s: %w", p.broker.name, err)
			}
			if short := p.o.CredentialTTL - time.Until(p.expiry); short > time.Minute {
				p.warnings = append(p.warnings, fmt.Sprintf("the broker issued a token valid until %s, %s less than the credential TTL %s asked for (its --service-account-max-token-expiration is lower)",
					p.expiry.UTC().Format(time.RFC3339), short.Round(time.Second), p.o.CredentialTTL))
			}
			return nil
		}},
		{"member-broker-secret", func(ctx context.Context) error {
			kubeconfig, err := p.endpoint.Credential(token).Kubeconfig(id)
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
		{"broker-registry", func(ctx context.Context) error {
			_, err := ensure(ctx, j, p.broker.name, "ConfigMap", bk.CoreV1().ConfigMaps(ClustersetNamespace), registryConfigMap(p.joining), reconcileConfigMap)
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

// requestToken asks the TokenRequest API for a token of the member's ServiceAccount that
// expires after ttl; it returns the token and when it expires.
func requestToken(ctx context.Context, kube kubernetes.Interface, id string, ttl time.Duration) (string, time.Time, error) {
	tr, err := kube.CoreV1().ServiceAccounts(ClustersetNamespace).CreateToken(ctx, RegistryName(id), &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(ttl / time.Second))},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", time.Time{}, fmt.Errorf("requesting a token for ServiceAccount %s/%s: %w", ClustersetNamespace, RegistryName(id), err)
	}
	if tr.Status.Token == "" {
		return "", time.Time{}, fmt.Errorf("requesting a token for ServiceAccount %s/%s: the API server returned none", ClustersetNamespace, RegistryName(id))
	}
	return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
}

// ensureRole writes a Role and its RoleBinding.
func ensureRole(ctx context.Context, j *journal, cluster string, kube kubernetes.Interface, role *rbacv1.Role, binding *rbacv1.RoleBinding) error {
	if _, err := ensure(ctx, j, cluster, "Role", kube.RbacV1().Roles(role.Namespace), role, reconcileRole); err != nil {
		return err
	}
	_, err := ensure(ctx, j, cluster, "RoleBinding", kube.RbacV1().RoleBindings(binding.Namespace), binding, reconcileRoleBinding)
	return err
}

// grantClusterReader gives the members' group its one cluster-wide grant (ClusterRole and
// ClusterRoleBinding strait-member-reader). The ClusterRole of the old layout had the same
// name and granted members every namespace's ConfigMaps, Services and records; while
// members of the old layout still use it (ClusterRoleBindings strait-member-reader-<id>), it
// is left as it is and not bound to the group, so no member of the new layout gets those
// reads; the join that migrates the last of them replaces it (see migrate).
func (p *joinPlan) grantClusterReader(ctx context.Context, j *journal) error {
	legacy, err := legacyReaderBindings(ctx, p.broker.kube)
	if err != nil {
		return fmt.Errorf("%s: %w", p.broker.name, err)
	}
	if len(legacy) > 0 {
		p.legacyBindings = legacy
		return nil
	}
	p.legacyBindings = nil
	return ensureClusterReader(ctx, j, p.broker.name, p.broker.kube)
}

func ensureClusterReader(ctx context.Context, j *journal, cluster string, kube kubernetes.Interface) error {
	if _, err := ensure(ctx, j, cluster, "ClusterRole", kube.RbacV1().ClusterRoles(), readerClusterRole(), reconcileClusterRole); err != nil {
		return err
	}
	_, err := ensure(ctx, j, cluster, "ClusterRoleBinding", kube.RbacV1().ClusterRoleBindings(), readerClusterRoleBinding(), reconcileClusterRoleBinding)
	return err
}

// legacyReaderBindings lists the ClusterRoleBindings of the old layout (one per member, to
// ClusterRole strait-member-reader) that are left on the broker.
func legacyReaderBindings(ctx context.Context, kube kubernetes.Interface) ([]string, error) {
	list, err := kube.RbacV1().ClusterRoleBindings().List(ctx, metav1.ListOptions{LabelSelector: ManagedByLabel + "=" + ManagedByValue})
	if err != nil {
		return nil, fmt.Errorf("listing ClusterRoleBindings: %w", err)
	}
	var names []string
	for _, b := range list.Items {
		if b.Name != MemberReaderRole && b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == legacyReaderClusterRole {
			names = append(names, b.Name)
		}
	}
	return names, nil
}

// migrate removes what is left of the old layout for the member, now that the new one is in
// place, and gives the members' group its cluster-wide grant once no member of the old
// layout is left.
func (p *joinPlan) migrate(ctx context.Context, j *journal) error {
	record := func(a Action) { j.record(a, nil) }
	if err := removeLegacy(ctx, p.broker.kube, p.broker.name, p.joining.ID, record); err != nil {
		return err
	}
	if err := p.grantClusterReader(ctx, j); err != nil {
		return err
	}
	if len(p.legacyBindings) > 0 {
		p.warnings = append(p.warnings, fmt.Sprintf("members of the old broker layout are left (ClusterRoleBindings %s): run strait join for each of them; until the last one is migrated, ClusterRole %s keeps its old, wider rules for them and is not bound to group %s",
			strings.Join(p.legacyBindings, ", "), MemberReaderRole, MembersGroup))
	}
	return nil
}

// removeLegacy deletes the objects of the old layout that belonged to member id: its reader
// ClusterRoleBinding, and in its member namespace its ServiceAccount, token Secret and
// membership ConfigMap. Only objects labelled as Strait's are deleted.
func removeLegacy(ctx context.Context, kube kubernetes.Interface, cluster, id string, record func(Action)) error {
	ns := MemberNamespace(id)
	for _, o := range []struct {
		kind, namespace, name string
		del                   func(name string) (bool, error)
	}{
		{"ClusterRoleBinding", "", legacyReaderBinding(id), func(name string) (bool, error) {
			return deleteOurs(ctx, kube.RbacV1().ClusterRoleBindings(), name)
		}},
		{"ConfigMap", ns, legacyMembershipConfigMap, func(name string) (bool, error) {
			return deleteOurs(ctx, kube.CoreV1().ConfigMaps(ns), name)
		}},
		{"Secret", ns, legacyAgentTokenSecret, func(name string) (bool, error) {
			return deleteOurs(ctx, kube.CoreV1().Secrets(ns), name)
		}},
		{"ServiceAccount", ns, legacyAgentServiceAccount, func(name string) (bool, error) {
			return deleteOurs(ctx, kube.CoreV1().ServiceAccounts(ns), name)
		}},
	} {
		a := Action{Cluster: cluster, Verb: Deleted, Kind: o.kind, Namespace: o.namespace, Name: o.name}
		deleted, err := o.del(o.name)
		if err != nil {
			return fmt.Errorf("deleting %s in %s: %w", a.objectName(), cluster, err)
		}
		if deleted {
			record(a)
		}
	}
	return nil
}

// deleteOurs deletes the named object if it exists and carries Strait's label, and reports
// whether it did.
func deleteOurs[T metav1.Object](ctx context.Context, c kubeClient[T], name string) (bool, error) {
	obj, err := c.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if obj.GetLabels()[ManagedByLabel] != ManagedByValue {
		return false, nil
	}
	uid := obj.GetUID()
	err = c.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

func noSpec[T any](T, T) (bool, error) { return false, nil }

// keepExisting leaves an object that exists exactly as it is, labels included.
func keepExisting[T any](T, T) (bool, error) { return false, errKeep }

func reconcileServiceAccount(have, want *corev1.ServiceAccount) (bool, error) {
	if reflect.DeepEqual(have.AutomountServiceAccountToken, want.AutomountServiceAccountToken) {
		return false, nil
	}
	have.AutomountServiceAccountToken = want.AutomountServiceAccountToken
	return true, nil
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
