package lab

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEventually(t *testing.T) {
	ctx := context.Background()
	calls := 0
	err := Eventually(ctx, time.Second, time.Millisecond, func() error {
		calls++
		if calls < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Errorf("Eventually = %v after %d calls, want nil after 3", err, calls)
	}

	sentinel := errors.New("never")
	err = Eventually(ctx, 50*time.Millisecond, 10*time.Millisecond, func() error { return sentinel })
	if !errors.Is(err, sentinel) {
		t.Errorf("Eventually = %v, want it to wrap the last error", err)
	}
}

func TestUniqueNamesAreSweptOnlyForTheirPid(t *testing.T) {
	a, b := uniqueName("lan"), uniqueName("lan")
	if a == b {
		t.Fatalf("uniqueName gave %q twice", a)
	}
	for _, tt := range []struct {
		name    string
		wantPid string // "" = not a lab name
	}{
		{a, strconv.Itoa(os.Getpid())},
		{"bm123x4-node-1", "123"},
		{"bm123-node", ""},
		{"cni-1234", ""},
		{"xbm123x4-a", ""},
	} {
		m := staleName.FindStringSubmatch(tt.name)
		got := ""
		if m != nil {
			got = m[1]
		}
		if got != tt.wantPid {
			t.Errorf("%q: pid %q, want %q", tt.name, got, tt.wantPid)
		}
	}
}

func TestProcessLifecycle(t *testing.T) {
	dir := t.TempDir()

	p, err := startProcess(dir, "hello", []string{"sh", "-c", "echo hello; echo oops >&2"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(5 * time.Second); err != nil {
		t.Fatalf("Wait = %v, want a clean exit", err)
	}
	if got := p.Logs(); !strings.Contains(got, "hello\n") || !strings.Contains(got, "oops\n") {
		t.Errorf("Logs = %q, want stdout and stderr", got)
	}

	// SIGTERM is ignored, so Stop must fall back to SIGKILL, and must take
	// the child (same process group) with it.
	p, err = startProcess(dir, "stubborn", []string{"sh", "-c", "trap '' TERM; sleep 60 & echo $! > " + dir + "/child; wait"})
	if err != nil {
		t.Fatal(err)
	}
	var child int
	err = Eventually(context.Background(), 5*time.Second, 10*time.Millisecond, func() error {
		b, err := os.ReadFile(dir + "/child")
		if err != nil {
			return err
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Error("process still running after Stop")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("Stop returned after %s, before its timeout, though SIGTERM was ignored", d)
	}
	err = Eventually(context.Background(), 2*time.Second, 10*time.Millisecond, func() error {
		if err := syscall.Kill(child, 0); !errors.Is(err, syscall.ESRCH) {
			return errors.New("child still alive")
		}
		return nil
	})
	if err != nil {
		t.Errorf("child %d of the stopped process: %v", child, err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
}

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	round := func(ms int, macs ...string) ProbeRound {
		r := ProbeRound{Sent: at(ms)}
		for _, m := range macs {
			r.Answers = append(r.Answers, ProbeAnswer{At: at(ms + 1), MAC: m})
		}
		return r
	}
	for _, tt := range []struct {
		name   string
		rounds []ProbeRound
		want   Summary
	}{
		{"nothing asked", nil, Summary{Answered: map[string]int{}}},
		{"one owner throughout",
			[]ProbeRound{round(0, "a"), round(50, "a"), round(100, "a", "a")},
			Summary{Rounds: 3, Answered: map[string]int{"a": 3}, Last: []string{"a"}, LongestSendGap: 50 * time.Millisecond}},
		{"a gap of three rounds, then another owner",
			[]ProbeRound{round(0, "a"), round(50), round(100), round(150), round(200, "b")},
			Summary{Rounds: 5, Answered: map[string]int{"a": 1, "b": 1}, Unanswered: 3, LongestGap: 150 * time.Millisecond, Last: []string{"b"}, LongestSendGap: 50 * time.Millisecond}},
		{"two answer for two rounds",
			[]ProbeRound{round(0, "a"), round(50, "a", "b"), round(100, "b", "a"), round(150, "b")},
			Summary{Rounds: 4, Answered: map[string]int{"a": 3, "b": 3}, SplitRounds: 2, Split: 100 * time.Millisecond, Last: []string{"b"}, LongestSendGap: 50 * time.Millisecond}},
		{"unanswered at the end",
			[]ProbeRound{round(0, "a"), round(50), round(100)},
			Summary{Rounds: 3, Answered: map[string]int{"a": 1}, Unanswered: 2, LongestGap: 100 * time.Millisecond, Last: []string{"a"}, LongestSendGap: 50 * time.Millisecond}},
		{"the client stalled: no question for 300 ms",
			[]ProbeRound{round(0, "a"), round(50, "a"), round(350, "a")},
			Summary{Rounds: 3, Answered: map[string]int{"a": 3}, Last: []string{"a"}, LongestSendGap: 300 * time.Millisecond}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := summarize(tt.rounds, 50*time.Millisecond)
			if got.String() != tt.want.String() {
				t.Errorf("summarize:\n got  %s\n want %s", got, tt.want)
			}
		})
	}
}
