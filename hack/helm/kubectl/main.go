// Command kubectl is kubectl built from k8s.io/kubectl at the version helm
// needs, so the lab renders kustomizations (`kubectl kustomize`) and runs the
// docs' kubectl commands without a kubectl on the machine. Same body as
// k8s.io/kubernetes/cmd/kubectl.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
