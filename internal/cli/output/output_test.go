package output

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		format string
		err    string
	}{
		{"", ""}, {"json", ""}, {"yaml", ""},
		// -o wide is accepted by every command, as kubectl users type it out of habit: a
		// command without a wide table prints its usual one.
		{"wide", ""},
		{"xml", `--output "xml" is not supported; use json, yaml or wide (or no -o, for a table)`},
		{"JSON", `--output "JSON" is not supported`},
	} {
		err := Validate(tc.format)
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("Validate(%q) = %v, want %q", tc.format, err, tc.err)
		}
	}
}

func TestFlagHelpSaysWhatWideDoes(t *testing.T) {
	for wide, want := range map[bool]string{
		true:  "output format: json, yaml or wide (default: a table; wide adds columns)",
		false: "output format: json or yaml (default: a table; wide prints the same table)",
	} {
		cmd := &cobra.Command{Use: "x"}
		var format string
		AddFlag(cmd, &format, wide)
		if got := cmd.Flags().Lookup("output").Usage; got != want {
			t.Errorf("wide %v: usage %q, want %q", wide, got, want)
		}
	}
}
