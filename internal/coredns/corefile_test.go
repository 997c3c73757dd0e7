package coredns

import (
	"strings"
	"testing"
)

const kubeadm = `.:53 {
    errors
    health {
       lameduck 5s
    }
    ready
    kubernetes cluster.local in-addr.arpa ip6.arpa {   # cluster names
       pods insecure
       fallthrough in-addr.arpa ip6.arpa
       ttl 30
    }
    prometheus :9153
    forward . /etc/resolv.conf {
       max_concurrent 1000
    }
    cache 30
    loop
    reload
    loadbalance
}
`

func TestAddMulticluster(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"kubeadm", kubeadm, strings.Replace(kubeadm,
			"    kubernetes cluster.local in-addr.arpa ip6.arpa {   # cluster names\n",
			"    kubernetes cluster.local clusterset.local in-addr.arpa ip6.arpa {   # cluster names\n       multicluster clusterset.local\n", 1)},
		{"no block", ".:53 {\n  kubernetes cluster.local\n  forward . 8.8.8.8\n}\n",
			".:53 {\n  kubernetes cluster.local clusterset.local {\n      multicluster clusterset.local\n  }\n  forward . 8.8.8.8\n}\n"},
		{"an empty block", ".:53 {\n\tkubernetes cluster.local {\n\t}\n}\n",
			".:53 {\n\tkubernetes cluster.local clusterset.local {\n\t    multicluster clusterset.local\n\t}\n}\n"},
		{"multicluster for another zone", ".:53 {\n  kubernetes cluster.local other.local {\n    multicluster other.local # mine\n  }\n}\n",
			".:53 {\n  kubernetes cluster.local clusterset.local other.local {\n    multicluster other.local clusterset.local # mine\n  }\n}\n"},
		{"zones from the server block", "cluster.local:53 {\n  kubernetes {\n    pods insecure\n  }\n}\n",
			"cluster.local:53 {\n  kubernetes {\n    multicluster clusterset.local\n    pods insecure\n  }\n}\n"},
	}
	for _, c := range cases {
		got, changed, err := AddMulticluster(c.in)
		if err != nil || !changed || got != c.want {
			t.Errorf("%s: changed %v, err %v, got\n%s\nwant\n%s", c.name, changed, err, got, c.want)
			continue
		}
		if ok, err := Configured(got); !ok || err != nil {
			t.Errorf("%s: the result is not Configured (%v)", c.name, err)
		}
		again, changed, err := AddMulticluster(got)
		if err != nil || changed || again != got {
			t.Errorf("%s: a second AddMulticluster changed %v (%v):\n%s", c.name, changed, err, again)
		}
		back, err := RemoveMulticluster(got)
		if err != nil {
			t.Errorf("%s: remove: %v", c.name, err)
		}
		// What the edit took back: the input, except where the input's own formatting of the
		// directive line was normalized.
		if ok, _ := Configured(back); ok {
			t.Errorf("%s: still configured after RemoveMulticluster:\n%s", c.name, back)
		}
		if c.name == "kubeadm" && back != kubeadm {
			t.Errorf("kubeadm: RemoveMulticluster did not restore the Corefile:\n%s", back)
		}
	}
}

func TestAddMulticlusterRefusesWhatItCannotEdit(t *testing.T) {
	for in, want := range map[string]string{
		".:53 {\n  forward . 8.8.8.8\n}\n":   "no kubernetes plugin",
		".:53 {\n  kubernetes cluster.local": "not valid",
	} {
		if _, _, err := AddMulticluster(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v; want %q", in, err, want)
		}
	}
}
