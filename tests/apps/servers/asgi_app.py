"""ASGI app for uvicorn (`uvicorn --fd 3 asgi_app:app`) and hypercorn (`--bind fd://3`).

Answers `<instance> <pid> <ppid> asgi`; handles the lifespan protocol so servers log no noise.
"""

import os

BODY = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()} {os.getppid()} asgi\n".encode()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(len(BODY)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
