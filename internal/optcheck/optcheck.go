// Package optcheck gives every package of the module one way to report bad
// options: each problem is an *Error whose message reads
//
//	pkg: Option(args): what is wrong; what to do
//
// and which matches the sentinel the package documents (for sluice and its
// adapters, sluice.ErrInvalidConfig). A constructor applies every option,
// collects the problems in an [Errors] and returns them all at once with
// [Errors.Err], so that a bad configuration is fixed in one pass.
//
// The package imports nothing of the module, so that the root package can
// use it as well as the adapters.
package optcheck

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one rejected option.
type Error struct {
	// Pkg is the package that rejected the option, such as "kafka".
	Pkg string
	// Option is the call as the user wrote it, such as "WithDB(-1)", or an
	// argument of the constructor, such as "NewSource(topics)".
	Option string
	// Problem says what is wrong.
	Problem string
	// Fix says what to do instead; it may be empty.
	Fix string

	kind error
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Pkg)
	b.WriteString(": ")
	b.WriteString(e.Option)
	b.WriteString(": ")
	b.WriteString(e.Problem)
	if e.Fix != "" {
		b.WriteString("; ")
		b.WriteString(e.Fix)
	}
	return b.String()
}

// Unwrap returns the sentinel the error matches.
func (e *Error) Unwrap() error { return e.kind }

// Errors collects the problems of one constructor's options. The zero value
// is not usable; make one with [New].
type Errors struct {
	pkg  string
	kind error
	list []error
}

// New returns an empty collection for package pkg whose errors match kind.
func New(pkg string, kind error) Errors {
	return Errors{pkg: pkg, kind: kind}
}

// Reject records that option is invalid: problem says what is wrong, fix
// what to do (it may be empty). option is the call as written, best built
// with [Call]; it must never carry a secret.
func (e *Errors) Reject(option, problem, fix string) {
	e.list = append(e.list, &Error{Pkg: e.pkg, Option: option, Problem: problem, Fix: fix, kind: e.kind})
}

// Wrap records err, an error that already names the option (for example the
// result of a validation the package does after applying every option), so
// that it matches the sentinel too.
func (e *Errors) Wrap(option string, err error) {
	e.Reject(option, err.Error(), "")
}

// Len returns how many problems were recorded.
func (e *Errors) Len() int { return len(e.list) }

// Err returns nil when no problem was recorded, otherwise every problem
// joined with errors.Join, in the order they were found.
func (e *Errors) Err() error {
	if len(e.list) == 0 {
		return nil
	}
	return errors.Join(e.list...)
}

// Call formats an option call for [Errors.Reject]: Call("WithDB", -1) is
// "WithDB(-1)". Strings are quoted; other values print with %v.
func Call(name string, args ...any) string {
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('(')
	for i, a := range args {
		if i > 0 {
			b.WriteString(", ")
		}
		if s, ok := a.(string); ok {
			fmt.Fprintf(&b, "%q", s)
		} else {
			fmt.Fprintf(&b, "%v", a)
		}
	}
	b.WriteByte(')')
	return b.String()
}
