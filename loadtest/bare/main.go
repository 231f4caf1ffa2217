// Command bare is the reference server of `make bench`: plain fasthttp
// answering every request with a fixed 202 JSON body the size of the
// gateway's accepted order. Each row of the table is the gateway's rate
// divided by this server's rate for the same wrk script in the same run, so
// the ratio says what the gateway keeps of what this box can serve over HTTP.
package main

import (
	"flag"
	"log"

	"github.com/valyala/fasthttp"
)

// body has the size and shape of an accepted order's answer.
const body = `{"ticket":"o1-0123456789abcdef","status":"pending"}`

func main() {
	addr := flag.String("addr", "127.0.0.1:28090", "listen address (loopback)")
	flag.Parse()
	srv := &fasthttp.Server{
		Name: "bare",
		Handler: func(ctx *fasthttp.RequestCtx) {
			ctx.SetStatusCode(fasthttp.StatusAccepted)
			ctx.SetContentType("application/json")
			ctx.SetBodyString(body)
		},
	}
	log.Printf("bare: answering 202 on %s", *addr)
	if err := srv.ListenAndServe(*addr); err != nil {
		log.Fatal(err)
	}
}
