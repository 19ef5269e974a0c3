// A webhook receiver that checks Herald's signatures (Standard Webhooks v1 and v1a), with
// Go's standard library only.
//
//	WEBHOOK_SECRET=whsec_... go run receiver.go         # v1: HMAC-SHA256
//	WEBHOOK_PUBLIC_KEY=whpk_... go run receiver.go      # v1a: ed25519
//
// Listens on LISTEN (default 127.0.0.1:9000). Answers 204 to a request whose signature
// checks out and 401 to any other, and prints a line for each.
package main

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

const tolerance = 5 * time.Minute // an older (or future) timestamp may be a replayed request

var (
	secret    = os.Getenv("WEBHOOK_SECRET")     // whsec_<base64 key>, shown once when the webhook is made
	publicKey = os.Getenv("WEBHOOK_PUBLIC_KEY") // whpk_<base64 key>, the webhook's signature_public_key
)

// verify returns nil when the request is signed by the webhook's key.
func verify(h http.Header, body []byte) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	seconds, err := strconv.ParseInt(ts, 10, 64)
	if id == "" || sigs == "" || err != nil {
		return errors.New("missing or malformed webhook-* headers")
	}
	if d := time.Since(time.Unix(seconds, 0)); d > tolerance || d < -tolerance {
		return errors.New("timestamp too far from now")
	}
	// Signed: "<webhook-id>.<webhook-timestamp>.<the body's raw bytes>". The header lists
	// one or more "<version>,<base64>" separated by spaces (several during a key rotation).
	content := append([]byte(id+"."+ts+"."), body...)
	for _, s := range strings.Fields(sigs) {
		version, value, _ := strings.Cut(s, ",")
		sig, err := base64.StdEncoding.DecodeString(value)
		if err != nil {
			continue
		}
		switch {
		case version == "v1" && secret != "":
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
			if err != nil {
				return errors.New("WEBHOOK_SECRET is not whsec_<base64>")
			}
			mac := hmac.New(sha256.New, key)
			mac.Write(content)
			if hmac.Equal(sig, mac.Sum(nil)) {
				return nil
			}
		case version == "v1a" && publicKey != "":
			key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(publicKey, "whpk_"))
			if err != nil || len(key) != ed25519.PublicKeySize {
				return errors.New("WEBHOOK_PUBLIC_KEY is not whpk_<base64 of 32 bytes>")
			}
			if ed25519.Verify(ed25519.PublicKey(key), content, sig) {
				return nil
			}
		}
	}
	return errors.New("no signature matches")
}

func main() {
	if secret == "" && publicKey == "" {
		log.Fatal("set WEBHOOK_SECRET (whsec_...) or WEBHOOK_PUBLIC_KEY (whpk_...)")
	}
	listen := os.Getenv("LISTEN")
	if listen == "" {
		listen = "127.0.0.1:9000"
	}
	// Herald sends the body with GET too (Portus's default method) and with POST.
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20)) // verify these bytes, not re-encoded JSON
		if err == nil {
			err = verify(r.Header, body)
		}
		if err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			log.Printf("rejected %s %s: %v", r.Method, r.URL.Path, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		log.Printf("verified %s (%s): %s", r.Header.Get("webhook-id"), r.Header.Get("X-Herald-Event"), body)
	})
	log.Printf("listening on %s", listen)
	log.Fatal(http.ListenAndServe(listen, nil))
}
