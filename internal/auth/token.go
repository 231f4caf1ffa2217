// Package auth signs and verifies flashgate bearer tokens. A token is
//
//	base64url(uid "." role "." expiry-unix) "." base64url(HMAC-SHA256(secret, payload))
//
// and is verified without any I/O, so the gateway and ws can check it on every
// request at the cost of one HMAC.
package auth

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Roles.
const (
	RoleUser  = "user"
	RoleAdmin = "admin"
)

// Errors returned by Verify. All of them mean 401 to a client.
var (
	ErrMalformed = errors.New("malformed token")
	ErrSignature = errors.New("bad token signature")
	ErrExpired   = errors.New("token expired")
	ErrMissing   = errors.New("missing bearer token")
	// ErrLifetime is a token that expires further ahead than the signer's
	// maximum lifetime: whoever minted it, the services do not honour it.
	ErrLifetime = errors.New("token lifetime too long")
)

// ClockSkew is how far ahead of this host's clock a token's issuer may be:
// a token is refused only when it expires more than MaxTTL plus this from
// now.
const ClockSkew = time.Minute

// Claims are what a token says about its bearer.
type Claims struct {
	UserID  int64
	Role    string
	Expires time.Time
}

// IsAdmin reports whether the bearer has the admin role.
func (c Claims) IsAdmin() bool { return c.Role == RoleAdmin }

// Signer signs tokens with one secret and verifies them with it or, during a
// key rotation, with the previous one. It is safe for concurrent use.
type Signer struct {
	pool sync.Pool // of *macState keyed with the secret
	now  func() time.Time

	prev      *Signer   // nil outside a rotation
	prevUntil time.Time // tokens of prev are refused from then on

	maxTTL time.Duration // zero: any lifetime
}

// NewSigner returns a Signer for secret.
func NewSigner(secret string) *Signer {
	key := []byte(secret)
	return &Signer{
		pool: sync.Pool{New: func() any { return &macState{h: hmac.New(sha256.New, key)} }},
		now:  time.Now,
	}
}

// NewRotatingSigner returns a Signer for secret that also accepts tokens
// signed with previous (if not empty) until the time until. The end is a
// fixed time that every replica is configured with, never one computed from
// a process's start, which would reopen the window at every restart; a zero
// until accepts nothing of previous.
func NewRotatingSigner(secret, previous string, until time.Time) *Signer {
	s := NewSigner(secret)
	if previous != "" && !until.IsZero() {
		s.prev, s.prevUntil = NewSigner(previous), until
	}
	return s
}

// WithMaxTTL makes s refuse (ErrLifetime) tokens that expire more than d
// (plus ClockSkew) from now, so that a token minted for ten years, leaked or
// signed with a stolen key, is not honoured. Zero means no limit. It returns
// s; call it before s is shared.
func (s *Signer) WithMaxTTL(d time.Duration) *Signer {
	s.maxTTL = d
	return s
}

// enc is strict: the unused bits of the last character must be zero, so a
// token has exactly one spelling (a token denylist or a log search by token
// could otherwise be dodged by another spelling of the same signature).
var enc = base64.RawURLEncoding.Strict()

// Sign returns a token for the user with the role, valid for ttl.
func (s *Signer) Sign(userID int64, role string, ttl time.Duration) string {
	payload := strconv.FormatInt(userID, 10) + "." + role + "." + strconv.FormatInt(s.now().Add(ttl).Unix(), 10)
	p := enc.EncodeToString([]byte(payload))
	return p + "." + enc.EncodeToString(s.mac([]byte(p)))
}

func (s *Signer) mac(msg []byte) []byte {
	st := s.pool.Get().(*macState)
	sum := append([]byte(nil), st.sum(msg)...)
	s.pool.Put(st)
	return sum
}

// maxToken is the longest token Verify looks at; anything longer is
// malformed.
const maxToken = 512

// macState is a keyed HMAC with buffers for one verification, pooled so
// that verifying a token allocates nothing: the gateway does it on every
// request, sold-out answers included.
type macState struct {
	h   hash.Hash
	out [sha256.Size]byte
	tok [maxToken]byte // the token, copied in
	raw [maxToken]byte // its decoded payload
}

// sum returns the HMAC of msg, in st.out.
func (st *macState) sum(msg []byte) []byte {
	st.h.Reset()
	st.h.Write(msg)
	return st.h.Sum(st.out[:0])
}

// Verify checks the token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	if len(token) > maxToken {
		return Claims{}, ErrMalformed
	}
	st := s.pool.Get().(*macState)
	defer s.pool.Put(st)
	return s.verify(st, st.tok[:copy(st.tok[:], token)])
}

// VerifyHeader is Verify for an Authorization header value ("Bearer
// <token>"), as bytes straight from the request. ErrMissing means there is
// no bearer token in it.
func (s *Signer) VerifyHeader(h []byte) (Claims, error) {
	tok := bearer(h)
	if len(tok) == 0 {
		return Claims{}, ErrMissing
	}
	if len(tok) > maxToken {
		return Claims{}, ErrMalformed
	}
	st := s.pool.Get().(*macState)
	defer s.pool.Put(st)
	return s.verify(st, st.tok[:copy(st.tok[:], tok)])
}

// verify checks tok, which is in st's buffer.
func (s *Signer) verify(st *macState, tok []byte) (Claims, error) {
	dot := bytes.IndexByte(tok, '.')
	if dot <= 0 || dot == len(tok)-1 {
		return Claims{}, ErrMalformed
	}
	p, sig := tok[:dot], tok[dot+1:]
	var sigBuf [sha256.Size]byte
	if enc.DecodedLen(len(sig)) != sha256.Size {
		return Claims{}, ErrMalformed
	}
	if _, err := enc.Decode(sigBuf[:], sig); err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sigBuf[:], st.sum(p)) {
		if s.prev == nil || !s.now().Before(s.prevUntil) || !hmac.Equal(sigBuf[:], s.prev.mac(p)) {
			return Claims{}, ErrSignature
		}
	}
	n, err := enc.Decode(st.raw[:], p)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	uid, rest, ok := bytes.Cut(st.raw[:n], []byte{'.'})
	if !ok {
		return Claims{}, ErrMalformed
	}
	role, exp, ok := bytes.Cut(rest, []byte{'.'})
	if !ok {
		return Claims{}, ErrMalformed
	}
	var c Claims
	switch string(role) {
	case RoleUser:
		c.Role = RoleUser
	case RoleAdmin:
		c.Role = RoleAdmin
	default:
		return Claims{}, ErrMalformed
	}
	if c.UserID, ok = parseInt(uid); !ok || c.UserID <= 0 {
		return Claims{}, ErrMalformed
	}
	e, ok := parseInt(exp)
	if !ok {
		return Claims{}, ErrMalformed
	}
	c.Expires = time.Unix(e, 0)
	now := s.now()
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	if s.maxTTL > 0 && c.Expires.After(now.Add(s.maxTTL+ClockSkew)) {
		return c, ErrLifetime
	}
	return c, nil
}

// parseInt parses a decimal int64 as strconv.ParseInt(b, 10, 64) does,
// sign included, without making a string of b.
func parseInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg || len(b) > 0 && b[0] == '+' {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > 1<<63-1 {
		return 0, false
	}
	if neg {
		return -int64(n), true
	}
	return int64(n), true
}

// FromHeader extracts the token from an Authorization header value
// ("Bearer <token>"); it returns "" when there is none.
func FromHeader(h string) string {
	if len(h) > len(bearerPrefix) && strings.EqualFold(h[:len(bearerPrefix)], bearerPrefix) {
		return strings.TrimSpace(h[len(bearerPrefix):])
	}
	return ""
}

const bearerPrefix = "Bearer "

// bearer is FromHeader on bytes.
func bearer(h []byte) []byte {
	if len(h) > len(bearerPrefix) && bytes.EqualFold(h[:len(bearerPrefix)], []byte(bearerPrefix)) {
		return bytes.TrimSpace(h[len(bearerPrefix):])
	}
	return nil
}
