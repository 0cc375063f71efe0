package lease

import (
	"errors"
	"fmt"
)

// ErrHeld says that another process holds the lease; the error is a
// *HeldError naming it.
var ErrHeld = errors.New("lease held by another process")

// ErrLost says that a lease this process held is no longer its own: it
// expired (not renewed within the TTL) and may have been taken over.
var ErrLost = errors.New("lease lost")

// HeldError is the answer to Acquire while another process holds the key.
type HeldError struct {
	Key string
	By  Holder
}

func (e *HeldError) Error() string { return fmt.Sprintf("lease %s held by %s", e.Key, e.By) }

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }
