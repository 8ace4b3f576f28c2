"""An unmodified socketserver.TCPServer on ("127.0.0.1", $PORT): one HTTP/1.0 answer (its pid) per connection."""

import os
import socketserver


class Pid(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        body = f"{os.getpid()}\n".encode()
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


socketserver.TCPServer.allow_reuse_address = True
with socketserver.TCPServer(("127.0.0.1", int(os.environ["PORT"])), Pid) as server:
    print(f"serving on {server.server_address}", flush=True)
    server.serve_forever()
