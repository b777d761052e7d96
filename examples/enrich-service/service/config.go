package service

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluicehq/sluice/examples/internal/envflag"
)

// envPrefix is the prefix of the environment variables that set flags.
const envPrefix = "SLUICE_"

// Secrets come only from the environment or from systemd credentials
// (LoadCredential=, read from $CREDENTIALS_DIRECTORY), never from flags
// (which other users can read in the process list).
const (
	envCredentialsDir     = "CREDENTIALS_DIRECTORY"
	credAPIKey            = "model-api-key"
	credRedisPassword     = "redis-password"
	credKafkaSASLPassword = "kafka-sasl-password"

	envAPIKey            = "SLUICE_MODEL_API_KEY"
	envRedisPassword     = "SLUICE_REDIS_PASSWORD"
	envKafkaSASLPassword = "SLUICE_KAFKA_SASL_PASSWORD"
)

// config is the effective configuration.
type config struct {
	Source     string
	Brokers    []string
	RedisAddr  string
	Group      string
	Input      string
	Output     string
	DeadLetter string

	ModelURL     string
	Model        string
	Task         string
	Language     string
	Fields       []string
	ModelTimeout time.Duration

	Concurrency          int
	RateLimit            float64
	Retries              int
	MaxRateLimitDuration time.Duration
	DrainTimeout         time.Duration
	FlushTimeout         time.Duration
	Breaker              int
	SkipPreflight        bool
	PreflightWait        time.Duration
	InstanceID           string
	ExactlyOnce          bool
	HealthAddr           string
	LogFormat            string
	LogLevel             string

	// Connection security.
	KafkaTLS      bool
	KafkaCAFile   string
	KafkaCertFile string
	KafkaKeyFile  string
	KafkaSASL     string
	KafkaSASLUser string
	RedisUser     string
	RedisTLS      bool
	RedisCAFile   string
	// Replicas each Redis write must reach (WAIT) before its entries are
	// acknowledged; 0: none.
	RedisWaitReplicas int
	RedisWaitTimeout  time.Duration
	RedisAtomicAck    bool

	// The enrichment cache.
	Cache cacheConfig
	// The library's other model and pipeline features.
	Tuning tuning

	apiKey        string
	apiKeyFromEnv bool // else from the credential
	redisPassword string
	kafkaSASLPass string
	showVersion   bool
}

// errUsage marks a configuration error: exit status 78 (EX_CONFIG), which
// systemd is told not to restart on. errParse marks one the flag package already printed.
var (
	errUsage = errors.New("invalid configuration")
	errParse = errors.New("bad command line")
)

// parseConfig reads flags, then the SLUICE_* environment for flags not given.
func parseConfig(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("sluice-enrich", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	var brokers, fields string
	fs.StringVar(&c.Source, "source", "kafka", "broker `kind`: kafka or redis")
	fs.StringVar(&brokers, "brokers", "127.0.0.1:9092", "comma-separated Kafka bootstrap `addresses`")
	fs.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "Redis server `host:port` (password from "+envRedisPassword+")")
	fs.StringVar(&c.Group, "group", "sluice-enrich", "consumer group")
	fs.StringVar(&c.Input, "input", "events", "input topic or stream")
	fs.StringVar(&c.Output, "output", "events.enriched", "output topic or stream for enriched events")
	fs.StringVar(&c.DeadLetter, "dead-letter", "dead_letter", "topic or stream for events that cannot be enriched")
	fs.StringVar(&c.ModelURL, "model-url", "http://127.0.0.1:8081/v1", "base `URL` of an OpenAI-compatible API (the part before /chat/completions); key from "+envAPIKey)
	fs.StringVar(&c.Model, "model", "gpt-4o-mini", "model `name`")
	fs.StringVar(&c.Task, "task", "sentiment", "`task`: sentiment, entities, translate, spam or custom (with -task-prompt-file and -task-schema-file)")
	fs.StringVar(&c.Language, "language", "English", "target language of -task translate")
	fs.StringVar(&fields, "fields", "text", "comma-separated dot `paths` of the text fields to enrich (e.g. review.title,review.body)")
	fs.DurationVar(&c.ModelTimeout, "model-timeout", 60*time.Second, "timeout of one model request")
	fs.IntVar(&c.Concurrency, "concurrency", 8, "model calls in flight at once")
	fs.Float64Var(&c.RateLimit, "rate-limit", 0, "client-side limit on model `requests/s` (0 = off)")
	fs.IntVar(&c.Retries, "retries", 3, "retries of a transient failure before an event is dead-lettered")
	fs.DurationVar(&c.MaxRateLimitDuration, "max-rate-limit-duration", time.Minute, "stop (exit 75) after rate limiting lasts this long without one success")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", 15*time.Second, "how long shutdown waits for in-flight events; a stop takes at most this plus -flush-timeout plus 5s")
	fs.DurationVar(&c.FlushTimeout, "flush-timeout", 5*time.Second, "how long shutdown waits, after the drain, for offsets or acks to be committed")
	fs.IntVar(&c.Breaker, "breaker", 20, "stop (exit 76) once this many events in a row fail with the same configuration error (wrong model URL, model or parameter), leaving the rest unconsumed (0: off, dead-letter them)")
	fs.BoolVar(&c.SkipPreflight, "skip-preflight", false, "do not check the model endpoint (URL, key, model, parameters) before consuming; for servers that cannot take the probe")
	fs.DurationVar(&c.PreflightWait, "preflight-wait", time.Minute, "how long the preflight retries a model endpoint that does not answer (down, starting, 5xx) before it exits 69")
	fs.StringVar(&c.InstanceID, "instance-id", "", "Kafka static group member id, or the Redis consumer name (default: host name)")
	fs.BoolVar(&c.ExactlyOnce, "exactly-once", false, "Kafka only: write outputs, dead letters and the consumed offsets in one transaction, so that a read_committed consumer sees every input exactly once (transactional id sluice-<group>-<instance id>)")
	fs.StringVar(&c.HealthAddr, "health-addr", "127.0.0.1:8080", "`address` serving /livez, /readyz, /healthz and /metrics")
	fs.StringVar(&c.LogFormat, "log-format", "text", "log `format`: text or json")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log `level`: debug, info, warn or error")
	fs.BoolVar(&c.KafkaTLS, "kafka-tls", false, "connect to Kafka with TLS (implied by the -kafka-*-file flags)")
	fs.StringVar(&c.KafkaCAFile, "kafka-ca-file", "", "PEM `file` of the CAs that sign the brokers' certificates (default: system roots)")
	fs.StringVar(&c.KafkaCertFile, "kafka-cert-file", "", "PEM client certificate `file` for mutual TLS (with -kafka-key-file)")
	fs.StringVar(&c.KafkaKeyFile, "kafka-key-file", "", "PEM client key `file` for mutual TLS (with -kafka-cert-file)")
	fs.StringVar(&c.KafkaSASL, "kafka-sasl", "", "SASL `mechanism`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (password from "+envKafkaSASLPassword+")")
	fs.StringVar(&c.KafkaSASLUser, "kafka-sasl-user", "", "SASL `user`")
	fs.StringVar(&c.RedisUser, "redis-user", "", "Redis ACL `user` (password from "+envRedisPassword+")")
	fs.BoolVar(&c.RedisTLS, "redis-tls", false, "connect to Redis with TLS (implied by -redis-ca-file)")
	fs.StringVar(&c.RedisCAFile, "redis-ca-file", "", "PEM `file` of the CAs that sign the Redis server's certificate (default: system roots)")
	fs.IntVar(&c.RedisWaitReplicas, "redis-wait-replicas", 0, "Redis: replicas that must confirm each batch of writes (WAIT) before its entries are acknowledged; 0 = do not wait")
	fs.DurationVar(&c.RedisWaitTimeout, "redis-wait-timeout", 500*time.Millisecond, "Redis: how long -redis-wait-replicas waits; fewer confirmations make the batch be written again")
	fs.BoolVar(&c.RedisAtomicAck, "redis-atomic-ack", false, "Redis: write each batch's outputs and acknowledge their entries in one script, so that a crash never writes an output twice (costs pass-through throughput)")
	c.Tuning.register(fs)
	c.Cache.Size = defaultCacheSize
	fs.StringVar(&c.Cache.Kind, "cache", "memory", "enrichment `cache`: memory (in this process), redis (shared by instances, with a TTL) or off; a hit skips the model call")
	fs.Var(&c.Cache.Size, "cache-size", "most `bytes` the memory cache holds, such as 64MiB")
	fs.DurationVar(&c.Cache.TTL, "cache-ttl", defaultCacheTTL, "how long the redis cache keeps an answer")
	fs.StringVar(&c.Cache.RedisAddr, "cache-redis-addr", "", "Redis `host:port` of the redis cache (default: -redis-addr; user, password and TLS as for -redis-addr)")
	fs.BoolVar(&c.showVersion, "version", false, "print the version and exit")
	usage := envflag.Usage(fs, envPrefix, "sluice-enrich [flags]", "version")
	fs.Usage = func() {
		usage()
		fmt.Fprintf(fs.Output(), "\nSecrets: %s, %s and %s, or the systemd credentials (LoadCredential=) %s, %s and %s.\n",
			envAPIKey, envRedisPassword, envKafkaSASLPassword, credAPIKey, credRedisPassword, credKafkaSASLPassword)
		fmt.Fprint(fs.Output(), exitHelp)
	}

	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("%w: %w", errParse, err)
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if err := envflag.Apply(fs, envPrefix, "version"); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	c.Brokers = splitList(brokers)
	c.Fields = splitList(fields)
	var errs []error
	for _, s := range []struct {
		dst       *string
		env, cred string
	}{{&c.apiKey, envAPIKey, credAPIKey}, {&c.redisPassword, envRedisPassword, credRedisPassword}, {&c.kafkaSASLPass, envKafkaSASLPassword, credKafkaSASLPassword}} {
		v, err := secret(s.env, s.cred)
		if err != nil {
			errs = append(errs, err)
		}
		*s.dst = v
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	c.apiKeyFromEnv = os.Getenv(envAPIKey) != ""
	c.KafkaTLS = c.KafkaTLS || c.KafkaCAFile != "" || c.KafkaCertFile != "" || c.KafkaKeyFile != ""
	c.RedisTLS = c.RedisTLS || c.RedisCAFile != ""
	if c.Cache.RedisAddr == "" {
		c.Cache.RedisAddr = c.RedisAddr
	}
	if c.showVersion {
		return c, nil
	}
	if err := c.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	return c, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// validate reports every bad setting at once, each naming its flag.
func (c *config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	switch c.Source {
	case "kafka":
		if len(c.Brokers) == 0 {
			bad("-brokers: empty")
		}
	case "redis":
		if _, _, err := net.SplitHostPort(c.RedisAddr); err != nil {
			bad("-redis-addr %q: %v", c.RedisAddr, err)
		}
	default:
		bad("-source %q: must be kafka or redis", c.Source)
	}
	for name, v := range map[string]string{"-group": c.Group, "-input": c.Input, "-output": c.Output, "-dead-letter": c.DeadLetter, "-model": c.Model} {
		if v == "" {
			bad("%s: empty", name)
		}
	}
	if c.RedisWaitReplicas < 0 {
		bad("-redis-wait-replicas %d: must be >= 0", c.RedisWaitReplicas)
	}
	if c.RedisWaitReplicas > 0 && (c.RedisWaitTimeout < time.Millisecond || c.RedisWaitTimeout > time.Minute) {
		bad("-redis-wait-timeout %s: must be between 1ms and 1m", c.RedisWaitTimeout)
	}
	if c.RedisAtomicAck && c.RedisWaitReplicas > 0 {
		bad("-redis-atomic-ack and -redis-wait-replicas: choose one (the WAIT must come before any acknowledgement)")
	}
	if c.ExactlyOnce && c.Source != "kafka" {
		bad("-exactly-once: Kafka only; a Redis sink acknowledges each entry in the round trip after its XADD (see docs/guarantees.md)")
	}
	if c.Input == c.Output || c.Input == c.DeadLetter {
		bad("-input %q: must differ from -output and -dead-letter", c.Input)
	}
	if u, err := url.Parse(c.ModelURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("-model-url %q: need an http(s) URL", redactURL(c.ModelURL))
	}
	switch c.Task {
	case "sentiment", "entities", "translate", "spam", "custom":
	default:
		bad("-task %q: must be sentiment, entities, translate, spam or custom", c.Task)
	}
	if len(c.Fields) == 0 {
		bad("-fields: empty")
	}
	c.Cache.validate(bad)
	c.Tuning.validate(c, bad)
	if c.Concurrency < 1 {
		bad("-concurrency %d: must be at least 1", c.Concurrency)
	}
	if c.RateLimit < 0 {
		bad("-rate-limit %v: must be >= 0", c.RateLimit)
	}
	if c.Retries < 0 {
		bad("-retries %d: must be >= 0", c.Retries)
	}
	if c.DrainTimeout <= 0 || c.FlushTimeout <= 0 || c.MaxRateLimitDuration <= 0 || c.ModelTimeout <= 0 {
		bad("-drain-timeout, -flush-timeout, -max-rate-limit-duration and -model-timeout must be positive")
	}
	if c.PreflightWait < 0 {
		bad("-preflight-wait %s: must be 0 (no retry) or more", c.PreflightWait)
	}
	if c.Breaker < 0 {
		bad("-breaker %d: must be 0 (off) or more", c.Breaker)
	}
	if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
		bad("-health-addr %q: %v", c.HealthAddr, err)
	}
	if (c.KafkaCertFile == "") != (c.KafkaKeyFile == "") {
		bad("-kafka-cert-file and -kafka-key-file: set both or neither")
	}
	switch c.KafkaSASL {
	case "":
		if c.KafkaSASLUser != "" {
			bad("-kafka-sasl-user %q: needs -kafka-sasl", c.KafkaSASLUser)
		}
	case "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
		if c.KafkaSASLUser == "" {
			bad("-kafka-sasl %s: needs -kafka-sasl-user", c.KafkaSASL)
		}
		if c.kafkaSASLPass == "" {
			bad("-kafka-sasl %s: needs the password in %s", c.KafkaSASL, envKafkaSASLPassword)
		}
	default:
		bad("-kafka-sasl %q: must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.KafkaSASL)
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("-log-format %q: must be text or json", c.LogFormat)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		bad("-log-level %q: %v", c.LogLevel, err)
	}
	return errors.Join(errs...)
}

// redacted returns the effective configuration for the startup log, with
// secrets replaced by whether they are set.
func (c *config) redacted() map[string]any {
	m := map[string]any{
		"source":                  c.Source,
		"group":                   c.Group,
		"input":                   c.Input,
		"output":                  c.Output,
		"dead_letter":             c.DeadLetter,
		"model_url":               redactURL(c.ModelURL),
		"model":                   c.Model,
		"task":                    c.Task,
		"fields":                  c.Fields,
		"model_timeout":           c.ModelTimeout.String(),
		"concurrency":             c.Concurrency,
		"rate_limit":              c.RateLimit,
		"retries":                 c.Retries,
		"max_rate_limit_duration": c.MaxRateLimitDuration.String(),
		"drain_timeout":           c.DrainTimeout.String(),
		"flush_timeout":           c.FlushTimeout.String(),
		"stop_budget":             c.stopBudget().String(),
		"breaker":                 c.Breaker,
		"preflight":               !c.SkipPreflight,
		"preflight_wait":          c.PreflightWait.String(),
		"instance_id":             c.InstanceID,
		"exactly_once":            c.ExactlyOnce,
		"redis_wait_replicas":     c.RedisWaitReplicas,
		"redis_atomic_ack":        c.RedisAtomicAck,
		"health_addr":             c.HealthAddr,
		"log_format":              c.LogFormat,
		"model_api_key":           secretState(c.apiKey),
	}
	if c.Task == "translate" {
		m["language"] = c.Language
	}
	c.Tuning.redacted(m)
	m["cache"] = c.Cache.Kind
	switch c.Cache.Kind {
	case "memory":
		m["cache_size"] = c.Cache.Size.String()
	case "redis":
		m["cache_redis_addr"], m["cache_ttl"] = c.Cache.RedisAddr, c.Cache.TTL.String()
	}
	if c.Source == "kafka" {
		m["brokers"] = c.Brokers
		m["kafka_tls"] = c.KafkaTLS
		if c.KafkaTLS {
			m["kafka_ca_file"], m["kafka_cert_file"], m["kafka_key_file"] = c.KafkaCAFile, c.KafkaCertFile, c.KafkaKeyFile
		}
		if c.KafkaSASL != "" {
			m["kafka_sasl"], m["kafka_sasl_user"] = c.KafkaSASL, c.KafkaSASLUser
			m["kafka_sasl_password"] = secretState(c.kafkaSASLPass)
		}
	} else {
		m["redis_addr"] = c.RedisAddr
		m["redis_user"] = c.RedisUser
		m["redis_password"] = secretState(c.redisPassword)
		m["redis_tls"] = c.RedisTLS
		if c.RedisCAFile != "" {
			m["redis_ca_file"] = c.RedisCAFile
		}
	}
	return m
}

// secret reads a secret from the environment variable env or, when that is
// unset, from the systemd credential cred. A credential file that cannot be
// read is an error; no variable and no credential is an empty secret.
func secret(env, cred string) (string, error) {
	if v := os.Getenv(env); v != "" {
		return v, nil
	}
	dir := os.Getenv(envCredentialsDir)
	if dir == "" {
		return "", nil
	}
	b, err := os.ReadFile(filepath.Join(dir, cred))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("credential %s: %w", cred, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("credential %s: the file %s is empty", cred, filepath.Join(dir, cred))
	}
	return v, nil
}

func secretState(s string) string {
	if s == "" {
		return "unset"
	}
	return "set (redacted)"
}

// redactURL hides a password in the URL's user info, and any query (where
// some proxies take keys).
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = "redacted"
	}
	return u.Redacted()
}
