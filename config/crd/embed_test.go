package crd

import (
	"bytes"
	"testing"

	mcscrd "sigs.k8s.io/mcs-api/config/crd"
	"sigs.k8s.io/yaml"
)

// The MCS definitions here are copies for kustomize; they must stay those of the module
// version go.mod pins, which the agent's typed clients are built from.
func TestMCSDefinitionsMatchTheModule(t *testing.T) {
	for name, pair := range map[string][2][]byte{
		"serviceexports": {ServiceExportCRD, mcscrd.ServiceExportCRD},
		"serviceimports": {ServiceImportCRD, mcscrd.ServiceImportCRD},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("config/crd copy of %s differs from sigs.k8s.io/mcs-api/config/crd; copy it again from the module", name)
		}
	}
}

func TestDefinitionsParse(t *testing.T) {
	want := []string{"clusterproperties.about.k8s.io", "serviceexports.multicluster.x-k8s.io", "serviceimports.multicluster.x-k8s.io", "externalservices.strait.io"}
	for i, data := range All() {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(data, &obj); err != nil {
			t.Fatalf("definition %d: %v", i, err)
		}
		if obj.Kind != "CustomResourceDefinition" || obj.Metadata.Name != want[i] {
			t.Errorf("definition %d is %s %s, want CustomResourceDefinition %s", i, obj.Kind, obj.Metadata.Name, want[i])
		}
	}
}
