// Package lua embeds flashgate's Redis scripts. Each script names its KEYS
// and ARGV in a header comment; all keys of one call share one hash tag
// ({ev:N} for an event; {w:B} for a user's wallet, B = the user id mod
// 1024, store.WalletBuckets), so every script runs in a single Redis
// Cluster slot.
package lua

import (
	_ "embed"

	"github.com/redis/rueidis"
)

var (
	//go:embed reserve.lua
	reserveSrc string
	//go:embed compensate.lua
	compensateSrc string
	//go:embed claim.lua
	claimSrc string
	//go:embed settle.lua
	settleSrc string
	//go:embed mark_pending.lua
	markPendingSrc string
	//go:embed release.lua
	releaseSrc string
	//go:embed warm.lua
	warmSrc string
	//go:embed stock_sync.lua
	stockSyncSrc string
	//go:embed addstock.lua
	addStockSrc string
	//go:embed ratelimit.lua
	rateLimitSrc string
	//go:embed wallet_load.lua
	walletLoadSrc string
	//go:embed wallet_credit.lua
	walletCreditSrc string
	//go:embed wallet_resync.lua
	walletResyncSrc string
	//go:embed gift_hold.lua
	giftHoldSrc string
	//go:embed gift_undo.lua
	giftUndoSrc string
	//go:embed gift_claim.lua
	giftClaimSrc string
	//go:embed gift_settle.lua
	giftSettleSrc string
	//go:embed gift_holds_look.lua
	giftHoldsLookSrc string
	//go:embed wallet_unindex.lua
	walletUnindexSrc string
)

// The scripts, loaded once and called by SHA (rueidis falls back to EVAL).
var (
	Reserve     = rueidis.NewLuaScript(reserveSrc)
	Compensate  = rueidis.NewLuaScript(compensateSrc)
	Claim       = rueidis.NewLuaScript(claimSrc)
	Settle      = rueidis.NewLuaScript(settleSrc)
	Release     = rueidis.NewLuaScript(releaseSrc)
	MarkPending = rueidis.NewLuaScript(markPendingSrc)
	Warm        = rueidis.NewLuaScript(warmSrc)
	StockSync   = rueidis.NewLuaScript(stockSyncSrc)
	AddStock    = rueidis.NewLuaScript(addStockSrc)

	RateLimit = rueidis.NewLuaScript(rateLimitSrc)

	WalletLoad    = rueidis.NewLuaScript(walletLoadSrc)
	WalletCredit  = rueidis.NewLuaScript(walletCreditSrc)
	WalletResync  = rueidis.NewLuaScript(walletResyncSrc)
	WalletUnindex = rueidis.NewLuaScript(walletUnindexSrc)
	GiftHold      = rueidis.NewLuaScript(giftHoldSrc)
	GiftUndo      = rueidis.NewLuaScript(giftUndoSrc)
	GiftClaim     = rueidis.NewLuaScript(giftClaimSrc)
	GiftSettle    = rueidis.NewLuaScript(giftSettleSrc)
	GiftHoldsLook = rueidis.NewLuaScript(giftHoldsLookSrc)
)
