// Package envflag lets every flag of a FlagSet also be set from an
// environment variable, for the example mains.
//
// The variable for flag "rate-limit" with prefix "SLUICE_" is
// SLUICE_RATE_LIMIT: upper case, dashes become underscores. A flag given on
// the command line wins over its variable, which wins over the default.
package envflag

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
)

// Name returns the environment variable that sets flag name under prefix.
func Name(prefix, name string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Apply sets each flag of fs that was not given on the command line from its
// environment variable, when that variable is set and not empty. Call it after
// fs.Parse. skip names flags that must never come from the environment (such
// as -version). It reports the first value a flag rejects, naming the
// variable.
func Apply(fs *flag.FlagSet, prefix string, skip ...string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, s := range skip {
		given[s] = true
	}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if err != nil || given[f.Name] {
			return
		}
		env := Name(prefix, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok || v == "" {
			return
		}
		if e := fs.Set(f.Name, v); e != nil {
			err = fmt.Errorf("%s=%q: %w", env, v, e)
		}
	})
	return err
}

// Usage returns a flag.FlagSet Usage function that lists each flag with its
// environment variable, except the flags named in skip.
func Usage(fs *flag.FlagSet, prefix, synopsis string, skip ...string) func() {
	return func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: %s\n\nEvery flag can also be set with the environment variable shown.\n\n", synopsis)
		fs.VisitAll(func(f *flag.Flag) {
			name, usage := flag.UnquoteUsage(f)
			fmt.Fprintf(w, "  -%s", f.Name)
			if name != "" {
				fmt.Fprintf(w, " %s", name)
			}
			if !slices.Contains(skip, f.Name) {
				fmt.Fprintf(w, "  (%s)", Name(prefix, f.Name))
			}
			fmt.Fprintf(w, "\n    \t%s", strings.ReplaceAll(usage, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			}
			fmt.Fprintln(w)
		})
	}
}
