package ctl

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// errNoAnswer is a prompt that got no answer: standard input is closed or
// empty (a CI job, a pipe that ran dry).
var errNoAnswer = errors.New("no answer")

// prompter asks the operator, as click does for patronictl: the question
// with its default in brackets, one line of answer from stdin. Answers may
// come from a terminal or from a pipe; when stdin is not a terminal the
// answer is echoed, so that a transcript reads as a dialogue.
type prompter struct {
	in          *bufio.Reader
	out         io.Writer
	file        *os.File // stdin as a file, for hidden input; nil otherwise
	interactive bool
	// forceHint says how to do without the questions ("" when the command
	// has no such option).
	forceHint string
}

func newPrompter(e *env) *prompter {
	in := e.stdin
	if in == nil {
		in = strings.NewReader("")
	}
	p := &prompter{in: bufio.NewReader(in), out: e.stdout}
	if f, ok := in.(*os.File); ok {
		p.file = f
		p.interactive = isTerminal(f)
	}
	return p
}

// line reads one answer line. The question is repeated in the error, so
// that a run with no input says what it was waiting for.
func (p *prompter) line(question string) (string, error) {
	s, err := p.in.ReadString('\n')
	if err != nil && (!errors.Is(err, io.EOF) || s == "") {
		if !p.interactive {
			fmt.Fprintln(p.out)
		}
		note := ""
		if !p.interactive {
			note = " (it is not a terminal)"
		}
		if p.forceHint != "" {
			note += "; " + p.forceHint
		}
		return "", fmt.Errorf("%w to %q: standard input is closed%s", errNoAnswer, strings.TrimRight(question, ": "), note)
	}
	s = strings.TrimRight(s, "\r\n")
	if !p.interactive {
		fmt.Fprintln(p.out, s)
	}
	return s, nil
}

// ask asks for a value. With a default, an empty answer takes it (an
// empty default is shown as "[]", as click shows it); without one, the
// question is asked again until the answer is not empty.
func (p *prompter) ask(text string, def *string) (string, error) {
	q := text
	if def != nil {
		q += " [" + *def + "]"
	}
	q += ": "
	for {
		fmt.Fprint(p.out, q)
		s, err := p.line(q)
		if err != nil {
			return "", err
		}
		if s != "" {
			return s, nil
		}
		if def != nil {
			return *def, nil
		}
	}
}

// askDefault asks with a default answer.
func (p *prompter) askDefault(text, def string) (string, error) { return p.ask(text, &def) }

// confirm asks a yes/no question whose default is no.
func (p *prompter) confirm(text string) (bool, error) {
	q := text + " [y/N]: "
	for {
		fmt.Fprint(p.out, q)
		s, err := p.line(q)
		if err != nil {
			return false, err
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "y", "yes":
			return true, nil
		case "n", "no", "":
			return false, nil
		}
		fmt.Fprintln(p.out, "Error: invalid input")
	}
}

// password asks for a secret: hidden on a terminal, a plain line
// otherwise (and then not echoed).
func (p *prompter) password(text string) (string, error) {
	q := text + ": "
	fmt.Fprint(p.out, q)
	if p.interactive && p.file != nil {
		b, err := term.ReadPassword(int(p.file.Fd()))
		fmt.Fprintln(p.out)
		if err != nil {
			return "", fmt.Errorf("reading the password: %w", err)
		}
		return string(b), nil
	}
	s, err := p.in.ReadString('\n')
	fmt.Fprintln(p.out)
	if err != nil && (!errors.Is(err, io.EOF) || s == "") {
		return "", fmt.Errorf("%w to %q: standard input is closed", errNoAnswer, text)
	}
	return strings.TrimRight(s, "\r\n"), nil
}
