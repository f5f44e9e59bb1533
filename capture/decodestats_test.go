package capture

import (
	"reflect"
	"strconv"
	"testing"
)

// Add adds every counter: each is set to a value of its own, and added to
// itself must double, so a counter added to DecodeStats or TunnelStats and
// forgotten in Add (and Sub, which shares its list) fails here.
func TestDecodeStatsAdd(t *testing.T) {
	var s DecodeStats
	n := uint64(0)
	var fill func(v reflect.Value)
	fill = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Uint64:
			n++
			v.SetUint(n)
		case reflect.Array:
			for i := range v.Len() {
				fill(v.Index(i))
			}
		case reflect.Struct:
			for i := range v.NumField() {
				fill(v.Field(i))
			}
		default:
			t.Fatalf("DecodeStats holds a %s: teach this test to fill it", v.Type())
		}
	}
	fill(reflect.ValueOf(&s).Elem())
	sum := s
	sum.Add(s)
	var check func(got, one reflect.Value, path string)
	check = func(got, one reflect.Value, path string) {
		switch got.Kind() {
		case reflect.Uint64:
			if got.Uint() != 2*one.Uint() {
				t.Errorf("%s: %d after adding %d to itself", path, got.Uint(), one.Uint())
			}
		case reflect.Array:
			for i := range got.Len() {
				check(got.Index(i), one.Index(i), path+"["+strconv.Itoa(i)+"]")
			}
		case reflect.Struct:
			for i := range got.NumField() {
				check(got.Field(i), one.Field(i), path+"."+got.Type().Field(i).Name)
			}
		}
	}
	check(reflect.ValueOf(sum), reflect.ValueOf(s), "DecodeStats")
	// And Sub takes each back out.
	if sum.Sub(s); sum != s {
		t.Errorf("added, then taken out:\n %+v\nwant\n %+v", sum, s)
	}
}
