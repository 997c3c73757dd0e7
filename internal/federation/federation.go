// Package federation implements federated Services (as Kubernetes federation v1 did) on
// top of the broker: a Service applied to the broker's federation namespace is placed, by
// every selected member's agent, in that member under the same namespace and name; each
// member reports its shard (ingress addresses, ready endpoints) as a record in its own broker
// namespace; the broker Service's status and the DNS hierarchy of strait dns are derived from
// those records, the membership and the members' leases.
//
// This package holds what every side shares and that needs no informers: configuration,
// annotations and labels, cluster selection, the member Service a broker Service asks for
// (adoption included), a shard's ingress, the record format, shard health and the
// aggregation into the broker Service's status, plus the broker-backed zone.Source of strait
// dns. The member-side reconcilers live in internal/agent/federation, the broker-side status
// writer in internal/federation/brokerstatus.
package federation

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/strait-io/strait/internal/liveness"
)

// Defaults of Config.
const (
	// DefaultNamespace is the broker namespace whose Services are federated.
	DefaultNamespace = "strait-federation"
	// DefaultName is the federation's name, the <fed> label of its DNS names.
	DefaultName = "federation"
)

// Annotations users put on a broker Service.
const (
	// AnnotationClusters selects the member clusters ("a,b"); absent means every member.
	AnnotationClusters = "federation.strait.io/clusters"
	// AnnotationTTL overrides the TTL of the service's DNS records ("30s" or "30").
	AnnotationTTL = "federation.strait.io/dns-ttl"
)

// Labels Strait puts on what it writes for a federated Service.
const (
	// LabelFederation names the federation on member Services and namespaces Strait created
	// or adopted, and on shard records.
	LabelFederation = "federation.strait.io/federation"
	// LabelAdopted marks a member Service that existed before and was adopted.
	LabelAdopted = "federation.strait.io/adopted"
	// LabelService and LabelNamespace name the federated Service of a shard record.
	LabelService   = "federation.strait.io/service"
	LabelNamespace = "federation.strait.io/namespace"
)

// ConditionFederated is the broker Service's condition saying whether its annotations are
// valid and every cluster it selects is a member.
const ConditionFederated = "Federated"

// ShardConditionPrefix prefixes the condition type of each selected cluster's shard:
// "shard.federation.strait.io/<cluster ID>". A cluster ID is a DNS label, so the type is
// a valid qualified name, as metav1.Condition requires.
const ShardConditionPrefix = "shard.federation.strait.io/"

// ShardCondition is the condition type of a cluster's shard.
func ShardCondition(cluster string) string { return ShardConditionPrefix + cluster }

// Condition reasons.
const (
	ReasonValid            = "Valid"
	ReasonUnknownCluster   = "UnknownCluster"
	ReasonInvalidSelector  = "InvalidSelector"
	ReasonInvalidTTL       = "InvalidTTL"
	ReasonHealthy          = "Healthy"
	ReasonShardMissing     = "ShardMissing"
	ReasonNoReadyEndpoints = "NoReadyEndpoints"
	ReasonMemberDown       = "MemberDown"
	ReasonShardConflict    = "ShardConflict"
	ReasonNodePortMismatch = "NodePortMismatch"
	// ReasonNamespaceNotAllowed: the clusterset's namespace policy does not let the
	// cluster export into the federated Service's namespace.
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
)

// Config names the federation. Every component (agents, the status writer, strait dns and
// the CLI) must agree on it.
type Config struct {
	// Namespace is the broker namespace of federated Services, and their namespace in the
	// members.
	Namespace string
	// Name is the federation's name in DNS.
	Name string
	// Grace is how long after its lease duration a member without an observed renewal still
	// counts as alive (see package liveness).
	Grace time.Duration
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{Namespace: DefaultNamespace, Name: DefaultName, Grace: liveness.DefaultGracePeriod}
}

// AddFlags registers --federation-namespace and --federation-name.
func (c *Config) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.Namespace, "federation-namespace", c.Namespace, "broker namespace whose Services are federated to the member clusters")
	fs.StringVar(&c.Name, "federation-name", c.Name, "name of the federation, the <federation> label of <svc>.<ns>.<federation>.svc.<domain>")
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if errs := validation.IsDNS1123Label(c.Namespace); len(errs) > 0 {
		return fmt.Errorf("--federation-namespace %q: %s", c.Namespace, errs[0])
	}
	if errs := validation.IsDNS1123Label(c.Name); len(errs) > 0 {
		return fmt.Errorf("--federation-name %q: %s", c.Name, errs[0])
	}
	if c.Grace < 0 {
		return fmt.Errorf("grace period %s must not be negative", c.Grace)
	}
	return nil
}
