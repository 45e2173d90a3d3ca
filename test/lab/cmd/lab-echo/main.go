// Command lab-echo stands in for kube-proxy and a Service's pods in the lab:
// it answers every HTTP request with the node name, so a client can tell
// which node a VIP led it to.
//
// The body is exactly the name (no newline). Headers X-Lab-Node and
// X-Lab-Remote (the client address as seen here) are set too.
//
// Its socket may answer from any address (IP_TRANSPARENT): the lab's
// service proxy (test/lab.ServiceProxy) delivers a Service's traffic through
// a local route outside the kernel's "local" table, and Linux routes an
// IPv4 answer from such an address only for a socket allowed to send from
// any address.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

func main() {
	name := flag.String("name", os.Getenv("NODE_NAME"), "node name to answer with")
	listen := flag.String("listen", ":80", "address to listen on (\":80\" serves IPv4 and IPv6)")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "lab-echo: --name is required")
		os.Exit(2)
	}
	lc := net.ListenConfig{Control: transparent}
	l, err := lc.Listen(context.Background(), "tcp", *listen)
	if err != nil {
		log.Fatalf("lab-echo: %v", err)
	}
	log.Printf("lab-echo %s listening on %s", *name, l.Addr())
	err = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Lab-Node", *name)
		w.Header().Set("X-Lab-Remote", r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, *name)
	}))
	log.Fatalf("lab-echo: %v", err)
}

// transparent lets the socket send from addresses the host does not hold.
// Set at the IPv4 level it covers the IPv4-mapped side of a dual-stack
// socket; IPv6 needs no such permission but gets it too.
func transparent(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		if serr == nil && network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
		}
	})
	if err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("setting IP_TRANSPARENT (needs CAP_NET_ADMIN): %w", serr)
	}
	return nil
}
