package config

import (
	"fmt"
	"strings"
	"testing"
)

// largeConfig is a cloud-config of at most size bytes: many small pools,
// the shape of the 5 MB file in docs/benchmarks.md.
func largeConfig(size int) []byte {
	var b strings.Builder
	b.WriteString("pools:\n")
	for i := 0; ; i++ {
		entry := fmt.Sprintf("  - name: pool-%d\n    addresses:\n      - 10.%d.%d.0/28\n      - 2001:db8:%x:%x::/120\n    namespaces: [team-a, team-b]\n    nodeSelector:\n      matchLabels: {rack: r%d}\n",
			i, i>>8&255, i&255, i>>16, i&0xffff, i%10)
		if b.Len()+len(entry) > size {
			return []byte(b.String())
		}
		b.WriteString(entry)
	}
}

// BenchmarkParseLarge loads the largest cloud-config accepted (MaxSize, what
// a ConfigMap holds); B/op is what a load allocates.
//
//	go test -run '^$' -bench ParseLarge -benchmem ./config
func BenchmarkParseLarge(b *testing.B) {
	data := largeConfig(MaxSize)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
