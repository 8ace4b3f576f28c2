"""An unmodified http.server app: binds ("", $PORT) itself and answers its pid (--threading: ThreadingHTTPServer)."""

import http.server
import os
import sys


class Pid(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


threading = "--threading" in sys.argv
server_class = http.server.ThreadingHTTPServer if threading else http.server.HTTPServer
server = server_class(("", int(os.environ["PORT"])), Pid)
print(f"serving on {server.server_address}", flush=True)
server.serve_forever()
