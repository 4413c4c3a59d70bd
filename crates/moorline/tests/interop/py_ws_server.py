"""Python `websockets` server for moorline's interop tests.

Echoes every message, negotiates permessage-deflate (the library's default),
picks subprotocol "chat.v1" when offered, and on a message "close-me" closes
with 4000 "bye". Prints "PORT <n>" once listening; exits when stdin closes.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for message in ws:
        if message == "close-me":
            await ws.close(4000, "bye")
            return
        if message == "ping-me":
            await ws.ping(b"python")
            continue
        await ws.send(message)


async def main():
    async with serve(
        echo,
        "127.0.0.1",
        0,
        subprotocols=["chat.v1"],
        max_size=64 * 1024 * 1024,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)


asyncio.run(main())
