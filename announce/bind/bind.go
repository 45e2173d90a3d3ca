// Package bind removes the VIPs that agents before v2 bound to network
// interfaces. Agents no longer bind VIPs (DESIGN decision 6): an agent that
// starts on a node where an older version bound some calls RemoveLegacy.
package bind
