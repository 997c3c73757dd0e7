package v1alpha1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ExternalService maps services that run outside the cluster (a database by IP address, a
// host behind another cluster's Ingress or NodePort) to a local Service of the same name.
// The Strait agent writes the standard objects for it: an ExternalName Service for a single
// hostname, or a selector-less Service with EndpointSlices for IP addresses, health-checked
// so that traffic fails over among several targets.
//
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=xsvc,categories=strait
// +kubebuilder:printcolumn:name="Mode",type=string,JSONPath=`.status.mode`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Healthy",type=integer,JSONPath=`.status.readyTargets`
// +kubebuilder:printcolumn:name="Targets",type=integer,JSONPath=`.status.totalTargets`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",message="the name must be a DNS-1035 label (at most 63 lowercase letters, digits and dashes, starting with a letter): the Service takes this name"
type ExternalService struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   ExternalServiceSpec   `json:"spec"`
	Status ExternalServiceStatus `json:"status,omitempty"`
}

// ExternalServiceList is a list of ExternalServices.
//
// +kubebuilder:object:root=true
type ExternalServiceList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ExternalService `json:"items"`
}

// ExternalServiceSpec says which outside addresses a local Service name stands for.
//
// +kubebuilder:validation:XValidation:rule="size(self.ports) == 1 || self.targets.all(t, !has(t.port))",message="a target may carry its own port only when spec.ports has exactly one port",fieldPath=".targets"
// +kubebuilder:validation:XValidation:rule="!has(self.headless) || !self.headless || (self.ports.all(p, !has(p.targetPort) || p.targetPort == p.port) && self.targets.all(t, !has(t.port) || t.port == self.ports[0].port))",message="a headless ExternalService cannot remap ports: clients connect to the target addresses directly; drop headless or make targetPort equal port",fieldPath=".headless"
type ExternalServiceSpec struct {
	// Ports are the ports of the local Service and, through targetPort, the ports the
	// targets listen on.
	//
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, (has(q.name) ? q.name : '') == (has(p.name) ? p.name : '')))",message="port names must be unique"
	// +kubebuilder:validation:XValidation:rule="size(self) <= 1 || self.all(p, has(p.name) && p.name != '')",message="every port needs a name when there is more than one"
	// +kubebuilder:validation:XValidation:rule="self.all(p, self.exists_one(q, q.port == p.port && q.protocol == p.protocol))",message="port and protocol pairs must be unique"
	Ports []ServicePort `json:"ports"`

	// Targets are where the traffic goes: hostnames or IP addresses (v4 or v6).
	//
	// +listType=atomic
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:XValidation:rule="self.all(t, self.exists_one(u, u == t))",message="targets must be unique"
	Targets []Target `json:"targets"`

	// Headless makes the Service of IP targets headless (no cluster IP): DNS returns the
	// ready target addresses themselves, and no port can be remapped.
	//
	// +optional
	Headless bool `json:"headless,omitempty"`

	// HealthCheck, when set, is run by the agent against every target. Targets that fail it
	// are marked not ready in their EndpointSlice, so traffic fails over to the others.
	//
	// +optional
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// ServicePort is one port of the local Service.
type ServicePort struct {
	// Name of the port; required when there is more than one. A DNS-1123 label.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name,omitempty"`

	// Protocol is TCP, UDP or SCTP.
	//
	// +optional
	// +kubebuilder:default=TCP
	// +kubebuilder:validation:Enum=TCP;UDP;SCTP
	Protocol corev1.Protocol `json:"protocol,omitempty"`

	// AppProtocol is passed on to the Service and EndpointSlice ports.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=253
	AppProtocol *string `json:"appProtocol,omitempty"`

	// Port is the port of the local Service.
	//
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port"`

	// TargetPort is the port the targets listen on; default: port. A target's own port
	// overrides it.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	TargetPort int32 `json:"targetPort,omitempty"`
}

// Target is one outside address: a hostname or an IP address, optionally with its own port.
//
// +kubebuilder:validation:XValidation:rule="has(self.hostname) != has(self.ip)",message="set exactly one of hostname and ip"
type Target struct {
	// Hostname is a DNS name (not an IP address).
	//
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\.?$`
	// +kubebuilder:validation:XValidation:rule="!isIP(self) && !self.matches('^[0-9.]+$')",message="hostname must be a DNS name, not an IP address; put IP addresses in the ip field"
	// +kubebuilder:validation:XValidation:rule="self.split('.').all(l, size(l) <= 63)",message="each label of a hostname has at most 63 characters"
	Hostname string `json:"hostname,omitempty"`

	// IP is an IPv4 or IPv6 address in canonical form, neither loopback, link-local nor
	// unspecified.
	//
	// +optional
	// +kubebuilder:validation:MaxLength=45
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip.isCanonical(self)",message="ip must be an IPv4 or IPv6 address in canonical form, such as 10.0.0.7 or fd00::7"
	// +kubebuilder:validation:XValidation:rule="!isIP(self) || !(ip(self).isLoopback() || ip(self).isUnspecified() || ip(self).isLinkLocalUnicast() || ip(self).isLinkLocalMulticast())",message="ip must not be a loopback, link-local or unspecified address"
	IP string `json:"ip,omitempty"`

	// Port is this target's port, when spec.ports has exactly one port; default: that
	// port's targetPort.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`
}

// HealthCheck is how the agent checks targets: a TCP connect or an HTTP GET, from where the
// agent runs.
//
// +kubebuilder:validation:XValidation:rule="has(self.tcp) != has(self.http)",message="set exactly one of tcp and http"
// +kubebuilder:validation:XValidation:rule="self.timeoutSeconds <= self.intervalSeconds",message="timeoutSeconds must not exceed intervalSeconds",fieldPath=".timeoutSeconds"
type HealthCheck struct {
	// TCP checks that a connection to the target can be opened.
	//
	// +optional
	TCP *TCPHealthCheck `json:"tcp,omitempty"`

	// HTTP checks that an HTTP GET answers with a status from 200 to 399.
	//
	// +optional
	HTTP *HTTPHealthCheck `json:"http,omitempty"`

	// Port to check; default: the target's port for the first entry of spec.ports.
	//
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// IntervalSeconds between two checks of a target.
	//
	// +optional
	// +kubebuilder:default=10
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=3600
	IntervalSeconds int32 `json:"intervalSeconds,omitempty"`

	// TimeoutSeconds after which one check counts as failed.
	//
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=60
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`

	// HealthyThreshold is how many checks in a row must pass before an unhealthy target
	// is ready again.
	//
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	HealthyThreshold int32 `json:"healthyThreshold,omitempty"`

	// UnhealthyThreshold is how many checks in a row must fail before a target is marked
	// not ready.
	//
	// +optional
	// +kubebuilder:default=3
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=100
	UnhealthyThreshold int32 `json:"unhealthyThreshold,omitempty"`
}

// TCPHealthCheck is a TCP connect check; it has no settings.
type TCPHealthCheck struct{}

// HTTPHealthCheck is an HTTP GET check.
type HTTPHealthCheck struct {
	// Path of the GET request.
	//
	// +optional
	// +kubebuilder:default="/"
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path,omitempty"`
}

// ServiceMode is the kind of Service the agent wrote for an ExternalService.
type ServiceMode string

// The modes.
const (
	// ModeExternalName: one hostname, no port remapping; DNS answers with a CNAME.
	ModeExternalName ServiceMode = "ExternalName"
	// ModeClusterIP: IP targets behind a cluster IP; kube-proxy remaps ports.
	ModeClusterIP ServiceMode = "ClusterIP"
	// ModeHeadless: IP targets returned by DNS directly.
	ModeHeadless ServiceMode = "Headless"
)

// ExternalServiceStatus is what the agent made of an ExternalService.
type ExternalServiceStatus struct {
	// ObservedGeneration is the generation the status describes.
	//
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// Mode is the kind of Service written.
	//
	// +optional
	Mode ServiceMode `json:"mode,omitempty"`

	// Conditions: Ready says whether the Service and its endpoints are written and at least
	// one target is healthy, with a reason from the Reason* constants.
	//
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// ReadyTargets counts the targets traffic is sent to.
	//
	// +optional
	ReadyTargets int32 `json:"readyTargets,omitempty"`

	// TotalTargets counts all targets.
	//
	// +optional
	TotalTargets int32 `json:"totalTargets,omitempty"`

	// Targets is the health of every target, in spec order.
	//
	// +optional
	// +listType=atomic
	Targets []TargetStatus `json:"targets,omitempty"`
}

// TargetHealth is the health of one target.
type TargetHealth string

// The health states of a target.
const (
	// HealthUnchecked: no health check is configured; the target is used.
	HealthUnchecked TargetHealth = "Unchecked"
	// HealthUnknown: not checked yet; the target is used meanwhile.
	HealthUnknown TargetHealth = "Unknown"
	// HealthHealthy: the last checks passed.
	HealthHealthy TargetHealth = "Healthy"
	// HealthUnhealthy: unhealthyThreshold checks in a row failed; the target is not used.
	HealthUnhealthy TargetHealth = "Unhealthy"
)

// TargetStatus is the health of one target.
type TargetStatus struct {
	// Address is the target as dialled: ip:port, [ipv6]:port or hostname:port.
	Address string `json:"address"`
	// Health is the target's state.
	Health TargetHealth `json:"health"`
	// Reason is set when the target is out of use for a reason other than failed checks:
	// HealthCheckRefused (the agent does not probe loopback, link-local or metadata
	// addresses unless its --allow-health-check-cidrs allows them).
	//
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says why the last check failed, or why it was not run.
	//
	// +optional
	Message string `json:"message,omitempty"`
	// LastTransitionTime is when Health last changed.
	//
	// +optional
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

// ConditionReady is the condition type of an ExternalService.
const ConditionReady = "Ready"

// Reasons of the Ready condition.
const (
	// ReasonReady: the Service and its endpoints are written and at least one target is used.
	ReasonReady = "Ready"
	// ReasonProbing: objects are written; the first health checks have not finished.
	ReasonProbing = "Probing"
	// ReasonNoHealthyTargets: every target failed its health check.
	ReasonNoHealthyTargets = "NoHealthyTargets"
	// ReasonInvalidSpec: the spec breaks a rule the CRD schema could not check; the message
	// names the field. Nothing is written.
	ReasonInvalidSpec = "InvalidSpec"
	// ReasonUnsupportedTargets: hostnames with port remapping, several hostnames, or
	// hostnames mixed with IPs. Nothing is written.
	ReasonUnsupportedTargets = "UnsupportedTargets"
	// ReasonServiceNotOwned: a Service of this name exists and was not created for this
	// ExternalService; it is left alone.
	ReasonServiceNotOwned = "ServiceNotOwned"
	// ReasonApplyFailed: writing the Service or its EndpointSlices failed; retried.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonHealthCheckRefused: no target is in use, and the health checks of some are
	// refused: they are, or resolve to, loopback, link-local or cloud metadata addresses
	// the agent's --allow-health-check-cidrs does not allow. Also a target's reason.
	ReasonHealthCheckRefused = "HealthCheckRefused"
)
