package patch

import "testing"

func TestMerge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		have, want any
		patch      string
	}{
		{"equal", Fields{"spec": Fields{"a": 1}}, Fields{"spec": Fields{"a": 1}}, ""},
		{"changed field", Fields{"spec": Fields{"a": 1, "b": 2}}, Fields{"spec": Fields{"a": 1, "b": 3}}, `{"spec":{"b":3}}`},
		{"removed label", Fields{"metadata": Meta(map[string]string{"x": "1", "y": "2"}, nil)}, Fields{"metadata": Meta(map[string]string{"x": "1"}, nil)}, `{"metadata":{"labels":{"y":null}}}`},
		{"list replaced whole", Fields{"status": Fields{"l": []int{1, 2}}}, Fields{"status": Fields{"l": []int{1}}}, `{"status":{"l":[1]}}`},
		{"list emptied", Fields{"status": Fields{"l": []int{1, 2}}}, Fields{"status": Fields{}}, `{"status":{"l":null}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Merge(tc.have, tc.want)
			if err != nil {
				t.Fatal(err)
			}
			if string(p) != tc.patch {
				t.Errorf("patch %s, want %s", p, tc.patch)
			}
		})
	}
}
