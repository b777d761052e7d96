package kafka

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
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
)

// SASLMechanism names a SASL mechanism for [WithSASL].
type SASLMechanism string

// The SASL mechanisms [WithSASL] supports.
const (
	SASLPlain       SASLMechanism = sarama.SASLTypePlaintext
	SASLScramSHA256 SASLMechanism = sarama.SASLTypeSCRAMSHA256
	SASLScramSHA512 SASLMechanism = sarama.SASLTypeSCRAMSHA512
)

// Option configures a [Source] or a [Producer]. Options that apply to only
// one of them are rejected by the other's constructor, so that a misplaced
// option is not silently ignored.
type Option func(*config)

type scope uint8

const (
	forBoth scope = iota
	forSource
	forProducer
)

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
	initialOldest     bool
	commitInterval    time.Duration
	revokeTimeout     time.Duration
	bufferSize        int
	balanceStrategies []sarama.BalanceStrategy

	// hookClaimPause, when set (by tests), runs inside pauseClaim between
	// the check that the source is paused and the Pause of the new claim.
	hookClaimPause func(*Source)

	// producer
	deadLetterTopic string
	linger          time.Duration
	compression     sarama.CompressionCodec

	used map[string]scope // option name -> scope, for misuse checks
	errs []error
}

func defaultConfig() *config {
	return &config{
		clientID:         "sluice",
		version:          sarama.V3_6_0_0,
		connectTimeout:   DefaultConnectTimeout,
		sessionTimeout:   DefaultSessionTimeout,
		heartbeat:        DefaultHeartbeatInterval,
		rebalanceTimeout: DefaultRebalanceTimeout,
		initialOldest:    true,
		commitInterval:   DefaultCommitInterval,
		revokeTimeout:    DefaultRevokeTimeout,
		bufferSize:       DefaultBufferSize,
		deadLetterTopic:  DefaultDeadLetterTopic,
		linger:           DefaultLinger,
		compression:      sarama.CompressionLZ4,
		used:             map[string]scope{},
	}
}

func (c *config) invalid(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf("kafka: %w: "+format, append([]any{sluice.ErrInvalidConfig}, args...)...))
}

func (c *config) mark(name string, s scope) { c.used[name] = s }

// apply runs opts and checks that each applies to what is being built.
func apply(what scope, opts []Option) *config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	for name, s := range c.used {
		switch {
		case s == forSource && what == forProducer:
			c.invalid("%s applies to a Source, not a Producer", name)
		case s == forProducer && what == forSource:
			c.invalid("%s applies to a Producer, not a Source", name)
		}
	}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	return c
}

// WithLogger sets the logger. The default is slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(c *config) { c.logger = l }
}

// WithClientID sets the client id the broker sees in its logs and quotas.
// The default is "sluice".
func WithClientID(id string) Option {
	return func(c *config) {
		if id == "" {
			c.invalid("WithClientID: ClientID is empty")
			return
		}
		c.clientID = id
	}
}

// WithVersion sets the Kafka protocol version the client speaks; it must
// not exceed the broker's. The default is 3.6, which every Kafka 3.6 or
// later broker (including 4.x) serves. Static membership needs at least 2.3.
func WithVersion(v sarama.KafkaVersion) Option {
	return func(c *config) {
		if !v.IsAtLeast(sarama.V0_11_0_0) {
			c.invalid("WithVersion(%s): Version must be at least 0.11 (idempotent producer, headers)", v)
			return
		}
		c.version = v
	}
}

// WithConnectTimeout bounds how long a constructor waits to reach the
// cluster before it gives up with an error matching [ErrUnreachable]. It
// also bounds each dial. The default is 30s.
func WithConnectTimeout(d time.Duration) Option {
	return func(c *config) {
		if d <= 0 {
			c.invalid("WithConnectTimeout(%s): ConnectTimeout must be positive", d)
			return
		}
		c.connectTimeout = d
	}
}

// TLSConfig names the files for [WithTLS]. All fields are optional: with
// none set, TLS is used with the system roots.
type TLSConfig struct {
	// CAFile is a PEM bundle of the CAs that may sign the brokers'
	// certificates. Empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS. Set both or neither.
	CertFile, KeyFile string
	// ServerName overrides the name checked against the brokers'
	// certificates.
	ServerName string
	// InsecureSkipVerify disables certificate checks. Only for tests.
	InsecureSkipVerify bool
}

// WithTLS turns on TLS with the given files. Files are read at once; a
// missing or malformed file makes the constructor fail naming the field.
func WithTLS(t TLSConfig) Option {
	return func(c *config) {
		cfg, err := t.build()
		if err != nil {
			c.invalid("WithTLS: %v", err)
			return
		}
		c.tls = cfg
	}
}

// WithTLSConfig turns on TLS with a ready *tls.Config.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *config) {
		if cfg == nil {
			c.invalid("WithTLSConfig: tls.Config is nil")
			return
		}
		c.tls = cfg
	}
}

func (t TLSConfig) build() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} //nolint:gosec // opt-in for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CAFile %s: no PEM certificate found", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("CertFile and KeyFile: set both or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("CertFile/KeyFile: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// WithSASL authenticates with SASL PLAIN or SCRAM-SHA-256/512. Combine it
// with [WithTLS] unless the network is trusted: PLAIN sends the password
// as is. The password never appears in errors or logs.
func WithSASL(mech SASLMechanism, user, password string) Option {
	return func(c *config) {
		switch mech {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			c.invalid("WithSASL: Mechanism %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", string(mech))
			return
		}
		if user == "" {
			c.invalid("WithSASL: User is empty")
			return
		}
		if password == "" {
			c.invalid("WithSASL: Password is empty")
			return
		}
		c.sasl, c.saslMech, c.saslUser, c.saslPass = true, mech, user, password
	}
}

// WithDialer makes every connection to a broker go through dial instead of
// a plain TCP dial: for a SOCKS proxy (golang.org/x/net/proxy's
// ContextDialer fits), an SSH tunnel, or a test that puts a fault-injecting
// proxy between the client and the cluster. Brokers advertise their own
// addresses, so dial sees the bootstrap addresses and every advertised one,
// and may send each wherever it likes. Its context ends after the connect
// timeout ([WithConnectTimeout]), which dial must honour. TLS, when on, runs
// over the connection dial returns.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(c *config) {
		if dial == nil {
			c.invalid("WithDialer: func is nil")
			return
		}
		c.dial = dial
	}
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
// The result is still validated. Several calls run in order.
func WithSaramaConfig(fn func(*sarama.Config)) Option {
	return func(c *config) {
		if fn == nil {
			c.invalid("WithSaramaConfig: func is nil")
			return
		}
		c.raw = append(c.raw, fn)
	}
}

// WithSessionTimeout sets the group session timeout and the heartbeat
// interval. The session timeout must be at least three heartbeats; the
// broker also bounds it (group.min/max.session.timeout.ms). The defaults are
// 30s and 3s.
func WithSessionTimeout(session, heartbeat time.Duration) Option {
	return func(c *config) {
		c.mark("WithSessionTimeout", forSource)
		if heartbeat <= 0 || session < 3*heartbeat {
			c.invalid("WithSessionTimeout(%s, %s): Session.Timeout must be at least 3 × Heartbeat.Interval, both positive", session, heartbeat)
			return
		}
		c.sessionTimeout, c.heartbeat = session, heartbeat
	}
}

// WithRebalanceTimeout sets how long the group coordinator waits for every
// member to rejoin during a rebalance (Java's max.poll.interval.ms). The
// default is 600s.
func WithRebalanceTimeout(d time.Duration) Option {
	return func(c *config) {
		c.mark("WithRebalanceTimeout", forSource)
		if d <= 0 {
			c.invalid("WithRebalanceTimeout(%s): Rebalance.Timeout must be positive", d)
			return
		}
		c.rebalanceTimeout = d
	}
}

// WithInstanceID makes the consumer a static group member (KIP-345): a
// restart with the same id within the session timeout gets its partitions
// back without a rebalance. Each instance of a group needs its own id.
func WithInstanceID(id string) Option {
	return func(c *config) {
		c.mark("WithInstanceID", forSource)
		if id == "" {
			c.invalid("WithInstanceID: InstanceId is empty")
			return
		}
		c.instanceID = id
	}
}

// WithInitialOffset sets where a partition without a committed offset
// starts: sarama.OffsetOldest (the default) or sarama.OffsetNewest.
func WithInitialOffset(offset int64) Option {
	return func(c *config) {
		c.mark("WithInitialOffset", forSource)
		switch offset {
		case sarama.OffsetOldest:
			c.initialOldest = true
		case sarama.OffsetNewest:
			c.initialOldest = false
		default:
			c.invalid("WithInitialOffset(%d): Offsets.Initial must be sarama.OffsetOldest or sarama.OffsetNewest", offset)
		}
	}
}

// WithCommitInterval sets how often finished offsets are committed. Offsets
// are also committed when partitions are revoked, on Flush and on Close.
// The default is 1s.
func WithCommitInterval(d time.Duration) Option {
	return func(c *config) {
		c.mark("WithCommitInterval", forSource)
		if d <= 0 {
			c.invalid("WithCommitInterval(%s): CommitInterval must be positive", d)
			return
		}
		c.commitInterval = d
	}
}

// WithRevokeTimeout bounds how long a revoked partition waits for its
// in-flight events before committing what finished and letting go. Events
// still in flight then are delivered again to the partition's next owner.
// It must be well below the rebalance timeout; the default is 20s.
func WithRevokeTimeout(d time.Duration) Option {
	return func(c *config) {
		c.mark("WithRevokeTimeout", forSource)
		if d <= 0 {
			c.invalid("WithRevokeTimeout(%s): RevokeTimeout must be positive", d)
			return
		}
		c.revokeTimeout = d
	}
}

// WithBufferSize sets how many fetched messages may wait between the
// partition consumers and Fetch. The default is 1024.
func WithBufferSize(n int) Option {
	return func(c *config) {
		c.mark("WithBufferSize", forSource)
		if n < 1 {
			c.invalid("WithBufferSize(%d): BufferSize must be at least 1", n)
			return
		}
		c.bufferSize = n
	}
}

// WithBalanceStrategies sets the partition assignors, in order of
// preference. The default is sarama's range assignor. With eager strategies
// (range, round robin, sticky) every rebalance ends the session and every
// claim lets go; with sarama's cooperative-sticky strategy only the
// partitions that move are revoked, and the others keep flowing. Either way
// a revoked claim lets go promptly, even while it waits on a full buffer or
// a pause. Strategies with no rebalance protocol in common are refused.
func WithBalanceStrategies(s ...sarama.BalanceStrategy) Option {
	return func(c *config) {
		c.mark("WithBalanceStrategies", forSource)
		if len(s) == 0 {
			c.invalid("WithBalanceStrategies: GroupStrategies is empty")
			return
		}
		c.balanceStrategies = s
	}
}

// WithDeadLetterTopic sets the topic dead letters go to. The default is
// "dead_letter".
func WithDeadLetterTopic(topic string) Option {
	return func(c *config) {
		c.mark("WithDeadLetterTopic", forProducer)
		if err := validTopic(topic); err != nil {
			c.invalid("WithDeadLetterTopic: %v", err)
			return
		}
		c.deadLetterTopic = topic
	}
}

// WithLinger sets how long the producer waits to fill a batch
// (Producer.Flush.Frequency, Java's linger.ms). The default is 5ms; 0 sends
// at once.
func WithLinger(d time.Duration) Option {
	return func(c *config) {
		c.mark("WithLinger", forProducer)
		if d < 0 {
			c.invalid("WithLinger(%s): Flush.Frequency cannot be negative", d)
			return
		}
		c.linger = d
	}
}

// WithCompression sets the producer's compression codec. The default is LZ4.
func WithCompression(codec sarama.CompressionCodec) Option {
	return func(c *config) {
		c.mark("WithCompression", forProducer)
		c.compression = codec
	}
}

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
		c.invalid("brokers: the list is empty")
		return
	}
	for _, b := range brokers {
		if b == "" || !strings.Contains(b, ":") {
			c.invalid("brokers: %q is not host:port", b)
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
		return nil, fmt.Errorf("kafka: %w: sarama config: %w", sluice.ErrInvalidConfig, err)
	}
	return sc, nil
}

// ClientConfig returns the sarama configuration that opts describe for a
// plain client — connection, client id, version, TLS, SASL and
// WithSaramaConfig edits — for tools that talk to the same cluster with
// sarama directly (an admin client, a health probe). Options for a Source or
// a Producer only are rejected, as are bad values, with an error matching
// [sluice.ErrInvalidConfig].
func ClientConfig(opts ...Option) (*sarama.Config, error) {
	c := apply(forBoth, opts)
	for name, s := range c.used {
		if s != forBoth {
			c.invalid("%s applies to a Source or a Producer, not a plain client", name)
		}
	}
	if len(c.errs) > 0 {
		return nil, errors.Join(c.errs...)
	}
	return c.saramaConfig(func(*sarama.Config) {})
}
