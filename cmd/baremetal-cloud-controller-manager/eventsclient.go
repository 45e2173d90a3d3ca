package main

import (
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
)

// eventsApart is a clientset whose Events come from a second clientset with
// a rate limiter of its own. The framework's service controller writes two
// events per Service (EnsuringLoadBalancer, EnsuredLoadBalancer) beside the
// finalizer and status patches that give the Service its address; through
// one limiter, half of the budget goes to events and a burst of Services
// waits for them. Events are best effort (the broadcaster drops them when
// its queue of 1,000 is full); addresses are not.
type eventsApart struct {
	kubernetes.Interface
	events kubernetes.Interface
}

var _ kubernetes.Interface = eventsApart{}

// withEventsFrom returns client with its Events served by events.
func withEventsFrom(client, events kubernetes.Interface) kubernetes.Interface {
	return eventsApart{Interface: client, events: events}
}

func (c eventsApart) CoreV1() typedcorev1.CoreV1Interface {
	return coreEventsApart{CoreV1Interface: c.Interface.CoreV1(), events: c.events.CoreV1()}
}

type coreEventsApart struct {
	typedcorev1.CoreV1Interface
	events typedcorev1.CoreV1Interface
}

func (c coreEventsApart) Events(namespace string) typedcorev1.EventInterface {
	return c.events.Events(namespace)
}
