package config

import (
	"errors"
	"strings"
	"testing"
)

func TestArchiveKeys(t *testing.T) {
	for _, tc := range []struct {
		name, archive string
		want          string // an error's text; "" for none
		compressed    bool
	}{
		{"no archive section keeps no archive", "", "", true},
		{"an age alone is enough, compressed by default", "archive: {max_age: 24h}", "", true},
		{"compression none is accepted", "archive: {max_bytes: 1GiB, compression: none}", "", false},
		{"an unknown compression names the choices", "archive: {max_age: 1h, compression: zstd}",
			`h.yaml:1:37: field "archive.compression": want s2 or none, got "zstd"`, true},
		{"an age under a minute is refused", "archive: {max_age: 10s}",
			`field "archive.max_age": want at least 1m`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("h.yaml", []byte(tc.archive+"\n"+good), testKinds)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Archive.Compressed() != tc.compressed {
					t.Errorf("Compressed() = %v, want %v", cfg.Archive.Compressed(), tc.compressed)
				}
				return
			}
			var ce *Errors
			if !errors.As(err, &ce) || !strings.Contains(ce.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
