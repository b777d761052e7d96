package kafka

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/optcheck"
)

// Default settings. Each one can be changed with an option.
const (
	DefaultSessionTimeout    = 30 * time.Second
	DefaultHeartbeatInterval = 3 * time.Second
	DefaultRebalanceTimeout  = 600 * time.Second
	DefaultCommitInterval    = time.Second
	DefaultRevokeTimeout     = 20 * time.Second
	DefaultConnectTimeout    = 30 * time.Second
	DefaultBufferSize        = 1024
	DefaultDeadLetterTopic   = "dead_letter"
	DefaultLinger            = 5 * time.Millisecond
	DefaultTxnInterval       = 100 * time.Millisecond
)

// SASLMechanism names a SASL mechanism for [WithSASL].
type SASLMechanism string

// The SASL mechanisms [WithSASL] supports.
const (
	SASLPlain       SASLMechanism = sarama.SASLTypePlaintext
	SASLScramSHA256 SASLMechanism = sarama.SASLTypeSCRAMSHA256
	SASLScramSHA512 SASLMechanism = sarama.SASLTypeSCRAMSHA512
)

// Options are typed by what they configure, so that the compiler refuses
// an option given to a constructor it does not apply to:
//
//   - a [SourceOption] configures [NewSource] only;
//   - a [SinkOption] configures [NewSink] only;
//   - an [Option] configures both, and [ClientConfig]: the connection
//     (TLS, SASL, dialer, timeouts), the client id, the protocol version,
//     the logger and raw sarama edits.
//
// Every option checks its argument. A constructor applies all its options
// and reports every bad one at once, joined with errors.Join, each error
// matching [sluice.ErrInvalidConfig] and reading
// "kafka: WithX(value): what is wrong; what to do".
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

// StartAt says where a consumer group begins reading a partition for which
// it has no committed offset yet. See [WithStartAt].
type StartAt int

const (
	// Oldest starts at the oldest event the broker still retains, so that a
	// new group processes the existing backlog. It is the default.
	Oldest StartAt = iota
	// Newest starts after the newest event, so that a new group processes
	// only events produced after it joined.
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

type config struct {
	logger         *slog.Logger
	clientID       string
	version        sarama.KafkaVersion
	connectTimeout time.Duration
	tls            *tls.Config
	saslMech       SASLMechanism
	saslUser       string
	saslPass       string
	sasl           bool
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	raw            []func(*sarama.Config)

	// source
	sessionTimeout    time.Duration
	heartbeat         time.Duration
	rebalanceTimeout  time.Duration
	instanceID        string
	startAt           StartAt
	commitInterval    time.Duration
	revokeTimeout     time.Duration
	bufferSize        int
	balanceStrategies []sarama.BalanceStrategy

	// hookClaimPause, when set (by tests), runs inside pauseClaim between
	// the check that the source is paused and the Pause of the new claim.
	hookClaimPause func(*Source)

	// source, exactly-once
	readCommitted bool

	// sink
	deadLetterTopic string
	txnInterval     time.Duration // TxnSink only; 0 when not set
	linger          time.Duration
	compression     sarama.CompressionCodec

	errs optcheck.Errors
}

func defaultConfig() *config {
	return &config{
		logger:           slog.Default(),
		clientID:         "sluice",
		version:          sarama.V3_6_0_0,
		connectTimeout:   DefaultConnectTimeout,
		sessionTimeout:   DefaultSessionTimeout,
		heartbeat:        DefaultHeartbeatInterval,
		rebalanceTimeout: DefaultRebalanceTimeout,
		startAt:          Oldest,
		commitInterval:   DefaultCommitInterval,
		revokeTimeout:    DefaultRevokeTimeout,
		bufferSize:       DefaultBufferSize,
		deadLetterTopic:  DefaultDeadLetterTopic,
		linger:           DefaultLinger,
		compression:      sarama.CompressionLZ4,
		errs:             optcheck.New("kafka", sluice.ErrInvalidConfig),
	}
}

// reject records a bad option; see [optcheck.Errors.Reject].
func (c *config) reject(option, problem, fix string) { c.errs.Reject(option, problem, fix) }

func sourceConfig(opts []SourceOption) *config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySource(c)
		}
	}
	return c
}

func sinkConfig(opts []SinkOption) *config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySink(c)
		}
	}
	return c
}

// WithLogger sets the logger of the component. It must not be nil. The
// default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return shared(func(c *config) {
		if l == nil {
			c.reject("WithLogger(nil)", "the logger is nil", "pass a *slog.Logger, or leave the option out for slog.Default()")
			return
		}
		c.logger = l
	})
}

// WithClientID sets the client id the broker sees in its logs, metrics and
// quotas. It must not be empty. The default is "sluice".
func WithClientID(id string) Option {
	return shared(func(c *config) {
		if id == "" {
			c.reject(optcheck.Call("WithClientID", id), "the client id is empty", `leave the option out for "sluice"`)
			return
		}
		c.clientID = id
	})
}

// WithVersion sets the Kafka protocol version the client speaks
// (sarama's Config.Version); it must not exceed the broker's, and must be
// at least 0.11 (the idempotent producer and record headers). The default
// is 3.6, which every Kafka 3.6 or later broker (including 4.x) serves.
// Static membership ([WithInstanceID]) needs at least 2.3.
func WithVersion(v sarama.KafkaVersion) Option {
	return shared(func(c *config) {
		if !v.IsAtLeast(sarama.V0_11_0_0) {
			c.reject(optcheck.Call("WithVersion", v), "the version is below 0.11",
				"the idempotent producer and headers need 0.11 or later; the default is 3.6")
			return
		}
		c.version = v
	})
}

// WithConnectTimeout bounds how long a constructor waits to reach the
// cluster before it gives up with an error matching [ErrUnreachable]. It
// also bounds each dial (sarama's Net.DialTimeout), including those of
// later reconnections. It must be positive. The default is
// [DefaultConnectTimeout], 30s.
func WithConnectTimeout(d time.Duration) Option {
	return shared(func(c *config) {
		if d <= 0 {
			c.reject(optcheck.Call("WithConnectTimeout", d), "the timeout is not positive", "pass a positive duration; the default is 30s")
			return
		}
		c.connectTimeout = d
	})
}

// WithTLS turns on TLS for every broker connection, with cfg as is (set
// RootCAs for a private CA, Certificates for mutual TLS, ServerName when
// the brokers' certificates name another host). It must not be nil. By
// default connections are plain TCP.
func WithTLS(cfg *tls.Config) Option {
	return shared(func(c *config) {
		if cfg == nil {
			c.reject("WithTLS(nil)", "the *tls.Config is nil", "pass &tls.Config{} for TLS with the system roots")
			return
		}
		c.tls = cfg
	})
}

// WithSASL authenticates with SASL PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
// The user and the password must not be empty. Combine it with [WithTLS]
// unless the network is trusted: PLAIN sends the password as is. The
// password never appears in errors or logs. By default there is no SASL.
func WithSASL(mech SASLMechanism, user, password string) Option {
	return shared(func(c *config) {
		call := optcheck.Call("WithSASL", string(mech), user, "…")
		switch mech {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			c.reject(call, "the mechanism is unknown", "use SASLPlain, SASLScramSHA256 or SASLScramSHA512")
			return
		}
		if user == "" {
			c.reject(call, "the user is empty", "pass the SASL user name")
			return
		}
		if password == "" {
			c.reject(call, "the password is empty", "pass the SASL password")
			return
		}
		c.sasl, c.saslMech, c.saslUser, c.saslPass = true, mech, user, password
	})
}

// WithDialer makes every connection to a broker go through dial instead of
// a plain TCP dial: for a SOCKS proxy (golang.org/x/net/proxy's
// ContextDialer fits), an SSH tunnel, or a test that puts a fault-injecting
// proxy between the client and the cluster. Brokers advertise their own
// addresses, so dial sees the bootstrap addresses and every advertised one,
// and may send each wherever it likes. Its context ends after the connect
// timeout ([WithConnectTimeout]), which dial must honour. TLS, when on, runs
// over the connection dial returns. dial must not be nil.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return shared(func(c *config) {
		if dial == nil {
			c.reject("WithDialer(nil)", "the dial func is nil", "leave the option out for plain TCP")
			return
		}
		c.dial = dial
	})
}

// ctxDialer adapts a context-taking dial func to sarama's Net.Proxy.Dialer,
// whose Dial takes no context, bounding each dial by the connect timeout.
type ctxDialer struct {
	dial    func(ctx context.Context, network, addr string) (net.Conn, error)
	timeout time.Duration
}

func (d ctxDialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	return d.DialContext(ctx, network, addr)
}

func (d ctxDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := d.dial(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("kafka: dial %s: %w", addr, err)
	}
	return conn, nil
}

// WithSaramaConfig registers fn to edit the *sarama.Config after every other
// option has been applied, for settings this package has no option for.
// The result is still validated by sarama, and a constructor refuses it
// with an error matching [sluice.ErrInvalidConfig]. Several calls run in
// order. fn must not be nil.
func WithSaramaConfig(fn func(*sarama.Config)) Option {
	return shared(func(c *config) {
		if fn == nil {
			c.reject("WithSaramaConfig(nil)", "the func is nil", "pass a func that edits the *sarama.Config")
			return
		}
		c.raw = append(c.raw, fn)
	})
}

// WithSessionTimeout sets the group session timeout (how long the
// coordinator waits for a heartbeat before it evicts the member) and the
// heartbeat interval. The heartbeat must be positive and the session timeout
// at least three heartbeats; the broker also bounds the session timeout
// (group.min/max.session.timeout.ms). The defaults are
// [DefaultSessionTimeout], 30s, and [DefaultHeartbeatInterval], 3s.
func WithSessionTimeout(session, heartbeat time.Duration) SourceOption {
	return sourceOnly(func(c *config) {
		if heartbeat <= 0 || session < 3*heartbeat {
			c.reject(optcheck.Call("WithSessionTimeout", session, heartbeat),
				"the session timeout is below 3 heartbeats, or the heartbeat is not positive",
				"pass a positive heartbeat and a session timeout of at least 3 heartbeats; the defaults are 30s and 3s")
			return
		}
		c.sessionTimeout, c.heartbeat = session, heartbeat
	})
}

// WithRebalanceTimeout sets how long the group coordinator waits for every
// member to rejoin during a rebalance (sarama's Rebalance.Timeout, Java's
// max.poll.interval.ms). It must be positive and above the revoke timeout
// ([WithRevokeTimeout]). The default is [DefaultRebalanceTimeout], 600s.
func WithRebalanceTimeout(d time.Duration) SourceOption {
	return sourceOnly(func(c *config) {
		if d <= 0 {
			c.reject(optcheck.Call("WithRebalanceTimeout", d), "the timeout is not positive", "pass a positive duration; the default is 600s")
			return
		}
		c.rebalanceTimeout = d
	})
}

// WithInstanceID makes the consumer a static group member (KIP-345): a
// restart with the same id within the session timeout gets its partitions
// back without a rebalance. Each instance of a group needs its own id, and
// it must not be empty. It needs [WithVersion] 2.3 or later (the default
// is). By default members are dynamic.
func WithInstanceID(id string) SourceOption {
	return sourceOnly(func(c *config) {
		if id == "" {
			c.reject(optcheck.Call("WithInstanceID", id), "the instance id is empty", "pass a stable id per instance, or leave the option out for a dynamic member")
			return
		}
		c.instanceID = id
	})
}

// WithReadCommitted makes the source read as a downstream consumer with
// isolation.level=read_committed does: records of aborted transactions are
// skipped, reading stops at the last stable offset, and the committed
// offsets it starts from are stable (a transaction that commits offsets for
// the group is finished first). A source that feeds a [TxnSink] needs it;
// elsewhere it is harmless, and off by default.
func WithReadCommitted() SourceOption {
	return sourceOnly(func(c *config) { c.readCommitted = true })
}

// WithTxnInterval sets how often a [TxnSink] commits a transaction: the
// outputs, dead letters and offsets of every event that finished since the
// last one, up to the first unfinished offset of each partition. A shorter
// interval lowers the latency a read_committed consumer sees and costs more
// transactions per second. The transaction timeout the sink asks the
// broker for is 10 times the interval, at least 10s. The default is
// [DefaultTxnInterval]; it must be between 1ms and 1m. It is an option of
// [NewTxnSink] only.
func WithTxnInterval(d time.Duration) SinkOption {
	return sinkOnly(func(c *config) {
		if d < time.Millisecond || d > time.Minute {
			c.reject(optcheck.Call("WithTxnInterval", d), "must be between 1ms and 1m", "100ms suits most pipelines")
			return
		}
		c.txnInterval = d
	})
}

// WithStartAt sets where a consumer group begins reading when it has no
// committed position yet: [Oldest], the oldest event the server still
// retains (the default), or [Newest], only events added after the group
// first read. A group that has a committed position keeps it. In Kafka the
// position is per partition: a partition without a committed offset,
// including one added to the topic later, starts here
// (Consumer.Offsets.Initial).
func WithStartAt(at StartAt) SourceOption {
	return sourceOnly(func(c *config) {
		if at != Oldest && at != Newest {
			c.reject(optcheck.Call("WithStartAt", at), "the position is unknown", "pass kafka.Oldest or kafka.Newest")
			return
		}
		c.startAt = at
	})
}

// WithCommitInterval sets how often finished offsets are committed. Offsets
// are also committed when partitions are revoked, on Flush and on Close. It
// must be positive. The default is [DefaultCommitInterval], 1s.
func WithCommitInterval(d time.Duration) SourceOption {
	return sourceOnly(func(c *config) {
		if d <= 0 {
			c.reject(optcheck.Call("WithCommitInterval", d), "the interval is not positive", "pass a positive duration; the default is 1s")
			return
		}
		c.commitInterval = d
	})
}

// WithRevokeTimeout bounds how long a revoked partition waits for its
// in-flight events before committing what finished and letting go. Events
// still in flight then are delivered again to the partition's next owner.
// It must be positive and well below the rebalance timeout
// ([WithRebalanceTimeout]). The default is [DefaultRevokeTimeout], 20s.
func WithRevokeTimeout(d time.Duration) SourceOption {
	return sourceOnly(func(c *config) {
		if d <= 0 {
			c.reject(optcheck.Call("WithRevokeTimeout", d), "the timeout is not positive", "pass a positive duration; the default is 20s")
			return
		}
		c.revokeTimeout = d
	})
}

// WithBufferSize sets how many fetched messages may wait between the
// partition consumers and Fetch. It must be at least 1. The default is
// [DefaultBufferSize], 1024.
func WithBufferSize(n int) SourceOption {
	return sourceOnly(func(c *config) {
		if n < 1 {
			c.reject(optcheck.Call("WithBufferSize", n), "the size is below 1", "pass at least 1; the default is 1024")
			return
		}
		c.bufferSize = n
	})
}

// WithBalanceStrategies sets the partition assignors, in order of
// preference (sarama's Rebalance.GroupStrategies); the list must not be
// empty. The default is sarama's range assignor. With eager strategies
// (range, round robin, sticky) every rebalance ends the session and every
// claim lets go; with sarama's cooperative-sticky strategy only the
// partitions that move are revoked, and the others keep flowing. Either way
// a revoked claim lets go promptly, even while it waits on a full buffer or
// a pause. Strategies with no rebalance protocol in common are refused.
func WithBalanceStrategies(s ...sarama.BalanceStrategy) SourceOption {
	return sourceOnly(func(c *config) {
		if len(s) == 0 {
			c.reject("WithBalanceStrategies()", "the list is empty", "pass at least one strategy, or leave the option out for the range assignor")
			return
		}
		c.balanceStrategies = s
	})
}

// WithDeadLetterTopic sets the topic a [Sink] writes dead letters to. It
// must be a valid topic name. The default is [DefaultDeadLetterTopic],
// "dead_letter".
func WithDeadLetterTopic(topic string) SinkOption {
	return sinkOnly(func(c *config) {
		if err := validTopic(topic); err != nil {
			c.reject(optcheck.Call("WithDeadLetterTopic", topic), err.Error(), topicRule)
			return
		}
		c.deadLetterTopic = topic
	})
}

// WithLinger sets how long a [Sink] waits to fill a batch
// (Producer.Flush.Frequency, Java's linger.ms); 0 sends at once. It must
// not be negative. The default is [DefaultLinger], 5ms.
func WithLinger(d time.Duration) SinkOption {
	return sinkOnly(func(c *config) {
		if d < 0 {
			c.reject(optcheck.Call("WithLinger", d), "the linger is negative", "pass 0 to send at once; the default is 5ms")
			return
		}
		c.linger = d
	})
}

// WithCompression sets a [Sink]'s compression codec: none, gzip, snappy,
// LZ4 or zstd. The default is LZ4.
func WithCompression(codec sarama.CompressionCodec) SinkOption {
	return sinkOnly(func(c *config) {
		switch codec {
		case sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy, sarama.CompressionLZ4, sarama.CompressionZSTD:
		default:
			c.reject(optcheck.Call("WithCompression", int8(codec)), "the codec is unknown", "pass one of sarama's Compression constants; the default is LZ4")
			return
		}
		c.compression = codec
	})
}

// topicRule is the fix of a rejected topic name.
const topicRule = "use 1 to 249 characters of [a-zA-Z0-9._-]"

func validTopic(t string) error {
	if t == "" {
		return errors.New("topic is empty")
	}
	if len(t) > 249 {
		return fmt.Errorf("topic %q is longer than 249 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic %q has a character outside [a-zA-Z0-9._-]", t)
		}
	}
	return nil
}

func validBrokers(c *config, brokers []string) {
	if len(brokers) == 0 {
		c.reject("brokers", "the list is empty", "pass at least one host:port")
		return
	}
	for _, b := range brokers {
		if b == "" || !strings.Contains(b, ":") {
			c.reject("brokers", fmt.Sprintf("%q is not host:port", b), "pass addresses such as 127.0.0.1:9092")
		}
	}
}

// saramaConfig builds the sarama configuration shared by both sides, applies
// the side-specific part and the raw funcs, and validates the result.
func (c *config) saramaConfig(side func(*sarama.Config)) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.ClientID = c.clientID
	sc.Version = c.version
	sc.Net.DialTimeout = c.connectTimeout
	sc.Metadata.Retry.Max = 2
	sc.Metadata.Retry.Backoff = 250 * time.Millisecond
	if c.dial != nil {
		sc.Net.Proxy.Enable = true
		sc.Net.Proxy.Dialer = ctxDialer{dial: c.dial, timeout: c.connectTimeout}
	}
	if c.tls != nil {
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = c.tls
	}
	if c.sasl {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Handshake = true
		sc.Net.SASL.Mechanism = sarama.SASLMechanism(c.saslMech)
		sc.Net.SASL.User = c.saslUser
		sc.Net.SASL.Password = c.saslPass
		switch c.saslMech {
		case SASLScramSHA256:
			sc.Net.SASL.SCRAMClientGeneratorFunc = scramGenerator(sha256.New)
		case SASLScramSHA512:
			sc.Net.SASL.SCRAMClientGeneratorFunc = scramGenerator(sha512.New)
		}
	}
	side(sc)
	for _, fn := range c.raw {
		fn(sc)
	}
	if err := sc.Validate(); err != nil {
		errs := optcheck.New("kafka", sluice.ErrInvalidConfig)
		errs.Reject("WithSaramaConfig", "sarama refuses the resulting config: "+err.Error(), "fix the edit")
		return nil, errs.Err()
	}
	return sc, nil
}

// ClientConfig returns the sarama configuration that opts describe for a
// plain client — connection, client id, version, TLS, SASL and
// WithSaramaConfig edits — for tools that talk to the same cluster with
// sarama directly (an admin client, a health probe). Only options that
// apply to both a [Source] and a [Sink] are accepted; bad values are
// reported as by the constructors, with an error matching
// [sluice.ErrInvalidConfig].
func ClientConfig(opts ...Option) (*sarama.Config, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySource(c)
		}
	}
	if err := c.errs.Err(); err != nil {
		return nil, err
	}
	return c.saramaConfig(func(*sarama.Config) {})
}
