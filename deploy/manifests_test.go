package deploy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// typeMeta is what every manifest starts with.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// documents splits a YAML file into its documents.
func documents(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(b), -1) {
		if strings.TrimSpace(stripComments(d)) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func stripComments(s string) string {
	return regexp.MustCompile(`(?m)^\s*#.*$`).ReplaceAllString(s, "")
}

// decoder returns an empty object of the Kubernetes (or KEDA) type of a
// manifest's apiVersion and kind.
func object(tm typeMeta) (any, bool) {
	switch tm.APIVersion + " " + tm.Kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, true
	case "v1 Secret":
		return &corev1.Secret{}, true
	case "v1 Service":
		return &corev1.Service{}, true
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, true
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, true
	case "batch/v1 Job":
		return &batchv1.Job{}, true
	case "keda.sh/v1alpha1 ScaledObject":
		return &scaledObject{}, true
	case "keda.sh/v1alpha1 TriggerAuthentication":
		return &triggerAuthentication{}, true
	}
	return nil, false
}

// manifests decodes every document of every YAML file under kubernetes/,
// strictly: an unknown or misspelt field, a duplicate key or a value of the
// wrong type fails.
func manifests(t *testing.T) map[string][]any { return manifestsIn(t, "kubernetes") }

// manifestsIn decodes the manifests under root; the keys are the files'
// paths relative to root.
func manifestsIn(t *testing.T, root string) map[string][]any {
	t.Helper()
	var files []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no manifests under %s", root)
	}
	out := map[string][]any{}
	for _, f := range files {
		rel, _ := filepath.Rel(root, f)
		for i, doc := range documents(t, f) {
			obj, err := decode(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", f, i+1, err)
				continue
			}
			out[rel] = append(out[rel], obj)
		}
	}
	return out
}

func decode(doc []byte) (any, error) {
	var tm typeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	obj, ok := object(tm)
	if !ok {
		return nil, fmt.Errorf("unknown apiVersion %q kind %q: add its type to object()", tm.APIVersion, tm.Kind)
	}
	// As the API server decodes: YAML without duplicate keys, then JSON
	// with case-sensitive field names (encoding/json would take
	// "secretKeyref" for "secretKeyRef"), no unknown and no duplicate
	// fields.
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	strict, err := kjson.UnmarshalStrict(j, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", tm.Kind, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %w", tm.Kind, errors.Join(strict...))
	}
	return obj, nil
}

// reporter is what the checks report to: a *testing.T, or a recorder in
// the tests of the checks themselves.
type reporter interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

func only[T any](t reporter, all map[string][]any) T {
	t.Helper()
	var found []T
	for _, objs := range all {
		for _, o := range objs {
			if v, ok := o.(T); ok {
				found = append(found, v)
			}
		}
	}
	if len(found) != 1 {
		var zero T
		t.Fatalf("want one %T among the manifests, found %d", zero, len(found))
	}
	return found[0]
}

// TestStrictDecoding: a misspelt field, a duplicate key or a wrong type
// fails, as it would in CI.
func TestStrictDecoding(t *testing.T) {
	good, err := os.ReadFile("kubernetes/deployment.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := decode(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(string) string{
		"misspelt field": func(s string) string { return strings.Replace(s, "livenessProbe:", "livenesProbe:", 1) },
		"unknown field":  func(s string) string { return strings.Replace(s, "  replicas: 2", "  replicas: 2\n  replica: 3", 1) },
		"duplicate key":  func(s string) string { return strings.Replace(s, "  replicas: 2", "  replicas: 2\n  replicas: 3", 1) },
		"wrong type": func(s string) string {
			return strings.Replace(s, "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: a minute", 1)
		},
		"misspelt in env": func(s string) string { return strings.Replace(s, "secretKeyRef:", "secretKeyref:", 1) },
	} {
		bad := edit(string(good))
		if bad == string(good) {
			t.Fatalf("%s: the edit changed nothing", name)
		}
		if _, err := decode([]byte(bad)); err == nil {
			t.Errorf("%s: decoded without error", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	keda := "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: x}\n  minReplicas: 1\n"
	if _, err := decode([]byte(keda)); err == nil {
		t.Error("ScaledObject with minReplicas (not minReplicaCount): decoded without error")
	}
}

// TestDeployment checks what the service needs of its pod.
func TestDeployment(t *testing.T) { checkDeployment(t, manifests(t)) }

// checkDeployment checks the Deployment and what goes with it.
func checkDeployment(t reporter, all map[string][]any) {
	t.Helper()
	d := only[*appsv1.Deployment](t, all)
	cm := only[*corev1.ConfigMap](t, all)
	pdb := only[*policyv1.PodDisruptionBudget](t, all)
	svc := only[*corev1.Service](t, all)
	sec := only[*corev1.Secret](t, all)

	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]
	labels := d.Spec.Template.Labels
	for k, v := range d.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("the selector's %s=%s is not on the pod template", k, v)
		}
	}

	// The health port listens on every interface, and the probes, the
	// container port, the Service and the annotations agree on it.
	addr := cm.Data["SLUICE_HEALTH_ADDR"]
	if !strings.HasPrefix(addr, "0.0.0.0:") && !strings.HasPrefix(addr, ":") {
		t.Errorf("SLUICE_HEALTH_ADDR=%q: probes from the kubelet need every interface (0.0.0.0:PORT)", addr)
	}
	port := addr[strings.LastIndex(addr, ":")+1:]
	var httpPort *corev1.ContainerPort
	for i := range c.Ports {
		if fmt.Sprint(c.Ports[i].ContainerPort) == port {
			httpPort = &c.Ports[i]
		}
	}
	if httpPort == nil || httpPort.Name == "" {
		t.Fatalf("no named container port %s (SLUICE_HEALTH_ADDR) among %+v", port, c.Ports)
	}
	probe := func(name string, p *corev1.Probe, path string) {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: missing or not an HTTP probe", name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s: path %q, want %q", name, p.HTTPGet.Path, path)
		}
		if p.HTTPGet.Port != intstr.FromString(httpPort.Name) && p.HTTPGet.Port != intstr.FromInt32(httpPort.ContainerPort) {
			t.Errorf("%s: port %v, want %s", name, p.HTTPGet.Port.String(), httpPort.Name)
		}
	}
	probe("livenessProbe", c.LivenessProbe, "/livez")
	probe("readinessProbe", c.ReadinessProbe, "/readyz")
	if c.StartupProbe != nil {
		probe("startupProbe", c.StartupProbe, "/livez")
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != intstr.FromString(httpPort.Name) {
		t.Errorf("the Service does not target port %s: %+v", httpPort.Name, svc.Spec.Ports)
	}
	if a := d.Spec.Template.Annotations; a["prometheus.io/port"] != port || a["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v, want port %s and path /metrics", a, port)
	}

	// A stop fits the grace period: at most the drain, then the flush
	// (SLUICE_FLUSH_TIMEOUT, 5 s by default), then 5 s for the HTTP
	// shutdown and closing; 5 s more for a busy node.
	drain, err := time.ParseDuration(cm.Data["SLUICE_DRAIN_TIMEOUT"])
	if err != nil {
		t.Fatalf("SLUICE_DRAIN_TIMEOUT: %v", err)
	}
	flush := 5 * time.Second
	if v, ok := cm.Data["SLUICE_FLUSH_TIMEOUT"]; ok {
		if flush, err = time.ParseDuration(v); err != nil {
			t.Fatalf("SLUICE_FLUSH_TIMEOUT: %v", err)
		}
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	if stop := drain + flush + 5*time.Second; grace < stop+5*time.Second {
		t.Errorf("terminationGracePeriodSeconds %v: a stop takes up to %v (drain %v, flush %v, 5 s), and needs 5 s of room", grace, stop, drain, flush)
	}

	// Resources, and a memory limit the Go runtime knows about.
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", c.Resources)
	}

	// Non-root, as the image.
	sc := pod.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and a non-zero runAsUser", sc)
	}
	if c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem ||
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want a read-only root and no privilege escalation", c.SecurityContext)
	}

	// Configuration from the ConfigMap, secrets from the Secret only.
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("envFrom %+v: want the ConfigMap %s", c.EnvFrom, cm.Name)
	}
	secrets := map[string]bool{"SLUICE_MODEL_API_KEY": true, "SLUICE_REDIS_PASSWORD": true, "SLUICE_KAFKA_SASL_PASSWORD": true}
	for k := range cm.Data {
		if secrets[k] || strings.Contains(strings.ToLower(k), "password") || strings.Contains(strings.ToLower(k), "key") && !strings.HasSuffix(k, "_FILE") {
			t.Errorf("the ConfigMap holds %s: secrets belong in the Secret", k)
		}
	}
	var instanceID bool
	for _, e := range c.Env {
		switch {
		case secrets[e.Name]:
			if e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != sec.Name || e.ValueFrom.SecretKeyRef.Key != e.Name {
				t.Errorf("%s: want it from the Secret %s, key %s", e.Name, sec.Name, e.Name)
			}
			delete(secrets, e.Name)
		case e.Value != "" && strings.HasPrefix(e.Name, "SLUICE_"):
			t.Errorf("%s has a literal value in the Deployment: put it in the ConfigMap", e.Name)
		case e.Name == "SLUICE_INSTANCE_ID":
			instanceID = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
		}
	}
	for k := range secrets {
		t.Errorf("the Deployment does not read %s from the Secret", k)
	}
	if !instanceID {
		t.Errorf("SLUICE_INSTANCE_ID must be the pod's name: each replica needs its own member id")
	}
	if _, ok := sec.StringData["SLUICE_MODEL_API_KEY"]; !ok {
		t.Errorf("the example Secret lacks SLUICE_MODEL_API_KEY")
	}
	// `kubectl apply -f deploy/kubernetes/` (not recursive) must never
	// replace the real Secret with the placeholder, nor start a Job.
	for f, objs := range all {
		if filepath.Dir(f) != "." {
			continue
		}
		for _, o := range objs {
			switch o.(type) {
			case *corev1.Secret, *batchv1.Job:
				t.Errorf("%s: a %T at the top of kubernetes/ would be applied with the rest; keep it in a subfolder", f, o)
			}
		}
	}

	// The PodDisruptionBudget covers these pods and lets one go at a time.
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if labels[k] != v {
			t.Errorf("the PodDisruptionBudget's selector %s=%s does not match the pods", k, v)
		}
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Errorf("the PodDisruptionBudget sets neither maxUnavailable nor minAvailable")
	}
}

// TestConfigMapNamesFlags: every SLUICE_* variable of the ConfigMap and the
// Deployment sets a real flag of sluice-enrich (a typo would be ignored
// silently by the service), checked against its -h output.
func TestConfigMapNamesFlags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds enrich-service")
	}
	all := manifests(t)
	cm := only[*corev1.ConfigMap](t, all)
	d := only[*appsv1.Deployment](t, all)
	cmd := exec.Command("go", "run", "./examples/enrich-service", "-h")
	cmd.Dir = ".."
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("enrich-service -h: %v\n%s", err, out.String())
	}
	known := map[string]bool{"SLUICE_MODEL_API_KEY": true, "SLUICE_REDIS_PASSWORD": true, "SLUICE_KAFKA_SASL_PASSWORD": true}
	for _, m := range regexp.MustCompile(`\((SLUICE_[A-Z0-9_]+)\)`).FindAllStringSubmatch(out.String(), -1) {
		known[m[1]] = true
	}
	if !known["SLUICE_HEALTH_ADDR"] {
		t.Fatalf("enrich-service -h lists no SLUICE_HEALTH_ADDR:\n%s", out.String())
	}
	names := make([]string, 0, len(cm.Data))
	for k := range cm.Data {
		names = append(names, k)
	}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		if strings.HasPrefix(e.Name, "SLUICE_") {
			names = append(names, e.Name)
		}
	}
	slices.Sort(names)
	for _, k := range names {
		if !known[k] {
			t.Errorf("%s is not a variable of sluice-enrich (see sluice-enrich -h)", k)
		}
	}
}

// TestReplayJob: the replay Job runs sluice-replay from the service's image
// with the service's ConfigMap, starts as a dry run, and runs as non-root.
func TestReplayJob(t *testing.T) {
	all := manifests(t)
	job := only[*batchv1.Job](t, all)
	d := only[*appsv1.Deployment](t, all)
	cm := only[*corev1.ConfigMap](t, all)
	pod := job.Spec.Template.Spec
	c := pod.Containers[0]
	if c.Image != d.Spec.Template.Spec.Containers[0].Image {
		t.Errorf("the Job runs %s, the Deployment %s: use the same image", c.Image, d.Spec.Template.Spec.Containers[0].Image)
	}
	if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/sluice-replay" {
		t.Errorf("command %v, want /usr/local/bin/sluice-replay", c.Command)
	}
	if !slices.Contains(c.Args, "-dry-run") {
		t.Errorf("args %v: the example must start as a dry run", c.Args)
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("envFrom %+v: want the service's ConfigMap", c.EnvFrom)
	}
	if pod.RestartPolicy != corev1.RestartPolicyOnFailure || job.Spec.BackoffLimit == nil {
		t.Errorf("restartPolicy %s, backoffLimit %v: a failed replay must run again (it resumes)", pod.RestartPolicy, job.Spec.BackoffLimit)
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("the Job must run as non-root")
	}
}

// recorder collects what the checks report; Fatalf stops the check.
type recorder struct{ problems []string }

type stop struct{}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	panic(stop{})
}

// TestDeploymentChecksCatch breaks the manifests the way a hurried edit
// would, each in a copy, and expects checkDeployment to name the problem.
func TestDeploymentChecksCatch(t *testing.T) {
	for name, c := range map[string]struct{ file, from, to, want string }{
		"grace below the drain": {"deployment.yaml", "terminationGracePeriodSeconds: 60", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds"},
		"loopback health":       {"configmap.yaml", "SLUICE_HEALTH_ADDR: 0.0.0.0:8080", "SLUICE_HEALTH_ADDR: 127.0.0.1:8080", "every interface"},
		"liveness on /healthz":  {"deployment.yaml", "path: /livez\n              port: http\n            periodSeconds: 10", "path: /healthz\n              port: http\n            periodSeconds: 10", "livenessProbe"},
		"readiness on /livez":   {"deployment.yaml", "path: /readyz", "path: /livez", "readinessProbe"},
		"key in the ConfigMap":  {"configmap.yaml", "SLUICE_LOG_LEVEL: info", "SLUICE_LOG_LEVEL: info\n  SLUICE_MODEL_API_KEY: sk-oops", "secrets belong in the Secret"},
		"root":                  {"deployment.yaml", "runAsNonRoot: true", "runAsNonRoot: false", "runAsNonRoot"},
		"no memory limit":       {"deployment.yaml", "limits:\n              memory: 512Mi", "limits: {}", "memory limit"},
		"PDB selects nothing":   {"pdb.yaml", "matchLabels:\n      app.kubernetes.io/name: sluice-enrich", "matchLabels:\n      app.kubernetes.io/name: sluice-enrch", "PodDisruptionBudget"},
		"shared instance id":    {"deployment.yaml", "fieldPath: metadata.name", "fieldPath: metadata.namespace", "SLUICE_INSTANCE_ID"},
		"Secret at the top":     {"examples/secret.yaml", "", "", "subfolder"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.CopyFS(dir, os.DirFS("kubernetes")); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.file)
			if c.from == "" { // move the file to the top folder
				if err := os.Rename(path, filepath.Join(dir, "secret.yaml")); err != nil {
					t.Fatal(err)
				}
			} else {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				from, to := c.from, c.to
				if !strings.Contains(string(b), from) {
					t.Fatalf("%s lacks %q", c.file, from)
				}
				if err := os.WriteFile(path, []byte(strings.Replace(string(b), from, to, 1)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r := &recorder{}
			func() {
				defer func() {
					if v := recover(); v != nil {
						if _, ok := v.(stop); !ok {
							panic(v)
						}
					}
				}()
				checkDeployment(r, manifestsIn(t, dir))
			}()
			if !strings.Contains(strings.Join(r.problems, "\n"), c.want) {
				t.Errorf("problems %q do not mention %q", r.problems, c.want)
			}
		})
	}
}
