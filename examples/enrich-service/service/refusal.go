package service

import (
	"errors"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice/internal/tlsfail"
	"github.com/sluicehq/sluice/kafka"
	"github.com/sluicehq/sluice/redisstream"
)

// refusal says whether err is a refusal that only a change of
// configuration can fix, so that the service exits with [exitConfig] and is
// not restarted into the same refusal, and what to check: the broker or
// server refused the login (wrong user or password), the service refused
// the server's certificate (a CA file that did not sign it, a certificate
// for another host name, an expired one), or the ACLs refused an operation
// (no right to the input, the output, the group or the dead letters).
func refusal(err error) (hint string, ok bool) {
	switch {
	case tlsfail.NotTLS(err):
		return "the server does not speak TLS on that port: check the address, or turn -kafka-tls or -redis-tls off", true
	case errors.Is(err, kafka.ErrAuthentication), errors.Is(err, sarama.ErrSASLAuthenticationFailed):
		return "the broker refused the login: check -kafka-sasl, -kafka-sasl-user and " + envKafkaSASLPassword, true
	case errors.Is(err, redisstream.ErrAuthentication), redis.HasErrorPrefix(err, "WRONGPASS"), redis.HasErrorPrefix(err, "NOAUTH"):
		return "the server refused the login: check -redis-user and " + envRedisPassword, true
	case errors.Is(err, kafka.ErrTLS), errors.Is(err, redisstream.ErrTLS),
		tlsfail.Certificate(err):
		return "the server's certificate was refused: check -kafka-ca-file or -redis-ca-file (the CA that signed it) and that the address is a name the certificate is for", true
	case errors.Is(err, kafka.ErrAccessDenied), errors.Is(err, redisstream.ErrAccessDenied),
		errors.Is(err, sarama.ErrTopicAuthorizationFailed), errors.Is(err, sarama.ErrGroupAuthorizationFailed),
		errors.Is(err, sarama.ErrClusterAuthorizationFailed), redis.HasErrorPrefix(err, "NOPERM"):
		return "the ACLs refused the user an operation: grant it read on -input and the group, write on -output and -dead-letter", true
	}
	return "", false
}
