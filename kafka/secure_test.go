package kafka

// Tests against a broker that demands SASL_SSL with SCRAM: scripts/kafka.sh
// start --secure, whose env file (scripts/kafka.sh secure-env) sets the
// KAFKA_SECURE_* variables read here.

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/internal/testutil"
	"github.com/sluicehq/sluice/sluicetest/conformance"
)

const secureHelp = "no secured Kafka broker for this integration test: run `scripts/kafka.sh start --secure`, then `set -a; . \"$(scripts/kafka.sh secure-env)\"; set +a` (scripts/test.sh does both)"

// secureBroker is what scripts/kafka.sh start --secure reports.
type secureBroker struct {
	brokers     []string // SASL_SSL with a certificate for 127.0.0.1
	wrongHost   []string // SASL_SSL with a certificate for another host name
	plain       []string // PLAINTEXT listener of the same broker (a super user)
	caFile      string
	otherCAFile string
	user, pass  string // SCRAM-SHA-512, super user
	user256     string // SCRAM-SHA-256, super user
	pass256     string
	limitedUser string // SCRAM-SHA-512, only the ACLs a test grants
	limitedPass string
}

// secured returns the secured broker, or skips the test (fails it when
// CI=true).
func secured(t testing.TB) secureBroker {
	t.Helper()
	get := func(k string) string { return os.Getenv("KAFKA_SECURE_" + k) }
	b := secureBroker{
		caFile: get("CA_FILE"), otherCAFile: get("OTHER_CA_FILE"),
		user: get("USER"), pass: get("PASSWORD"),
		user256: get("USER_256"), pass256: get("PASSWORD_256"),
		limitedUser: get("LIMITED_USER"), limitedPass: get("LIMITED_PASSWORD"),
	}
	if s := get("BROKERS"); s != "" {
		b.brokers = strings.Split(s, ",")
	}
	if s := get("WRONG_HOST_BROKERS"); s != "" {
		b.wrongHost = strings.Split(s, ",")
	}
	if s := get("PLAIN_BROKERS"); s != "" {
		b.plain = strings.Split(s, ",")
	}
	if b.brokers == nil || b.wrongHost == nil || b.plain == nil || b.caFile == "" || b.otherCAFile == "" ||
		b.user == "" || b.pass == "" || b.user256 == "" || b.pass256 == "" || b.limitedUser == "" || b.limitedPass == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal(secureHelp)
		}
		t.Skip(secureHelp)
	}
	return b
}

// tlsTrusting returns a TLS configuration that trusts only the CAs of file.
func tlsTrusting(t testing.TB, file string) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// TestConformanceSecure runs the conformance suite with every source and
// sink connected over TLS with SCRAM-SHA-512.
func TestConformanceSecure(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	b := secured(t)
	opts := []Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA512, b.user, b.pass)}
	conformance.Run(t, conformanceHarness("kafka-sasl-ssl", b.plain, b.brokers, opts))
}

// TestSecureSCRAM256 writes and reads back events with SCRAM-SHA-256.
func TestSecureSCRAM256(t *testing.T) {
	b := secured(t)
	opts := []Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA256, b.user256, b.pass256), WithLogger(testutil.Quiet())}
	in := createTopic(t, b.plain, "scram256", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sink, err := NewSink(ctx, b.brokers, in, append([]SinkOption{}, toSink(opts)...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	msgs := []*sluice.Message{{Key: []byte("k"), Value: []byte(`{"n":1}`)}, {Value: []byte(`{"n":2}`)}}
	if err := sink.Write(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	src, err := NewSource(ctx, b.brokers, "scram256-"+in, []string{in}, toSource(opts)...)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	got := fetchN(t, src, 2, 60*time.Second)
	if len(got) != 2 || string(got[0].Value) != `{"n":1}` || string(got[1].Value) != `{"n":2}` {
		t.Fatalf("read back %d events: %v", len(got), got)
	}
}

func toSink(opts []Option) []SinkOption {
	out := make([]SinkOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}

func toSource(opts []Option) []SourceOption {
	out := make([]SourceOption, len(opts))
	for i, o := range opts {
		out[i] = o
	}
	return out
}

// TestSecureConnectFailures: a wrong password, a CA that did not sign the
// broker's certificate, and a certificate for another host name each end
// the constructors promptly with an error that names the cause, not with a
// timeout, and no error carries the password.
func TestSecureConnectFailures(t *testing.T) {
	b := secured(t)
	const wrong = "not-the-password-5f3a"
	cases := []struct {
		name    string
		brokers []string
		opts    []Option
		want    string
		check   func(error) bool
	}{
		{"WrongPassword", b.brokers,
			[]Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA512, b.user, wrong)},
			"authentication failed", func(err error) bool { return errors.Is(err, ErrAuthentication) }},
		{"UnknownUser", b.brokers,
			[]Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA512, "nobody-here", wrong)},
			"authentication failed", func(err error) bool { return errors.Is(err, ErrAuthentication) }},
		{"UnknownCA", b.brokers,
			[]Option{WithTLS(tlsTrusting(t, b.otherCAFile)), WithSASL(SASLScramSHA512, b.user, b.pass)},
			"certificate signed by unknown authority", func(err error) bool {
				var ua x509.UnknownAuthorityError
				return errors.Is(err, ErrTLS) && errors.As(err, &ua)
			}},
		{"WrongHost", b.wrongHost,
			[]Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA512, b.user, b.pass)},
			"x509: cannot validate certificate for 127.0.0.1", func(err error) bool {
				var he x509.HostnameError
				return errors.Is(err, ErrTLS) && errors.As(err, &he)
			}},
		{"PlainClientOnSecuredListener", b.brokers, nil, "", func(err error) bool { return err != nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := append(c.opts, WithLogger(testutil.Quiet()), WithConnectTimeout(20*time.Second))
			check := func(what string, err error, took time.Duration) {
				t.Helper()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				t.Logf("%s (after %v): %v", what, took.Round(time.Millisecond), err)
				if !c.check(err) || !strings.Contains(err.Error(), c.want) {
					t.Errorf("%s: error %q (%T) does not name the cause %q", what, err, errors.Unwrap(err), c.want)
				}
				if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), b.pass) {
					t.Errorf("%s: the error shows the password", what)
				}
			}
			ctx := context.Background()
			start := time.Now()
			_, err := NewSource(ctx, c.brokers, "g-"+c.name, []string{"never-read"}, toSource(opts)...)
			check("NewSource", err, time.Since(start))
			start = time.Now()
			_, err = NewSink(ctx, c.brokers, "never-written", toSink(opts)...)
			check("NewSink", err, time.Since(start))
		})
	}
}

// TestSecureWriteDenied: a user that may read the input but not write the
// dead-letter topic, or not the output topic. The event whose dead letter
// or output is refused stops the pipeline with an error that names the
// refusal and the topic, and is not acked: the group commits nothing for
// it, and nothing is dead-lettered for it.
func TestSecureWriteDenied(t *testing.T) {
	b := secured(t)
	for _, denied := range []string{"dead-letter", "output"} {
		t.Run(denied, func(t *testing.T) {
			in := createTopic(t, b.plain, "acl-in", 1)
			out := createTopic(t, b.plain, "acl-out", 1)
			dlq := createTopic(t, b.plain, "acl-dlq", 1)
			group := "acl-" + in
			writable, refused := out, dlq
			if denied == "output" {
				writable, refused = dlq, out
			}
			grant(t, b.plain, b.limitedUser,
				aclOn(sarama.AclResourceTopic, in, sarama.AclOperationRead, sarama.AclOperationDescribe),
				aclOn(sarama.AclResourceTopic, writable, sarama.AclOperationWrite, sarama.AclOperationDescribe),
				aclOn(sarama.AclResourceGroup, group, sarama.AclOperationRead, sarama.AclOperationDescribe),
			)
			publish(t, b.plain, in, []*sluice.Message{{Value: []byte(`{"n":1}`)}})

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			opts := []Option{WithTLS(tlsTrusting(t, b.caFile)), WithSASL(SASLScramSHA512, b.limitedUser, b.limitedPass), WithLogger(testutil.Quiet())}
			sink, err := NewSink(ctx, b.brokers, out, append(toSink(opts), WithDeadLetterTopic(dlq))...)
			if err != nil {
				t.Fatal(err)
			}
			defer sink.Close()
			src, err := NewSource(ctx, b.brokers, group, []string{in}, append(toSource(opts), WithCommitInterval(50*time.Millisecond))...)
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			enr := sluice.EnricherFunc(func(_ context.Context, m *sluice.Message) (*sluice.Message, error) {
				if denied == "dead-letter" {
					return nil, sluice.Permanent(errors.New("no such review"))
				}
				return m, nil
			})
			p, err := sluice.New(src, enr, sink, sluice.WithLogger(testutil.Quiet()))
			if err != nil {
				t.Fatal(err)
			}
			err = p.Run(ctx)
			if ctx.Err() != nil {
				t.Fatalf("the pipeline did not stop on the refused write: %v", err)
			}
			t.Logf("Run: %v", err)
			if !errors.Is(err, sluice.ErrFatal) || !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), refused) {
				t.Errorf("Run returned %v; want a fatal error matching ErrAccessDenied that names %s", err, refused)
			}
			_ = src.Close()
			if off := committed(t, b.plain, group, in, 0); off > 0 {
				t.Errorf("the group committed offset %d: the event was acked without being written", off)
			}
			if n := len(readAll(t, b.plain, dlq)) + len(readAll(t, b.plain, out)); n != 0 {
				t.Errorf("%d records written to the output and dead-letter topics", n)
			}
		})
	}
}

type acl struct {
	res  sarama.AclResourceType
	name string
	ops  []sarama.AclOperation
}

func aclOn(res sarama.AclResourceType, name string, ops ...sarama.AclOperation) acl {
	return acl{res, name, ops}
}

// grant gives user the ACLs, through the plain listener (a super user), and
// removes them when the test ends.
func grant(t testing.TB, plain []string, user string, acls ...acl) {
	t.Helper()
	admin, err := sarama.NewClusterAdmin(plain, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var ras []*sarama.ResourceAcls
	for _, a := range acls {
		ra := &sarama.ResourceAcls{Resource: sarama.Resource{ResourceType: a.res, ResourceName: a.name, ResourcePatternType: sarama.AclPatternLiteral}}
		for _, op := range a.ops {
			ra.Acls = append(ra.Acls, &sarama.Acl{Principal: "User:" + user, Host: "*", Operation: op, PermissionType: sarama.AclPermissionAllow})
		}
		ras = append(ras, ra)
	}
	if err := admin.CreateACLs(ras); err != nil {
		t.Fatalf("create ACLs: %v", err)
	}
	t.Cleanup(func() {
		admin, err := sarama.NewClusterAdmin(plain, testConfig())
		if err != nil {
			return
		}
		defer admin.Close()
		principal := "User:" + user
		for _, a := range acls {
			name := a.name
			_, _ = admin.DeleteACL(sarama.AclFilter{ResourceType: a.res, ResourceName: &name, ResourcePatternTypeFilter: sarama.AclPatternLiteral,
				Principal: &principal, Operation: sarama.AclOperationAny, PermissionType: sarama.AclPermissionAny}, false)
		}
	})
}
