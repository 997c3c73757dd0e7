package nodesim

import (
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

func validConfig() Config {
	return Config{
		Cluster:  "east",
		NodeName: "east-node",
		NodeIP:   "192.168.50.10",
		PodCIDR:  "10.1.0.0/16",
		Region:   "eu-west",
		Zone:     "eu-west-a",
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string // substring naming the bad value; empty when valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "IPv6", mutate: func(c *Config) { c.NodeIP = "fd00::10"; c.PodCIDR = "fd01::/64" }},
		{name: "no cluster", mutate: func(c *Config) { c.Cluster = "" }, wantErr: "cluster name is empty"},
		{name: "no node name", mutate: func(c *Config) { c.NodeName = "" }, wantErr: "node name is empty"},
		{name: "bad node name", mutate: func(c *Config) { c.NodeName = "Node_A" }, wantErr: `"Node_A"`},
		{name: "bad node IP", mutate: func(c *Config) { c.NodeIP = "10.0.0.300" }, wantErr: `"10.0.0.300"`},
		{name: "bad CIDR", mutate: func(c *Config) { c.PodCIDR = "10.1.0.0/33" }, wantErr: `"10.1.0.0/33"`},
		{name: "host bits", mutate: func(c *Config) { c.PodCIDR = "10.1.2.3/16" }, wantErr: "use 10.1.0.0/16"},
		{name: "too small", mutate: func(c *Config) { c.PodCIDR = "10.1.0.0/31" }, wantErr: "too small"},
		{name: "mixed families", mutate: func(c *Config) { c.PodCIDR = "fd01::/64" }, wantErr: "different IP families"},
		{name: "negative interval", mutate: func(c *Config) { c.HeartbeatInterval = -time.Second }, wantErr: "-1s"},
		{name: "bad zone", mutate: func(c *Config) { c.Zone = "zone a" }, wantErr: `"zone a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.mutate(&cfg)
			v, err := cfg.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				if v.HeartbeatInterval != DefaultHeartbeatInterval {
					t.Errorf("heartbeat interval = %s, want default %s", v.HeartbeatInterval, DefaultHeartbeatInterval)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate error = %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	if _, err := New(nil, validConfig()); err == nil {
		t.Error("New with nil client succeeded")
	}
	cfg := validConfig()
	cfg.PodCIDR = "nonsense"
	if _, err := New(fake.NewClientset(), cfg); err == nil || !strings.Contains(err.Error(), "nonsense") {
		t.Errorf("New with bad CIDR: err = %v", err)
	}
}
