package contract

import (
	"strings"
	"testing"
)

func TestSchemasCompileAndJudge(t *testing.T) {
	tests := []struct {
		schema, msg string
		ok          bool
	}{
		{SchemaState, `{"online":false,"device":"d1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, true},
		{SchemaState, `{"online":true,"device":"d1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, false},
		{SchemaState, `{"online":false,"device":"d/1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, false},
		{SchemaResult, `{"cmd_id":"c","ok":false,"device":"d1","ts":"2026-11-30T12:00:00Z"}`, false},
		{SchemaResult, `{"cmd_id":"c","ok":false,"error":"x","reason":"replay","device":"d1","ts":"2026-11-30T12:00:00Z"}`, true},
		{SchemaCommand, `{"id":"c","target":"site:tachileik","issued":"2026-11-30T12:00:00Z","expires":"2026-11-30T12:05:00Z","type":"ping"}`, true},
		{SchemaCommand, `{"id":"c","target":"site:tachileik","issued":"yesterday","expires":"2026-11-30T12:05:00Z","type":"ping"}`, false},
	}
	for i, tt := range tests {
		err := Validate(tt.schema, []byte(tt.msg))
		if (err == nil) != tt.ok {
			t.Errorf("%d %s: err = %v, want ok=%v", i, tt.schema, err, tt.ok)
		}
	}
	if SchemaFor("linkguard/v1/d1/cmd/result") != SchemaResult || SchemaFor("linkguard/v1/all/cmd") != SchemaEnvelope {
		t.Fatal("SchemaFor")
	}
	if err := Validate("nope", []byte("{}")); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Fatal(err)
	}
}
