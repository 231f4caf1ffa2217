package auth

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func TestSignVerify(t *testing.T) {
	s := NewSigner("0123456789abcdef-secret")
	tok := s.Sign(42, RoleAdmin, time.Hour)
	c, err := s.Verify(tok)
	if err != nil || c.UserID != 42 || !c.IsAdmin() {
		t.Fatalf("Verify(own token) = %+v, %v", c, err)
	}
	if c, err := s.Verify(s.Sign(7, RoleUser, time.Hour)); err != nil || c.IsAdmin() {
		t.Fatalf("user token: %+v, %v", c, err)
	}
}

func TestVerifyRejects(t *testing.T) {
	s := NewSigner("0123456789abcdef-secret")
	good := s.Sign(42, RoleUser, time.Hour)
	other := NewSigner("another-secret-of-16+").Sign(42, RoleUser, time.Hour)
	// flip changes one character to another valid base64url character, so
	// the token still decodes and only the signature check can refuse it.
	flip := func(tok string, i int) string {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	payload, sig, _ := strings.Cut(good, ".")
	adminPayload, _, _ := strings.Cut(s.Sign(42, RoleAdmin, time.Hour), ".")
	cases := []struct {
		name string
		tok  string
		want error
	}{
		{"empty", "", ErrMalformed},
		{"no dot", "abc", ErrMalformed},
		{"trailing dot", payload + ".", ErrMalformed},
		{"short signature", payload + ".abc", ErrMalformed},
		{"signature flipped", flip(good, len(good)-5), ErrSignature},
		{"payload flipped", flip(good, 2), ErrSignature},
		{"other secret", other, ErrSignature},
		{"payload swapped for admin", adminPayload + "." + sig, ErrSignature},
		{"huge", strings.Repeat("a", 600) + "." + sig, ErrMalformed},
		{"expired", func() string { s2 := NewSigner("0123456789abcdef-secret"); return s2.Sign(1, RoleUser, -time.Second) }(), ErrExpired},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := s.Verify(c.tok); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	old := NewSigner("the-old-secret-0123")
	tok := old.Sign(9, RoleUser, 48*time.Hour)
	now := time.Now()
	until := now.Add(time.Hour)
	s := NewRotatingSigner("the-new-secret-4567", "the-old-secret-0123", until)

	if _, err := s.Verify(tok); err != nil {
		t.Fatalf("old token during the window: %v", err)
	}
	if _, err := s.Verify(s.Sign(9, RoleUser, time.Hour)); err != nil {
		t.Fatalf("new token: %v", err)
	}
	// New tokens are signed with the new secret only.
	if _, err := old.Verify(s.Sign(9, RoleUser, time.Hour)); !errors.Is(err, ErrSignature) {
		t.Fatalf("new token under the old secret: %v", err)
	}
	s.now = at(until.Add(time.Second))
	if _, err := s.Verify(tok); !errors.Is(err, ErrSignature) {
		t.Fatalf("old token after the window: %v, want ErrSignature", err)
	}
	if NewRotatingSigner("the-new-secret-4567", "", time.Time{}).prev != nil {
		t.Fatal("no previous secret, yet a rotation")
	}
	// No end, no window: the end is configured, never derived from the
	// process start (a restart would reopen it).
	if _, err := NewRotatingSigner("the-new-secret-4567", "the-old-secret-0123", time.Time{}).Verify(tok); !errors.Is(err, ErrSignature) {
		t.Fatalf("old token with no end to the window: %v, want ErrSignature", err)
	}
}

// TestMaxTTL: a token that expires further ahead than the maximum lifetime
// (plus the clock skew) is refused, whoever signed it.
func TestMaxTTL(t *testing.T) {
	s := NewSigner("0123456789abcdef-secret").WithMaxTTL(24 * time.Hour)
	for _, tc := range []struct {
		ttl  time.Duration
		want error
	}{
		{time.Hour, nil},
		{24 * time.Hour, nil},
		{24*time.Hour + ClockSkew - time.Second, nil}, // an issuer's clock a little ahead
		{24*time.Hour + ClockSkew + 2*time.Second, ErrLifetime},
		{30 * 24 * time.Hour, ErrLifetime},
		{10 * 365 * 24 * time.Hour, ErrLifetime},
		{-time.Second, ErrExpired},
	} {
		if _, err := s.Verify(s.Sign(1, RoleAdmin, tc.ttl)); !errors.Is(err, tc.want) {
			t.Errorf("token for %v: %v, want %v", tc.ttl, err, tc.want)
		}
	}
	if _, err := NewSigner("0123456789abcdef-secret").Verify(s.Sign(1, RoleUser, 10*365*24*time.Hour)); err != nil {
		t.Errorf("no maximum: a ten-year token gives %v", err)
	}
}

func TestFromHeader(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		if got := FromHeader(h); got != want {
			t.Errorf("FromHeader(%q) = %q, want %q", h, got, want)
		}
	}
}

// TestOneSpelling: a signature of 32 bytes is 43 base64url characters, whose
// last one carries 2 unused bits. Setting them gives other spellings of the
// same signature; each is refused, so every token has exactly one spelling.
func TestOneSpelling(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	s := NewSigner("0123456789abcdef-secret")
	for uid := int64(1); uid <= 20; uid++ {
		tok := s.Sign(uid, RoleUser, time.Hour)
		if _, err := s.Verify(tok); err != nil {
			t.Fatalf("Verify(own token) = %v", err)
		}
		last := strings.IndexByte(alphabet, tok[len(tok)-1])
		for bits := 1; bits < 4; bits++ {
			other := tok[:len(tok)-1] + string(alphabet[last^bits])
			if _, err := s.Verify(other); !errors.Is(err, ErrMalformed) {
				t.Fatalf("another spelling %q of token %q: %v, want ErrMalformed", other, tok, err)
			}
		}
	}
}

// FuzzVerify: Verify never panics and accepts only what the key signed.
func FuzzVerify(f *testing.F) {
	s := NewSigner("0123456789abcdef-secret")
	f.Add(s.Sign(1, RoleUser, time.Hour))
	f.Add(s.Sign(1<<62, RoleAdmin, time.Hour))
	f.Add("")
	f.Add("a.b")
	f.Add("MS51c2VyLjE3OTUzNjg5OTI.fBpMamTh7ZGQTjFRVeOmUJghiasqoYtAGfk6Fa12kho")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := s.Verify(tok)
		// The header form, which the gateway uses, agrees with Verify.
		hc, herr := s.VerifyHeader([]byte("Bearer " + tok))
		if strings.TrimSpace(tok) == tok && tok != "" && (hc != c || herr != err) {
			t.Fatalf("VerifyHeader(Bearer %q) = %+v, %v; Verify = %+v, %v", tok, hc, herr, c, err)
		}
		if err != nil {
			return
		}
		if c.UserID <= 0 || (c.Role != RoleUser && c.Role != RoleAdmin) {
			t.Fatalf("accepted %q with claims %+v", tok, c)
		}
		// Accepted means signed: the signature is the key's HMAC of the
		// payload, in its one spelling. (Without the HMAC check, any
		// mutated signature of a seed would fail here.)
		p, sig, _ := strings.Cut(tok, ".")
		if want := enc.EncodeToString(s.mac([]byte(p))); sig != want {
			t.Fatalf("accepted %q, whose signature is not the key's %q", tok, want)
		}
	})
}

// The gateway verifies a token on every request, the cheap answers
// included: doing it must not allocate.
func TestVerifyAllocatesNothing(t *testing.T) {
	s := NewSigner("0123456789abcdef-secret")
	h := []byte("Bearer " + s.Sign(42, RoleUser, time.Hour))
	if _, err := s.VerifyHeader([]byte("Basic abc")); err != ErrMissing {
		t.Errorf("VerifyHeader(Basic) = %v, want ErrMissing", err)
	}
	if raceEnabled {
		t.Skip("allocation counts are meaningless under -race")
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := s.VerifyHeader(h); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("VerifyHeader allocates %v times per call, want 0", n)
	}
}
