// Package chans holds the non-blocking drain that the pipeline's workers
// and the sources use to fill a batch from a channel.
package chans

// TakeMore appends to b what ch holds right now, without waiting, until b
// has size items, ch is empty or ch is closed. If keep is not nil, items
// it refuses are taken from ch but not appended, and do not count towards
// size.
func TakeMore[T any](b []T, ch <-chan T, size int, keep func(T) bool) []T {
	for len(b) < size {
		select {
		case v, ok := <-ch:
			if !ok {
				return b
			}
			if keep == nil || keep(v) {
				b = append(b, v)
			}
		default:
			return b
		}
	}
	return b
}
