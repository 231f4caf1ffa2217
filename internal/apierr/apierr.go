// Package apierr is the one place where failures become the error codes of
// the public API (docs/openapi.yaml): every non-2xx answer is an *Error.
package apierr

import (
	"encoding/json"
)

// Error is a client-visible error: an HTTP status, an API code and a message.
type Error struct {
	HTTPStatus int
	Code       string
	Message    string
	// Ticket is set on 409 already_purchased: the user's existing ticket.
	Ticket string
	// RetryAfter, in whole seconds, is sent as the Retry-After header when > 0.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// With returns a copy of e with another message.
func (e *Error) With(msg string) *Error { c := *e; c.Message = msg; return &c }

// WithTicket returns a copy of e carrying the ticket.
func (e *Error) WithTicket(t string) *Error { c := *e; c.Ticket = t; return &c }

// The API's errors, with default messages.
var (
	InvalidRequest      = &Error{HTTPStatus: 400, Code: "invalid_request", Message: "the request is not valid"}
	SelfGift            = &Error{HTTPStatus: 400, Code: "self_gift", Message: "you cannot send a gift to yourself"}
	Unauthorized        = &Error{HTTPStatus: 401, Code: "unauthorized", Message: "a valid bearer token is required"}
	InsufficientBalance = &Error{HTTPStatus: 402, Code: "insufficient_balance", Message: "not enough coins"}
	Forbidden           = &Error{HTTPStatus: 403, Code: "forbidden", Message: "you may not do this"}
	NotFound            = &Error{HTTPStatus: 404, Code: "not_found", Message: "no such resource"}
	MethodNotAllowed    = &Error{HTTPStatus: 405, Code: "method_not_allowed", Message: "method not allowed on this path"}
	AlreadyPurchased    = &Error{HTTPStatus: 409, Code: "already_purchased", Message: "you already bought this event"}
	NotStarted          = &Error{HTTPStatus: 409, Code: "not_started", Message: "the sale has not started yet"}
	Ended               = &Error{HTTPStatus: 409, Code: "ended", Message: "the sale has ended"}
	InvalidState        = &Error{HTTPStatus: 409, Code: "invalid_state", Message: "the order is not in a state that allows this"}
	SoldOut             = &Error{HTTPStatus: 410, Code: "sold_out", Message: "sold out"}
	RequestTimeout      = &Error{HTTPStatus: 408, Code: "request_timeout", Message: "the request did not arrive in time"}
	BodyTooLarge        = &Error{HTTPStatus: 413, Code: "body_too_large", Message: "request body is larger than 8 KiB"}
	RateLimited         = &Error{HTTPStatus: 429, Code: "rate_limited", Message: "too many requests", RetryAfter: 1}
	Unavailable         = &Error{HTTPStatus: 503, Code: "unavailable", Message: "a dependency is unavailable, try again shortly", RetryAfter: 1}
)

// Body returns the JSON error body, the Error schema of docs/openapi.yaml.
func (e *Error) Body() []byte { return e.AppendBody(nil) }

// AppendBody appends the JSON body to dst without a reflection pass: the
// sold-out answer is as hot a path as an accepted order.
func (e *Error) AppendBody(dst []byte) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, e.Code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, e.Message)
	dst = append(dst, '}')
	if e.Ticket != "" {
		dst = append(dst, `,"ticket":`...)
		dst = appendString(dst, e.Ticket)
	}
	return append(dst, '}')
}

// appendString appends s as a JSON string. Plain printable ASCII, which is
// every code and nearly every message, is copied; anything else goes
// through encoding/json, so the escaping is exactly its own.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
