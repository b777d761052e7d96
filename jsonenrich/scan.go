package jsonenrich

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// The fast path of Extract and Merge: one validating pass over the event
// with the grammar of encoding/json's scanner (RFC 8259; invalid UTF-8 is
// accepted inside strings; at most 10000 nested arrays and objects). For
// Extract the pass finds the paths' values on the way (walker); with more
// or longer paths than the walker takes, plain skips over the validated
// event find them (find). Strings are decoded as encoding/json decodes
// them. Whenever the fast path meets something it does not accept, the
// slow path runs instead and words the error.

// maxDepth is encoding/json's limit on nested arrays and objects.
const maxDepth = 10000

// strPlain[c] says that byte c stands for itself inside a JSON string:
// neither a quote, a backslash nor a control character.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func skipWS(d []byte, i int) int {
	for i < len(d) {
		switch d[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// validJSON reports whether d is one JSON value, with optional whitespace
// around it, as json.Valid does.
func validJSON(d []byte) bool {
	i := skipWS(d, 0)
	end := validValue(d, i, 0)
	return end >= 0 && skipWS(d, end) == len(d)
}

// validObject reports whether d is a valid JSON object, with optional
// whitespace around it, and returns the index of its '{'.
func validObject(d []byte) (int, bool) {
	i := skipWS(d, 0)
	if i == len(d) || d[i] != '{' {
		return 0, false
	}
	end := validValue(d, i, 0)
	return i, end >= 0 && skipWS(d, end) == len(d)
}

// validValue checks the value that starts at d[i], inside depth open
// arrays and objects, and returns the index just past it, or -1.
func validValue(d []byte, i, depth int) int {
	if i >= len(d) {
		return -1
	}
	switch c := d[i]; c {
	case '"':
		return validString(d, i)
	case '{', '[':
		if depth++; depth > maxDepth {
			return -1
		}
		closer := byte('}')
		if c == '[' {
			closer = ']'
		}
		i = skipWS(d, i+1)
		if i < len(d) && d[i] == closer {
			return i + 1
		}
		for {
			if c == '{' {
				if i >= len(d) || d[i] != '"' {
					return -1
				}
				if i = validString(d, i); i < 0 {
					return -1
				}
				if i = skipWS(d, i); i >= len(d) || d[i] != ':' {
					return -1
				}
				i = skipWS(d, i+1)
			}
			// Strings and numbers, the most common values, without a call.
			switch {
			case i >= len(d):
				return -1
			case d[i] == '"':
				i = validString(d, i)
			case d[i] == '-' || '0' <= d[i] && d[i] <= '9':
				i = validNumber(d, i)
			default:
				i = validValue(d, i, depth)
			}
			if i < 0 {
				return -1
			}
			if i = skipWS(d, i); i >= len(d) {
				return -1
			}
			switch d[i] {
			case ',':
				i = skipWS(d, i+1)
			case closer:
				return i + 1
			default:
				return -1
			}
		}
	case 't':
		return literal(d, i, "true")
	case 'f':
		return literal(d, i, "false")
	case 'n':
		return literal(d, i, "null")
	default:
		return validNumber(d, i)
	}
}

func literal(d []byte, i int, lit string) int {
	if len(d)-i >= len(lit) && string(d[i:i+len(lit)]) == lit {
		return i + len(lit)
	}
	return -1
}

// validNumber checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at d[i].
func validNumber(d []byte, i int) int {
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i >= len(d):
		return -1
	case d[i] == '0':
		i++
	case '1' <= d[i] && d[i] <= '9':
		i = digits(d, i+1)
	default:
		return -1
	}
	if i < len(d) && d[i] == '.' {
		j := digits(d, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		j := digits(d, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

func digits(d []byte, i int) int {
	for i < len(d) && '0' <= d[i] && d[i] <= '9' {
		i++
	}
	return i
}

// validString checks the string whose opening quote is d[i] and returns
// the index just past its closing quote, or -1.
func validString(d []byte, i int) int {
	i++
	for {
		for i+8 <= len(d) {
			if m := special8(binary.LittleEndian.Uint64(d[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		for i < len(d) && strPlain[d[i]] {
			i++
		}
		if i >= len(d) {
			return -1
		}
		switch d[i] {
		case '"':
			return i + 1
		case '\\':
			if i+1 >= len(d) {
				return -1
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if getu4(d[i:]) < 0 {
					return -1
				}
				i += 6
			default:
				return -1
			}
		default: // a control character
			return -1
		}
	}
}

const (
	ones  = 0x0101010101010101
	highs = 0x8080808080808080
)

// special8 marks, with its high bit, each of the 8 bytes in x (little
// endian) that is a quote, a backslash or a control character. The lowest
// mark is exact; marks above it may not be.
func special8(x uint64) uint64 {
	q := x ^ ones*'"'
	b := x ^ ones*'\\'
	return ((x - ones*0x20) | (q - ones) | (b - ones)) &^ (x & q & b) & highs
}

// The skips below assume valid JSON.

// skipString returns the index just past the string that starts at d[i].
func skipString(d []byte, i int) int {
	i++
	for {
		q := bytes.IndexByte(d[i:], '"')
		if q < 0 {
			return len(d)
		}
		i += q
		// The quote is escaped if an odd number of backslashes precede it.
		n := 0
		for d[i-1-n] == '\\' {
			n++
		}
		i++
		if n%2 == 0 {
			return i
		}
	}
}

// skipValue returns the index just past the value that starts at d[i].
func skipValue(d []byte, i int) int {
	switch d[i] {
	case '"':
		return skipString(d, i)
	case '{', '[':
		depth := 0
		for i < len(d) {
			switch d[i] {
			case '"':
				i = skipString(d, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default:
		for i < len(d) {
			switch d[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// member returns the start of the value of the last member named key in
// the object at d[i], as the map encoding/json decodes would hold it, or -1.
func member(d []byte, i int, key string) int {
	found := -1
	i = skipWS(d, i+1)
	if d[i] == '}' {
		return -1
	}
	for {
		end := skipString(d, i)
		match := keyIs(d[i+1:end-1], key)
		i = skipWS(d, end)
		i = skipWS(d, i+1) // past ':'
		if match {
			found = i
		}
		i = skipWS(d, skipValue(d, i))
		if d[i] == '}' {
			return found
		}
		i = skipWS(d, i+1) // past ','
	}
}

// element returns the start of element n of the array at d[i], or -1.
func element(d []byte, i, n int) int {
	i = skipWS(d, i+1)
	if d[i] == ']' {
		return -1
	}
	for ; n > 0; n-- {
		i = skipWS(d, skipValue(d, i))
		if d[i] == ']' {
			return -1
		}
		i = skipWS(d, i+1) // past ','
	}
	return i
}

// find returns the value at the dot path in the valid JSON object at d[i],
// or false where the slow path's lookup fails.
func find(d []byte, i int, path string) ([]byte, bool) {
	for {
		seg, rest, more := strings.Cut(path, ".")
		switch d[i] {
		case '{':
			i = member(d, i, seg)
		case '[':
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 {
				return nil, false
			}
			i = element(d, i, n)
		default:
			return nil, false
		}
		if i < 0 {
			return nil, false
		}
		if !more {
			return d[i:skipValue(d, i)], true
		}
		path = rest
	}
}

// keyIs reports whether the JSON string body raw (without its quotes)
// decodes to key.
func keyIs(raw []byte, key string) bool {
	// A first byte that stands for itself and differs rules a key out.
	if len(raw) > 0 && len(key) > 0 && raw[0] != key[0] && raw[0] != '\\' && raw[0] < utf8.RuneSelf {
		return false
	}
	for _, c := range raw {
		if c == '\\' || c >= utf8.RuneSelf {
			u, ok := unquote(raw)
			return ok && string(u) == key
		}
	}
	return string(raw) == key
}

// text decodes the valid JSON string raw (with its quotes).
func text(raw []byte) (string, bool) {
	body := raw[1 : len(raw)-1]
	u, ok := unquote(body)
	if !ok || len(u) == 0 || &u[0] == &body[0] {
		return string(u), ok
	}
	// u is a new array that nothing else refers to.
	return unsafe.String(&u[0], len(u)), true
}

// unquote decodes the body of a JSON string (without its quotes) as
// encoding/json does: invalid UTF-8 and lone surrogates become U+FFFD.
// It returns s itself when there is nothing to decode.
// Adapted from unquoteBytes in the Go standard library's encoding/json.
func unquote(s []byte) (t []byte, ok bool) {
	r := 0
	for r < len(s) {
		r += plainRun(s[r:])
		if r == len(s) {
			break
		}
		c := s[r]
		if c == '\\' || c == '"' || c < ' ' {
			break
		}
		rr, size := utf8.DecodeRune(s[r:])
		if rr == utf8.RuneError && size == 1 {
			break
		}
		r += size
	}
	if r == len(s) {
		return s, true
	}

	b := make([]byte, len(s)+2*utf8.UTFMax)
	w := copy(b, s[0:r])
	for r < len(s) {
		// A run of plain ASCII is copied as it is.
		n := plainRun(s[r:])
		// Out of room? Can only happen if s is full of
		// malformed UTF-8 and we're replacing each
		// byte with RuneError.
		for w+n >= len(b)-2*utf8.UTFMax {
			nb := make([]byte, (len(b)+utf8.UTFMax)*2)
			copy(nb, b[0:w])
			b = nb
		}
		if n > 0 {
			w += copy(b[w:], s[r:r+n])
			if r += n; r == len(s) {
				break
			}
		}
		switch c := s[r]; {
		case c == '\\':
			r++
			if r >= len(s) {
				return
			}
			switch s[r] {
			default:
				return
			case '"', '\\', '/', '\'':
				b[w] = s[r]
				r++
				w++
			case 'b':
				b[w] = '\b'
				r++
				w++
			case 'f':
				b[w] = '\f'
				r++
				w++
			case 'n':
				b[w] = '\n'
				r++
				w++
			case 'r':
				b[w] = '\r'
				r++
				w++
			case 't':
				b[w] = '\t'
				r++
				w++
			case 'u':
				r--
				rr := getu4(s[r:])
				if rr < 0 {
					return
				}
				r += 6
				if utf16.IsSurrogate(rr) {
					rr1 := getu4(s[r:])
					if dec := utf16.DecodeRune(rr, rr1); dec != unicode.ReplacementChar {
						// A valid pair; consume.
						r += 6
						w += utf8.EncodeRune(b[w:], dec)
						break
					}
					// Invalid surrogate; fall back to replacement rune.
					rr = unicode.ReplacementChar
				}
				w += utf8.EncodeRune(b[w:], rr)
			}

		// Quote, control characters are invalid.
		case c == '"', c < ' ':
			return

		// ASCII
		case c < utf8.RuneSelf:
			b[w] = c
			r++
			w++

		// Coerce to well-formed UTF-8.
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			w += utf8.EncodeRune(b[w:], rr)
		}
	}
	return b[0:w], true
}

// plainRun returns how many bytes at the start of s are ASCII other than a
// quote, a backslash or a control character.
func plainRun(s []byte) int {
	i := 0
	for i+8 <= len(s) {
		x := binary.LittleEndian.Uint64(s[i:])
		if m := special8(x) | x&highs; m != 0 {
			return i + bits.TrailingZeros64(m)/8
		}
		i += 8
	}
	for i < len(s) && s[i] < utf8.RuneSelf && strPlain[s[i]] {
		i++
	}
	return i
}

// getu4 decodes \uXXXX from the beginning of s, returning the hex value,
// or it returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c = c - '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// Limits of the single-pass walk; Extract falls back to validating first
// and then skipping to each field when paths exceed them.
const (
	walkPaths = 4
	walkSegs  = 6
)

// walker finds the values at up to walkPaths dot paths while it validates
// an object, in one pass. When an object repeats a key, the last copy
// counts, as in the map encoding/json decodes.
type walker struct {
	d    []byte
	nseg [walkPaths]int
	seg  [walkPaths][walkSegs]string
	res  [walkPaths][2]int // the value found at each path, or {-1, -1}
}

// init splits paths, or returns false if there are too many or one is
// malformed.
func (w *walker) init(d []byte, paths []string) bool {
	if len(paths) > walkPaths {
		return false
	}
	w.d = d
	for p, path := range paths {
		if validPath(path) != nil {
			return false
		}
		n := 0
		for {
			if n == walkSegs {
				return false
			}
			seg, rest, more := strings.Cut(path, ".")
			w.seg[p][n] = seg
			n++
			if !more {
				break
			}
			path = rest
		}
		w.nseg[p] = n
		w.res[p] = [2]int{-1, -1}
	}
	return true
}

// index is seg as strconv.Atoi reads it, when that is a valid array index;
// otherwise -1.
func index(seg string) int {
	s := seg
	neg := false
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "" || len(s) > 15 {
		return -1
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return -1
		}
		n = n*10 + int(s[i]-'0')
	}
	if neg && n != 0 {
		return -1
	}
	return n
}

// value validates the value at d[i], inside depth open arrays and
// objects, whose members and elements segment level of the paths in
// active may select. It returns the index just past the value, or -1.
func (w *walker) value(i, depth, level int, active uint) int {
	d := w.d
	if active == 0 || i >= len(d) || (d[i] != '{' && d[i] != '[') {
		return validValue(d, i, depth)
	}
	c := d[i]
	if depth++; depth > maxDepth {
		return -1
	}
	closer := byte('}')
	if c == '[' {
		closer = ']'
	}
	i = skipWS(d, i+1)
	if i < len(d) && d[i] == closer {
		return i + 1
	}
	for elem := 0; ; elem++ {
		var hit uint
		if c == '{' {
			if i >= len(d) || d[i] != '"' {
				return -1
			}
			end := validString(d, i)
			if end < 0 {
				return -1
			}
			for p, a := 0, active; a != 0; p, a = p+1, a>>1 {
				if a&1 != 0 && keyIs(d[i+1:end-1], w.seg[p][level]) {
					hit |= 1 << p
				}
			}
			if i = skipWS(d, end); i >= len(d) || d[i] != ':' {
				return -1
			}
			i = skipWS(d, i+1)
		} else {
			for p, a := 0, active; a != 0; p, a = p+1, a>>1 {
				if a&1 != 0 && index(w.seg[p][level]) == elem {
					hit |= 1 << p
				}
			}
		}
		// A later copy of a key replaces what an earlier one held.
		var deeper uint
		for p, a := 0, hit; a != 0; p, a = p+1, a>>1 {
			if a&1 != 0 {
				w.res[p] = [2]int{-1, -1}
				if level+1 < w.nseg[p] {
					deeper |= 1 << p
				}
			}
		}
		var end int
		switch {
		case deeper != 0:
			end = w.value(i, depth, level+1, deeper)
		case i >= len(d):
			return -1
		case d[i] == '"':
			end = validString(d, i)
		default:
			end = validValue(d, i, depth)
		}
		if end < 0 {
			return -1
		}
		for p, a := 0, hit&^deeper; a != 0; p, a = p+1, a>>1 {
			if a&1 != 0 {
				w.res[p] = [2]int{i, end}
			}
		}
		if i = skipWS(d, end); i >= len(d) {
			return -1
		}
		switch d[i] {
		case ',':
			i = skipWS(d, i+1)
		case closer:
			return i + 1
		default:
			return -1
		}
	}
}
