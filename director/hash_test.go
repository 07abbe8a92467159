package director

import (
	"hash/fnv"
	"testing"
)

func TestFNV1a64MatchesStdlib(t *testing.T) {
	for _, s := range []string{"", "a", "alice@example.com", "10.0.0.1:143"} {
		h := fnv.New64a()
		h.Write([]byte(s))
		if got, want := fnv1a64(s), h.Sum64(); got != want {
			t.Errorf("fnv1a64(%q): got %#x, want %#x", s, got, want)
		}
		if got, want := fnv1a64Bytes([]byte(s)), h.Sum64(); got != want {
			t.Errorf("fnv1a64Bytes(%q): got %#x, want %#x", s, got, want)
		}
	}
}

func TestMix64IsSplitMix64(t *testing.T) {
	// The first outputs of splitmix64 seeded with 0 (Vigna's reference).
	tests := []struct{ in, want uint64 }{
		{0, 0xe220a8397b1dcdaf},
		{0x9e3779b97f4a7c15, 0x6e789e6aa1b965f4},
	}
	for _, tt := range tests {
		if got := mix64(tt.in); got != tt.want {
			t.Errorf("mix64(%#x): got %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestHRWScoreZeroWeight(t *testing.T) {
	if got := hrwScore(1, 2, 0); got != 0 {
		t.Errorf("got %v, want 0", got)
	}
	if got := hrwScore(1, 2, 1); got <= 0 {
		t.Errorf("got %v, want > 0", got)
	}
}
