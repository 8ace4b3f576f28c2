"""An unmodified http.server app: binds ("", $PORT) itself and answers its pid (--threading:
ThreadingHTTPServer); GET /slow answers after SLOW_MS (default 1500) and logs when it starts.
No signal handlers."""

import http.server
import os
import sys
import time


class Pid(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/slow":
            print("slow request started", flush=True)
            time.sleep(int(os.environ.get("SLOW_MS", "1500")) / 1000)
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
