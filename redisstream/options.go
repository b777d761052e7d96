package redisstream

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Defaults of the options.
const (
	// DefaultAddr is the server address used when neither WithClient nor
	// WithAddr is given.
	DefaultAddr = "localhost:6379"
	// DefaultPayloadField is the stream field that holds the JSON event.
	DefaultPayloadField = "payload"
	// DefaultDeadLetterStream is the stream dead letters are written to.
	DefaultDeadLetterStream = "dead_letter"
	// DefaultMinIdle is how long an entry must sit unacknowledged in another
	// consumer's pending list before it is claimed. It is far above the
	// time one event can take in a pipeline with default settings (four
	// attempts with backoff, plus rate-limit pauses of up to a minute), so
	// that work still in flight elsewhere is not stolen.
	DefaultMinIdle = 5 * time.Minute
	// DefaultClaimInterval is how often a running source looks for stuck
	// entries to claim.
	DefaultClaimInterval = 30 * time.Second
	// DefaultBlock is the longest one XREADGROUP waits for new entries. It
	// also bounds how long Fetch takes to notice Close or a cancelled
	// context.
	DefaultBlock = time.Second
	// DefaultMaxReadCount caps the COUNT of one XREADGROUP or XAUTOCLAIM.
	DefaultMaxReadCount = 1000
	// DefaultConsumer is the consumer name used when the host name cannot
	// be read.
	DefaultConsumer = "sluice"
)

// Options are typed by what they configure, so that the compiler refuses
// an option given to a constructor it does not apply to:
//
//   - a [SourceOption] configures [NewSource] only;
//   - a [SinkOption] configures [NewSink] only;
//   - an [Option] configures both: the connection ([WithClient],
//     [WithAddr], [WithCredentials], [WithDB], [WithTLS]), the field mapping
//     ([WithPayloadField], [WithKeyField], [WithFieldsAsJSON]) and the
//     logger.
//
// Every option checks its argument. A constructor applies all its options
// and reports every bad one at once, joined with errors.Join, each error
// matching [sluice.ErrInvalidConfig] and reading
// "redisstream: WithX(value): what is wrong; what to do".
//
// To share a list of options between a source and a sink, keep it as
// []Option and append its elements to each constructor's own list.
type Option interface {
	SourceOption
	SinkOption
}

// SourceOption configures a [Source]. Every [Option] is also a SourceOption.
type SourceOption interface{ applySource(*config) }

// SinkOption configures a [Sink]. Every [Option] is also a SinkOption.
type SinkOption interface{ applySink(*config) }

// shared, sourceOnly and sinkOnly implement the option interfaces.
type (
	shared     func(*config)
	sourceOnly func(*config)
	sinkOnly   func(*config)
)

func (f shared) applySource(c *config)     { f(c) }
func (f shared) applySink(c *config)       { f(c) }
func (f sourceOnly) applySource(c *config) { f(c) }
func (f sinkOnly) applySink(c *config)     { f(c) }

// StartAt says where a consumer group begins reading when it has no
// position yet. See [WithStartAt].
type StartAt int

const (
	// Oldest starts at the oldest entry the stream still holds, so that a
	// new group processes the existing backlog (the group is created at
	// ID 0). It is the default.
	Oldest StartAt = iota
	// Newest starts after the newest entry, so that a new group processes
	// only entries added after it was created (the group is created at $).
	Newest
)

// String returns "oldest" or "newest".
func (s StartAt) String() string {
	switch s {
	case Oldest:
		return "oldest"
	case Newest:
		return "newest"
	}
	return fmt.Sprintf("StartAt(%d)", int(s))
}

// groupID is the ID XGROUP CREATE starts a group at.
func (s StartAt) groupID() string {
	if s == Newest {
		return "$"
	}
	return "0"
}

type config struct {
	// connection
	client   redis.UniversalClient
	addr     string
	username string
	password string
	creds    bool
	db       int
	tlsConf  *tls.Config

	// mapping
	payloadField string
	keyField     string
	fieldsJSON   bool

	// source
	consumer      string
	startAt       StartAt
	minIdle       time.Duration
	claimInterval time.Duration
	block         time.Duration
	maxReadCount  int

	// sink
	maxLen      int64
	deadLetter  string
	waitN       int           // replicas that must confirm each write; 0: none
	waitTimeout time.Duration // how long to wait for them
	atomicAck   bool          // outputs and their XACK in one script

	logger *slog.Logger
	errs   optcheck.Errors
}

func defaultConfig() config {
	return config{
		payloadField:  DefaultPayloadField,
		startAt:       Oldest,
		minIdle:       DefaultMinIdle,
		claimInterval: DefaultClaimInterval,
		block:         DefaultBlock,
		maxReadCount:  DefaultMaxReadCount,
		deadLetter:    DefaultDeadLetterStream,
		logger:        slog.Default(),
		errs:          optcheck.New("redisstream", sluice.ErrInvalidConfig),
	}
}

// reject records a bad option; see [optcheck.Errors.Reject].
func (c *config) reject(option, problem, fix string) { c.errs.Reject(option, problem, fix) }

func sourceConfig(opts []SourceOption) config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySource(&c)
		}
	}
	c.check()
	return c
}

func sinkConfig(opts []SinkOption) config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySink(&c)
		}
	}
	c.check()
	if c.atomicAck && c.waitN > 0 {
		c.reject("WithAtomicAck()", "it cannot be combined with WithWaitReplicas, whose WAIT must come before any XACK",
			"choose one: WithAtomicAck against a crash between an output and its acknowledgement, WithWaitReplicas against a failover")
	}
	if _, single := c.client.(*redis.Client); c.atomicAck && c.client != nil && !single {
		c.reject("WithAtomicAck()", fmt.Sprintf("a script cannot write and acknowledge on a %T, whose keys may live on different nodes", c.client),
			"pass a *redis.Client with WithClient, or leave the option out")
	}
	for _, f := range []struct{ option, name string }{{"WithPayloadField", c.payloadField}, {"WithKeyField", c.keyField}} {
		if slices.Contains(sinkFields, f.name) {
			c.reject(optcheck.Call(f.option, f.name), "a Sink writes a field of that name itself, which would replace the event's",
				"name another field; the Sink writes "+strings.Join(sinkFields, ", "))
		}
	}
	return c
}

// sinkFields are the fields a [Sink] writes besides the event's: the origin
// headers with the idempotency key, and the failure headers.
var sinkFields = []string{
	sluice.HeaderSourceStream, sluice.HeaderSourceID, sluice.HeaderSourceTopic, sluice.HeaderSourcePartition,
	sluice.HeaderSourceOffset, sluice.HeaderIdempotencyKey, sluice.HeaderFailureReason, sluice.HeaderFailureAttempts,
	sluice.HeaderFailureTime, HeaderEntryError,
}

// check rejects options that do not go together.
func (c *config) check() {
	if c.client != nil && (c.addr != "" || c.creds || c.db != 0 || c.tlsConf != nil) {
		c.reject("WithClient", "it cannot be combined with WithAddr, WithCredentials, WithDB or WithTLS",
			"configure the client you pass instead")
	}
	if c.fieldsJSON && c.keyField != "" {
		c.reject(optcheck.Call("WithKeyField", c.keyField), "it cannot be combined with WithFieldsAsJSON",
			"drop one of them: with WithFieldsAsJSON messages have no key")
	}
	if c.keyField != "" && c.keyField == c.payloadField {
		c.reject(optcheck.Call("WithKeyField", c.keyField), "the key field is the payload field",
			"name a field other than the payload field")
	}
}

// connect returns the configured client, or builds one. owned reports
// whether the caller must close it.
func (c *config) connect() (client redis.UniversalClient, owned bool) {
	if c.client != nil {
		return c.client, false
	}
	addr := c.addr
	if addr == "" {
		addr = DefaultAddr
	}
	return redis.NewClient(&redis.Options{
		Addr:      addr,
		Username:  c.username,
		Password:  c.password,
		DB:        c.db,
		TLSConfig: c.tlsConf,
	}), true
}

// WithClient makes the component use a client you built, for example a
// *redis.Client with your own pool settings, a failover client or a cluster
// client; it must not be nil, and cannot be combined with [WithAddr],
// [WithCredentials], [WithDB] or [WithTLS]. The component does not close
// it. Give the same *redis.Client to a [Source] and a [Sink] to let the
// sink acknowledge entries right after Redis confirmed their dead letters.
// By default each component builds its own client from the other
// connection options.
func WithClient(c redis.UniversalClient) Option {
	return shared(func(cfg *config) {
		if c == nil {
			cfg.reject("WithClient(nil)", "the client is nil", "pass a client, or leave the option out to connect with WithAddr")
			return
		}
		cfg.client = c
	})
}

// WithAddr sets the server address, "host:port"; it must not be empty.
// The default is [DefaultAddr].
func WithAddr(addr string) Option {
	return shared(func(cfg *config) {
		if addr == "" {
			cfg.reject(optcheck.Call("WithAddr", addr), "the address is empty", `pass "host:port", or leave the option out for `+DefaultAddr)
			return
		}
		cfg.addr = addr
	})
}

// WithCredentials sets the ACL user name and password (an empty user means
// the default user, as with AUTH password); they must not both be empty.
// The password never appears in logs or errors. By default there is no
// AUTH.
func WithCredentials(user, password string) Option {
	return shared(func(cfg *config) {
		if user == "" && password == "" {
			cfg.reject(`WithCredentials("", …)`, "the user and the password are both empty",
				"pass a password (and a user for ACL), or leave the option out")
			return
		}
		cfg.username, cfg.password, cfg.creds = user, password, true
	})
}

// WithDB selects the logical database; it cannot be negative. The default
// is 0.
func WithDB(db int) Option {
	return shared(func(cfg *config) {
		if db < 0 {
			cfg.reject(optcheck.Call("WithDB", db), "the database number is negative", "pass 0 or more; the default is 0")
			return
		}
		cfg.db = db
	})
}

// WithTLS makes the connection use TLS with cfg as is (set RootCAs for a
// private CA, Certificates for mutual TLS). It must not be nil. By default
// connections are plain TCP.
func WithTLS(tc *tls.Config) Option {
	return shared(func(cfg *config) {
		if tc == nil {
			cfg.reject("WithTLS(nil)", "the *tls.Config is nil", "pass &tls.Config{} for TLS with the system roots")
			return
		}
		cfg.tlsConf = tc
	})
}

// WithPayloadField sets the stream field that holds the event; the other
// fields become headers, and on output headers become fields again. It
// must not be empty, and for a [Sink] not the name of a field the sink
// writes itself (the origin and failure fields). The default is
// [DefaultPayloadField].
func WithPayloadField(name string) Option {
	return shared(func(cfg *config) {
		if name == "" {
			cfg.reject(optcheck.Call("WithPayloadField", name), "the field name is empty", `leave the option out for "`+DefaultPayloadField+`"`)
			return
		}
		cfg.payloadField = name
	})
}

// WithKeyField names a stream field whose value becomes Message.Key (and is
// written back under the same name), for example for
// [sluice.WithKeyOrdering]. It must not be empty, must differ from the
// payload field and cannot be combined with [WithFieldsAsJSON]; for a
// [Sink] it must not be the name of a field the sink writes itself. By
// default messages have no key.
func WithKeyField(name string) Option {
	return shared(func(cfg *config) {
		if name == "" {
			cfg.reject(optcheck.Call("WithKeyField", name), "the field name is empty", "name the field that holds the key, or leave the option out")
			return
		}
		cfg.keyField = name
	})
}

// WithFieldsAsJSON treats the whole field map of an entry as one JSON object:
// the message value is {"field":"value",...} with the fields in sorted order,
// and there are no headers. On output the value must be a JSON object; each
// member becomes a field (strings as they are, other values as JSON text),
// followed by the message headers. By default one field holds the payload
// ([WithPayloadField]).
func WithFieldsAsJSON() Option {
	return shared(func(cfg *config) { cfg.fieldsJSON = true })
}

// WithLogger sets the logger of the component. It must not be nil. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return shared(func(cfg *config) {
		if l == nil {
			cfg.reject("WithLogger(nil)", "the logger is nil", "pass a *slog.Logger, or leave the option out for slog.Default()")
			return
		}
		cfg.logger = l
	})
}

// WithConsumer sets the consumer name of a [Source]. It must not be empty,
// must be stable across restarts, so that a restarted process finds its own
// pending entries, and unique among the processes of a group. The default
// is the host name (the pod name on Kubernetes), or [DefaultConsumer] if it
// cannot be read; set it when several consumers of one group run on the
// same host.
func WithConsumer(name string) SourceOption {
	return sourceOnly(func(cfg *config) {
		if name == "" {
			cfg.reject(optcheck.Call("WithConsumer", name), "the consumer name is empty", "pass a name that is stable across restarts, or leave the option out for the host name")
			return
		}
		cfg.consumer = name
	})
}

// WithStartAt sets where a consumer group begins reading when it has no
// committed position yet: [Oldest], the oldest event the server still
// retains (the default), or [Newest], only events added after the group
// first read. A group that has a committed position keeps it. In Redis the
// position is the consumer group's: a [Source] creates a missing group
// (XGROUP CREATE ... MKSTREAM) at ID 0 for Oldest and at $ for Newest; an
// existing group keeps its last-delivered ID.
func WithStartAt(at StartAt) SourceOption {
	return sourceOnly(func(cfg *config) {
		if at != Oldest && at != Newest {
			cfg.reject(optcheck.Call("WithStartAt", at), "the position is unknown", "pass redisstream.Oldest or redisstream.Newest")
			return
		}
		cfg.startAt = at
	})
}

// WithMinIdle sets how long an entry must have been idle in another
// consumer's pending list before a [Source] claims it, at startup and
// periodically. Keep it well above the longest time an event can spend in a
// pipeline, or entries still being worked on elsewhere are processed twice.
// It must be at least 1ms. The default is [DefaultMinIdle].
func WithMinIdle(d time.Duration) SourceOption {
	return sourceOnly(func(cfg *config) {
		if d < time.Millisecond {
			cfg.reject(optcheck.Call("WithMinIdle", d), "the time is below 1ms", "pass well above the longest time an event can take; the default is 5m")
			return
		}
		cfg.minIdle = d
	})
}

// WithClaimInterval sets how often a running [Source] claims stuck entries
// with XAUTOCLAIM. It must be at least 1ms. The default is
// [DefaultClaimInterval].
func WithClaimInterval(d time.Duration) SourceOption {
	return sourceOnly(func(cfg *config) {
		if d < time.Millisecond {
			cfg.reject(optcheck.Call("WithClaimInterval", d), "the interval is below 1ms", "pass at least 1ms; the default is 30s")
			return
		}
		cfg.claimInterval = d
	})
}

// WithBlock sets the BLOCK time of one XREADGROUP of a [Source]. Fetch
// notices a cancelled context or Close within about this time. It must be
// at least 1ms (0 would block forever). The default is [DefaultBlock].
func WithBlock(d time.Duration) SourceOption {
	return sourceOnly(func(cfg *config) {
		if d < time.Millisecond {
			cfg.reject(optcheck.Call("WithBlock", d), "the time is below 1ms (0 would block forever)", "pass at least 1ms; the default is 1s")
			return
		}
		cfg.block = d
	})
}

// WithMaxReadCount caps the COUNT of one read or claim of a [Source]; the
// pipeline's fetch batch ([sluice.WithFetchBatch]) caps it too. It must be
// at least 1. The default is [DefaultMaxReadCount].
func WithMaxReadCount(n int) SourceOption {
	return sourceOnly(func(cfg *config) {
		if n < 1 {
			cfg.reject(optcheck.Call("WithMaxReadCount", n), "the count is below 1", "pass at least 1; the default is 1000")
			return
		}
		cfg.maxReadCount = n
	})
}

// WithMaxLen makes a [Sink] trim its output stream to about n entries
// (XADD MAXLEN ~ n); it cannot be negative. The default, 0, never trims.
// The dead-letter stream is never trimmed.
func WithMaxLen(n int64) SinkOption {
	return sinkOnly(func(cfg *config) {
		if n < 0 {
			cfg.reject(optcheck.Call("WithMaxLen", n), "the length is negative", "pass 0 to never trim")
			return
		}
		cfg.maxLen = n
	})
}

// WithWaitReplicas makes a [Sink] wait, after each batch of XADDs (outputs
// and dead letters alike), until at least n replicas have confirmed them
// (WAIT n timeout, in the same round trip), so that a failover to a
// replica cannot lose an output whose input was then acknowledged. If
// fewer than n replicas confirm within timeout, Write returns an error for
// the whole batch: the pipeline writes it again (the primary may then hold
// two copies, which the idempotency_key field tells apart) and does not
// acknowledge its entries meanwhile. n must be at least 1 and timeout
// between 1ms and 1m. WAIT makes the writes reach the replicas' memory,
// not their disks. Off by default.
func WithWaitReplicas(n int, timeout time.Duration) SinkOption {
	return sinkOnly(func(cfg *config) {
		if n < 1 {
			cfg.reject(optcheck.Call("WithWaitReplicas", n), "needs at least one replica", "leave the option out to not wait")
			return
		}
		if timeout < time.Millisecond || timeout > time.Minute {
			cfg.reject(optcheck.Call("WithWaitReplicas", timeout), "the timeout must be between 1ms and 1m", "a few hundred milliseconds suits a replica on the same network")
			return
		}
		cfg.waitN, cfg.waitTimeout = n, timeout
	})
}

// WithAtomicAck makes a [Sink] whose messages come from a [Source] on the
// very same *redis.Client write each batch's outputs and acknowledge their
// entries in one Lua script, which Redis runs whole: no crash can then fall
// between an output and its acknowledgement, so a restart does not write
// outputs again. It costs throughput on a pass-through (a script instead of
// pipelined XADDs: 64–65k instead of 86–101k events/s with the defaults in
// one run of BenchmarkPassThrough). NewSink refuses it with
// [WithWaitReplicas] (the WAIT must come before any XACK) or a client other
// than a *redis.Client (a cluster's keys may live on different nodes). A
// batch whose messages come from a Source on another client is written and
// acknowledged separately, with a warning logged once. Off by default.
func WithAtomicAck() SinkOption {
	return sinkOnly(func(cfg *config) { cfg.atomicAck = true })
}

// WithDeadLetterStream sets the stream a [Sink] writes dead letters to; it
// must not be empty. The default is [DefaultDeadLetterStream].
func WithDeadLetterStream(stream string) SinkOption {
	return sinkOnly(func(cfg *config) {
		if stream == "" {
			cfg.reject(optcheck.Call("WithDeadLetterStream", stream), "the stream name is empty", `leave the option out for "`+DefaultDeadLetterStream+`"`)
			return
		}
		cfg.deadLetter = stream
	})
}

// defaultConsumer returns a consumer name that survives a restart.
func defaultConsumer() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return DefaultConsumer
	}
	return h
}
