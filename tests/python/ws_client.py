"""rt's WebSocket protocol driven by Python's `websockets` client (run by tests/tests/ws.rs).

usage: ws_client.py ws://127.0.0.1:PORT/ws
Prints "ws_client: ok" when every check passed; exits non-zero with the reason otherwise.
"""

import asyncio
import json
import struct
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from wslib import check, recv, send

URL = sys.argv[1]


async def main():
    async with connect(URL, subprotocols=["rt.v1"]) as reader, connect(URL) as writer:
        check(reader.subprotocol == "rt.v1", f"subprotocol {reader.subprotocol!r}")
        await send(reader, {"type": "subscribe", "channels": ["py"]})
        sub = await recv(reader)
        check(sub["type"] == "subscribed" and sub["recovered"] is True, sub)
        epoch = sub["cursor"].split(",")[0]

        for i in range(1, 4):
            await send(writer, {"type": "publish", "channel": "py", "data": {"n": i}, "id": f"py-{i}"})
            ack = await recv(writer)
            check(ack == {**ack, "type": "published", "offset": i, "duplicate": False}, ack)
        # A retried publish (same id) is acknowledged with the first position and not repeated.
        await send(writer, {"type": "publish", "channel": "py", "data": {"n": 1}, "id": "py-1"})
        dup = await recv(writer)
        check(dup["offset"] == 1 and dup["duplicate"] is True, dup)

        got = [await recv(reader) for _ in range(3)]
        check([e["offset"] for e in got] == [1, 2, 3], got)
        check(json.loads(got[0]["data"]) == {"n": 1}, got[0])

        # Binary publish in the documented binary layout.
        header = json.dumps({"type": "publish", "channel": "py", "id": "bin-1"}).encode()
        await writer.send(struct.pack(">I", len(header)) + header + b"\x00\xffpy")
        check((await recv(writer))["offset"] == 4, "binary ack")
        ev = await recv(reader)
        check(ev["binary"]["offset"] == 4 and ev["payload"] == b"\x00\xffpy", ev)

    # Resume from offset 2: exactly 3 and 4 are replayed.
    async with connect(URL) as ws:
        await send(ws, {"type": "subscribe", "channels": ["py"], "cursor": f"{epoch},py=2"})
        sub = await recv(ws)
        check(sub["recovered"] is True, sub)
        replay = [await recv(ws) for _ in range(2)]
        offsets = [e["offset"] if "offset" in e else e["binary"]["offset"] for e in replay]
        check(offsets == [3, 4], replay)

        # A message over the 64 KiB limit closes with 1009.
        await ws.send("x" * 70_000)
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as e:
            check(e.rcvd is not None and e.rcvd.code == 1009, f"close {e.rcvd}")

    print("ws_client: ok")


asyncio.run(main())
