package deploy

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile is the parsed ../Dockerfile: its instructions, continuation
// lines joined, per stage.
type dockerfile struct {
	stages [][]instruction
}

type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

func parseDockerfile(t *testing.T) dockerfile {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var df dockerfile
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		cmd, args, _ := strings.Cut(line, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			df.stages = append(df.stages, nil)
		}
		if len(df.stages) == 0 { // ARG before the first FROM
			return
		}
		df.stages[len(df.stages)-1] = append(df.stages[len(df.stages)-1], in)
	}
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		flush()
	}
	flush()
	return df
}

func (s stage) find(cmd string) []string {
	var out []string
	for _, in := range s {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

type stage []instruction

// TestDockerfile checks the image's shape: a build stage, a final stage
// without a toolchain that runs as a numeric non-root user, the health
// address on every interface, and an entry point the build produces.
func TestDockerfile(t *testing.T) {
	df := parseDockerfile(t)
	if len(df.stages) < 2 {
		t.Fatalf("%d stages, want a multi-stage build", len(df.stages))
	}
	final := stage(df.stages[len(df.stages)-1])
	from := final.find("FROM")[0]
	if strings.Contains(from, "golang") || !strings.Contains(from, "distroless/static") && from != "scratch" {
		t.Errorf("final stage FROM %s: want a base without toolchain or libc (distroless/static or scratch)", from)
	}
	users := final.find("USER")
	if len(users) == 0 {
		t.Fatal("the final stage sets no USER: the container would run as root")
	}
	user, _, _ := strings.Cut(users[len(users)-1], ":")
	if !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(user) {
		t.Errorf("USER %s: want a numeric non-zero uid, so that runAsNonRoot can check it", users[len(users)-1])
	}
	env := strings.Join(final.find("ENV"), " ")
	if !strings.Contains(env, "SLUICE_HEALTH_ADDR=0.0.0.0:8080") {
		t.Errorf("ENV %q: want SLUICE_HEALTH_ADDR=0.0.0.0:8080 (the service binds 127.0.0.1 by default)", env)
	}
	if ex := final.find("EXPOSE"); len(ex) != 1 || ex[0] != "8080" {
		t.Errorf("EXPOSE %v, want 8080", ex)
	}
	outs := buildOutputs(t, df)
	ep := final.find("ENTRYPOINT")
	if len(ep) != 1 {
		t.Fatalf("ENTRYPOINT %v", ep)
	}
	bin := strings.Trim(strings.Trim(ep[0], "[]"), `"`)
	if !outs[filepath.Base(bin)] {
		t.Errorf("ENTRYPOINT %s is not a binary the build stage produces (%v)", bin, outs)
	}
}

// buildCommands returns the go build commands of the build stage's RUN
// instructions, each as its environment and arguments.
func buildCommands(t *testing.T, df dockerfile) [][]string {
	t.Helper()
	var cmds [][]string
	for _, in := range df.stages[0] {
		if in.cmd != "RUN" {
			continue
		}
		for _, part := range strings.Split(in.args, "&&") {
			words := shellWords(t, strings.TrimSpace(part))
			for i, w := range words {
				if w == "go" && i+1 < len(words) && words[i+1] == "build" {
					cmds = append(cmds, words)
				}
			}
		}
	}
	if len(cmds) == 0 {
		t.Fatal("no go build in the build stage")
	}
	return cmds
}

func buildOutputs(t *testing.T, df dockerfile) map[string]bool {
	out := map[string]bool{}
	for _, c := range buildCommands(t, df) {
		for i, w := range c {
			if w == "-o" && i+1 < len(c) {
				out[filepath.Base(c[i+1])] = true
			}
		}
	}
	return out
}

// shellWords splits a command line at blanks, keeping double-quoted runs
// together (what the Dockerfile's RUN lines need, no more).
func shellWords(t *testing.T, s string) []string {
	var words []string
	var cur strings.Builder
	inQuote, any := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote, any = !inQuote, true
		case (r == ' ' || r == '\t') && !inQuote:
			if any {
				words = append(words, cur.String())
				cur.Reset()
				any = false
			}
		default:
			cur.WriteRune(r)
			any = true
		}
	}
	if inQuote {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if any {
		words = append(words, cur.String())
	}
	return words
}

// TestDockerfileBuildIsStatic runs the build stage's go build command of
// the entry point as it is written (there is no container engine in CI),
// into a temporary directory, and checks that the binary is a static
// executable: no program interpreter and no shared library, so that it runs
// on distroless/static. SLUICE_DOCKERFILE_ALL=1 builds every binary of the
// image (the others take the same flags; each cold build costs about 30 s
// of CPU).
func TestDockerfileBuildIsStatic(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	df := parseDockerfile(t)
	dir := t.TempDir()
	for _, words := range buildCommands(t, df) {
		if os.Getenv("SLUICE_DOCKERFILE_ALL") != "1" && !slices.Contains(words, "/out/sluice-enrich") {
			continue
		}
		var env, args []string
		for i, w := range words {
			if w == "go" {
				args = words[i+1:]
				break
			}
			env = append(env, w)
		}
		for i := range args {
			args[i] = strings.ReplaceAll(args[i], "${VERSION}", "v0.0.0-test")
			if i > 0 && args[i-1] == "-o" {
				args[i] = filepath.Join(dir, filepath.Base(args[i]))
			}
		}
		if !contains(env, "CGO_ENABLED=0") {
			t.Errorf("go build %v runs without CGO_ENABLED=0: the binary may link libc", args)
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), env...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s go %s: %v\n%s", strings.Join(env, " "), strings.Join(args, " "), err, out)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) == 0 {
		t.Fatalf("no binaries built (%v)", err)
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		f, err := elf.Open(path)
		if err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a program interpreter: it is dynamically linked", e.Name())
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil || len(libs) > 0 {
			t.Errorf("%s links shared libraries %v (%v)", e.Name(), libs, err)
		}
		f.Close()
		if out, err := exec.Command("file", path).Output(); err == nil {
			t.Logf("%s", strings.TrimSpace(strings.ReplaceAll(string(out), dir+"/", "")))
		}
	}
	out, err := exec.Command(filepath.Join(dir, "sluice-enrich"), "-version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v0.0.0-test") {
		t.Errorf("sluice-enrich -version: %v, %s; want the VERSION build argument", err, out)
	}
}
