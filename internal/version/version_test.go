package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"stamped by make build", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201-abc"},
			Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "-s -w -X " + VersionVariable + "=v1.2.3-4-gabcdef0-dirty"}}}, "v1.2.3-4-gabcdef0-dirty"},
		{"stamped, quoted", debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "-X '" + VersionVariable + "=v1.0.0'"}}}, "v1.0.0"},
		{"other -X only", debug.BuildInfo{Main: debug.Module{Version: "v0.3.0"},
			Settings: []debug.BuildSetting{{Key: "-ldflags", Value: "-X main.foo=bar"}}}, "v0.3.0"},
		{"module version", debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261201211500-9cfbe9c12345+dirty"}}, "v0.0.0-20261201211500-9cfbe9c12345+dirty"},
		{"nothing recorded", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, ""},
	} {
		if got := FromBuildInfo(&tc.bi); got != tc.want {
			t.Errorf("%s: FromBuildInfo = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCommit(t *testing.T) {
	bi := &debug.BuildInfo{Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "9cfbe9c"}, {Key: "vcs.modified", Value: "true"}}}
	if got := Commit(bi); got != "9cfbe9c-dirty" {
		t.Errorf("Commit = %q, want 9cfbe9c-dirty", got)
	}
}

func TestGet(t *testing.T) {
	old := Version
	defer func() { Version = old }()
	Version = "v9.8.7"
	info := Get()
	if info.Version != "v9.8.7" || info.GoVersion != runtime.Version() || info.Platform != runtime.GOOS+"/"+runtime.GOARCH {
		t.Errorf("Get() = %+v", info)
	}
	Version = ""
	if v := Get().Version; v == "" || strings.ContainsAny(v, " \n") {
		t.Errorf("unstamped Get().Version = %q, want a version", v)
	}
}
