//go:build lab

package docs

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cloud-provider-baremetal/cloud-provider-baremetal/test/lab"
)

// TestDocCommandsInLab runs, for every page with doctest-lab blocks, all its
// doc-test commands in order against a lab API server of its own, as the
// admin (KUBECONFIG). Needs root and make deps; run with
//
//	go test -tags lab -run TestDocCommandsInLab ./docs
func TestDocCommandsInLab(t *testing.T) {
	all := pages(t)
	bin := tools(t)
	var labCommands int
	for file, cmds := range all {
		if !slices.ContainsFunc(cmds, func(c command) bool { return c.lab }) {
			continue
		}
		t.Run(filepath.Base(file), func(t *testing.T) {
			c := lab.StartCluster(context.Background(), t)
			r := newRunner(t, bin, "KUBECONFIG="+c.AdminKubeconfig)
			r.runAll(t, cmds)
			for _, cmd := range cmds {
				if cmd.lab {
					labCommands++
				}
			}
		})
	}
	if labCommands < 3 {
		t.Errorf("ran only %d doctest-lab commands", labCommands)
	}
}
