package gen

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
)

// typeDocs is what the source says about one struct type.
type typeDocs struct {
	doc    string            // the type's doc comment
	fields map[string]string // Go field name -> doc comment
}

// sources reads doc comments from the Go files of the module's packages,
// parsing each package folder once.
type sources struct {
	root, module string
	pkgs         map[string]map[string]*typeDocs // package path -> type name -> docs
}

// moduleRoot finds the folder, at or above the working directory, whose
// go.mod declares module.
func moduleRoot(module string) (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && goModModule(data) == module {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s at or above the working directory: run inside the source tree", module)
		}
		dir = parent
	}
}

func goModModule(data []byte) string {
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}

// docs returns the docs of struct type t, which must be declared in the module.
func (s *sources) docs(t reflect.Type) (*typeDocs, error) {
	pkg := t.PkgPath()
	types, ok := s.pkgs[pkg]
	if !ok {
		rel, found := strings.CutPrefix(pkg, s.module)
		if !found || rel != "" && !strings.HasPrefix(rel, "/") {
			return nil, fmt.Errorf("type %s is outside module %s", t, s.module)
		}
		var err error
		if types, err = parsePackage(filepath.Join(s.root, filepath.FromSlash(strings.TrimPrefix(rel, "/")))); err != nil {
			return nil, err
		}
		s.pkgs[pkg] = types
	}
	td, ok := types[t.Name()]
	if !ok {
		return nil, fmt.Errorf("type %s: declaration not found in the source of %s", t, pkg)
	}
	return td, nil
}

// parsePackage collects the doc comments of every struct type declared in
// the non-test Go files of dir.
func parsePackage(dir string) (map[string]*typeDocs, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	types := map[string]*typeDocs{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.TYPE {
				continue
			}
			for _, spec := range gd.Specs {
				ts := spec.(*ast.TypeSpec)
				doc := ts.Doc
				if doc == nil && len(gd.Specs) == 1 {
					doc = gd.Doc
				}
				td := &typeDocs{doc: commentText(doc), fields: map[string]string{}}
				types[ts.Name.Name] = td
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				for _, fld := range st.Fields.List {
					c := fld.Doc
					if c == nil {
						c = fld.Comment
					}
					for _, n := range fld.Names {
						td.fields[n.Name] = commentText(c)
					}
				}
			}
		}
	}
	return types, nil
}

// commentText turns a comment into paragraphs of single-line text,
// separated by blank lines.
func commentText(c *ast.CommentGroup) string {
	if c == nil {
		return ""
	}
	var paras []string
	for _, p := range strings.Split(strings.TrimSpace(c.Text()), "\n\n") {
		if p = strings.Join(strings.Fields(p), " "); p != "" {
			paras = append(paras, p)
		}
	}
	return strings.Join(paras, "\n\n")
}

// userText rewrites a doc comment for users: the Go names of a struct's
// fields become the keys they write in the file ("AckWait is ..." reads
// "ack_wait is ...").
func userText(doc string, keys map[string]string) string {
	names := make([]string, 0, len(keys))
	for n := range keys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, goName := range names {
		key := keys[goName]
		doc = regexp.MustCompile(`\b`+regexp.QuoteMeta(goName)+`\b`).ReplaceAllString(doc, key)
	}
	return doc
}

var requiredRE = regexp.MustCompile(`(^|\s)Required\.`)

// isRequired reports whether a field's doc marks it "Required.".
func isRequired(doc string) bool { return requiredRE.MatchString(doc) }
