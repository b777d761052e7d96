package redisstream_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/redisstream"
)

// WithWaitReplicas: with no replica to confirm them, XADDs are reported
// as failed (so the pipeline writes them again and does not acknowledge
// their entries); with a replica attached (a redis-server started here as
// a replica of the test server, when the binary is installed), they are
// written.
func TestWaitReplicas(t *testing.T) {
	c := newClient(t)
	out := uniq(t, c, "out")
	snk, err := redisstream.NewSink(ctxT(t, 10*time.Second), out, redisstream.WithAddr(redisAddr(t)), redisstream.WithWaitReplicas(1, 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer snk.Close()
	msg := &sluice.Message{Value: []byte("v"), Origin: sluice.Origin{Topic: "in", ID: "1-1", Offset: -1}}
	info, _ := c.Info(ctxT(t, 5*time.Second), "replication").Result()
	if !strings.Contains(info, "connected_slaves:0") {
		t.Skip("the test server already has replicas")
	}
	err = snk.Write(ctxT(t, 5*time.Second), []*sluice.Message{msg})
	if err == nil || !strings.Contains(err.Error(), "only 0 of the 1 replicas") || errors.Is(err, sluice.ErrPermanent) {
		t.Fatalf("Write without a replica: %v; want a transient error naming the replicas", err)
	}
	err = snk.WriteDeadLetters(ctxT(t, 5*time.Second), []sluice.DeadLetter{{Msg: msg, Reason: "r"}})
	if err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("WriteDeadLetters without a replica: %v; want an error naming the replicas", err)
	}

	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Log("no redis-server binary: the path with a replica is not checked")
		return
	}
	host, port, _ := net.SplitHostPort(redisAddr(t))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rport := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	replica := exec.Command(bin, "--port", fmt.Sprint(rport), "--bind", "127.0.0.1", "--replicaof", host, port,
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := replica.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = replica.Process.Kill(); _ = replica.Wait() })
	rc := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", rport)})
	defer rc.Close()
	testutil.WaitFor(t, 30*time.Second, "the replica in sync", func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s, err := rc.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(s, "master_link_status:up"), fmt.Sprint(err)
	})
	if err := snk.Write(ctxT(t, 5*time.Second), []*sluice.Message{msg}); err != nil {
		t.Fatalf("Write with a replica: %v", err)
	}
	if err := snk.WriteDeadLetters(ctxT(t, 5*time.Second), []sluice.DeadLetter{{Msg: msg, Reason: "r"}}); err != nil {
		t.Fatalf("WriteDeadLetters with a replica: %v", err)
	}
}

func TestWaitReplicasOptions(t *testing.T) {
	for _, o := range []redisstream.SinkOption{redisstream.WithWaitReplicas(0, time.Second), redisstream.WithWaitReplicas(1, 0), redisstream.WithWaitReplicas(1, 2*time.Minute)} {
		_, err := redisstream.NewSink(context.Background(), "s", o, redisstream.WithAddr("127.0.0.1:1"))
		if !errors.Is(err, sluice.ErrInvalidConfig) || !strings.Contains(err.Error(), "WithWaitReplicas") {
			t.Errorf("err = %v, want ErrInvalidConfig naming WithWaitReplicas", err)
		}
	}
}
