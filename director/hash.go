package director

import "math"

// The placement hash must be identical on every node and across restarts,
// so it is spelled out here instead of using hash/maphash (randomly seeded)
// or anything whose output may change between Go releases.

const (
	fnvOffset64 = 14695981039346656037
	fnvPrime64  = 1099511628211
)

// fnv1a64 is FNV-1a, 64 bit, of s.
func fnv1a64(s string) uint64 {
	h := uint64(fnvOffset64)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime64
	}
	return h
}

// fnv1a64Bytes is fnv1a64 for a byte slice.
func fnv1a64Bytes(b []byte) uint64 {
	h := uint64(fnvOffset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= fnvPrime64
	}
	return h
}

// mix64 is the splitmix64 finaliser: a bijection on uint64 whose output
// bits each depend on all input bits. FNV alone mixes the last bytes of a
// string poorly ("user1", "user2", ...), which HRW would turn into bias.
func mix64(z uint64) uint64 {
	z += 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// keyHash is the hash of a placement key (user name or client address).
func keyHash(key string) uint64 { return mix64(fnv1a64(key)) }

// serverHash is the per-server seed, computed once from the server name.
// Hashing the name (not the index) keeps placements stable when servers are
// reordered in the configuration.
func serverHash(name string) uint64 { return mix64(fnv1a64(name) ^ 0x5bd1e9955bd1e995) }

// hrwScore is the weighted rendezvous score of a server for a key:
// -weight / ln(u), with u uniform in (0, 1). For independent uniform u_i the
// server maximising this wins with probability weight_i / Σ weight, exactly.
// Weight 0 scores 0 and never wins against a positive weight.
func hrwScore(server, key uint64, weight int) float64 {
	h := mix64(server ^ key)
	// The top 53 bits, centred in their interval: u ∈ (0, 1), never 0 or 1.
	u := (float64(h>>11) + 0.5) / (1 << 53)
	return -float64(weight) / math.Log(u)
}
