package capture

import (
	"testing"

	"github.com/netsampler/goflow2/v2/decoders/netflow"
)

// TestTemplatePool: every exporter's templates draw on one pool of
// fields; a template that would overdraw it is refused, a replaced or
// withdrawn one gives its fields back, and so does a forgotten exporter.
func TestTemplatePool(t *testing.T) {
	pool := fieldPool{left: 10}
	a := templates{max: 8, pool: &pool}
	b := templates{max: 8, pool: &pool}
	tmpl := func(n int) netflow.TemplateRecord {
		r := netflow.TemplateRecord{Fields: make([]netflow.Field, n)}
		for i := range r.Fields {
			r.Fields[i] = netflow.Field{Type: 8, Length: 4}
		}
		return r
	}
	if err := a.AddTemplate(10, 1, 256, tmpl(6)); err != nil || pool.left != 4 {
		t.Fatalf("6 fields: %v, %d left", err, pool.left)
	}
	if err := b.AddTemplate(10, 1, 256, tmpl(5)); err != errTemplateLimit || pool.left != 4 {
		t.Fatalf("5 fields past the pool: %v, %d left", err, pool.left)
	}
	if err := a.AddTemplate(10, 1, 256, tmpl(2)); err != nil || pool.left != 8 {
		t.Fatalf("replaced by 2 fields: %v, %d left", err, pool.left)
	}
	if err := b.AddTemplate(10, 1, 256, tmpl(8)); err != nil || pool.left != 0 {
		t.Fatalf("8 fields: %v, %d left", err, pool.left)
	}
	if err := a.AddTemplate(10, 1, 256, tmpl(0)); err != nil || pool.left != 2 {
		t.Fatalf("withdrawn: %v, %d left", err, pool.left)
	}
	b.release()
	if pool.left != 10 {
		t.Fatalf("exporter forgotten: %d left", pool.left)
	}
}
