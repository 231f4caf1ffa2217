// Package store is flashgate's Redis layer: typed calls of the scripts in
// lua/, the key layout, and ticket names. Redis holds the hot copy of stock,
// buyers, wallets and in-flight tickets; MySQL is the source of truth.
//
// # Tickets
//
// Every accepted order or gift is a ticket (NewOrderTicket, NewGiftTicket),
// answered 202 once Kafka has its record. A ticket's final outcome is its
// row in MySQL's tickets table (internal/db, tickets.go): the first writer
// to insert it wins and nothing changes it after. What Redis keeps is the
// state in flight, so that a gateway can undo what never reached Kafka and
// a writer can tell what was undone. Each edge below is one script, run by
// the caller named, so each happens atomically with the stock or coins it
// moves.
//
// A reservation is a field of its event's tickets hash ({ev:N}:tickets,
// "status|user|created ms|reason|order no|marked ms", see TicketState),
// with the ticket in {ev:N}:pending while it has no outcome:
//
//	(none)     -> pending     reserve.lua: gateway PlaceOrder (Redis.Reserve) takes a unit
//	pending    -> aborted     compensate.lua: gateway PlaceOrder, when the produce failed
//	                          (Redis.Compensate, retried by undoLater); the unit goes back.
//	                          Also (none) -> aborted, so a late record is dropped
//	pending    -> committing  claim.lua: worker claimOrders (Redis.Claim), before it
//	                          writes MySQL; from here the gateway can no longer undo it
//	pending, committing, aborted
//	           -> succeeded | failed
//	                          settle.lua: worker publish (Redis.Settle), after MySQL
//	                          committed; a failure that took a unit gives it back (an
//	                          aborted ticket is failed "aborted": it gave its unit back)
//	pending    -> pending+marked
//	                          mark_pending.lua: worker reconcileEvent (Redis.MarkPending),
//	                          once it sent an abort marker for a reservation older than
//	                          FLASHGATE_PENDING_TIMEOUT
//
// The reconciler (worker/reconcile.go, Reconcile) never decides a ticket
// itself: the abort marker goes to the record's partition, behind the
// record if the record got there, and the writer decides whichever it
// meets first (worker/decide.go; a marker met first fails the ticket
// "timeout" and its unit goes back). A ticket MySQL decided whose settle was lost is settled by
// the reconciler as MySQL says (the same settle.lua). A committing or
// marked ticket is looked at again one timeout later (Redis.LookAgain).
// A writer that gives up on a record MySQL keeps refusing fails its
// ticket "invalid" in MySQL only (worker failPoison), and settles it like
// any other.
//
// After success the buyer's unit is an order in MySQL. Its cancel (gateway
// cancelOrder) or expiry (worker ExpireOrders) gives the unit back in MySQL
// first and then in Redis (release.lua, Redis.Release), repeated by the
// worker's ReleaseInRedis until MySQL records it done.
//
// # Gift holds
//
// A gift holds its coins in the sender's holds hash ({w:B}:holds:N, one
// field per ticket; the sender is indexed in {w:B}:holders so the
// reconciler finds them without a scan):
//
//	(none)     -> p:<coins>:<ms>  gift_hold.lua: gateway SendGift (Redis.HoldGift) takes
//	                              the coins from the hot balance
//	p          -> a:<ms>          gift_undo.lua: gateway SendGift, when the produce failed
//	                              (Redis.UndoGift, retried by undoLater); the coins go back.
//	                              Also (none) -> a, so a late record is dropped
//	p          -> c:<coins>:<ms>  gift_claim.lua: worker claimGifts (Redis.ClaimGifts),
//	                              before it writes MySQL
//	p, c       -> d:<ms>          gift_settle.lua: worker publishGifts (Redis.SettleGifts),
//	                              after MySQL committed; a failed gift's coins go back
//	p          -> p + m:<ticket>  worker decideStaleHolds (Redis.MarkHolds, an HSET), once it sent
//	                              an abort marker for a hold older than
//	                              FLASHGATE_PENDING_TIMEOUT
//	d, a       -> (none)          gift_holds_look.lua: worker ReconcileGiftHolds
//	                              (Redis.LookAtHolds) drops "d:" after the timeout (a
//	                              gateway still waiting on its produce reads it until
//	                              then) and "a:" after a day
//
// ReconcileGiftHolds does for holds what Reconcile does for reservations:
// a stale hold that MySQL decided is settled as MySQL says, a pending one
// not yet marked gets an abort marker keyed by its sender (so on its gift's
// partition), and a claimed one is left to its writer.
package store
