package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a long-running program started by the lab in its own process
// group, with stdout and stderr in LogPath.
type Process struct {
	Name    string
	LogPath string
	Cmd     *exec.Cmd

	done    chan struct{}
	waitErr error
	once    sync.Once
}

// startProcess starts args (args[0] is the program) with its output appended
// to dir/name.log.
func startProcess(dir, name string, args []string) (*Process, error) {
	if len(args) == 0 {
		return nil, fmt.Errorf("starting %q: no command given", name)
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the log of %q: %w", name, err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// A crashed test must not leave daemons behind.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := startOnLauncherThread(cmd); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %q (%s): %w", name, strings.Join(args, " "), err)
	}
	p := &Process{Name: name, LogPath: logPath, Cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process group.
func (p *Process) Signal(sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("signal %v is not a syscall.Signal", sig)
	}
	if p.Exited() {
		return fmt.Errorf("signalling %q: %w", p.Name, os.ErrProcessDone)
	}
	if err := syscall.Kill(-p.Cmd.Process.Pid, s); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling %q: %w", p.Name, err)
	}
	return nil
}

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to end and returns how it ended
// (nil for exit status 0).
func (p *Process) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("%q still running after %s", p.Name, timeout)
	}
}

// Kill sends SIGKILL to the process group and waits for the process.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %q: %w", p.Name, err)
	}
	<-p.done
	return nil
}

// Stop sends SIGTERM to the process group and SIGKILL after timeout. It
// returns nil once the process is gone, however it ended.
func (p *Process) Stop(timeout time.Duration) error {
	if p.Exited() {
		return nil
	}
	if err := p.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.done:
		// Reap whatever else is left in the group.
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL) // ESRCH is the normal answer
		return nil
	case <-time.After(timeout):
		return p.Kill()
	}
}

// Logs returns the process's output so far.
func (p *Process) Logs() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.LogPath, err)
	}
	return string(b)
}

// tail returns the last n lines of the process's output.
func (p *Process) tail(n int) string {
	lines := strings.Split(strings.TrimRight(p.Logs(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// StartProcess runs args (args[0] is the program) in the root network
// namespace with its output in dir/name.log; it is stopped at Close.
func (e *Env) StartProcess(dir, name string, args ...string) (*Process, error) {
	if dir == "" {
		dir = e.Dir
	}
	p, err := startProcess(dir, name, args)
	if err != nil {
		return nil, err
	}
	e.track(p)
	e.onClose(func() { p.Stop(5 * time.Second) })
	return p, nil
}

// The kernel delivers Pdeathsig when the thread that forked the child exits,
// not the process. Go threads exit when a goroutine ends while locked to its
// thread (which code switching network namespaces does on purpose), so the
// lab forks every process from one goroutine locked to a thread that never
// exits.
var (
	launcherOnce sync.Once
	launches     chan launch
)

type launch struct {
	cmd  *exec.Cmd
	errc chan error
}

func startOnLauncherThread(cmd *exec.Cmd) error {
	launcherOnce.Do(func() {
		launches = make(chan launch)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for l := range launches {
				l.errc <- l.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	launches <- launch{cmd: cmd, errc: errc}
	return <-errc
}
