package service

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/redisstream"
)

// connectTimeout bounds how long startup waits for the broker or server.
const connectTimeout = 30 * time.Second

// parts are the adapter's source and sink, connected.
type parts struct {
	src  sluice.Source
	sink interface {
		sluice.Sink
		sluice.DeadLetterWriter
	}
	closers []func() error
}

// close closes what was opened, last first: the source (which commits and
// leaves the group), then the sink (which flushes).
func (p *parts) close(log *slog.Logger) {
	for i := len(p.closers) - 1; i >= 0; i-- {
		if err := p.closers[i](); err != nil {
			log.Warn("close", "err", err)
		}
	}
}

func connect(ctx context.Context, c *config, log *slog.Logger) (*parts, error) {
	if c.Source == "kafka" {
		return connectKafka(ctx, c, log)
	}
	return connectRedis(ctx, c, log)
}

func connectKafka(ctx context.Context, c *config, log *slog.Logger) (_ *parts, err error) {
	opts := []kafka.Option{
		kafka.WithClientID("sluice-enrich"),
		kafka.WithConnectTimeout(connectTimeout),
		kafka.WithLogger(log),
	}
	if c.KafkaTLS {
		tlsCfg, err := tlsConfig("-kafka", c.KafkaCAFile, c.KafkaCertFile, c.KafkaKeyFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kafka.WithTLS(tlsCfg))
	}
	if c.KafkaSASL != "" {
		opts = append(opts, kafka.WithSASL(kafka.SASLMechanism(c.KafkaSASL), c.KafkaSASLUser, c.kafkaSASLPass))
	}
	if err := probeKafka(ctx, c.Brokers, opts, log); err != nil {
		return nil, err
	}
	p := &parts{}
	defer func() {
		if err != nil {
			p.close(log)
		}
	}()
	// The shared options go to both constructors; each adds its own.
	sinkOpts := []kafka.SinkOption{kafka.WithDeadLetterTopic(c.DeadLetter)}
	srcOpts := []kafka.SourceOption{}
	for _, o := range opts {
		sinkOpts, srcOpts = append(sinkOpts, o), append(srcOpts, o)
	}
	if c.InstanceID != "" {
		srcOpts = append(srcOpts, kafka.WithInstanceID(c.InstanceID))
	}
	if c.Tuning.StartAt == "newest" {
		srcOpts = append(srcOpts, kafka.WithStartAt(kafka.Newest))
	}
	if c.ExactlyOnce {
		return connectKafkaTxn(ctx, c, p, srcOpts, sinkOpts)
	}
	// Build the sink first: the source starts consuming as soon as it
	// has joined the group.
	sink, err := kafka.NewSink(ctx, c.Brokers, c.Output, sinkOpts...)
	if err != nil {
		return nil, fmt.Errorf("kafka sink: %w", err)
	}
	p.closers = append(p.closers, sink.Close)
	src, err := kafka.NewSource(ctx, c.Brokers, c.Group, []string{c.Input}, srcOpts...)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	p.closers = append(p.closers, src.Close)
	p.src, p.sink = src, sink
	return p, nil
}

// connectKafkaTxn builds the exactly-once pair: a read_committed source
// and a transactional sink that commits its offsets. The transactional id
// is stable across restarts of one instance (its -instance-id, or the host
// name), so that a restarted instance ends the transaction its predecessor
// left open.
func connectKafkaTxn(ctx context.Context, c *config, p *parts, srcOpts []kafka.SourceOption, sinkOpts []kafka.SinkOption) (*parts, error) {
	id := c.InstanceID
	if id == "" {
		id, _ = os.Hostname()
	}
	src, err := kafka.NewSource(ctx, c.Brokers, c.Group, []string{c.Input}, append(srcOpts, kafka.WithReadCommitted())...)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	sink, err := kafka.NewTxnSink(ctx, c.Brokers, c.Output, src, "sluice-"+c.Group+"-"+id, sinkOpts...)
	if err != nil {
		_ = src.Close()
		return nil, fmt.Errorf("kafka transactional sink: %w", err)
	}
	// Closed last first: the source commits its partitions in a last
	// transaction as it leaves, then the sink closes.
	p.closers = append(p.closers, sink.Close, src.Close)
	p.src, p.sink = src, sink
	return p, nil
}

// probeKafka logs what the cluster says about itself: its id, controller and
// brokers from the metadata, and the API versions and finalized features
// (metadata.version names the Kafka release line) of one broker.
func probeKafka(ctx context.Context, brokers []string, opts []kafka.Option, log *slog.Logger) error {
	cfg, err := kafka.ClientConfig(opts...) // the same connection, TLS and SASL as the pipeline
	if err != nil {
		return err
	}
	cfg.Metadata.Retry.Max = 5
	type result struct {
		attrs []any
		err   error
	}
	done := make(chan result, 1)
	go func() {
		client, err := sarama.NewClient(brokers, cfg)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer client.Close()
		b, err := client.Controller()
		if err != nil {
			b = client.LeastLoadedBroker()
		}
		if b == nil {
			done <- result{err: fmt.Errorf("no broker reachable")}
			return
		}
		if ok, _ := b.Connected(); !ok {
			_ = b.Open(cfg)
		}
		attrs := []any{"broker", b.Addr(), "broker_id", b.ID()}
		if md, err := b.GetMetadata(sarama.NewMetadataRequest(cfg.Version, nil)); err == nil {
			if md.ClusterID != nil {
				attrs = append(attrs, "cluster_id", *md.ClusterID)
			}
			attrs = append(attrs, "controller_id", md.ControllerID, "brokers", len(md.Brokers))
		}
		av, err := b.ApiVersions(&sarama.ApiVersionsRequest{Version: 3, ClientSoftwareName: "sluice-enrich", ClientSoftwareVersion: "1.0"})
		if err != nil {
			done <- result{err: fmt.Errorf("ApiVersions: %w", err)}
			return
		}
		maxVer := map[int16]int16{}
		for _, k := range av.ApiKeys {
			maxVer[k.ApiKey] = k.MaxVersion
		}
		features := map[string]int16{}
		for _, f := range av.FinalizedFeatures {
			features[f.Name] = f.MaxVersionLevel
		}
		attrs = append(attrs,
			"api_keys", len(av.ApiKeys),
			"produce_max_version", maxVer[0], "fetch_max_version", maxVer[1],
			"join_group_max_version", maxVer[11],
			"finalized_features", features)
		done <- result{attrs: attrs}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return fmt.Errorf("kafka at %v: %w", brokers, r.err)
		}
		log.Info("connected to Kafka", r.attrs...)
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func connectRedis(ctx context.Context, c *config, log *slog.Logger) (_ *parts, err error) {
	var tlsCfg *tls.Config
	if c.RedisTLS {
		if tlsCfg, err = tlsConfig("-redis", c.RedisCAFile, "", ""); err != nil {
			return nil, err
		}
	}
	client := redis.NewClient(&redis.Options{
		Addr:       c.RedisAddr,
		Username:   c.RedisUser,
		Password:   c.redisPassword,
		TLSConfig:  tlsCfg,
		ClientName: "sluice-enrich",
		// XREADGROUP blocks for up to a second; leave room for it.
		ReadTimeout: 5 * time.Second,
	})
	p := &parts{closers: []func() error{client.Close}}
	defer func() {
		if err != nil {
			p.close(log)
		}
	}()
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	info, err := client.Info(pctx, "server").Result()
	if err != nil {
		return nil, fmt.Errorf("redis at %s: %w", c.RedisAddr, err)
	}
	fields := parseInfo(info)
	log.Info("connected to Redis", "addr", c.RedisAddr, "redis_version", fields["redis_version"],
		"redis_mode", fields["redis_mode"], "os", fields["os"], "run_id", fields["run_id"])

	consumer := c.InstanceID
	if consumer == "" {
		consumer, _ = os.Hostname()
	}
	// Source and sink share the client, so that a dead letter's entry is
	// acknowledged in the round trip right after its XADD was confirmed
	// (not in a MULTI/EXEC, which would run the XACK even if the XADD
	// failed). The client is closed last.
	// A new group reads the stream from its oldest entry, as a new Kafka
	// group starts at the oldest offset: that is both adapters' default.
	srcOpts := []redisstream.SourceOption{redisstream.WithClient(client), redisstream.WithLogger(log), redisstream.WithConsumer(consumer)}
	if c.Tuning.StartAt == "newest" {
		srcOpts = append(srcOpts, redisstream.WithStartAt(redisstream.Newest))
	}
	src, err := redisstream.NewSource(ctx, c.Input, c.Group, srcOpts...)
	if err != nil {
		return nil, fmt.Errorf("redis source: %w", err)
	}
	p.closers = append(p.closers, src.Close)
	sinkOpts := []redisstream.SinkOption{redisstream.WithClient(client), redisstream.WithLogger(log), redisstream.WithDeadLetterStream(c.DeadLetter)}
	if c.RedisAtomicAck {
		sinkOpts = append(sinkOpts, redisstream.WithAtomicAck())
	}
	if c.RedisWaitReplicas > 0 {
		sinkOpts = append(sinkOpts, redisstream.WithWaitReplicas(c.RedisWaitReplicas, c.RedisWaitTimeout))
	}
	snk, err := redisstream.NewSink(ctx, c.Output, sinkOpts...)
	if err != nil {
		return nil, fmt.Errorf("redis sink: %w", err)
	}
	p.src, p.sink = src, snk
	return p, nil
}

// tlsConfig builds the TLS configuration of the -kafka-* or -redis-* flags:
// TLS 1.2 or later, the CAs of caFile (the system roots if empty), and the
// client certificate of certFile and keyFile for mutual TLS (both or
// neither).
func tlsConfig(flag, caFile, certFile, keyFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s-ca-file: %w", flag, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s-ca-file %s: no PEM certificate in it", flag, caFile)
		}
	}
	if (certFile == "") != (keyFile == "") {
		return nil, fmt.Errorf("%s-cert-file and %s-key-file: set both or neither", flag, flag)
	}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("%s-cert-file/%s-key-file: %w", flag, flag, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// parseInfo reads the "key:value" lines of an INFO reply.
func parseInfo(s string) map[string]string {
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":"); ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m
}
