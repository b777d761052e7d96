package enrichcache_test

import (
	"fmt"

	"github.com/sluicehq/sluice/enrichcache"
)

// A cache of at most 64 MiB of answers, for openai.WithCache.
func ExampleNewMemory() {
	c, err := enrichcache.NewMemory(64 << 20)
	if err != nil {
		panic(err)
	}
	key := enrichcache.Key([]byte("gpt-4o-mini"), []byte("sentiment"), []byte(`{"text":"great"}`))
	_ = c.Set(ctx, key, []byte(`{"task":"sentiment","result":{"label":"positive"}}`))
	v, ok, _ := c.Get(ctx, key)
	fmt.Println(ok, string(v))
	fmt.Printf("hit ratio %.2f\n", c.Stats().HitRatio())
	// Output:
	// true {"task":"sentiment","result":{"label":"positive"}}
	// hit ratio 1.00
}
