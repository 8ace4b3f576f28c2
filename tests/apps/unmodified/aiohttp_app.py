"""An unmodified aiohttp app: web.run_app(app, port=$PORT) (no host: 0.0.0.0 and ::), answers its pid."""

import os

from aiohttp import web


async def pid(request: web.Request) -> web.Response:
    return web.Response(text=f"{os.getpid()}\n")


app = web.Application()
app.router.add_get("/", pid)
web.run_app(app, port=int(os.environ["PORT"]))
