// Package lua embeds flashgate's Redis scripts. Each script names its KEYS
// and ARGV in a header comment; all keys of one call share one hash tag
// ({ev:N}), so every script runs in a single Redis Cluster slot.
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
	//go:embed release.lua
	releaseSrc string
	//go:embed warm.lua
	warmSrc string
	//go:embed addstock.lua
	addStockSrc string
)

// The scripts, loaded once and called by SHA (rueidis falls back to EVAL).
var (
	Reserve    = rueidis.NewLuaScript(reserveSrc)
	Compensate = rueidis.NewLuaScript(compensateSrc)
	Claim      = rueidis.NewLuaScript(claimSrc)
	Settle     = rueidis.NewLuaScript(settleSrc)
	Release    = rueidis.NewLuaScript(releaseSrc)
	Warm       = rueidis.NewLuaScript(warmSrc)
	AddStock   = rueidis.NewLuaScript(addStockSrc)
)
