package output

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		format string
		wide   bool
		err    string
	}{
		{"", false, ""}, {"json", false, ""}, {"yaml", true, ""}, {"wide", true, ""},
		// A command without a wide table says so instead of printing the table silently.
		{"wide", false, "--output wide is not supported by this command; use json or yaml"},
		{"xml", false, `--output "xml" is not supported; use json or yaml`},
		{"xml", true, `--output "xml" is not supported; use json, yaml or wide`},
	} {
		err := Validate(tc.format, tc.wide)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Validate(%q, %v) = %v, want %q", tc.format, tc.wide, err, tc.err)
		}
	}
}
