package gateway

import "testing"

// BenchmarkDecodeGift: the body of every gift request.
func BenchmarkDecodeGift(b *testing.B) {
	body := []byte(`{"gift_id":1,"receiver_id":7,"count":1}`)
	b.ReportAllocs()
	for b.Loop() {
		var g giftBody
		if e := decodeJSON(body, &g); e != nil || g.ReceiverID != 7 {
			b.Fatal(e)
		}
	}
}
