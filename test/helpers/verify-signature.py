"""An independent subscriber-side check of signature v2, written from the README alone.

Reads JSON lines {"raw": <message text>, "channel": <channel>} on stdin and prints, per line,
"ok" when the message's signature is a valid v2 signature for that channel and the secret in
ROTATOR_SIGNING_SECRET, else "bad". With --sign it prints the v2 signature of each line instead.
"""
import hashlib
import hmac
import json
import os
import sys


def canonical(message: dict, channel: str) -> str:
    fields = {k: v for k, v in message.items() if k != "signature"}
    fields["channel"] = channel
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sign(message: dict, channel: str, secret: str) -> str:
    payload = canonical(message, channel).encode("utf-8")
    return "v2=" + hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def verify(raw: str, channel: str, secret: str) -> bool:
    message = json.loads(raw)
    signature = message.get("signature")
    if not isinstance(signature, str) or not signature.startswith("v2="):
        return False
    return hmac.compare_digest(signature, sign(message, channel, secret))


def main() -> None:
    secret = os.environ["ROTATOR_SIGNING_SECRET"]
    signing = "--sign" in sys.argv[1:]
    for line in sys.stdin:
        if not line.strip():
            continue
        item = json.loads(line)
        if signing:
            print(sign(json.loads(item["raw"]), item["channel"], secret))
        else:
            print("ok" if verify(item["raw"], item["channel"], secret) else "bad")


if __name__ == "__main__":
    main()
