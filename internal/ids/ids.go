// Package ids makes herald's identifiers: 26-character, time-first,
// lexically sortable ids in Crockford base32 (the ULID layout: 48 bits of
// milliseconds, 80 bits of entropy).
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"strconv"
	"time"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// New returns a fresh random id stamped with t.
func New(t time.Time) string {
	var b [16]byte
	putTime(&b, t)
	_, _ = rand.Read(b[6:])
	return encode(&b)
}

// Derived returns the id stamped with t whose entropy is a hash of parent and
// index: the same inputs always give the same id, so an event processed
// twice after a crash keeps its id.
func Derived(t time.Time, parent string, index int) string {
	var b [16]byte
	putTime(&b, t)
	var num [20]byte
	idx := strconv.AppendInt(num[:0], int64(index), 10)
	// Two 64-bit FNV-1a hashes with different offsets give the 80 bits;
	// written out so the hot path does not allocate.
	h1, h2 := uint64(14695981039346656037), uint64(0x6c62272e07bb0142)
	const prime = 1099511628211
	mix := func(c byte) {
		h1 = (h1 ^ uint64(c)) * prime
		h2 = (h2 ^ uint64(c)) * prime
	}
	for i := 0; i < len(parent); i++ {
		mix(parent[i])
	}
	mix('/')
	for _, c := range idx {
		mix(c)
	}
	binary.BigEndian.PutUint64(b[6:14], h1)
	binary.BigEndian.PutUint16(b[14:], uint16(h2^h2>>16^h2>>32^h2>>48))
	return encode(&b)
}

func putTime(b *[16]byte, t time.Time) {
	ms := uint64(t.UnixMilli())
	var tmp [8]byte
	binary.BigEndian.PutUint64(tmp[:], ms)
	copy(b[:6], tmp[2:])
}

// encode writes 128 bits as 26 base32 characters, most significant first.
func encode(b *[16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
