package sinkstest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/echowatch/echowatch/internal/corpus"
)

// EVESchema is Suricata's JSON schema of its EVE output, from the shared
// folder beside the project (../shared/eve-schema), for tests that check
// our events as Suricata's own tooling would. It validates the part of
// JSON Schema that file uses: type, properties, additionalProperties,
// required, items, minItems, minProperties, $ref into $defs, enum, const,
// minimum, oneOf and pattern.
type EVESchema struct {
	root map[string]any
}

// LoadEVESchema reads the schema, or skips t with a message when the
// shared folder is absent (see internal/corpus).
func LoadEVESchema(t testing.TB) *EVESchema {
	t.Helper()
	path := filepath.Join(corpus.Dir(t, "eve-schema"), "schema.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := &EVESchema{}
	if err := json.Unmarshal(b, &s.root); err != nil {
		t.Fatalf("sinkstest: %s: %v", path, err)
	}
	return s
}

// Validate checks one EVE object against the schema, after taking out
// the members named in ours ("incident", "stats.echowatch"): our own
// additions, which the schema (strict, additionalProperties false almost
// everywhere) does not know. It returns every violation, one per line,
// each with its path.
func (s *EVESchema) Validate(event []byte, ours ...string) error {
	dec := json.NewDecoder(bytes.NewReader(event))
	dec.UseNumber() // integers must stay told apart from numbers
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	for _, path := range ours {
		m, _ := doc.(map[string]any)
		names := strings.Split(path, ".")
		for _, n := range names[:len(names)-1] {
			m, _ = m[n].(map[string]any)
		}
		delete(m, names[len(names)-1]) // nothing when m is nil
	}
	var errs []string
	s.check(s.root, doc, "$", &errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

func (s *EVESchema) check(schema map[string]any, v any, path string, errs *[]string) {
	fail := func(format string, args ...any) {
		*errs = append(*errs, path+": "+fmt.Sprintf(format, args...))
	}
	if ref, ok := schema["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		defs, _ := s.root["$defs"].(map[string]any)
		def, _ := defs[name].(map[string]any)
		if !found || def == nil {
			fail("unresolved $ref %q", ref)
			return
		}
		s.check(def, v, path, errs)
	}
	if t, ok := schema["type"]; ok && !hasType(t, v) {
		fail("%s, want type %v", describe(v), t)
		return
	}
	if e, ok := schema["enum"].([]any); ok && !inEnum(e, v) {
		fail("%s not in %v", describe(v), e)
	}
	if c, ok := schema["const"]; ok && !sameJSON(c, v) {
		fail("%s, want %v", describe(v), c)
	}
	if min, ok := schema["minimum"].(float64); ok {
		if n, isNum := v.(json.Number); isNum {
			if f, _ := n.Float64(); f < min {
				fail("%s below %v", n, min)
			}
		}
	}
	if p, ok := schema["pattern"].(string); ok {
		if str, isStr := v.(string); isStr {
			if re, err := regexp.Compile(p); err != nil {
				fail("pattern %q: %v", p, err)
			} else if !re.MatchString(str) {
				fail("%q does not match %q", str, p)
			}
		}
	}
	if one, ok := schema["oneOf"].([]any); ok {
		n := 0
		for _, alt := range one {
			var sub []string
			if m, ok := alt.(map[string]any); ok {
				s.check(m, v, path, &sub)
			}
			if len(sub) == 0 {
				n++
			}
		}
		if n != 1 {
			fail("%s matches %d of oneOf's %d schemas, want 1", describe(v), n, len(one))
		}
	}
	switch v := v.(type) {
	case map[string]any:
		s.object(schema, v, path, errs, fail)
	case []any:
		if min, ok := schema["minItems"].(float64); ok && float64(len(v)) < min {
			fail("%d items, want at least %v", len(v), min)
		}
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range v {
				s.check(items, x, fmt.Sprintf("%s[%d]", path, i), errs)
			}
		}
	}
}

func (s *EVESchema) object(schema map[string]any, v map[string]any, path string, errs *[]string, fail func(string, ...any)) {
	if min, ok := schema["minProperties"].(float64); ok && float64(len(v)) < min {
		fail("%d members, want at least %v", len(v), min)
	}
	if req, ok := schema["required"].([]any); ok {
		for _, r := range req {
			if name, _ := r.(string); name != "" {
				if _, ok := v[name]; !ok {
					fail("lacks required %q", name)
				}
			}
		}
	}
	props, _ := schema["properties"].(map[string]any)
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys) // violations in a stable order
	for _, k := range keys {
		sub := path + "." + k
		if p, ok := props[k].(map[string]any); ok {
			s.check(p, v[k], sub, errs)
			continue
		}
		switch ap := schema["additionalProperties"].(type) {
		case bool:
			if !ap {
				*errs = append(*errs, sub+": not in the schema")
			}
		case map[string]any:
			s.check(ap, v[k], sub, errs)
		}
	}
}

// hasType reports whether v is of the JSON type t, or of one of the types
// t lists.
func hasType(t any, v any) bool {
	if ts, ok := t.([]any); ok {
		for _, x := range ts {
			if hasType(x, v) {
				return true
			}
		}
		return false
	}
	switch t {
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "string":
		_, ok := v.(string)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	case "null":
		return v == nil
	case "number":
		_, ok := v.(json.Number)
		return ok
	case "integer":
		n, ok := v.(json.Number)
		if !ok {
			return false
		}
		r, ok := new(big.Rat).SetString(n.String())
		return ok && r.IsInt()
	}
	return false
}

func inEnum(e []any, v any) bool {
	for _, x := range e {
		if sameJSON(x, v) {
			return true
		}
	}
	return false
}

// sameJSON compares a schema value (numbers as float64) with a document
// value (numbers as json.Number).
func sameJSON(a, b any) bool {
	if n, ok := b.(json.Number); ok {
		f, err := n.Float64()
		return err == nil && a == f
	}
	return reflect.DeepEqual(a, b)
}

func describe(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		b = append(b[:57], "..."...)
	}
	return string(b)
}
