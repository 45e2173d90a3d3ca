package version

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/component-base/version/verflag"
)

func TestPrintAndExitNamesTheProgram(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	verflag.AddFlags(fs)
	if err := fs.Parse([]string{"--version"}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = fs.Set("version", "false") }()
	var out bytes.Buffer
	code := -1
	printAndExit(fs, "baremetal-test", &out, func(c int) { code = c })
	if code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	if got := out.String(); !strings.HasPrefix(got, "baremetal-test "+String()+" (commit ") {
		t.Errorf("printed %q", got)
	}
}

func TestNoVersionFlagNoPrint(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	verflag.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printAndExit(fs, "baremetal-test", &out, func(int) { t.Fatal("exited") })
	if out.Len() != 0 {
		t.Errorf("printed %q", out.String())
	}
}
