package mcs

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// maxConditionMessage is the API server's limit on metav1.Condition.Message.
const maxConditionMessage = 32768

// ConflictCondition builds the standard Conflict condition of a ServiceExport from the
// conflicts Aggregate reported for its cluster. With conflicts it is True, its reason the
// distinct reasons joined by commas (as the mcs-api allows for several conflicts) and its
// message every conflict's message; without, it is False with reason NoConflicts.
//
// LastTransitionTime is left zero so that the result is a pure function of its input;
// apply it with meta.SetStatusCondition, which stamps the time only on a real transition.
func ConflictCondition(conflicts []Conflict, generation int64) metav1.Condition {
	c := metav1.Condition{
		Type:               string(mcsv1beta1.ServiceExportConditionConflict),
		ObservedGeneration: generation,
	}
	if len(conflicts) == 0 {
		c.Status = metav1.ConditionFalse
		c.Reason = string(mcsv1beta1.ServiceExportReasonNoConflicts)
		c.Message = "no conflict with the exports of other clusters"
		return c
	}
	var reasons, msgs []string
	seen := map[mcsv1beta1.ServiceExportConditionReason]bool{}
	for _, cf := range conflicts {
		if !seen[cf.Reason] {
			seen[cf.Reason] = true
			reasons = append(reasons, string(cf.Reason))
		}
		msgs = append(msgs, cf.Message)
	}
	c.Status = metav1.ConditionTrue
	c.Reason = strings.Join(reasons, ",")
	c.Message = truncateMessage(strings.Join(msgs, "; "))
	return c
}

// ValidCondition builds the standard Valid condition of a ServiceExport for the Service it
// names: False with NoService when svc is nil, False with InvalidServiceType for an
// ExternalName Service (KEP-1645: it has no endpoints to export), True otherwise.
// LastTransitionTime is left zero, as in ConflictCondition.
func ValidCondition(svc *corev1.Service, generation int64) metav1.Condition {
	c := metav1.Condition{
		Type:               string(mcsv1beta1.ServiceExportConditionValid),
		ObservedGeneration: generation,
	}
	switch {
	case svc == nil:
		c.Status = metav1.ConditionFalse
		c.Reason = string(mcsv1beta1.ServiceExportReasonNoService)
		c.Message = "no Service with the name of this ServiceExport exists in its namespace"
	case svc.Spec.Type == corev1.ServiceTypeExternalName:
		c.Status = metav1.ConditionFalse
		c.Reason = string(mcsv1beta1.ServiceExportReasonInvalidServiceType)
		c.Message = fmt.Sprintf("Service %s/%s has type %s, which cannot be exported", svc.Namespace, svc.Name, svc.Spec.Type)
	default:
		c.Status = metav1.ConditionTrue
		c.Reason = string(mcsv1beta1.ServiceExportReasonValid)
		c.Message = fmt.Sprintf("Service %s/%s can be exported", svc.Namespace, svc.Name)
	}
	return c
}

func truncateMessage(s string) string {
	if len(s) <= maxConditionMessage {
		return s
	}
	const ellipsis = " ..."
	return strings.ToValidUTF8(s[:maxConditionMessage-len(ellipsis)], "") + ellipsis
}
