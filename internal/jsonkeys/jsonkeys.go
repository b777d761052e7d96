// Package jsonkeys lists the keys of a JSON object in the order the document
// gives them, which encoding/json's maps lose.
package jsonkeys

import (
	"bytes"
	"encoding/json"
)

// Of returns the top-level keys of the JSON object raw, in document order,
// repeated keys included. It returns nil when raw is not an object, and the
// keys read so far when raw is cut off or malformed after its start.
func Of(raw []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	var keys []string
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return keys
		}
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return keys
		}
		keys = append(keys, t.(string))
	}
	return keys
}
