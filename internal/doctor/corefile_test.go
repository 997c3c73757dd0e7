package doctor

import (
	"reflect"
	"strings"
	"testing"
)

func TestReadCorefile(t *testing.T) {
	t.Setenv("STRAIT_TEST_DB_IP", "10.7.7.7")
	tests := []struct {
		name     string
		corefile string
		files    map[string]string
		hosts    []HostsEntry
		zones    []string
		notes    []string // each a substring of one note, in order
		err      string   // a substring of the error; "" for none
	}{
		{
			name: "quoting: quoted entries, and braces and # inside quotes",
			corefile: `.:53 {
    template IN A example.org {
        answer "{{ .Name }} 60 IN A 10.0.0.1"   # }} in quotes closes nothing
    }
    hosts {
        "10.0.0.2" "quoted.example"
        10.0.0.3 "hash#not-a-comment.example"
    }
    kubernetes "cluster.local" in-addr.arpa
}
`,
			hosts: []HostsEntry{
				{Name: "quoted.example", Addresses: []string{"10.0.0.2"}},
				{Name: "hash#not-a-comment.example", Addresses: []string{"10.0.0.3"}},
			},
			zones: []string{"cluster.local"},
		},
		{
			name: "comments: a commented-out hosts block and trailing comments",
			corefile: `# hosts {
#     10.9.9.9 commented.example
# }
.:53 {   # the root zone
    hosts {   # inline
        10.0.0.4 live.example   # a comment { with a brace
        fallthrough
    }
    kubernetes cluster.local   # zones
}
`,
			hosts: []HostsEntry{{Name: "live.example", Addresses: []string{"10.0.0.4"}}},
			zones: []string{"cluster.local"},
		},
		{
			name: "a snippet imported by two server blocks",
			corefile: `(shared) {
    hosts {
        10.0.0.5 snippet.example
        fallthrough
    }
}
.:53 {
    import shared
    forward . /etc/resolv.conf
}
cluster.local:53 {
    import shared
    kubernetes
}
`,
			hosts: []HostsEntry{{Name: "snippet.example", Addresses: []string{"10.0.0.5", "10.0.0.5"}}},
			zones: []string{"cluster.local"},
		},
		{
			name: "several server blocks: zones from keys, hosts in each, an env reference",
			corefile: `dns://cluster.local:53 k8s.example:53 {
    kubernetes
}
example.org:5353 {
    hosts {
        10.0.0.6 a.example.org
    }
}
.:53 {
    hosts {
        {$STRAIT_TEST_DB_IP} db.example
        10.0.0.7 a.example.org
    }
    kubernetes other.local in-addr.arpa
}
`,
			hosts: []HostsEntry{
				{Name: "a.example.org", Addresses: []string{"10.0.0.6", "10.0.0.7"}},
				{Name: "db.example", Addresses: []string{"10.7.7.7"}},
			},
			zones: []string{"cluster.local", "k8s.example", "other.local"},
			notes: []string{"environment variables (STRAIT_TEST_DB_IP)"},
		},
		{
			name: "imports of the ConfigMap's files; others are noted, never read",
			corefile: `.:53 {
    import extra.override
    import /etc/coredns/custom/*.override
    import ../../../../etc/hosts
    hosts /etc/coredns/custom.hosts
}
import /etc/coredns/*.server
`,
			files: map[string]string{
				"extra.override": "hosts {\n    10.0.0.8 override.example\n}\n",
				"b.server":       "b.example:53 {\n    kubernetes b.local\n}\n",
				"custom.hosts":   "10.0.0.9 file.example # from the file\n",
			},
			hosts: []HostsEntry{
				{Name: "override.example", Addresses: []string{"10.0.0.8"}},
				{Name: "file.example", Addresses: []string{"10.0.0.9"}},
			},
			zones: []string{"b.local"},
			notes: []string{
				"Corefile:3: import /etc/coredns/custom/*.override was not read: no key of the coredns ConfigMap matches it",
				"Corefile:4: import ../../../../etc/hosts was not read: it is not in the coredns ConfigMap",
			},
		},
		{
			name:     "malformed: a block that is never closed",
			corefile: ".:53 {\n    hosts {\n        10.0.0.1 a.example\n",
			err:      "the Corefile is not valid: Corefile:3 - Error during parsing: Unexpected EOF",
		},
		{
			name:     "malformed: an import of a file that does not exist",
			corefile: ".:53 {\n    forward . 8.8.8.8\n    import missing.conf\n}\n",
			err:      "Corefile:3 - Error during parsing: File to import not found: missing.conf",
		},
		{
			name:     "malformed: an error in an imported file names that file",
			corefile: ".:53 {\n    errors\n}\nimport broken.server\n",
			files:    map[string]string{"broken.server": "b.example {\n    hosts {\n"},
			err:      "broken.server:2 - Error during parsing: Unexpected EOF",
		},
		{
			name:     "malformed: a snippet declared twice",
			corefile: "(s) {\n    errors\n}\n(s) {\n    log\n}\n",
			err:      "Corefile:4 - Error during parsing: redeclaration of previously declared snippet s",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cf, err := ReadCorefile(tc.corefile, tc.files)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				if strings.Contains(err.Error(), "strait-corefile-") {
					t.Errorf("error names the temporary directory: %v", err)
				}
				if got := ParseCorefile(tc.corefile, tc.files); got.Hosts != nil || got.Zones != nil {
					t.Errorf("ParseCorefile of a malformed Corefile = %+v, want nothing", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(cf.Hosts, tc.hosts) {
				t.Errorf("hosts %+v\nwant  %+v", cf.Hosts, tc.hosts)
			}
			if !reflect.DeepEqual(cf.Zones, tc.zones) {
				t.Errorf("zones %v, want %v", cf.Zones, tc.zones)
			}
			if len(cf.Notes) != len(tc.notes) {
				t.Fatalf("notes %q, want %d", cf.Notes, len(tc.notes))
			}
			for i, want := range tc.notes {
				if !strings.Contains(cf.Notes[i], want) {
					t.Errorf("note %q, want %q", cf.Notes[i], want)
				}
			}
		})
	}
}

func TestReadCorefileMulticluster(t *testing.T) {
	with := `.:53 {
    kubernetes cluster.local clusterset.local in-addr.arpa {
        pods insecure
        multicluster clusterset.local.
        fallthrough in-addr.arpa
    }
}
`
	cf, err := ReadCorefile(with, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cf.Multicluster, []string{"clusterset.local"}) || !reflect.DeepEqual(cf.Zones, []string{"cluster.local", "clusterset.local"}) {
		t.Errorf("multicluster %q zones %q; want [clusterset.local] and [cluster.local clusterset.local]", cf.Multicluster, cf.Zones)
	}
	without := strings.ReplaceAll(with, "        multicluster clusterset.local.\n", "")
	if cf, err = ReadCorefile(without, nil); err != nil || len(cf.Multicluster) != 0 {
		t.Errorf("without the multicluster line: %q, %v; want none", cf.Multicluster, err)
	}
}
