package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// schemaKeys collects every leaf key of t and the types below it (a key
// that holds a value, not a table), by "table.key" path with NAME for map
// keys.
func schemaKeys(t reflect.Type, at string, out map[string]string) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		if t.Kind() == reflect.Map {
			at += ".NAME"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return
	}
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		path := strings.TrimPrefix(at+"."+tag, ".")
		n := len(out)
		schemaKeys(f.Type, path, out)
		if len(out) == n { // nothing below: a value
			out[path] = tag
		}
	}
}

// TestKeysDocumented: every key of the schema has a row in a key table of
// docs/configuration.md and of the README's configuration reference, so
// that a key added to the code cannot go undocumented. (Its table is the
// heading above, or the row's first column.)
func TestKeysDocumented(t *testing.T) {
	keys := map[string]string{}
	schemaKeys(reflect.TypeFor[Config](), "", keys)
	docs, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "## Configuration reference")
	paths := make([]string, 0, len(keys))
	for p := range keys {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		want := "| `" + keys[p] + "` |" // a row of a key table
		if !strings.Contains(string(docs), want) {
			t.Errorf("%s: docs/configuration.md does not mention %s", p, want)
		}
		if !strings.Contains(table, want) {
			t.Errorf("%s: the README's configuration reference does not mention %s", p, want)
		}
	}
	if len(keys) < 100 {
		t.Errorf("found %d keys in the schema; want the whole schema walked", len(keys))
	}
}
