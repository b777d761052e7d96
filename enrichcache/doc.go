// Package enrichcache keeps a model's answers by the content that produced
// them, so that an event whose texts were answered before costs no model
// call: a redelivery after a crash or a rebalance, a second consumer group
// reading the same topic, or a text that simply repeats.
//
// A [Cache] is addressed by [Key], a hash of everything that decides the
// answer (for the openai enricher: the model, the task's prompt, the output
// schema and the extracted texts), and holds the validated answer. Two
// implementations come with it: [Memory], an in-process LRU bounded in bytes,
// and rediscache.Cache, shared by a fleet of instances through Redis with a
// TTL. A cache is an optimisation, never a source of truth: callers treat
// every error from it as a miss, so a cache outage costs model calls, not
// events.
//
// Wire a cache into the openai enricher with openai.WithCache.
package enrichcache
