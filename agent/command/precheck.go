package command

import (
	"bytes"
	"errors"
	"slices"
	"time"
	"unicode/utf8"
	"unsafe"

	"linkguard.dev/linkguard/policy/dsse"
)

// Precheck is the cheap half of Verify, for an intake to run on arrival,
// before it queues a message for verification: it refuses what Verify
// would refuse without spending a signature verification on it, with the
// reason Verify would give. It checks the size (CheckSize), that msg is
// UTF-8 text nested at most MaxDepth deep, that it is a command envelope
// (strict DSSE JSON, PayloadType, a base64 payload, 1 to
// dsse.MaxSignatures signatures), and that at least one signature's keyid
// is one known says may sign: "too-large", "malformed", "bad-signature"
// (no signatures) or "untrusted-key" (no signature names a known key).
//
// At least one, not every: Verify accepts an envelope that a trusted key
// signed beside keys it does not know (a cosigner it has no roster entry
// for yet), and a pre-check must never refuse what Verify accepts. What
// passes is not authenticated: anyone can copy a real operator's key id.
//
// known is asked about each non-empty keyid and must not keep the string
// it is given past the call: it aliases msg. Precheck allocates nothing
// for the envelopes lgctl and the console write; one whose JSON escapes a
// name or a value Precheck has to read, or spells a field name in another
// case, is decoded as dsse does instead (the same verdict, at dsse's cost).
func Precheck(msg []byte, known func(keyID string) bool) error {
	if err := precheckText(msg); err != nil {
		return err
	}
	_, err := precheckEnvelope(msg, known)
	return err
}

// Precheck is the package's Precheck against the judge in force now: the
// roster's operator keys, or the configured operator keys while no roster
// is in force. It gives Verify's refusals in Verify's order, so also
// "no-roster" and "roster-expired", which Verify gives every command
// while they last. On success it returns the key id of the first signature
// that names a key of the judge: the operator the message claims to come
// from (not verified), for an intake that queues by signer. Beyond what
// Precheck spends, it allocates that key id and, while no roster is in
// force, the list of configured keys.
func (v *Verifier) Precheck(msg []byte) (signer string, err error) {
	if err := precheckText(msg); err != nil {
		return "", err
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	var known func(string) bool
	if v.Roster != nil {
		if cur := v.Roster.Current(); cur != nil {
			r := cur.Roster
			if r.Expired(now) {
				return "", judgeRefusal(msg, errRosterExpired)
			}
			known = func(id string) bool { return r.ByKey(id) != nil }
		}
	}
	if known == nil {
		if v.Keys == nil || v.Keys.Len() == 0 {
			return "", judgeRefusal(msg, errNoJudge)
		}
		ids := v.Keys.IDs() // sorted; a handful of configured keys
		known = func(id string) bool {
			_, found := slices.BinarySearch(ids, id)
			return found
		}
	}
	raw, err := precheckEnvelope(msg, known)
	if err != nil {
		return "", err
	}
	return string(raw), nil
}

// judgeRefusal is err, unless msg is nested too deep: Verify says that
// first.
func judgeRefusal(msg []byte, err error) error {
	if jsonDepth(msg) > MaxDepth {
		return errPreTooDeep
	}
	return err
}

// Precheck's refusals are fixed values, so refusing junk costs no
// allocation; their details say less than Verify's (no sizes or depths).
var (
	errPreTooLarge   = &Refusal{Reason: ReasonTooLarge, Detail: "over the command size limit"}
	errPreNotUTF8    = &Refusal{Reason: ReasonMalformed, Detail: "not UTF-8 text"}
	errPreTooDeep    = &Refusal{Reason: ReasonMalformed, Detail: "JSON nested too deep"}
	errPreNotJSON    = &Refusal{Reason: ReasonMalformed, Detail: "not a JSON envelope"}
	errPreNotObject  = &Refusal{Reason: ReasonMalformed, Detail: "envelope is not a JSON object"}
	errPreField      = &Refusal{Reason: ReasonMalformed, Detail: "envelope has an unknown field or a field of the wrong type"}
	errPreType       = &Refusal{Reason: ReasonMalformed, Detail: "payloadType is missing or not " + PayloadType}
	errPrePayload    = &Refusal{Reason: ReasonMalformed, Detail: "payload is missing or not base64"}
	errPreTooMany    = &Refusal{Reason: ReasonMalformed, Detail: "more signatures than the cap"}
	errPreNoSigs     = &Refusal{Reason: ReasonBadSignature, Detail: "no signatures"}
	errPreNoKnownKey = &Refusal{Reason: ReasonUntrusted, Detail: "no signature names a key of the roster in force (or of the configured operator keys)"}
	errRosterExpired = &Refusal{Reason: ReasonRosterExpired, Detail: "the roster in force has expired; waiting for a newer one"}
	errNoJudge       = &Refusal{Reason: ReasonNoRoster, Detail: "no roster in force and no operator keys configured"}
)

// precheckText is what Verify checks before it parses anything, but for
// the depth of the JSON: the walk reads at most three levels and refuses
// any deeper value as malformed (which is Verify's verdict on too deep
// JSON too), so only what it does not walk is measured with jsonDepth.
func precheckText(msg []byte) error {
	switch {
	case len(msg) > MaxMessage:
		return errPreTooLarge
	case !utf8.Valid(msg):
		return errPreNotUTF8
	}
	return nil
}

// precheckEnvelope walks msg (UTF-8 text) as dsse's
// strict parser reads it and returns the first keyid known accepts, as a
// slice of msg. Where the walk cannot tell what encoding/json would make of
// the text (escapes, case-folded names, repeated fields) it hands msg to
// precheckDecoded, which asks dsse itself.
func precheckEnvelope(msg []byte, known func(string) bool) ([]byte, error) {
	w := walker{b: msg}
	signer, err := w.envelope(known)
	if errors.Is(err, errUnsure) {
		return precheckDecoded(msg, known)
	}
	return signer, err
}

// precheckDecoded is the pre-check done with dsse's own parser: the
// reference the walk is fuzzed against, and its fallback.
func precheckDecoded(msg []byte, known func(string) bool) ([]byte, error) {
	if jsonDepth(msg) > MaxDepth {
		return nil, errPreTooDeep
	}
	env, err := dsse.ParseLimited(msg, EnvelopeLimits)
	switch {
	case err != nil:
		// Size was checked; dsse's other parse errors (syntax, unknown
		// fields, over the signature cap) are all "malformed" in Verify.
		return nil, errPreNotJSON
	case env.PayloadType != PayloadType:
		return nil, errPreType
	}
	if _, err := env.DecodeB64Payload(); err != nil {
		return nil, errPrePayload
	}
	if len(env.Signatures) == 0 {
		return nil, errPreNoSigs
	}
	for _, s := range env.Signatures {
		if s.KeyID != "" && known(s.KeyID) {
			return []byte(s.KeyID), nil
		}
	}
	return nil, errPreNoKnownKey
}

// errUnsure: the walk cannot decide; decode instead. It is no Refusal, so
// that no refusal's errors.Is matches it.
var errUnsure = errors.New("command: precheck: decode instead")

// walker reads an envelope's JSON text without allocating, checking the
// syntax of all it reads. It reads only the envelope's shape (an object of
// strings and an array of objects of strings): any other value is one
// dsse refuses, so it is refused without being read.
type walker struct {
	b []byte
	i int
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end.
func (w *walker) peek() byte {
	w.ws()
	if w.i < len(w.b) {
		return w.b[w.i]
	}
	return 0
}

// str reads a string at w.i and returns its raw content and whether it
// holds an escape. ok is false when it is not a valid JSON string.
func (w *walker) str() (raw []byte, escaped, ok bool) {
	if w.peek() != '"' {
		return nil, false, false
	}
	w.i++
	start := w.i
	for {
		end := bytes.IndexByte(w.b[w.i:], '"')
		if end < 0 {
			return nil, false, false
		}
		seg := w.b[w.i : w.i+end]
		esc := bytes.IndexByte(seg, '\\')
		if esc < 0 {
			if hasControl(seg) {
				return nil, false, false
			}
			w.i += end + 1
			return w.b[start : w.i-1], escaped, true
		}
		if hasControl(seg[:esc]) {
			return nil, false, false
		}
		escaped = true
		w.i += esc
		if w.i+1 >= len(w.b) {
			return nil, false, false
		}
		switch w.b[w.i+1] {
		case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			w.i += 2
		case 'u':
			if w.i+6 > len(w.b) {
				return nil, false, false
			}
			for _, h := range w.b[w.i+2 : w.i+6] {
				if !isHex(h) {
					return nil, false, false
				}
			}
			w.i += 6
		default:
			return nil, false, false
		}
	}
}

// hasControl reports a byte JSON forbids unescaped in a string.
func hasControl(s []byte) bool {
	for _, c := range s {
		if c < 0x20 {
			return true
		}
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func (w *walker) lit(s string) bool {
	if !bytes.HasPrefix(w.b[w.i:], []byte(s)) {
		return false
	}
	w.i += len(s)
	return true
}

// field names a member of the envelope or of a signature.
type field int

const (
	fieldUnknown field = iota
	fieldPayloadType
	fieldPayload
	fieldSignatures
	fieldKeyID
	fieldSig
	fieldUnsure // a name encoding/json might match to a field by case folding
)

// name classifies a member name among names, as encoding/json would match
// it: exactly, or (unsure) in another case or through escapes.
func name(raw []byte, escaped bool, names ...string) field {
	if escaped {
		return fieldUnsure
	}
	for _, c := range raw {
		if c >= utf8.RuneSelf {
			return fieldUnsure // encoding/json folds some non-ASCII letters onto ASCII ones
		}
	}
	for _, n := range names {
		if string(raw) == n {
			return fieldOf(n)
		}
	}
	for _, n := range names {
		if bytes.EqualFold(raw, []byte(n)) {
			return fieldUnsure
		}
	}
	return fieldUnknown
}

func fieldOf(n string) field {
	switch n {
	case "payloadType":
		return fieldPayloadType
	case "payload":
		return fieldPayload
	case "signatures":
		return fieldSignatures
	case "keyid":
		return fieldKeyID
	}
	return fieldSig
}

// members walks the members of an object at w.i, calling member with each
// name, which must read the value. A syntax error is errPreNotJSON.
func (w *walker) members(member func(f field) error, names ...string) error {
	if w.peek() != '{' {
		return errPreNotObject
	}
	w.i++
	if w.peek() == '}' {
		w.i++
		return nil
	}
	for {
		raw, esc, ok := w.str()
		if !ok || w.peek() != ':' {
			return errPreNotJSON
		}
		w.i++
		f := name(raw, esc, names...)
		if f == fieldUnsure {
			return errUnsure
		}
		if err := member(f); err != nil {
			return err
		}
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			return nil
		default:
			return errPreNotJSON
		}
	}
}

// stringValue reads a value meant for a string field: a string (null
// reads as absent). Another type is errPreField; an escape is errUnsure.
func (w *walker) stringValue() (raw []byte, null bool, err error) {
	switch w.peek() {
	case '"':
		raw, esc, ok := w.str()
		switch {
		case !ok:
			return nil, false, errPreNotJSON
		case esc:
			return nil, false, errUnsure
		}
		return raw, false, nil
	case 'n':
		if !w.lit("null") {
			return nil, false, errPreNotJSON
		}
		return nil, true, nil
	}
	// A value of another type: encoding/json refuses it (after checking
	// the syntax of the rest, which is refused as malformed too).
	return nil, false, errPreField
}

// envelope walks the whole message. Every malformed finding is final,
// wherever it stands: Verify calls all of them "malformed", and dsse finds
// them before it looks at signatures.
func (w *walker) envelope(known func(string) bool) ([]byte, error) {
	var (
		payloadType, payload       []byte
		seenType, seenLoad, seenSg bool
		sigs                       int
		signer                     []byte
	)
	err := w.members(func(f field) error {
		switch f {
		case fieldPayloadType, fieldPayload:
			seen := &seenType
			if f == fieldPayload {
				seen = &seenLoad
			}
			if *seen {
				return errUnsure // repeated: encoding/json keeps the last
			}
			*seen = true
			raw, _, err := w.stringValue()
			if err != nil {
				return err
			}
			if f == fieldPayload {
				payload = raw
			} else {
				payloadType = raw
			}
			return nil
		case fieldSignatures:
			if seenSg {
				return errUnsure // repeated: dsse appends the second list
			}
			seenSg = true
			switch w.peek() {
			case 'n':
				if !w.lit("null") {
					return errPreNotJSON
				}
				return nil
			case '[':
			default:
				return errPreField
			}
			w.i++
			if w.peek() == ']' {
				w.i++
				return nil
			}
			for {
				sigs++
				if sigs > dsse.MaxSignatures {
					return errPreTooMany
				}
				id, err := w.signature()
				if err != nil {
					return err
				}
				if signer == nil && len(id) > 0 && known(unsafe.String(&id[0], len(id))) {
					signer = id
				}
				switch w.peek() {
				case ',':
					w.i++
				case ']':
					w.i++
					return nil
				default:
					return errPreNotJSON
				}
			}
		}
		return errPreField // an unknown field
	}, "payloadType", "payload", "signatures")
	if err != nil {
		return nil, err
	}
	// After the envelope, dsse's decoder asks More(): anything but the end,
	// ']' or '}' is data after the envelope.
	// (peek's 0 would take a NUL byte for the end.)
	if w.ws(); w.i < len(w.b) && w.b[w.i] != ']' && w.b[w.i] != '}' {
		return nil, errPreNotJSON
	}
	// What follows is not walked; the envelope left jsonDepth at depth 0
	// outside any string, so the rest can be measured alone.
	if jsonDepth(w.b[w.i:]) > MaxDepth {
		return nil, errPreTooDeep
	}
	switch {
	case string(payloadType) != PayloadType:
		return nil, errPreType
	case len(payload) == 0 || !isBase64(payload):
		return nil, errPrePayload
	case sigs == 0:
		return nil, errPreNoSigs
	case signer == nil:
		return nil, errPreNoKnownKey
	}
	return signer, nil
}

// signature walks one element of signatures and returns its keyid.
func (w *walker) signature() ([]byte, error) {
	if w.peek() == 'n' { // null decodes to a signature without a keyid
		if !w.lit("null") {
			return nil, errPreNotJSON
		}
		return nil, nil
	}
	if w.peek() != '{' {
		return nil, errPreField // whatever it is, dsse refuses it
	}
	var (
		id              []byte
		seenID, seenSig bool
	)
	err := w.members(func(f field) error {
		switch f {
		case fieldKeyID, fieldSig:
			seen := &seenID
			if f == fieldSig {
				seen = &seenSig
			}
			if *seen {
				return errUnsure
			}
			*seen = true
			raw, _, err := w.stringValue()
			if f == fieldKeyID {
				id = raw
			}
			return err
		}
		return errPreField
	}, "keyid", "sig")
	return id, err
}

// isBase64 reports whether s decodes as standard or URL base64 with
// padding, as dsse decodes payloads (s holds no newlines: a JSON string
// without escapes cannot).
func isBase64(s []byte) bool {
	return validBase64(s, '+', '/') || validBase64(s, '-', '_')
}

func validBase64(s []byte, c62, c63 byte) bool {
	if len(s)%4 != 0 {
		return false
	}
	pad := 0
	switch {
	case len(s) >= 2 && s[len(s)-1] == '=' && s[len(s)-2] == '=':
		pad = 2
	case len(s) >= 1 && s[len(s)-1] == '=':
		pad = 1
	}
	for _, c := range s[:len(s)-pad] {
		if !base64Letter[c] && c != c62 && c != c63 {
			return false
		}
	}
	return true
}

// base64Letter holds the 62 characters both base64 alphabets share.
var base64Letter = func() (t [256]bool) {
	for _, r := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" {
		t[r] = true
	}
	return t
}()
