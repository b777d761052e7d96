package redisstream

import (
	"github.com/redis/go-redis/v9"

	"github.com/sluicehq/sluice"
)

// DecodeEntry maps an entry the way a Source with the given payload and key
// fields does, for tests that read streams directly.
func DecodeEntry(stream, payloadField, keyField string, e redis.XMessage) *sluice.Message {
	m, _ := codec{payload: payloadField, key: keyField}.decode(stream, e)
	return m
}
