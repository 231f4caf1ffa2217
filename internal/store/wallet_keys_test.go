package store

import (
	"strings"
	"testing"
)

// hashTag is the part of a key Redis Cluster hashes: between the first
// "{" and the next "}".
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// TestWalletKeysShareASlot: every key a wallet script touches for a user is
// in the slot of the user's bucket, with the bucket's indexes, and the keys
// of two users differ even when their buckets are the same.
func TestWalletKeysShareASlot(t *testing.T) {
	for _, uid := range []int64{1, 42, WalletBuckets - 1, WalletBuckets, WalletBuckets + 42, 1 << 40} {
		b := WalletBucket(uid)
		if b < 0 || b >= WalletBuckets || int64(b) != uid%WalletBuckets {
			t.Fatalf("bucket of %d = %d", uid, b)
		}
		want := hashTag(HoldersKey(b))
		keys := []string{BalanceKey(uid), HoldsKey(uid), LoadingKey(uid), CreditedKey(uid), IdemKey(uid, "k"),
			IdemKey(uid, ""), RateLimitKey(uid, "gift"), LoadedKey(b)}
		for _, k := range keys {
			if hashTag(k) != want {
				t.Errorf("user %d: %s is tagged %q, want %q", uid, k, hashTag(k), want)
			}
		}
		other := uid + WalletBuckets // same bucket, another user
		if BalanceKey(other) == BalanceKey(uid) || HoldsKey(other) == HoldsKey(uid) || IdemKey(other, "k") == IdemKey(uid, "k") {
			t.Errorf("users %d and %d share a key", uid, other)
		}
	}
	if got := HoldsKey(1066); got != "{w:42}:holds:1066" {
		t.Errorf("HoldsKey(1066) = %q", got)
	}
}
