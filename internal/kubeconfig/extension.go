package kubeconfig

import (
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/strait-io/strait/internal/clusterset"
)

// ExtensionName names Strait's extension of a kubeconfig context:
//
//	contexts:
//	- name: cluster02
//	  context:
//	    extensions:
//	    - name: strait.io
//	      extension:
//	        brokerServer: https://127.0.0.1:16443
const ExtensionName = "strait.io"

// Extension is what a kubeconfig context may tell Strait's commands about its cluster.
type Extension struct {
	// BrokerServer is where this kubeconfig's user reaches the broker, when that is not the
	// URL strait join stored for the members' agents (a private address only the clusters
	// reach). Commands that read the broker with the member's stored credential (status,
	// diagnose) use it unless --broker-server is given.
	BrokerServer string `json:"brokerServer,omitempty"`
}

// SetExtension writes Strait's extension into a context.
func SetExtension(c *clientcmdapi.Context, e Extension) error {
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if c.Extensions == nil {
		c.Extensions = map[string]runtime.Object{}
	}
	c.Extensions[ExtensionName] = &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}
	return nil
}

// ExtensionOf reads Strait's extension of a context; a context without one has the zero
// Extension. A malformed one is an error naming the context.
func ExtensionOf(name string, c *clientcmdapi.Context) (Extension, error) {
	var e Extension
	obj, ok := c.Extensions[ExtensionName]
	if !ok {
		return e, nil
	}
	u, ok := obj.(*runtime.Unknown)
	if !ok {
		return e, fmt.Errorf("context %q: extension %s is not an object like {brokerServer: https://<host>:<port>}", name, ExtensionName)
	}
	if err := json.Unmarshal(u.Raw, &e); err != nil {
		return e, fmt.Errorf("context %q: extension %s is not an object like {brokerServer: https://<host>:<port>}: %w", name, ExtensionName, err)
	}
	if e.BrokerServer != "" {
		if err := clusterset.ValidateBrokerServer(e.BrokerServer); err != nil {
			return e, fmt.Errorf("context %q: extension %s, brokerServer: %w", name, ExtensionName, err)
		}
	}
	return e, nil
}

// BrokerServer is the broker URL a command that reads the broker with the member's stored
// credential uses for a context: override (its --broker-server) if given, else the
// context's extension (see Extension), else "" (the stored one). context "" is the context
// the flags select. The caller has checked the override (clusterset.ValidateBrokerServer).
func (f *Flags) BrokerServer(context, override string) (string, error) {
	if override != "" {
		return override, nil
	}
	raw, err := f.config.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return "", fmt.Errorf("loading kubeconfig: %w", err)
	}
	if context == "" {
		context = *f.config.Context
	}
	if context == "" {
		context = raw.CurrentContext
	}
	c, ok := raw.Contexts[context]
	if !ok {
		return "", nil // --server or --cluster stand in for a context: no extension
	}
	e, err := ExtensionOf(context, c)
	return e.BrokerServer, err
}
