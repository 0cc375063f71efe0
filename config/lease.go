package config

import "time"

// DefaultLeaseTTL is bus.lease_ttl when the file leaves it out (or 0).
const DefaultLeaseTTL = 5 * time.Second

// LeaseTTLOrDefault is bus.lease_ttl with its default applied.
func (b Bus) LeaseTTLOrDefault() time.Duration {
	if b.LeaseTTL <= 0 {
		return DefaultLeaseTTL
	}
	return b.LeaseTTL.D()
}
