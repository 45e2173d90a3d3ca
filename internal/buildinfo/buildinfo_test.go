package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	def := build{version: unstamped, commit: "$Format:%H$", date: "1970-01-01T00:00:00Z"}
	vcs := func(modified string) []debug.BuildSetting {
		return []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "be2de49a1b2c3d4e5f60718293a4b5c6d7e8f901"},
			{Key: "vcs.time", Value: "2026-12-02T01:55:53Z"},
			{Key: "vcs.modified", Value: modified},
		}
	}
	tests := []struct {
		name string
		info debug.BuildInfo
		want build
	}{
		{
			name: "go install MODULE@VERSION",
			info: debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}},
			want: build{version: "v0.1.0", commit: "$Format:%H$", date: "1970-01-01T00:00:00Z"},
		},
		{
			name: "go build in a clone",
			info: debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261202015553-be2de49a1b2c+dirty"}, Settings: vcs("true")},
			want: build{version: "v0.0.0-20261202015553-be2de49a1b2c+dirty", commit: "be2de49a1b2c3d4e5f60718293a4b5c6d7e8f901", date: "2026-12-02T01:55:53Z"},
		},
		{
			name: "no module version, a commit",
			info: debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("true")},
			want: build{version: "v0.0.0-20261202015553-be2de49a1b2c-dirty", commit: "be2de49a1b2c3d4e5f60718293a4b5c6d7e8f901", date: "2026-12-02T01:55:53Z"},
		},
		{
			name: "nothing recorded",
			info: debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			want: def,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(&tt.info, def); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
