package sluicetest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/sluicehq/sluice"
	"github.com/sluicehq/sluice/sluicetest"
)

// The fake clock moves only when told to, so a test can check what happens
// just before and just after a deadline without sleeping.
func ExampleClock() {
	clk := sluicetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t := clk.NewTimer(2 * time.Second)

	clk.Advance(time.Second)
	select {
	case <-t.C():
		fmt.Println("fired early")
	default:
		fmt.Println("pending after 1s")
	}
	clk.Advance(time.Second)
	fmt.Println("fired at", (<-t.C()).Format(time.TimeOnly))
	// Output:
	// pending after 1s
	// fired at 00:00:02
}

// The in-memory source commits only the contiguous prefix of acked offsets,
// like a Kafka consumer group: acking c and b moves nothing while a is open.
func ExampleSource() {
	ctx := context.Background()
	src := sluicetest.NewSource("events", 1)
	for _, v := range []string{"a", "b", "c"} {
		src.Publish(nil, []byte(v))
	}
	msgs, _ := src.Fetch(ctx, 3)
	_ = src.Ack(ctx, []*sluice.Message{msgs[2], msgs[1]})
	fmt.Println("committed:", src.Committed(0))
	_ = src.Ack(ctx, msgs[:1])
	fmt.Println("committed:", src.Committed(0))
	// Output:
	// committed: 0
	// committed: 3
}
