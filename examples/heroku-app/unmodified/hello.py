"""A plain Python server, unmodified: http.server on $PORT, as a tutorial writes it.

Nothing in it knows about the runtime. In cluster mode the runtime's preload makes its
bind() adopt the socket the master pre-bound, so every instance serves the same port.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            json.dumps(
                {
                    "app": "hello-python",
                    "instance": os.environ.get("NODE_APP_INSTANCE"),
                    "pid": os.getpid(),
                }
            ).encode()
            + b"\n"
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # no line per request


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "3000"))
    server = ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), port), Hello)
    print(f"listening on {port}", flush=True)
    server.serve_forever()
