package clusterset

import (
	"strings"
	"testing"
)

func TestValidateBrokerServer(t *testing.T) {
	for _, ok := range []string{"https://10.0.0.1:6443", "https://broker.example.com", "https://rancher.example.com/k8s/clusters/c-1"} {
		if err := ValidateBrokerServer(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"http://10.0.0.1:6443", "10.0.0.1:6443", "https://", "https://b:6443?x=1", "://"} {
		err := ValidateBrokerServer(bad)
		if err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "https://<host>") {
			t.Errorf("%s: %v; want an error naming it and the form of a valid one", bad, err)
		}
	}
}
