"""Hypercorn (HTTP/2 with RFC 8441 WebSockets, over TLS) for moorline's interop tests.

Usage: hypercorn_ws_app.py CERT_PEM KEY_PEM. An ASGI app that echoes WebSocket
messages (subprotocol "chat.v1" when offered) and answers HTTP GET with "ok".
Binds 127.0.0.1 port 0 through a file descriptor, prints "PORT <n>", and exits
when stdin closes.
"""

import asyncio
import socket
import sys

from hypercorn.asyncio import serve
from hypercorn.config import Config


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        offered = scope.get("subprotocols") or []
        accept = {"type": "websocket.accept"}
        if "chat.v1" in offered:
            accept["subprotocol"] = "chat.v1"
        await send(accept)
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close-me":
                await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    sock.set_inheritable(True)
    config = Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.certfile = sys.argv[1]
    config.keyfile = sys.argv[2]
    config.alpn_protocols = ["h2", "http/1.1"]
    config.websocket_max_message_size = 64 * 1024 * 1024
    config.loglevel = "WARNING"
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    shutdown = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.run_in_executor(None, lambda: (sys.stdin.read(), loop.call_soon_threadsafe(shutdown.set)))
    await serve(app, config, shutdown_trigger=shutdown.wait)


asyncio.run(main())
