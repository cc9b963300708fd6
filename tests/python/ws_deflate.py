"""permessage-deflate with Python's `websockets` client, which offers it by default (run by
tests/tests/ws.rs against rt-server started with `--ws-compression MODE`).

usage: ws_deflate.py ws://127.0.0.1:PORT/ws shared|context-takeover
Prints "ws_deflate: ok" when every check passed; exits non-zero with the reason otherwise.
"""

import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.extensions import permessage_deflate
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Opcode

from wslib import check, recv, send

URL, MODE = sys.argv[1], sys.argv[2]

# (compressed, size on the wire) of every data frame the server sent: websockets does not
# show frames, so its extension's decoder reports them.
FRAMES = []
_decode = permessage_deflate.PerMessageDeflate.decode


def decode(self, frame, *args, **kwargs):
    if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
        FRAMES.append((frame.rsv1, len(frame.data)))
    return _decode(self, frame, *args, **kwargs)


permessage_deflate.PerMessageDeflate.decode = decode


async def main():
    # A client that inflates with an 8-bit window (zlib's smallest): the server must never
    # refer further back, though zlib cannot deflate with less than 9 bits.
    small = ClientPerMessageDeflateFactory(server_max_window_bits=8)
    async with connect(URL, subprotocols=["rt.v1"]) as reader, connect(URL) as writer, connect(
        URL, extensions=[small], compression=None
    ) as narrow:
        ext = narrow.response.headers.get("Sec-WebSocket-Extensions", "")
        check("server_max_window_bits=8" in ext, f"extension {ext!r}")
        await send(narrow, {"type": "subscribe", "channels": ["zip"]})
        check((await recv(narrow))["type"] == "subscribed", "subscribed")
        ext = reader.response.headers.get("Sec-WebSocket-Extensions", "")
        check(ext.startswith("permessage-deflate"), f"extension {ext!r}")
        shared = "server_no_context_takeover" in ext
        check(shared == (MODE == "shared"), f"extension {ext!r} for {MODE}")
        await send(reader, {"type": "subscribe", "channels": ["zip"]})
        check((await recv(reader))["type"] == "subscribed", "subscribed")

        # The publishes go compressed too (websockets compresses every message).
        events = [{"n": i, "text": "lorem ipsum dolor sit amet, " * 20} for i in range(5)]
        # From here the only messages of 128 bytes or more are the 5 events.
        FRAMES.clear()
        for e in events:
            await send(writer, {"type": "publish", "channel": "zip", "data": e})
            check((await recv(writer))["type"] == "published", "published")
        got = [await recv(reader) for _ in range(5)]
        check([json.loads(g["data"]) for g in got] == events, got)
        narrowed = [await recv(narrow) for _ in range(5)]
        check(narrowed == got, narrowed)
        sizes = [size for compressed, size in FRAMES if compressed]
        check(len(sizes) == 10, f"compressed frames {FRAMES}")
        plain = len(json.dumps(got[0], separators=(",", ":")))
        check(max(sizes) * 3 < plain, f"{sizes} bytes on the wire for {plain}")

    # A zip bomb: 16 MiB of spaces, about 16 KiB compressed, over the 64 KiB message limit.
    async with connect(URL) as ws:
        await ws.send(" " * (16 << 20))
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1009, f"closed with {e.rcvd}")
    print("ws_deflate: ok")


asyncio.run(main())
