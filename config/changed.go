package config

import (
	"reflect"
	"strings"
)

// Changed lists the key paths ("liveness.threshold") whose values differ
// between a and b, in file order: what a reload has to apply or report.
func Changed(a, b *Config) []string {
	var keys []string
	changed(reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), "", &keys)
	return keys
}

func changed(a, b reflect.Value, path string, keys *[]string) {
	if a.Kind() == reflect.Struct {
		t := a.Type()
		for i := range t.NumField() {
			name := keyName(t.Field(i))
			if name == "" {
				continue
			}
			changed(a.Field(i), b.Field(i), join(path, name), keys)
		}
		return
	}
	if !reflect.DeepEqual(a.Interface(), b.Interface()) {
		*keys = append(*keys, path)
	}
}

// keyName is a field's key in the file, "" for a field that has none.
func keyName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}
