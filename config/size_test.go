package config

import (
	"strings"
	"testing"
)

// A document larger than a ConfigMap can hold is refused before it is
// decoded, so validating it costs no more memory than its bytes.
func TestParseRefusesMoreThanAConfigMapHolds(t *testing.T) {
	line := "# padding\n"
	big := []byte("pools: []\n" + strings.Repeat(line, MaxSize/len(line)+1))
	_, err := Parse(big)
	if err == nil || !strings.Contains(err.Error(), "at most 1048576") {
		t.Fatalf("Parse of %d bytes: %v; want it refused for its size", len(big), err)
	}
	if _, err := Parse(big[:MaxSize]); err != nil && strings.Contains(err.Error(), "at most 1048576") {
		t.Errorf("Parse of exactly MaxSize bytes refused for its size: %v", err)
	}
}
