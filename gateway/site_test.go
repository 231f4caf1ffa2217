package gateway

import (
	"testing"

	"github.com/flashgate/flashgate/internal/config"
)

// TestWSPublicURL: without FLASHGATE_WS_PUBLIC_URL the pages connect to ws
// on their own host, at FLASHGATE_WS_ADDR's port; with it, to it.
func TestWSPublicURL(t *testing.T) {
	for _, tt := range []struct {
		public, wsAddr, host, want string
	}{
		{"", "127.0.0.1:8081", "127.0.0.1:8080", "ws://127.0.0.1:8081/ws"},
		{"", "0.0.0.0:9000", "shop.example.com:8080", "ws://shop.example.com:9000/ws"},
		{"", ":8081", "shop.example.com", "ws://shop.example.com:8081/ws"},
		{"", "[::1]:8081", "[::1]:8080", "ws://[::1]:8081/ws"},
		{"", "127.0.0.1:8081", "", "ws://127.0.0.1:8081/ws"},
		{"wss://push.example.com/ws", "127.0.0.1:8081", "shop.example.com", "wss://push.example.com/ws"},
	} {
		s := &Server{cfg: Config{Config: config.Config{WSPublicURL: tt.public, WSAddr: tt.wsAddr}}}
		if got := s.wsPublicURL(tt.host); got != tt.want {
			t.Errorf("WS_PUBLIC_URL %q, WS_ADDR %q, page host %q: %q, want %q", tt.public, tt.wsAddr, tt.host, got, tt.want)
		}
	}
}
