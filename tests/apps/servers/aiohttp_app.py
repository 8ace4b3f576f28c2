"""aiohttp app on the inherited listener: `web.run_app(app, sock=socket.socket(fileno=3))`.

Answers `<instance> <pid> <ppid> aiohttp`. aiohttp stops gracefully on SIGTERM itself.
"""

import os
import socket

from aiohttp import web

BODY = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()} {os.getppid()} aiohttp\n"


async def hello(request: web.Request) -> web.Response:
    return web.Response(text=BODY)


app = web.Application()
app.router.add_get("/", hello)

if __name__ == "__main__":
    web.run_app(app, sock=socket.socket(fileno=3), shutdown_timeout=5, print=None)
