package classifier

import (
	"bytes"
	"strings"

	"github.com/herald-router/herald/schemas"
)

// PGP field keys, in the order in which they appear in Event.Fields.
const (
	KeyArmorType          = "armor_type"
	KeyArmorHeaders       = "armor_headers"
	KeyChecksum           = "checksum"
	KeySignatureArmorType = "signature_armor_type"
)

var pgpBegin = []byte("-----BEGIN PGP ")

// classifyPGP reads an OpenPGP armoured block (RFC 4880 §6.2) through buf,
// after any lines of junk: the armour type ("PGP MESSAGE", "PGP SIGNED
// MESSAGE" ...) and the armour headers become fields. The message is the
// signed text of a clear-signed message (dash-escapes resolved, RFC 4880
// §7.1), else the armoured block.
func classifyPGP(ev *schemas.Event, buf *Buffer) bool {
	buf.Rewind()
	var head []byte
	start := 0
	for {
		at := buf.Offset()
		l, ok := buf.Next()
		if !ok {
			return false
		}
		if bytes.HasPrefix(l, pgpBegin) {
			head, start = l, at
			break
		}
	}
	ev.Class, ev.Certainty = ClassPGP, CertaintyPGP
	odd := 0
	armorType, ok := armorLine(head, "BEGIN ")
	if !ok {
		// "-----BEGIN PGP SIGNED MESSAGE-----garbage"
		odd++
		armorType = string(bytes.TrimRight(head[len("-----BEGIN "):], "-"))
		if i := strings.Index(armorType, "-----"); i >= 0 {
			armorType = armorType[:i]
		}
	}
	f := newFieldWriter(4)
	defer f.done(ev)
	f.strS(KeyArmorType, armorType)
	hdrs, bad := readArmorHeaders(buf)
	odd += bad
	if len(hdrs.Fields) > 0 {
		f.add(KeyArmorHeaders, &schemas.Value_Map{Map: hdrs})
	}

	complete := false
	if armorType == "PGP SIGNED MESSAGE" {
		// the signed text, then a signature armour
		var text strings.Builder
		for {
			l, ok := buf.Next()
			if !ok {
				break
			}
			if bytes.HasPrefix(l, pgpBegin) {
				sigType, ok := armorLine(l, "BEGIN ")
				if !ok {
					odd++
				}
				f.strS(KeySignatureArmorType, sigType)
				_, bad := readArmorHeaders(buf)
				odd += bad
				sum, end, ok := readArmorBody(buf, sigType)
				if sum != "" {
					f.strS(KeyChecksum, sum)
				}
				complete = ok
				_ = end
				break
			}
			if bytes.HasPrefix(l, []byte("- ")) {
				l = l[2:]
			}
			text.Write(l)
			text.WriteByte('\n')
		}
		ev.Message = validString([]byte(text.String()))
	} else {
		sum, end, ok := readArmorBody(buf, armorType)
		if sum != "" {
			f.strS(KeyChecksum, sum)
		}
		complete = ok
		ev.Message = validString(bytes.TrimRight(buf.Slice(start, end), "\r\n"))
	}
	if !complete {
		odd++
	}
	ev.Certainty -= float32(odd) * CertaintyPGPOddStep
	if ev.Certainty < CertaintyPGPMin {
		ev.Certainty = CertaintyPGPMin
	}
	return true
}

// armorLine reads "-----BEGIN PGP X-----" (word "BEGIN ") and returns "PGP X".
func armorLine(l []byte, word string) (string, bool) {
	rest, ok := bytes.CutPrefix(l, []byte("-----"+word))
	if !ok {
		return "", false
	}
	rest = bytes.TrimRight(rest, " \t")
	t, ok := bytes.CutSuffix(rest, []byte("-----"))
	if !ok || len(t) == 0 || bytes.Contains(t, []byte("-----")) {
		return "", false
	}
	return validString(t), true
}

// readArmorHeaders reads "Key: value" lines up to the blank line that ends
// them. bad counts lines that are not such headers (control characters in
// a value, no colon).
func readArmorHeaders(buf *Buffer) (m *schemas.Map, bad int) {
	m = &schemas.Map{}
	for {
		l, ok := buf.Next()
		if !ok || len(bytes.TrimRight(l, " \t")) == 0 {
			return m, bad
		}
		name, value, ok := headerLine(l)
		if !ok {
			if len(m.Fields) == 0 {
				// no header block: the base64 body starts right away
				buf.Back()
				return m, bad + 1
			}
			bad++
			continue
		}
		for _, c := range value {
			if c < 0x20 && c != '\t' || c == 0x7f {
				bad++
				break
			}
		}
		if !hasKey(m.Fields, string(name)) {
			m.Fields = append(m.Fields, &schemas.Field{Key: validString(name),
				Value: &schemas.Value{Kind: &schemas.Value_Str{Str: validString(value)}}})
		}
	}
}

// readArmorBody reads base64 lines, the optional "=XXXX" checksum and the
// "-----END <armorType>-----" line. end is the offset after the last line
// read; ok reports whether the END line came.
func readArmorBody(buf *Buffer, armorType string) (sum string, end int, ok bool) {
	for {
		l, more := buf.Next()
		end = buf.Offset()
		if !more {
			return sum, end, false
		}
		if bytes.HasPrefix(l, []byte("-----END ")) {
			t, good := armorLine(l, "END ")
			return sum, end, good && t == armorType
		}
		if len(l) == 5 && l[0] == '=' {
			sum = string(l)
		}
	}
}
