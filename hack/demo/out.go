package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// printer writes what a person reads: numbered steps, indented sentences
// under them, and tables.
type printer struct {
	mu   sync.Mutex
	w    io.Writer
	step int
}

func newPrinter(w io.Writer) *printer { return &printer{w: w} }

// Step starts the next numbered step.
func (p *printer) Step(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.step++
	fmt.Fprintf(p.w, "\n%d. %s\n", p.step, fmt.Sprintf(format, args...))
}

// Say writes one indented line under the current step.
func (p *printer) Say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "   %s\n", fmt.Sprintf(format, args...))
}

// Table writes rows (the first is the header) in aligned columns, indented
// like Say.
func (p *printer) Table(rows [][]string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w)
	tw := tabwriter.NewWriter(p.w, 0, 0, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "   %s\n", strings.Join(r, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(p.w)
}

// Raw writes text as is.
func (p *printer) Raw(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, s)
}

// seconds formats a duration for people: "3.4 s", "850 ms".
func seconds(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
