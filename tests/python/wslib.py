"""What the WebSocket scripts share: receiving, sending and checking rt's JSON messages."""

import asyncio
import json
import struct


async def recv(ws):
    """The next message that is not a heartbeat, as a dict (binary frames: header + payload)."""
    while True:
        raw = await asyncio.wait_for(ws.recv(), 10)
        if isinstance(raw, bytes):
            (n,) = struct.unpack(">I", raw[:4])
            return {"binary": json.loads(raw[4 : 4 + n]), "payload": raw[4 + n :]}
        msg = json.loads(raw)
        if msg["type"] != "heartbeat":
            return msg


async def send(ws, msg):
    await ws.send(json.dumps(msg))


def check(cond, what):
    if not cond:
        raise AssertionError(what)
