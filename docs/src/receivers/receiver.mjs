// A webhook receiver that checks Herald's signatures (Standard Webhooks v1 and v1a).
//
//   npm install standardwebhooks
//   WEBHOOK_SECRET=whsec_... node receiver.mjs         # v1: HMAC-SHA256, with the standardwebhooks library
//   WEBHOOK_PUBLIC_KEY=whpk_... node receiver.mjs      # v1a: ed25519, with node:crypto
//
// Listens on LISTEN (default 127.0.0.1:9000). Answers 204 to a request whose signature
// checks out and 401 to any other, and prints a line for each.
import crypto from "node:crypto";
import http from "node:http";
import { Webhook } from "standardwebhooks";

const secret = process.env.WEBHOOK_SECRET; // whsec_<base64 key>, shown once when the webhook is made
const publicKey = process.env.WEBHOOK_PUBLIC_KEY; // whpk_<base64 key>, the webhook's signature_public_key
const TOLERANCE = 300; // seconds; an older (or future) timestamp may be a replayed request

function v1Matches(body, headers) {
  try {
    // Checks the timestamp too, with the same five minutes.
    new Webhook(secret).verify(body, headers, { jsonParse: false });
    return true;
  } catch {
    return false;
  }
}

function v1aMatches(body, headers) {
  const raw = Buffer.from(publicKey.replace(/^whpk_/, ""), "base64");
  const key = crypto.createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
  const id = headers["webhook-id"];
  const timestamp = headers["webhook-timestamp"];
  if (!id || !/^\d+$/.test(timestamp ?? "") || Math.abs(Date.now() / 1000 - Number(timestamp)) > TOLERANCE) {
    return false;
  }
  // Signed: "<webhook-id>.<webhook-timestamp>.<the body's raw bytes>".
  const content = Buffer.concat([Buffer.from(`${id}.${timestamp}.`), body]);
  return (headers["webhook-signature"] ?? "")
    .split(" ")
    .filter((s) => s.startsWith("v1a,"))
    .some((s) => crypto.verify(null, content, key, Buffer.from(s.slice(4), "base64")));
}

if (!secret && !publicKey) {
  console.error("set WEBHOOK_SECRET (whsec_...) or WEBHOOK_PUBLIC_KEY (whpk_...)");
  process.exit(2);
}
const [host, port] = (process.env.LISTEN ?? "127.0.0.1:9000").split(/:(?=\d+$)/);
http
  .createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const body = Buffer.concat(chunks); // verify these bytes, not re-encoded JSON
      const ok = (secret && v1Matches(body, req.headers)) || (publicKey && v1aMatches(body, req.headers));
      res.writeHead(ok ? 204 : 401).end();
      const event = req.headers["x-herald-event"];
      console.log(ok ? `verified ${req.headers["webhook-id"]} (${event}): ${body}` : `rejected ${req.method} ${req.url}`);
    });
  })
  .listen(Number(port), host, () => console.log(`listening on ${host}:${port}`));
