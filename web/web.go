// Package web is flashgate's browser client: plain HTML, CSS and ES modules
// under static/, embedded in the binary and served by the gateway. The pages
// use the public API and the WebSocket the way any client would; nothing
// here is built, and nothing is fetched from anywhere but the gateway.
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// Asset is one file as the gateway serves it.
type Asset struct {
	Body        []byte
	ContentType string
	// ETag is a strong validator of Body, quoted.
	ETag string
	// HTML pages get the content security policy; the others do not need it.
	HTML bool
}

// Site maps request paths to assets: Public for the gateway's public
// listener (the sale and room pages), Internal for its internal one (the
// admin page, whose routes only that listener serves).
type Site struct {
	Public, Internal map[string]*Asset
}

// pages are the URL paths of the HTML pages; every other file is served
// under /static/.
var pages = map[string]string{
	"/":     "sale.html",
	"/room": "room.html",
}

// adminPage is served on the internal listener only.
const adminPath, adminFile = "/admin", "admin.html"

// Load reads the embedded files once, at start-up.
func Load() Site {
	site := Site{Public: map[string]*Asset{}, Internal: map[string]*Asset{}}
	byFile := map[string]*Asset{}
	err := fs.WalkDir(files, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ext := path.Ext(p)
		a := &Asset{Body: b, ContentType: contentType(ext), ETag: `"` + hex.EncodeToString(sum[:12]) + `"`, HTML: ext == ".html"}
		rel := strings.TrimPrefix(p, "static/")
		byFile[rel] = a
		if !a.HTML {
			site.Public["/static/"+rel] = a
			site.Internal["/static/"+rel] = a
		}
		return nil
	})
	if err != nil {
		panic("web: the embedded files cannot be read: " + err.Error()) // a build defect, not an I/O failure
	}
	for p, f := range pages {
		site.Public[p] = byFile[f]
	}
	site.Internal[adminPath] = byFile[adminFile]
	return site
}

func contentType(ext string) string {
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".svg":
		return "image/svg+xml"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}
