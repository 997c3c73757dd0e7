// Package credential holds the agent's broker credential: it accepts only the
// self-contained kind `strait join` stores (server, CA data, a bound token; see
// clusterset.ParseBrokerCredential), hands the current token to every broker request, and
// renews the token well before it expires, writing the renewed credential back to the
// member's Secret so a restart uses it. A credential someone writes into that Secret that is
// not of that kind is refused, with an Event naming the refused field, and the agent keeps
// the credential it has.
package credential

import (
	"context"
	"fmt"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/kubeconfig"
)

// Event reasons, on the member's Secret strait-system/strait-broker.
const (
	EventRefused = "BrokerCredentialRefused"
	EventRenewed = "BrokerCredentialRenewed"
)

// DefaultLifetime is what a renewed token asks for when the current one does not say (a
// legacy token that never expires is replaced by a bound one of this lifetime).
const DefaultLifetime = 24 * time.Hour

// Holder is the agent's current broker credential.
type Holder struct {
	ClusterID     string
	AllowInsecure bool

	mu      sync.Mutex
	cred    clusterset.BrokerCredential
	issued  time.Time // when the holder got the token, on this clock
	written []byte    // the Secret data the holder last read or wrote
}

// Load reads and checks the stored credential. The error names the refused field.
func Load(ctx context.Context, member kubernetes.Interface, id string, allowInsecure bool) (*Holder, error) {
	cred, data, err := clusterset.ReadBrokerCredential(ctx, member, allowInsecure)
	if err != nil {
		return nil, err
	}
	return &Holder{ClusterID: id, AllowInsecure: allowInsecure, cred: cred, issued: time.Now(), written: data}, nil
}

// RESTConfig is the broker client configuration: every request carries the holder's
// current token, so a renewal reaches clients made before it.
func (h *Holder) RESTConfig() *rest.Config {
	h.mu.Lock()
	cfg := h.cred.RESTConfig()
	h.mu.Unlock()
	return kubeconfig.WithToken(cfg, h)
}

// Token returns the current token.
func (h *Holder) Token() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cred.Token
}

// due says whether the token should be renewed now: a third of its life left, or no
// expiry at all (a legacy token).
func (h *Holder) due(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cred.Expiry.IsZero() {
		return true
	}
	life := h.cred.Expiry.Sub(h.issued)
	if life <= 0 {
		return true
	}
	return h.cred.Expiry.Sub(now) < life/3
}

// Renewer keeps the holder's token fresh.
type Renewer struct {
	Holder *Holder
	Member kubernetes.Interface
	// Broker is a client made from Holder.RESTConfig().
	Broker kubernetes.Interface
	// Event records an event on the broker Secret; nil records none.
	Event func(typ, reason, message string)
	// Now is the clock (tests); nil is time.Now.
	Now func() time.Time
}

// Run checks every interval until ctx ends: it adopts a valid credential rotated into the
// Secret (strait join re-run), refuses an invalid one, and renews the token when a third of
// its life is left.
func (r *Renewer) Run(ctx context.Context, interval time.Duration) {
	logger := klog.FromContext(ctx)
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		if err := r.Check(ctx); err != nil && ctx.Err() == nil {
			logger.Error(err, "Broker credential")
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

func (r *Renewer) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Renewer) event(typ, reason, format string, args ...any) {
	if r.Event != nil {
		r.Event(typ, reason, fmt.Sprintf(format, args...))
	}
}

// Check runs one round (see Run).
func (r *Renewer) Check(ctx context.Context) error {
	h := r.Holder
	secrets := r.Member.CoreV1().Secrets(clusterset.SystemNamespace)
	secret, err := secrets.Get(ctx, clusterset.BrokerSecretName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading %s/%s: %w", clusterset.SystemNamespace, clusterset.BrokerSecretName, err)
	}
	data := secret.Data[clusterset.BrokerSecretKey]
	h.mu.Lock()
	changed := string(data) != string(h.written)
	h.mu.Unlock()
	if changed {
		cred, err := clusterset.ParseBrokerCredential(data, h.AllowInsecure)
		switch {
		case err != nil:
			r.event(corev1.EventTypeWarning, EventRefused, "The credential written to %s/%s is refused and the agent keeps using its own: %v",
				clusterset.SystemNamespace, clusterset.BrokerSecretName, err)
			h.mu.Lock()
			h.written = data // report it once
			h.mu.Unlock()
		default:
			h.mu.Lock()
			h.cred, h.issued, h.written = cred, r.now(), data
			h.mu.Unlock()
			klog.FromContext(ctx).Info("Using the broker credential rotated into the Secret", "expires", cred.Expiry)
		}
	}
	if !h.due(r.now()) {
		return nil
	}
	return r.renew(ctx, secret)
}

// renew asks the broker for a new token of the member's identity and stores it.
func (r *Renewer) renew(ctx context.Context, secret *corev1.Secret) error {
	h := r.Holder
	h.mu.Lock()
	life := DefaultLifetime
	if !h.cred.Expiry.IsZero() && h.cred.Expiry.After(h.issued) {
		life = h.cred.Expiry.Sub(h.issued).Round(time.Minute)
	}
	h.mu.Unlock()
	secs := int64(life / time.Second)
	tr, err := r.Broker.CoreV1().ServiceAccounts(clusterset.ClustersetNamespace).CreateToken(ctx, clusterset.RegistryName(h.ClusterID),
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("renewing the broker token of %s/%s: %w", clusterset.ClustersetNamespace, clusterset.RegistryName(h.ClusterID), err)
	}
	h.mu.Lock()
	next := h.cred
	next.Token, next.Expiry = tr.Status.Token, tr.Status.ExpirationTimestamp.Time
	h.cred, h.issued = next, r.now()
	h.mu.Unlock()
	data, err := next.Kubeconfig(h.ClusterID)
	if err != nil {
		return err
	}
	update := secret.DeepCopy()
	if update.Data == nil {
		update.Data = map[string][]byte{}
	}
	update.Data[clusterset.BrokerSecretKey] = data
	if _, err := r.Member.CoreV1().Secrets(clusterset.SystemNamespace).Update(ctx, update, metav1.UpdateOptions{}); err != nil {
		// The token is renewed in memory; the next round stores it (or adopts another
		// replica's).
		return fmt.Errorf("storing the renewed broker credential in %s/%s: %w", clusterset.SystemNamespace, clusterset.BrokerSecretName, err)
	}
	h.mu.Lock()
	h.written = data
	h.mu.Unlock()
	r.event(corev1.EventTypeNormal, EventRenewed, "Broker token renewed; it expires at %s", next.Expiry.UTC().Format(time.RFC3339))
	return nil
}
