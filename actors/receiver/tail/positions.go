package tail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/herald-router/herald/bus"
)

// fileID is a file's identity: it survives renames.
type fileID struct{ dev, ino uint64 }

func idOf(fi os.FileInfo) (fileID, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}, false
	}
	return fileID{uint64(st.Dev), uint64(st.Ino)}, true
}

// key is the file's key in the positions bucket.
func (id fileID) key(receiver string) string {
	return receiver + "." + strconv.FormatUint(id.dev, 10) + "." + strconv.FormatUint(id.ino, 10)
}

// print is a hash of a file's bytes [off, off+n) with its length: enough
// to tell whether a stored position still belongs to the same content.
type print struct {
	Len  int    `json:"len"`
	Hash uint64 `json:"hash"`
}

func printOf(b []byte) print {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return print{Len: len(b), Hash: h.Sum64()}
}

// headLen and markLen bound the bytes the fingerprints cover.
const (
	headLen = 256
	markLen = 64
)

// matchesAt reports whether the file's bytes at off hash to p.
func (p print) matchesAt(f io.ReaderAt, off int64) bool {
	if p.Len == 0 {
		return true
	}
	if off < 0 {
		return false
	}
	b := make([]byte, p.Len)
	if _, err := f.ReadAt(b, off); err != nil {
		return false
	}
	return printOf(b) == p
}

// position is what the bucket holds per file.
type position struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	// Head covers the file's first bytes, Mark the bytes just before
	// Offset.
	Head print `json:"head"`
	Mark print `json:"mark"`
}

// validFor reports whether p may be trusted for the open file f of size.
func (p position) validFor(f io.ReaderAt, size int64) bool {
	return p.Offset <= size && p.Head.matchesAt(f, 0) && p.Mark.matchesAt(f, p.Offset-int64(p.Mark.Len))
}

// store is the receiver's view of the positions bucket.
type store struct {
	kv       jetstream.KeyValue
	receiver string
}

func openStore(ctx context.Context, b *bus.Bus, receiver string) (*store, error) {
	kv, err := b.KeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucketName,
		Description: "read positions of herald's file receivers",
		History:     1,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, fmt.Errorf("positions bucket %s: %w", bucketName, err)
	}
	return &store{kv: kv, receiver: receiver}, nil
}

// load returns every stored position of the receiver.
func (s *store) load(ctx context.Context) (map[fileID]position, error) {
	out := map[fileID]position{}
	w, err := s.kv.Watch(ctx, s.receiver+".>", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("read positions: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("read positions: %w", ctx.Err())
		case e, ok := <-w.Updates():
			if !ok {
				return out, nil
			}
			if e == nil { // caught up with what is stored
				return out, nil
			}
			var p position
			if err := json.Unmarshal(e.Value(), &p); err != nil || !strings.HasPrefix(e.Key(), s.receiver+".") {
				continue // not ours, or not readable: the file is read from its start
			}
			out[fileID{p.Dev, p.Ino}] = p
		}
	}
}

func (s *store) put(ctx context.Context, p position) error {
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("encode position: %w", err)
	}
	if _, err := s.kv.Put(ctx, fileID{p.Dev, p.Ino}.key(s.receiver), data); err != nil {
		return fmt.Errorf("store position of %s: %w", p.Path, err)
	}
	return nil
}

func (s *store) remove(ctx context.Context, id fileID) error {
	err := s.kv.Delete(ctx, id.key(s.receiver))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("remove position: %w", err)
	}
	return nil
}
