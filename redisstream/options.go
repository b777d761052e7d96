package redisstream

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
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

// Option configures a [Source] or a [Sink]. Connection options, the field
// mapping and the logger apply to both; the others say which component they
// belong to and are ignored by the other one, so one option list can be
// shared. Bad values are all reported by the constructor, each with an error
// matching [sluice.ErrInvalidConfig] that names the option.
type Option func(*config)

type config struct {
	// connection
	client   redis.UniversalClient
	addr     string
	username string
	password string
	db       int
	tlsConf  *tls.Config

	// mapping
	payloadField string
	keyField     string
	fieldsJSON   bool

	// source
	consumer      string
	startID       string
	minIdle       time.Duration
	claimInterval time.Duration
	block         time.Duration
	maxReadCount  int

	// sink
	maxLen     int64
	deadLetter string

	logger *slog.Logger
	errs   []error
}

func defaultConfig() config {
	return config{
		payloadField:  DefaultPayloadField,
		startID:       "$",
		minIdle:       DefaultMinIdle,
		claimInterval: DefaultClaimInterval,
		block:         DefaultBlock,
		maxReadCount:  DefaultMaxReadCount,
		deadLetter:    DefaultDeadLetterStream,
	}
}

func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("%w: redisstream."+format, append([]any{sluice.ErrInvalidConfig}, args...)...))
}

func newConfig(opts []Option) (config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.client != nil && (c.addr != "" || c.username != "" || c.password != "" || c.db != 0 || c.tlsConf != nil) {
		c.invalid("WithClient: cannot be combined with WithAddr, WithCredentials, WithDB or WithTLS; configure the client instead")
	}
	if c.fieldsJSON && c.keyField != "" {
		c.invalid("WithKeyField(%q): not supported together with WithFieldsAsJSON", c.keyField)
	}
	if c.keyField != "" && c.keyField == c.payloadField {
		c.invalid("WithKeyField(%q): must differ from the payload field", c.keyField)
	}
	if len(c.errs) > 0 {
		return c, errors.Join(c.errs...)
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c, nil
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
// client. The component does not close it. Give the same *redis.Client to a
// [Source] and a [Sink] to let the sink acknowledge entries right after
// Redis confirmed their dead letters.
func WithClient(c redis.UniversalClient) Option {
	return func(cfg *config) {
		if c == nil {
			cfg.invalid("WithClient(nil)")
			return
		}
		cfg.client = c
	}
}

// WithAddr sets the server address, "host:port". The default is
// [DefaultAddr].
func WithAddr(addr string) Option {
	return func(cfg *config) {
		if addr == "" {
			cfg.invalid("WithAddr(\"\"): address is empty")
			return
		}
		cfg.addr = addr
	}
}

// WithCredentials sets the ACL user name and password (an empty user means
// the default user, as with AUTH password). The password never appears in
// logs or errors.
func WithCredentials(user, password string) Option {
	return func(cfg *config) {
		cfg.username, cfg.password = user, password
	}
}

// WithDB selects the logical database. The default is 0.
func WithDB(db int) Option {
	return func(cfg *config) {
		if db < 0 {
			cfg.invalid("WithDB(%d): cannot be negative", db)
			return
		}
		cfg.db = db
	}
}

// WithTLS makes the connection use TLS with the given configuration.
func WithTLS(tc *tls.Config) Option {
	return func(cfg *config) {
		if tc == nil {
			cfg.invalid("WithTLS(nil)")
			return
		}
		cfg.tlsConf = tc
	}
}

// WithPayloadField sets the stream field that holds the event; the other
// fields become headers, and on output headers become fields again. The
// default is [DefaultPayloadField].
func WithPayloadField(name string) Option {
	return func(cfg *config) {
		if name == "" {
			cfg.invalid("WithPayloadField(\"\"): field name is empty")
			return
		}
		cfg.payloadField = name
	}
}

// WithKeyField names a stream field whose value becomes Message.Key (and is
// written back under the same name), for example for
// [sluice.WithKeyOrdering]. By default messages have no key.
func WithKeyField(name string) Option {
	return func(cfg *config) {
		if name == "" {
			cfg.invalid("WithKeyField(\"\"): field name is empty")
			return
		}
		cfg.keyField = name
	}
}

// WithFieldsAsJSON treats the whole field map of an entry as one JSON object:
// the message value is {"field":"value",...} with the fields in sorted order,
// and there are no headers. On output the value must be a JSON object; each
// member becomes a field (strings as they are, other values as JSON text),
// followed by the message headers.
func WithFieldsAsJSON() Option {
	return func(cfg *config) { cfg.fieldsJSON = true }
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(cfg *config) {
		if l == nil {
			cfg.invalid("WithLogger(nil)")
			return
		}
		cfg.logger = l
	}
}

// WithConsumer sets the consumer name of a [Source]. It must be stable across
// restarts, so that a restarted process finds its own pending entries, and
// unique among the processes of a group. The default is the host name (the
// pod name on Kubernetes), or [DefaultConsumer] if it cannot be read; set it
// when several consumers of one group run on the same host.
func WithConsumer(name string) Option {
	return func(cfg *config) {
		if name == "" {
			cfg.invalid("WithConsumer(\"\"): consumer name is empty")
			return
		}
		cfg.consumer = name
	}
}

var streamIDPattern = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// WithStartID sets where a [Source] creates its consumer group when the group
// does not exist yet: "$" (the default) reads only entries added from then
// on, "0" reads the whole stream, and an explicit entry ID starts after it.
// An existing group keeps its position.
func WithStartID(id string) Option {
	return func(cfg *config) {
		if id != "$" && !streamIDPattern.MatchString(id) {
			cfg.invalid("WithStartID(%q): want \"$\", \"0\" or an entry ID like 1700000000000-0", id)
			return
		}
		cfg.startID = id
	}
}

// WithMinIdle sets how long an entry must have been idle in another
// consumer's pending list before a [Source] claims it, at startup and
// periodically. Keep it well above the longest time an event can spend in a
// pipeline, or entries still being worked on elsewhere are processed twice.
// The default is [DefaultMinIdle].
func WithMinIdle(d time.Duration) Option {
	return func(cfg *config) {
		if d < time.Millisecond {
			cfg.invalid("WithMinIdle(%s): must be at least 1ms", d)
			return
		}
		cfg.minIdle = d
	}
}

// WithClaimInterval sets how often a running [Source] claims stuck entries
// with XAUTOCLAIM. The default is [DefaultClaimInterval].
func WithClaimInterval(d time.Duration) Option {
	return func(cfg *config) {
		if d < time.Millisecond {
			cfg.invalid("WithClaimInterval(%s): must be at least 1ms", d)
			return
		}
		cfg.claimInterval = d
	}
}

// WithBlock sets the BLOCK time of one XREADGROUP of a [Source]. Fetch
// notices a cancelled context or Close within about this time. The default
// is [DefaultBlock].
func WithBlock(d time.Duration) Option {
	return func(cfg *config) {
		if d < time.Millisecond {
			cfg.invalid("WithBlock(%s): must be at least 1ms (0 would block forever)", d)
			return
		}
		cfg.block = d
	}
}

// WithMaxReadCount caps the COUNT of one read or claim of a [Source]; the
// pipeline's fetch batch ([sluice.WithFetchBatch]) caps it too. The default
// is [DefaultMaxReadCount].
func WithMaxReadCount(n int) Option {
	return func(cfg *config) {
		if n < 1 {
			cfg.invalid("WithMaxReadCount(%d): need at least 1", n)
			return
		}
		cfg.maxReadCount = n
	}
}

// WithMaxLen makes a [Sink] trim its output stream to about n entries
// (XADD MAXLEN ~ n). The default, 0, never trims. The dead-letter stream is
// never trimmed.
func WithMaxLen(n int64) Option {
	return func(cfg *config) {
		if n < 0 {
			cfg.invalid("WithMaxLen(%d): cannot be negative", n)
			return
		}
		cfg.maxLen = n
	}
}

// WithDeadLetterStream sets the stream a [Sink] writes dead letters to. The
// default is [DefaultDeadLetterStream].
func WithDeadLetterStream(stream string) Option {
	return func(cfg *config) {
		if stream == "" {
			cfg.invalid("WithDeadLetterStream(\"\"): stream name is empty")
			return
		}
		cfg.deadLetter = stream
	}
}

// defaultConsumer returns a consumer name that survives a restart.
func defaultConsumer() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return DefaultConsumer
	}
	return h
}
