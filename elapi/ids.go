package elapi

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// idGen makes event ids in herald's layout (internal/ids, the ULID
// layout): 26 characters of Crockford base32, 48 bits of milliseconds
// then 80 bits of entropy, so ids sort by time. The entropy is a random
// 80-bit number drawn once per dispatcher plus a counter: ids of one
// dispatcher never repeat, and those of two dispatchers collide only if
// their random numbers fall within the counts of each other.
type idGen struct {
	hi  uint16 // top 16 bits of the entropy
	lo  uint64 // low 64 bits at the start
	seq atomic.Uint64
}

func newIDGen() *idGen {
	var b [10]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand's contract since Go 1.24)
	return &idGen{hi: binary.BigEndian.Uint16(b[:2]), lo: binary.BigEndian.Uint64(b[2:])}
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// next returns a fresh id stamped with t.
func (g *idGen) next(t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	binary.BigEndian.PutUint16(b[6:8], g.hi)
	binary.BigEndian.PutUint64(b[8:], g.lo+g.seq.Add(1))
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
