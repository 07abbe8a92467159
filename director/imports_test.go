package director

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestLeafImports keeps the director a leaf (ARCHITECTURE.md): the standard
// library and golang-lru only, never proxy, protocols, checks or config.
func TestLeafImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(path, "/")
			if strings.Contains(first, ".") && !strings.HasPrefix(path, "github.com/hashicorp/golang-lru/v2") {
				t.Errorf("%s imports %s, want only the standard library and golang-lru", name, path)
			}
		}
	}
}

func TestWhereOtherBalances(t *testing.T) {
	tests := []struct {
		balance Balance
		want    string
	}{
		{BalanceLeastConn, "leastconn: no assignment yet (decided at login)"},
		{BalanceRoundRobin, "roundrobin: no assignment yet (decided at login)"},
		{BalanceSource, "source: decided by the client address at login"},
	}
	for _, tt := range tests {
		t.Run(tt.balance.String(), func(t *testing.T) {
			d := newDirector(t, Options{Balance: tt.balance, Servers: servers(1, 1)})
			if p := d.Where("u"); p.Server != "" || p.Reason != tt.want {
				t.Errorf("got %q %q, want no server and %q", p.Server, p.Reason, tt.want)
			}
		})
	}
}
