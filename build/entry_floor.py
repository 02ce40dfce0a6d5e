"""The floor of the hook's send stack (bench/hook_latency.py): import httpx and nacl,
sign one report and POST it over TLS. Run from source or frozen (build/build --floor)
so both ratios compare like with like. Settings come from the environment, never argv:
CCFLUX_FLOOR_BASE, CCFLUX_FLOOR_TOKEN, CCFLUX_FLOOR_CA, CCFLUX_FLOOR_SEED (key file),
CCFLUX_FLOOR_TURN (distinct per run)."""

import base64
import json
import os
import time

import httpx
import nacl.signing

env = os.environ
with open(env["CCFLUX_FLOOR_SEED"], "rb") as fh:
    key = nacl.signing.SigningKey(fh.read())
usage = {"input_tokens": 1, "output_tokens": 1, "cache_read_tokens": 0, "cache_write_tokens": 0}
body = json.dumps({"schema_version": 1, "session_id": "floor", "user_email": "",
                   "turn_index": int(env["CCFLUX_FLOOR_TURN"]), "timestamp_utc": "2026-01-01T00:00:00Z",
                   "models": {"m": usage}, "plugin_version": "floor"}, separators=(",", ":")).encode()
stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
signature = key.sign(body + b"\n" + stamp.encode()).signature
header = "ed25519 %s %s" % (base64.b64encode(signature).decode(), base64.b64encode(bytes(key.verify_key)).decode())
reply = httpx.post(env["CCFLUX_FLOOR_BASE"] + "/report", content=body, verify=env["CCFLUX_FLOOR_CA"],
                   headers={"Authorization": "Bearer " + env["CCFLUX_FLOOR_TOKEN"], "Content-Type": "application/json",
                            "X-CCFLUX-Timestamp": stamp, "X-CCFLUX-Signature": header})
raise SystemExit(0 if reply.status_code == 200 else reply.status_code)
