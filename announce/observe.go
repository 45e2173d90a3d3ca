package announce

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
)

// For tools that run the planner outside an agent (baremetal-config
// status): the same readings of a Node and of an agent's Lease the agents
// make, so their answer is the agents' answer.

// ViewOfNode is the election's view of n.
func ViewOfNode(n *v1.Node) NodeView { return nodeView(n) }

// LeaseInfo reads what an agent published on its Lease, and whether it is
// leaving.
func LeaseInfo(l *coordinationv1.Lease) (leaving bool, info AgentInfo) { return leaseInfo(l) }
