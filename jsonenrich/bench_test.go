package jsonenrich_test

import (
	"encoding/json"
	"testing"

	"github.com/sluicehq/sluice/jsonenrich"
)

// benchEvent is a realistic event of about 1 KiB: nested objects, arrays,
// numbers, and text with escapes.
var benchEvent = []byte(`{"id":"evt_01J9Z4X7Q2KX8M3V6B5N0R1T2Y","type":"review.created","created_at":"2026-11-29T18:42:07.314Z","source":{"app":"storefront","version":"4.12.3","region":"eu-west-1"},` +
	`"customer":{"id":48213377,"name":"Ana Kovač","tier":"gold","since":"2019-03-14","locale":"hr-HR"},` +
	`"product":{"sku":"PH-X200-128-BLK","name":"Phone X200 128 GB","category":["electronics","phones"],"price":{"amount":499.99,"currency":"EUR"},"attributes":{"color":"black","storage_gb":128,"refurbished":false}},` +
	`"review":{"title":"Great phone, but the charger is missing","rating":4,"verified":true,` +
	`"body":"I have used it for three weeks now. The screen is bright and sharp, battery lasts a full day, and the camera is better than I expected in low light. Two things bother me: there is no charger in the box, and the \"fast charging\" only works with a 45 W adapter that costs extra.\nStill, for the price it is a very good phone.",` +
	`"helpful_votes":12,"images":[{"url":"https://cdn.example.com/r/8812/1.jpg","w":1024,"h":768}]},` +
	`"order":{"id":"ord_7731","channel":"web","lines":3},"flags":{"spam_score":0.02,"language":"en","moderation":null}}`)

var (
	benchPaths  = []string{"review.title", "review.body"}
	benchAnswer = json.RawMessage(`{"task":"sentiment","model":"gpt-4o-mini","result":{"label":"positive","score":0.82},"hash":"sha256:4f1c2a9be0d7318e5a6b"}`)
)

// BenchmarkExtractMerge is the per-event JSON work of an enricher:
// extracting two text fields from a 1 KiB event and merging a ~150-byte
// answer into it.
func BenchmarkExtractMerge(b *testing.B) {
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		fields, err := jsonenrich.Extract(benchEvent, benchPaths)
		if err != nil || len(fields) != 2 {
			b.Fatal(fields, err)
		}
		out, err := jsonenrich.Merge(benchEvent, jsonenrich.DefaultKey, benchAnswer)
		if err != nil || len(out) <= len(benchEvent) {
			b.Fatal(err)
		}
	}
}

// BenchmarkExtractMergeReference is BenchmarkExtractMerge with the previous
// implementation (the slow path, see export_test.go), for a comparison in one run.
func BenchmarkExtractMergeReference(b *testing.B) {
	b.SetBytes(int64(len(benchEvent)))
	b.ReportAllocs()
	for b.Loop() {
		fields, err := jsonenrich.ReferenceExtract(benchEvent, benchPaths)
		if err != nil || len(fields) != 2 {
			b.Fatal(fields, err)
		}
		out, err := jsonenrich.ReferenceMerge(benchEvent, jsonenrich.DefaultKey, benchAnswer)
		if err != nil || len(out) <= len(benchEvent) {
			b.Fatal(err)
		}
	}
}
