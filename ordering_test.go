package sluice_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

func TestKeyOrdering(t *testing.T) {
	src := sluicetest.NewSource("in", 1)
	for i := range 3 {
		src.Publish([]byte("A"), fmt.Appendf(nil, "A%d", i))
		src.Publish([]byte("B"), fmt.Appendf(nil, "B%d", i))
	}
	src.Publish(nil, []byte("free"))
	src.End()
	g := newGated()
	sink := sluicetest.NewSink()
	p, err := sluice.New(src, g, sink, sluice.WithConcurrency(8), sluice.WithKeyOrdering(), quiet())
	require.NoError(t, err)
	done := start(t, within(t), p)

	// The heads of both keys and the keyless event start in parallel.
	first := []string{wait(t, g.started), wait(t, g.started), wait(t, g.started)}
	assert.ElementsMatch(t, []string{"A0", "B0", "free"}, first)
	g.release("free", nil)
	// Each key's next event starts only when the previous one is written.
	for i := range 2 {
		g.release(fmt.Sprintf("A%d", i), nil)
		assert.Equal(t, fmt.Sprintf("A%d", i+1), wait(t, g.started))
		g.release(fmt.Sprintf("B%d", i), nil)
		assert.Equal(t, fmt.Sprintf("B%d", i+1), wait(t, g.started))
	}
	g.release("A2", nil)
	g.release("B2", nil)
	require.NoError(t, wait(t, done))

	perKey := map[string][]string{}
	for _, m := range sink.Messages() {
		perKey[string(m.Key)] = append(perKey[string(m.Key)], string(m.Value))
	}
	assert.Equal(t, []string{"A0", "A1", "A2"}, perKey["A"])
	assert.Equal(t, []string{"B0", "B1", "B2"}, perKey["B"])
}
