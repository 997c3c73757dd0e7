package controller

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// The reasons of strait_reconcile_errors_total: a fixed, small set, so the metric's
// cardinality does not grow with the errors' messages.
const (
	ReasonConflict    = "conflict"
	ReasonNotFound    = "not_found"
	ReasonForbidden   = "forbidden"
	ReasonTimeout     = "timeout"
	ReasonUnavailable = "unavailable"
	ReasonInvalid     = "invalid"
	ReasonOther       = "other"
)

// ErrorReason classifies a reconcile error by the API error it wraps: what an operator
// acts on differently. A write conflict or an object that already exists is a conflict
// (retried, harmless unless it never stops); forbidden and unauthorized call for RBAC or
// credentials; timeout, unavailable (the API server or the network away, throttled, or
// failing internally) for the API server; invalid for a bug or a version skew; other for
// everything else (a cache that cannot answer, the reconciler's own checks).
func ErrorReason(err error) string {
	switch {
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return ReasonConflict
	case apierrors.IsNotFound(err), apierrors.IsGone(err):
		return ReasonNotFound
	case apierrors.IsForbidden(err), apierrors.IsUnauthorized(err):
		return ReasonForbidden
	case apierrors.IsTimeout(err), apierrors.IsServerTimeout(err), errors.Is(err, context.DeadlineExceeded):
		return ReasonTimeout
	case apierrors.IsServiceUnavailable(err), apierrors.IsTooManyRequests(err), apierrors.IsInternalError(err),
		apierrors.IsUnexpectedServerError(err), utilnet.IsConnectionRefused(err), utilnet.IsConnectionReset(err), utilnet.IsProbableEOF(err):
		return ReasonUnavailable
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsMethodNotSupported(err), apierrors.IsNotAcceptable(err),
		apierrors.IsUnsupportedMediaType(err), apierrors.IsRequestEntityTooLargeError(err):
		return ReasonInvalid
	}
	return ReasonOther
}
