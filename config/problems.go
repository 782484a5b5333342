package config

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong with a configuration, in words a person can
// act on: no Go type names.
type Problem struct {
	// Line is the file line the problem is at; 0 when the key is not in
	// the file (a required key missing, a default out of bounds).
	Line int
	// Key is the key path ("mqtt.brokers[0]"); "" for the file as a whole
	// (a syntax error).
	Key     string
	Message string
}

// Error lists every problem found in one file. Its text is one line per
// problem, "file:line: key.path: message", sorted by line.
type Error struct {
	File     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": ")
		if p.Key != "" {
			b.WriteString(p.Key + ": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// checker walks a YAML document against the Config struct, collecting
// every unknown key, wrong type and bad duration with its line and key
// path, and recording each key's line for the value checks after it.
type checker struct {
	problems []Problem
	lines    map[string]int
	// duplicates is set when a key is given twice: the decoder then
	// skips parts of the file, and values would look missing.
	duplicates bool
}

var durationType = reflect.TypeFor[Duration]()

func (c *checker) add(line int, key, format string, args ...any) {
	c.problems = append(c.problems, Problem{Line: line, Key: key, Message: fmt.Sprintf(format, args...)})
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

func (c *checker) walk(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if _, seen := c.lines[path]; !seen && path != "" {
		c.lines[path] = n.Line
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if t == durationType {
		var s string
		if n.Kind != yaml.ScalarNode || n.Decode(&s) != nil {
			c.add(n.Line, path, "want a duration like \"3s\" or \"500ms\", got %s", describe(n))
		} else if _, err := time.ParseDuration(s); err != nil {
			c.add(n.Line, path, "%q is not a duration (like \"500ms\", \"3s\" or \"1m\")", s)
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		c.walk(n, t.Elem(), path)
	case reflect.Struct:
		c.walkSection(n, t, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			c.add(n.Line, path, "want a list (like [a, b] or lines starting with \"- \"), got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			c.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		c.walkScalar(n, t, path)
	}
}

func (c *checker) walkSection(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		c.add(n.Line, path, "want a section of keys (key: value lines indented under it), got %s", describe(n))
		return
	}
	fields := map[string]reflect.StructField{}
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		if name := keyName(f); name != "" {
			fields[name] = f
			names = append(names, name)
		}
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			c.add(k.Line, key, "given twice (first at line %d)", first)
			c.duplicates = true
			continue
		}
		seen[k.Value] = k.Line
		f, ok := fields[k.Value]
		if !ok {
			msg := "unknown key"
			if s := suggest(k.Value, names); s != "" {
				msg += fmt.Sprintf("; did you mean %s?", join(path, s))
			} else {
				msg += " (known here: " + strings.Join(names, ", ") + ")"
			}
			c.add(k.Line, key, "%s", msg)
			continue
		}
		c.lines[key] = k.Line
		c.walk(v, f.Type, key)
	}
}

func (c *checker) walkScalar(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.ScalarNode {
		c.add(n.Line, path, "want a single value, got %s", describe(n))
		return
	}
	v := reflect.New(t)
	if n.Decode(v.Interface()) == nil {
		return
	}
	var want string
	switch t.Kind() {
	case reflect.Bool:
		want = "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		want = "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		want = "a whole number, 0 or more"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	default:
		want = "text"
	}
	c.add(n.Line, path, "want %s, got %s", want, describe(n))
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// suggest returns the known key closest to an unknown one (a typo, a
// missing underscore), or "".
func suggest(key string, known []string) string {
	norm := func(s string) string { return strings.ToLower(strings.NewReplacer("_", "", "-", "").Replace(s)) }
	best, bestD := "", 3
	for _, k := range known {
		if norm(k) == norm(key) {
			return k
		}
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

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

// lineOf finds the line of a key path named in a value check: the key
// itself, else the nearest enclosing section in the file, else 0.
func (c *checker) lineOf(key string) int {
	key, _, _ = strings.Cut(key, " ") // "mqtt.cert and mqtt.key"
	for key != "" {
		if l, ok := c.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// plainSyntax rewords the YAML parser's commonest messages.
var plainSyntax = map[string]string{
	"did not find expected key":                       "this line is not indented like the keys around it",
	"found a tab character that violates indentation": "a tab in the indentation: YAML indents with spaces only",
	"mapping values are not allowed in this context":  "unexpected \":\": is the line indented too far, or does a value with a colon need quotes?",
	"found character that cannot start any token":     "a character that cannot start a value here (a tab? quote the value)",
	"could not find expected ':'":                     "a key without \":\" after it",
}

// syntaxProblem turns a YAML syntax error into a Problem at the line where
// the file stops being YAML. The parser names the line where the enclosing
// section began (a bad indent at line 40 would be reported at line 5), so
// the line is found again as the first line, from there on, at which the
// file cut after it no longer parses.
func syntaxProblem(data []byte, err error) Problem {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if plain, ok := plainSyntax[msg]; ok {
		msg = plain
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	if line > 0 && len(lines) <= maxLinesToLocate {
		for l := max(line, 1); l <= len(lines); l++ {
			var n yaml.Node
			if yaml.Unmarshal(bytes.Join(lines[:l], nil), &n) != nil {
				line = l
				break
			}
		}
	}
	return Problem{Line: line, Message: "not valid YAML: " + msg}
}

// maxLinesToLocate bounds the re-parsing syntaxProblem does.
const maxLinesToLocate = 2000

func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		// Problems without a line (missing keys) after those with one.
		la, lb := a.Line, b.Line
		if la == 0 {
			la = 1 << 30
		}
		if lb == 0 {
			lb = 1 << 30
		}
		return la - lb
	})
}
