package scenarios

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// decoder walks a YAML node tree against a Go value by reflection, using
// the fields' yaml tags. Unlike yaml.v3's own decoding it reports every
// unknown field, duplicate key and wrong type with its line and field path,
// and it records the line of every field it sets, for validation errors and
// for telling "absent" from "zero".
//
// It handles structs (with `yaml:",inline"` embedding), pointers, slices,
// maps with string keys, strings, bools, integers, floats, and any type whose
// pointer implements yaml.Unmarshaler. A null value leaves the Go value as
// it was, so that defaults apply.
type decoder struct {
	*problems
	set  map[string]bool // paths given a non-null value
	root reflect.Type    // type of the whole document, for hints
}

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// decode stores n into v, the value at path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolveAlias(n)
	if isNull(n) {
		return
	}
	d.set[path] = true
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.addLinef(n.Line, path, "%s", err.Error())
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.wrongType(n, path, "a string")
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.wrongType(n, path, "true or false")
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil {
			d.wrongType(n, path, "an integer")
			return
		}
		if v.OverflowInt(i) {
			d.addLinef(n.Line, path, "integer %s out of range", n.Value)
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var u uint64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&u) != nil {
			d.wrongType(n, path, "a non-negative integer")
			return
		}
		if v.OverflowUint(u) {
			d.addLinef(n.Line, path, "integer %s out of range", n.Value)
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		var f float64
		tag := n.ShortTag()
		if n.Kind != yaml.ScalarNode || (tag != "!!int" && tag != "!!float") || n.Decode(&f) != nil {
			d.wrongType(n, path, "a number")
			return
		}
		v.SetFloat(f)
	default:
		// A programming error in the scenario types, not in the file.
		d.addLinef(n.Line, path, "cannot decode into a field of type %s", v.Type())
	}
}

func (d *decoder) wrongType(n *yaml.Node, path, want string) {
	d.addLinef(n.Line, path, "want %s, got %s", want, describe(n))
}

// field is one YAML-visible struct field.
type field struct {
	name  string
	index []int
}

// structFields lists t's fields by YAML name, in declaration order,
// flattening `yaml:",inline"` structs.
func structFields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if opts == "inline" || strings.Contains(","+opts+",", ",inline,") {
			if f.Type.Kind() == reflect.Struct {
				for _, sub := range structFields(f.Type) {
					out = append(out, field{name: sub.name, index: append([]int{i}, sub.index...)})
				}
			}
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		out = append(out, field{name: name, index: []int{i}})
	}
	return out
}

// fieldPaths lists the paths of every field reachable from t, elements of
// lists written as "[]": "topology.services[].port".
func fieldPaths(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
		if t.Kind() == reflect.Slice {
			prefix += "[]"
		}
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var out []string
	for _, f := range structFields(t) {
		fp := joinPath(prefix, f.name)
		out = append(out, fp)
		out = append(out, fieldPaths(t.FieldByIndex(f.index).Type, fp)...)
	}
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	fields := structFields(v.Type())
	d.eachKey(n, path, func(k, val *yaml.Node) {
		for _, f := range fields {
			if f.name == k.Value {
				fp := joinPath(path, f.name)
				d.lines[fp] = k.Line
				d.decode(val, v.FieldByIndex(f.index), fp)
				return
			}
		}
		names := make([]string, len(fields))
		for i, f := range fields {
			names[i] = f.name
		}
		hint := ""
		if s := suggest(k.Value, names); s != "" {
			hint = fmt.Sprintf("did you mean %q? ", s)
		} else if d.root != nil {
			for _, fp := range fieldPaths(d.root, "") {
				if fp[strings.LastIndex(fp, ".")+1:] == k.Value {
					hint = fmt.Sprintf("did you mean %s? ", fp)
					break
				}
			}
		}
		d.addLinef(k.Line, "", "unknown field %q %s (%sknown fields: %s)", k.Value, where(path), hint, strings.Join(names, ", "))
	})
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.wrongType(n, path, "a mapping")
		return
	}
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.addLinef(n.Line, path, "cannot decode into a map of type %s", t)
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	d.eachKey(n, path, func(k, val *yaml.Node) {
		fp := joinPath(path, k.Value)
		d.lines[fp] = k.Line
		elem := reflect.New(t.Elem()).Elem()
		if old := v.MapIndex(reflect.ValueOf(k.Value).Convert(t.Key())); old.IsValid() {
			elem.Set(old)
		}
		d.decode(val, elem, fp)
		v.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), elem)
	})
}

// eachKey calls fn for every key of mapping n, reporting keys that are not
// plain scalars, merge keys and duplicates instead.
func (d *decoder) eachKey(n *yaml.Node, path string, fn func(k, v *yaml.Node)) {
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolveAlias(n.Content[i]), n.Content[i+1]
		switch {
		case k.Kind != yaml.ScalarNode:
			d.addLinef(k.Line, path, "want a field name, got %s", describe(k))
			continue
		case k.ShortTag() == "!!merge":
			d.addLinef(k.Line, path, "merge keys (<<) are not supported")
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.addLinef(k.Line, "", "duplicate field %q %s (first set at line %d)", k.Value, where(path), first)
			continue
		}
		seen[k.Value] = k.Line
		fn(k, val)
	}
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.wrongType(n, path, "a list")
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, e := range n.Content {
		ep := indexPath(path, i)
		d.lines[ep] = e.Line
		d.decode(e, s.Index(i), ep)
	}
	v.Set(s)
}

// where names the mapping at path for messages.
func where(path string) string {
	if path == "" {
		return "at top level"
	}
	return "in " + path
}

// resolveAlias follows n to the node an alias names.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe renders n for "got ..." in messages: strings quoted, other
// scalars as written, collections by kind.
func describe(n *yaml.Node) string {
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			return strconv.Quote(n.Value)
		}
		if n.ShortTag() == "!!null" {
			return "null"
		}
		return n.Value
	}
	return "nothing"
}

// suggest returns the name closest to s if it is close enough to be a
// likely typo, or "".
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if strings.EqualFold(n, s) {
			return n
		}
		if d := editDistance(strings.ToLower(s), n); d < bestD && d <= len(n)/3+1 {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
