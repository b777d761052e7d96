package main

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
		opts = append(opts, kafka.WithTLS(kafka.TLSConfig{CAFile: c.KafkaCAFile, CertFile: c.KafkaCertFile, KeyFile: c.KafkaKeyFile}))
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
	srcOpts := opts
	if c.InstanceID != "" {
		srcOpts = append(srcOpts[:len(srcOpts):len(srcOpts)], kafka.WithInstanceID(c.InstanceID))
	}
	// Build the producer first: the source starts consuming as soon as it
	// has joined the group.
	prod, err := kafka.NewProducer(ctx, c.Brokers, c.Output, append(opts, kafka.WithDeadLetterTopic(c.DeadLetter))...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	p.closers = append(p.closers, prod.Close)
	src, err := kafka.NewSource(ctx, c.Brokers, c.Group, []string{c.Input}, srcOpts...)
	if err != nil {
		return nil, fmt.Errorf("kafka source: %w", err)
	}
	p.closers = append(p.closers, src.Close)
	p.src, p.sink = src, prod
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
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
		if c.RedisCAFile != "" {
			pem, err := os.ReadFile(c.RedisCAFile)
			if err != nil {
				return nil, fmt.Errorf("-redis-ca-file: %w", err)
			}
			tlsCfg.RootCAs = x509.NewCertPool()
			if !tlsCfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("-redis-ca-file %s: no PEM certificate in it", c.RedisCAFile)
			}
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
	// Source and sink share the client, so that a dead letter is written
	// and acknowledged in one MULTI/EXEC. The client is closed last.
	opts := []redisstream.Option{redisstream.WithClient(client), redisstream.WithLogger(log)}
	src, err := redisstream.NewSource(c.Input, c.Group, append(opts,
		redisstream.WithConsumer(consumer),
		// A new group reads the stream from its start, as the Kafka source
		// starts at the oldest offset.
		redisstream.WithStartID("0"))...)
	if err != nil {
		return nil, fmt.Errorf("redis source: %w", err)
	}
	p.closers = append(p.closers, src.Close)
	snk, err := redisstream.NewSink(c.Output, append(opts, redisstream.WithDeadLetterStream(c.DeadLetter))...)
	if err != nil {
		return nil, fmt.Errorf("redis sink: %w", err)
	}
	p.src, p.sink = src, snk
	return p, nil
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
