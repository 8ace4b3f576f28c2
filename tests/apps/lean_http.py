"""A lean HTTP/1.1 server for the chaos tests: quick to start again after a SIGKILL.

Only `os`, `selectors`, `signal` and `socket` (no asyncio: its import is most of a
Python server's start-up), one thread. Serves on the inherited fd 3, sends READY=1 to
$NOTIFY_SOCKET once serving, answers every request with `<instance> <pid>\n`, keeps a
connection open unless the request says `Connection: close`. SIGTERM: stop accepting,
answer the requests already received (with `Connection: close`), exit 0.
"""

import os
import selectors
import signal
import socket

BODY = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()}\n".encode()
HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
KEEP = HEAD + b"\r\n" + BODY
CLOSE = HEAD + b"Connection: close\r\n\r\n" + BODY
STOPPING = False


def sd_notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


def on_term(_signum: int, _frame: object) -> None:
    global STOPPING
    STOPPING = True


def serve(sel: selectors.DefaultSelector, conn: socket.socket, buffers: dict[int, bytes]) -> None:
    """Answer every whole request read from `conn`; close it on `Connection: close`."""
    try:
        data = conn.recv(65536)
    except OSError:
        data = b""
    buf = buffers.get(conn.fileno(), b"") + data
    out, close = [], not data
    while (end := buf.find(b"\r\n\r\n")) >= 0:
        head, buf = buf[:end].lower(), buf[end + 4 :]
        if STOPPING or b"connection: close" in head:
            out.append(CLOSE)
            close = True
            break
        out.append(KEEP)
    try:
        if out:
            conn.setblocking(True)  # tiny answers: a blocking send never waits here
            conn.sendall(b"".join(out))
            conn.setblocking(False)
    except OSError:
        close = True
    if close:
        buffers.pop(conn.fileno(), None)
        sel.unregister(conn)
        conn.close()
    else:
        buffers[conn.fileno()] = buf


def main() -> None:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise SystemExit("LISTEN_PID is not my pid")
    signal.signal(signal.SIGTERM, on_term)
    wake_r, wake_w = os.pipe()  # the signal wakes select at once
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    listener = socket.socket(fileno=3)
    listener.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    sel.register(wake_r, selectors.EVENT_READ)
    buffers: dict[int, bytes] = {}
    sd_notify("READY=1")
    while not STOPPING:
        try:
            ready = sel.select(0.5)
        except InterruptedError:
            continue
        for key, _ in ready:
            sock = key.fileobj
            if sock is listener:
                accept_all(sel, listener)
            elif isinstance(sock, socket.socket):
                serve(sel, sock, buffers)
    sel.unregister(listener)
    for key, _ in sel.select(0):  # requests already received get their answer
        if isinstance(key.fileobj, socket.socket):
            serve(sel, key.fileobj, buffers)


def accept_all(sel: selectors.DefaultSelector, listener: socket.socket) -> None:
    while True:
        try:
            conn, _addr = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(False)
        sel.register(conn, selectors.EVENT_READ)


main()
