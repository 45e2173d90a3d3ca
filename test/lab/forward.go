package lab

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// forwarder accepts TCP connections on a listener inside a host namespace and
// relays each to a loopback address in the root namespace. The listener
// socket belongs to the host namespace because it was created there; the
// dialing happens from ordinary threads, which stay in the root namespace.
// Every connection dials anew, so an apiserver restart only breaks the
// connections open at the time.
//
// A forwarder can be cut (setCut): it then drops nothing and answers
// nothing, as a blackhole route would. Bytes already read are held, new
// connections wait before dialing, and everything resumes when the cut is
// lifted, as TCP does once its retransmissions get through again.
type forwarder struct {
	l      net.Listener
	target string

	mu     sync.Mutex
	gate   *sync.Cond // on mu; signalled when cut or closed change
	cut    bool
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startForwarder(netns, listenAddr, target string) (*forwarder, error) {
	l, err := listenInNetns(netns, listenAddr)
	if err != nil {
		return nil, err
	}
	f := &forwarder{l: l, target: target, conns: map[net.Conn]struct{}{}}
	f.gate = sync.NewCond(&f.mu)
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

func (f *forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			return // closed
		}
		f.wg.Add(1)
		go f.relay(c)
	}
}

// setCut cuts or restores the path through the forwarder.
func (f *forwarder) setCut(cut bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = cut
	f.gate.Broadcast()
}

// pass waits while the forwarder is cut; false once it is closed.
func (f *forwarder) pass() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.cut && !f.closed {
		f.gate.Wait()
	}
	return !f.closed
}

func (f *forwarder) relay(in net.Conn) {
	defer f.wg.Done()
	if !f.pass() {
		in.Close()
		return
	}
	out, err := net.Dial("tcp", f.target)
	if err != nil {
		in.Close() // the client sees a reset, as it would from a stopped apiserver
		return
	}
	if !f.track(in, out) {
		in.Close()
		out.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if !f.pass() {
					break
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		// A close from either side crosses a cut only once it is lifted.
		if tc, ok := dst.(*net.TCPConn); ok && f.pass() {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	<-done
	in.Close()
	out.Close()
	f.untrack(in, out)
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	for _, c := range cs {
		f.conns[c] = struct{}{}
	}
	return true
}

func (f *forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		delete(f.conns, c)
	}
}

// Close stops listening, cuts open connections and waits for the relays.
func (f *forwarder) Close() {
	f.mu.Lock()
	f.closed = true
	f.gate.Broadcast()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.l.Close()
	f.wg.Wait()
}

// listenInNetns opens a TCP listener inside the named network namespace.
func listenInNetns(netns, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNetns(netns, func() error {
		var err error
		l, err = net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("listening on %s in network namespace %s: %w", addr, netns, err)
		}
		return nil
	})
	if err != nil && l != nil {
		l.Close()
		return nil, err
	}
	return l, err
}

// inNetns runs f on a dedicated, locked OS thread switched into the named
// network namespace, for opening sockets there (a socket stays in the
// namespace it was created in). If switching back fails the thread stays
// locked and the runtime discards it with the goroutine, so no other
// goroutine ever runs in the wrong namespace; whatever f opened is then
// useless and f's caller gets the error.
func inNetns(netns string, f func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("opening the current network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, netns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("opening network namespace %s: %w", netns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- fmt.Errorf("entering network namespace %s: %w", netns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			ch <- errors.Join(ferr, fmt.Errorf("returning to the root network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		ch <- ferr
	}()
	return <-ch
}
