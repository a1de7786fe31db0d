package jobs

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// UnmarshalYAML reads a positive Go duration ("30s", "1h30m").
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected a duration such as 30s or 10m, found %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("invalid duration %q (use a number with a unit: 500ms, 30s, 10m, 2h)", n.Value)
	}
	if v <= 0 {
		return fmt.Errorf("duration %q must be positive", n.Value)
	}
	*d = Duration(v)
	return nil
}

// UnmarshalYAML reads a list of strings (exec'd directly) or one string
// (run by the shell).
func (c *Command) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag != "!!str" {
			return fmt.Errorf("expected a string or a list of strings, found %s", kindName(n))
		}
		*c = Command{Shell: n.Value}
		return nil
	case yaml.SequenceNode:
		argv := make([]string, 0, len(n.Content))
		for i, item := range n.Content {
			if item.Kind != yaml.ScalarNode || item.Tag == "!!null" {
				return fmt.Errorf("item %d: expected a string, found %s", i, kindName(item))
			}
			argv = append(argv, item.Value)
		}
		*c = Command{Argv: argv}
		return nil
	}
	return fmt.Errorf("expected a string or a list of strings, found %s", kindName(n))
}

// decoder walks the YAML node tree into File, reporting every problem
// with its position and path, not only the first one yaml.v3 would.
type decoder struct {
	file     string
	problems Problems
	nodes    map[string]*yaml.Node // path -> value node, for later checks
}

func (d *decoder) addf(n *yaml.Node, path, format string, args ...any) {
	p := Problem{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Col = n.Line, n.Column
	}
	d.problems = append(d.problems, p)
}

// reported tells whether a problem was already reported at path.
func (d *decoder) reported(path string) bool {
	for _, p := range d.problems {
		if p.Path == path {
			return true
		}
	}
	return false
}

// at reports a problem at the node recorded for path (or its nearest
// recorded parent).
func (d *decoder) at(path, format string, args ...any) {
	for p := path; ; {
		if n, ok := d.nodes[p]; ok {
			d.addf(n, path, format, args...)
			return
		}
		i := strings.LastIndexAny(p, ".[")
		if i <= 0 {
			d.addf(nil, path, format, args...)
			return
		}
		p = p[:i]
	}
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// value decodes n into v, recording n under path for the checks that
// follow decoding. It reports a problem and goes on, rather than stop at
// the first one as yaml.v3 would.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	d.nodes[path] = n
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // unset
	}
	if v.Kind() == reflect.Pointer {
		d.pointer(n, v, path)
		return
	}
	if reflect.PointerTo(v.Type()).Implements(unmarshalerType) {
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.addf(n, path, "%s", cleanYAMLErr(err))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		d.mapping(n, v, path)
	case reflect.Slice:
		d.sequence(n, v, path)
	case reflect.Map:
		d.stringMap(n, v, path)
	case reflect.Interface: // params items: a scalar or a map of scalars
		d.param(n, v, path)
	default: // string, int, bool
		d.scalar(n, v, path)
	}
}

// pointer decodes an optional field. A bad value leaves it nil, as if
// unset, so that later checks do not report it a second time.
func (d *decoder) pointer(n *yaml.Node, v reflect.Value, path string) {
	before := len(d.problems)
	if v.IsNil() {
		v.Set(reflect.New(v.Type().Elem()))
	}
	d.value(n, v.Elem(), path)
	if len(d.problems) > before {
		v.Set(reflect.Zero(v.Type())) // bad value: treat as unset, don't report it twice
	}
}

// sequence decodes a list, each item at path[i].
func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.addf(n, path, "expected a list, found %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// stringMap decodes a mapping of strings (env:, a param item), each value
// at path.key; a value that is not a scalar is reported and left out.
func (d *decoder) stringMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if val.Kind == yaml.AliasNode {
			val = val.Alias
		}
		if val.Kind != yaml.ScalarNode {
			d.addf(val, path+"."+k.Value, "expected a string, found %s", kindName(val))
			continue
		}
		d.nodes[path+"."+k.Value] = val
		m.SetMapIndex(reflect.ValueOf(k.Value), reflect.ValueOf(val.Value))
	}
	v.Set(m)
}

// param decodes one item of params: a scalar (a string) or a mapping of
// scalars (a map[string]string).
func (d *decoder) param(n *yaml.Node, v reflect.Value, path string) {
	switch n.Kind {
	case yaml.ScalarNode:
		v.Set(reflect.ValueOf(n.Value))
	case yaml.MappingNode:
		var m map[string]string
		d.value(n, reflect.ValueOf(&m).Elem(), path)
		v.Set(reflect.ValueOf(m))
	default:
		d.addf(n, path, "expected a scalar or a mapping of scalars, found %s", kindName(n))
	}
}

// scalar decodes a string, int or bool. Ints and bools must carry their
// own YAML tag ("10" quoted is not an int); any scalar is a string.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	want := map[reflect.Kind]string{reflect.String: "!!str", reflect.Int: "!!int", reflect.Bool: "!!bool"}[v.Kind()]
	if n.Kind != yaml.ScalarNode || (want != "!!str" && n.Tag != want) {
		d.addf(n, path, "expected %s, found %s", typeName(v.Kind()), kindName(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err != nil {
		d.addf(n, path, "%s", cleanYAMLErr(err))
	}
}

// mapping decodes a struct, rejecting unknown and repeated fields.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.addf(n, path, "expected a mapping, found %s", kindName(n))
		return
	}
	fields := map[string][]int{}
	collectFields(v.Type(), nil, fields)
	seen := map[string]bool{}
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Tag == "!!merge" { // <<: *anchor
			src := val
			if src.Kind == yaml.AliasNode {
				src = src.Alias
			}
			d.mapping(src, v, path)
			continue
		}
		idx, ok := fields[k.Value]
		switch {
		case !ok:
			d.addf(k, join(k.Value), "unknown field %q%s", k.Value, suggest(k.Value, fields))
			continue
		case seen[k.Value]:
			d.addf(k, join(k.Value), "field %q is set twice", k.Value)
			continue
		}
		seen[k.Value] = true
		d.value(val, v.FieldByIndex(idx), join(k.Value))
	}
}

func collectFields(t reflect.Type, prefix []int, out map[string][]int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		idx := append(append([]int{}, prefix...), i)
		if tag == ",inline" {
			collectFields(f.Type, idx, out)
			continue
		}
		if name, _, _ := strings.Cut(tag, ","); name != "" && name != "-" {
			out[name] = idx
		}
	}
}

// suggest names the known field closest to a misspelt one.
func suggest(name string, fields map[string][]int) string {
	best, bestD := "", 3
	for f := range fields {
		if dist := levenshtein(name, f); dist < bestD || (dist == bestD && f < best && best != "") {
			best, bestD = f, dist
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func levenshtein(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.Tag {
	case "!!null":
		return "nothing"
	case "!!int", "!!float":
		return "number " + n.Value
	case "!!bool":
		return "boolean " + n.Value
	}
	return fmt.Sprintf("%q", n.Value)
}

func typeName(k reflect.Kind) string {
	switch k {
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	}
	return "a string"
}

func cleanYAMLErr(err error) string {
	s := strings.TrimPrefix(err.Error(), "yaml: ")
	if te, ok := err.(*yaml.TypeError); ok && len(te.Errors) > 0 {
		s = te.Errors[0]
	}
	return s
}
