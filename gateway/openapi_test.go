package gateway

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// openAPIFile is the published reference of the HTTP API.
const openAPIFile = "../docs/openapi.yaml"

// The OpenAPI 3 subset the checks below read.
type oaDoc struct {
	OpenAPI    string                `yaml:"openapi"`
	Paths      map[string]oaPathItem `yaml:"paths"`
	Components struct {
		Parameters map[string]oaParam `yaml:"parameters"`
	} `yaml:"components"`
}

type oaPathItem struct {
	Parameters []oaParam `yaml:"parameters"`
	Get        *oaOp     `yaml:"get"`
	Put        *oaOp     `yaml:"put"`
	Post       *oaOp     `yaml:"post"`
	Delete     *oaOp     `yaml:"delete"`
	Options    *oaOp     `yaml:"options"`
	Head       *oaOp     `yaml:"head"`
	Patch      *oaOp     `yaml:"patch"`
	Trace      *oaOp     `yaml:"trace"`
}

type oaOp struct {
	Parameters []oaParam            `yaml:"parameters"`
	Responses  map[string]yaml.Node `yaml:"responses"`
}

type oaParam struct {
	Ref      string `yaml:"$ref"`
	Name     string `yaml:"name"`
	In       string `yaml:"in"`
	Required bool   `yaml:"required"`
}

func (p oaPathItem) ops() map[string]*oaOp {
	all := map[string]*oaOp{
		"GET": p.Get, "PUT": p.Put, "POST": p.Post, "DELETE": p.Delete,
		"OPTIONS": p.Options, "HEAD": p.Head, "PATCH": p.Patch, "TRACE": p.Trace,
	}
	for m, op := range all {
		if op == nil {
			delete(all, m)
		}
	}
	return all
}

func loadOpenAPI(t *testing.T) oaDoc {
	t.Helper()
	b, err := os.ReadFile(openAPIFile)
	if err != nil {
		t.Fatalf("cannot read the OpenAPI document: %v", err)
	}
	var d oaDoc
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s does not parse: %v", openAPIFile, err)
	}
	if !strings.HasPrefix(d.OpenAPI, "3.") {
		t.Fatalf("%s: openapi is %q, want 3.x", openAPIFile, d.OpenAPI)
	}
	if len(d.Paths) == 0 {
		t.Fatalf("%s has no paths", openAPIFile)
	}
	return d
}

// resolve follows a local "#/components/parameters/<name>" reference.
func (d oaDoc) resolve(p oaParam) (oaParam, error) {
	if p.Ref == "" {
		return p, nil
	}
	const prefix = "#/components/parameters/"
	name, ok := strings.CutPrefix(p.Ref, prefix)
	if !ok {
		return p, fmt.Errorf("unsupported parameter reference %q", p.Ref)
	}
	r, ok := d.Components.Parameters[name]
	if !ok {
		return p, fmt.Errorf("parameter reference %q names no component", p.Ref)
	}
	return r, nil
}

// TestOpenAPIMatchesRoutes keeps docs/openapi.yaml and the router in step:
// every route the gateway serves under /api/v1 is documented, and nothing
// else is.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	d := loadOpenAPI(t)

	documented := map[string]bool{}
	for path, item := range d.Paths {
		if !strings.HasPrefix(path, "/api/v1/") && path != "/api/v1" {
			continue
		}
		for m := range item.ops() {
			documented[m+" "+path] = true
		}
	}
	served := map[string]bool{}
	for _, r := range RouteTable() {
		k := strings.ToUpper(r.Method) + " " + r.Path
		if served[k] {
			t.Errorf("RouteTable lists %s twice", k)
		}
		served[k] = true
	}

	var missing, extra []string
	for k := range served {
		if !documented[k] {
			missing = append(missing, k)
		}
	}
	for k := range documented {
		if !served[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("served by the gateway but missing from %s:\n  %s", openAPIFile, strings.Join(missing, "\n  "))
	}
	if len(extra) > 0 {
		t.Errorf("documented in %s but not served by the gateway (RouteTable):\n  %s", openAPIFile, strings.Join(extra, "\n  "))
	}
}

var pathParamRE = regexp.MustCompile(`\{([^{}/]+)\}`)

// TestOpenAPIOperations checks each documented operation: its path
// parameters are declared (in the operation or its path item) exactly as
// the path names them, and it documents at least one response.
func TestOpenAPIOperations(t *testing.T) {
	d := loadOpenAPI(t)
	for path, item := range d.Paths {
		ops := item.ops()
		if len(ops) == 0 {
			t.Errorf("%s: no operations", path)
		}
		inPath := map[string]bool{}
		for _, m := range pathParamRE.FindAllStringSubmatch(path, -1) {
			inPath[m[1]] = true
		}
		for method, op := range ops {
			name := method + " " + path
			declared := map[string]bool{}
			for _, p := range append(append([]oaParam{}, item.Parameters...), op.Parameters...) {
				rp, err := d.resolve(p)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if rp.In != "path" {
					continue
				}
				if !rp.Required {
					t.Errorf("%s: path parameter %q must be required: true", name, rp.Name)
				}
				if !inPath[rp.Name] {
					t.Errorf("%s: declares path parameter %q that the path does not have", name, rp.Name)
				}
				declared[rp.Name] = true
			}
			for p := range inPath {
				if !declared[p] {
					t.Errorf("%s: path parameter {%s} is not declared", name, p)
				}
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s: documents no responses", name)
			}
		}
	}
}
