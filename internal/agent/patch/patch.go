// Package patch builds the JSON merge patches (RFC 7386) the agent writes objects with. A
// patch carries only the fields a reconciler owns and no resourceVersion, so a write never
// fails because the cache it was computed from lags behind the agent's own previous write
// of the same object: such a conflict is a wasted round trip and says nothing. The agent is
// the only writer of every field it patches (docs/architecture.md, who writes what), so
// there is no one else's update to lose.
package patch

import (
	"bytes"
	"encoding/json"
	"fmt"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// Merge returns the merge patch that turns have into want, nil when they agree. Both are
// objects of the same shape holding only the owned fields, e.g. {"spec": ..., "metadata":
// {"labels": ...}}: lists in them are replaced whole, map keys missing from want are
// removed.
func Merge(have, want any) ([]byte, error) {
	h, err := json.Marshal(have)
	if err != nil {
		return nil, err
	}
	w, err := json.Marshal(want)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatch.CreateMergePatch(h, w)
	if err != nil {
		return nil, fmt.Errorf("computing a merge patch: %w", err)
	}
	if bytes.Equal(p, []byte("{}")) {
		return nil, nil
	}
	return p, nil
}

// Fields is a JSON object of owned fields, as Merge takes them.
type Fields = map[string]any

// Meta holds labels and annotations for Merge, as "metadata" does.
func Meta(labels, annotations map[string]string) Fields {
	m := Fields{}
	if labels != nil {
		m["labels"] = labels
	}
	if annotations != nil {
		m["annotations"] = annotations
	}
	return m
}
