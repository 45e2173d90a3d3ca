//go:build tools

// Package hack pins dependencies that packages under construction rely on,
// so `go mod tidy` keeps them.
package hack

import (
	_ "github.com/mdlayher/arp"
	_ "github.com/mdlayher/ndp"
	_ "github.com/osrg/gobgp/v3/pkg/server"
	_ "github.com/vishvananda/netlink"
	_ "gopkg.in/yaml.v3"
	_ "k8s.io/cloud-provider/app"
	_ "k8s.io/component-base/cli"
)
