// Command lab-echo stands in for kube-proxy and a Service's pods in the lab:
// it answers every HTTP request with the node name, so a client can tell
// which node a VIP led it to.
//
// The body is exactly the name (no newline). Headers X-Lab-Node and
// X-Lab-Remote (the client address as seen here) are set too.
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	name := flag.String("name", os.Getenv("NODE_NAME"), "node name to answer with")
	listen := flag.String("listen", ":80", "address to listen on (\":80\" serves IPv4 and IPv6)")
	flag.Parse()
	if *name == "" {
		fmt.Fprintln(os.Stderr, "lab-echo: --name is required")
		os.Exit(2)
	}
	l, err := net.Listen("tcp", *listen)
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
