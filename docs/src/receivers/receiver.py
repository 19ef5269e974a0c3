#!/usr/bin/env python3
"""A webhook receiver that checks Herald's signatures (Standard Webhooks v1 and v1a).

    WEBHOOK_SECRET=whsec_... python3 receiver.py        # v1: HMAC-SHA256, standard library only
    WEBHOOK_PUBLIC_KEY=whpk_... python3 receiver.py     # v1a: ed25519, needs `pip install cryptography`

Listens on LISTEN (default 127.0.0.1:9000). Answers 204 to a request whose signature
checks out and 401 to any other, and prints a line for each.
"""

import base64
import hashlib
import hmac
import os
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SECRET = os.environ.get("WEBHOOK_SECRET")  # whsec_<base64 key>, shown once when the webhook is made
PUBLIC_KEY = os.environ.get("WEBHOOK_PUBLIC_KEY")  # whpk_<base64 key>, the webhook's signature_public_key
TOLERANCE = 300  # seconds; an older (or future) timestamp may be a replayed request


def v1_matches(content: bytes, signatures: list) -> bool:
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig, expected) for version, sig in signatures if version == "v1")


def v1a_matches(content: bytes, signatures: list) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(PUBLIC_KEY.removeprefix("whpk_")))
    for version, sig in signatures:
        if version == "v1a":
            try:
                key.verify(base64.b64decode(sig), content)
                return True
            except (InvalidSignature, ValueError):
                pass
    return False


def problem(headers, body: bytes):
    """None when the request is signed by the webhook's key, else what is wrong with it."""
    msg_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature")
    if not (msg_id and timestamp.isdigit() and signature):
        return "missing or malformed webhook-* headers"
    if abs(time.time() - int(timestamp)) > TOLERANCE:
        return "timestamp too far from now"
    # Signed: "<webhook-id>.<webhook-timestamp>.<the body's raw bytes>". The header lists
    # one or more "<version>,<base64>" separated by spaces (several during a key rotation).
    content = f"{msg_id}.{timestamp}.".encode() + body
    signatures = [tuple(s.split(",", 1)) for s in signature.split() if "," in s]
    if SECRET and v1_matches(content, signatures):
        return None
    if PUBLIC_KEY and v1a_matches(content, signatures):
        return None
    return "no signature matches"


class Receiver(BaseHTTPRequestHandler):
    def handle_any(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))  # verify these bytes, not re-encoded JSON
        why = problem(self.headers, body)
        self.send_response(401 if why else 204)
        self.end_headers()
        event = self.headers.get("X-Herald-Event")
        if why:
            print(f"rejected {self.command} {self.path}: {why}", flush=True)
        else:
            print(f"verified {self.headers['webhook-id']} ({event}): {body.decode(errors='replace')}", flush=True)

    # Herald sends the body with GET too (Portus's default method) and with POST.
    do_GET = do_POST = do_PUT = handle_any

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    if not (SECRET or PUBLIC_KEY):
        raise SystemExit("set WEBHOOK_SECRET (whsec_...) or WEBHOOK_PUBLIC_KEY (whpk_...)")
    host, _, port = os.environ.get("LISTEN", "127.0.0.1:9000").rpartition(":")
    print(f"listening on {host}:{port}", flush=True)
    ThreadingHTTPServer((host, int(port)), Receiver).serve_forever()
