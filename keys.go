package sluice

// keyQueue holds the events waiting behind the one in flight for a key,
// when ordering by key ([WithKeyOrdering]).
type keyQueue struct{ waiting []*item }

// waitForKey queues it behind the event in flight with the same key and
// reports whether it did; otherwise it takes the key's turn.
func (r *runner) waitForKey(it *item) bool {
	if r.keys == nil || it.in.Key == nil {
		return false
	}
	it.keyed = true
	if q, ok := r.keys[string(it.in.Key)]; ok {
		q.waiting = append(q.waiting, it)
		return true
	}
	r.keys[string(it.in.Key)] = &keyQueue{}
	return false
}

// releaseKey lets the next event with the same key go. It is called once
// for every event, when it leaves the pipeline.
func (r *runner) releaseKey(it *item) {
	if !it.keyed {
		return
	}
	q := r.keys[string(it.in.Key)]
	if q == nil {
		return
	}
	if len(q.waiting) == 0 || r.stopping() {
		delete(r.keys, string(it.in.Key))
		return
	}
	next := q.waiting[0]
	q.waiting[0] = nil
	q.waiting = q.waiting[1:]
	r.dispatch(next)
}

// abandonKeyQueues retires the events waiting for their key's turn when a
// stop begins: they never started, so they are left for redelivery.
func (r *runner) abandonKeyQueues() {
	for _, q := range r.keys {
		for _, it := range q.waiting {
			r.retire(it)
		}
		q.waiting = nil
	}
}
