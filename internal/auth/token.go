// Package auth signs and verifies flashgate bearer tokens. A token is
//
//	base64url(uid "." role "." expiry-unix) "." base64url(HMAC-SHA256(secret, payload))
//
// and is verified without any I/O, so the gateway and ws can check it on every
// request at the cost of one HMAC.
package auth

import (
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
	pool sync.Pool // of hash.Hash keyed with the secret
	now  func() time.Time

	prev      *Signer   // nil outside a rotation
	prevUntil time.Time // tokens of prev are refused from then on

	maxTTL time.Duration // zero: any lifetime
}

// NewSigner returns a Signer for secret.
func NewSigner(secret string) *Signer {
	key := []byte(secret)
	return &Signer{
		pool: sync.Pool{New: func() any { return hmac.New(sha256.New, key) }},
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
	h := s.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	sum := h.Sum(nil)
	s.pool.Put(h)
	return sum
}

// Verify checks the token's signature and expiry and returns its claims.
func (s *Signer) Verify(token string) (Claims, error) {
	dot := strings.IndexByte(token, '.')
	if dot <= 0 || dot == len(token)-1 || len(token) > 512 {
		return Claims{}, ErrMalformed
	}
	p, sig := token[:dot], token[dot+1:]
	var sigBuf [sha256.Size]byte
	if enc.DecodedLen(len(sig)) != sha256.Size {
		return Claims{}, ErrMalformed
	}
	if _, err := enc.Decode(sigBuf[:], []byte(sig)); err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(sigBuf[:], s.mac([]byte(p))) {
		if s.prev == nil || !s.now().Before(s.prevUntil) || !hmac.Equal(sigBuf[:], s.prev.mac([]byte(p))) {
			return Claims{}, ErrSignature
		}
	}
	raw, err := enc.DecodeString(p)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 3 {
		return Claims{}, ErrMalformed
	}
	uid, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || uid <= 0 {
		return Claims{}, ErrMalformed
	}
	if parts[1] != RoleUser && parts[1] != RoleAdmin {
		return Claims{}, ErrMalformed
	}
	exp, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	c := Claims{UserID: uid, Role: parts[1], Expires: time.Unix(exp, 0)}
	now := s.now()
	if !now.Before(c.Expires) {
		return c, ErrExpired
	}
	if s.maxTTL > 0 && c.Expires.After(now.Add(s.maxTTL+ClockSkew)) {
		return c, ErrLifetime
	}
	return c, nil
}

// FromHeader extracts the token from an Authorization header value
// ("Bearer <token>"); it returns "" when there is none.
func FromHeader(h string) string {
	const prefix = "Bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}
