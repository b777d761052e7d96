package jsonenrich

// The implementation before the single-pass scanner lives on as the slow
// path that words every error. The differential tests and benchmarks use
// it as the reference the fast path must match.
var (
	ReferenceExtract = extractSlow
	ReferenceMerge   = mergeSlow
)
