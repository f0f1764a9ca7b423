package scenarios

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// MaxErrors is the number of problems Parse reports before it stops
// listing them.
const MaxErrors = 20

// Error is one problem found in a scenario, located in its source. Parse
// and Load return every problem they find joined with errors.Join; use
// errors.As to get the first.
type Error struct {
	// File is the name given to Parse or Load; "" when the scenario did not
	// come from a file.
	File string
	// Line is the 1-based line of the offending field; 0 when unknown.
	Line int
	// Path is the offending field's path, such as "load.rates[1]"; "" for
	// problems with the file as a whole and for messages that name their
	// place themselves (unknown and duplicate fields).
	Path string
	// Msg says what is wrong.
	Msg string
}

// Error returns "FILE:LINE: PATH: MSG", leaving out the parts that are
// unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// problems collects Errors against one source.
type problems struct {
	file  string
	lines map[string]int // field path -> line
	list  []*Error
}

// at returns the line of path, or of its nearest ancestor that has one.
func (p *problems) at(path string) int {
	for {
		if l, ok := p.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// addf records a problem with path, located at the path's line.
func (p *problems) addf(path, format string, args ...any) {
	p.addLinef(p.at(path), path, format, args...)
}

// addLinef records a problem at an explicit line.
func (p *problems) addLinef(line int, path, format string, args ...any) {
	p.list = append(p.list, &Error{File: p.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems sorted by line and joined, at most MaxErrors of
// them, or nil.
func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := append([]*Error(nil), p.list...)
	sort.SliceStable(list, func(i, j int) bool { return list[i].Line < list[j].Line })
	var errs []error
	for i, e := range list {
		if i == MaxErrors {
			errs = append(errs, &Error{File: p.file, Msg: fmt.Sprintf("too many errors (%d more not shown)", len(list)-MaxErrors)})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// parentPath returns the path of the field or list that holds path:
// "a.b[2]" -> "a.b", "a.b" -> "a", "a" -> "".
func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// joinPath returns the path of field name inside path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// indexPath returns the path of element i of the list at path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
