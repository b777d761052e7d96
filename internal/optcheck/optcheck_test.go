package optcheck

import (
	"errors"
	"testing"
	"time"
)

var errBad = errors.New("bad config")

func TestErrors(t *testing.T) {
	e := New("kafka", errBad)
	if e.Err() != nil {
		t.Fatal("empty collection has an error")
	}
	e.Reject(Call("WithBufferSize", 0), "must be at least 1", "the default is 1024")
	e.Reject(Call("WithClientID", ""), "the id is empty", "")
	e.Wrap("sarama config", errors.New("Net.MaxOpenRequests must be 1"))
	err := e.Err()
	if !errors.Is(err, errBad) || e.Len() != 3 {
		t.Fatalf("err = %v (%d problems), want 3 matching the sentinel", err, e.Len())
	}
	want := "kafka: WithBufferSize(0): must be at least 1; the default is 1024\n" +
		"kafka: WithClientID(\"\"): the id is empty\n" +
		"kafka: sarama config: Net.MaxOpenRequests must be 1"
	if err.Error() != want {
		t.Fatalf("message\n%s\nwant\n%s", err, want)
	}
}

func TestCall(t *testing.T) {
	if got := Call("WithSessionTimeout", time.Second, 3*time.Second); got != "WithSessionTimeout(1s, 3s)" {
		t.Fatal(got)
	}
	if got := Call("WithFieldsAsJSON"); got != "WithFieldsAsJSON()" {
		t.Fatal(got)
	}
}
