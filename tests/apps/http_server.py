"""A tiny HTTP server for tests: serves on the inherited fd 3, answers `<instance> <pid>`.

Sends READY=1 to $NOTIFY_SOCKET once serving; SIGTERM stops accepting, finishes the
request in flight and exits 0. BROKEN=1 makes it exit 3 at boot (a bad release).
"""

import asyncio
import os
import signal
import socket
import sys


def sd_notify(message: str) -> None:
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(message.encode(), path)


ACTIVE: set[asyncio.Task[None]] = set()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    body = f"{os.environ.get('RUNTIME_INSTANCE')} {os.getpid()}\n".encode()
    task = asyncio.current_task()
    assert task is not None
    ACTIVE.add(task)
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            close = b"connection: close" in head.lower() or STOPPING.is_set()
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                + str(len(body)).encode()
                + (b"\r\nConnection: close" if close else b"")
                + b"\r\n\r\n"
                + body
            )
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        ACTIVE.discard(task)
        writer.close()


STOPPING = asyncio.Event()


async def main() -> None:
    if os.environ.get("BROKEN") == "1":
        print("broken release, exiting", flush=True)
        sys.exit(3)
    delay = float(os.environ.get("BOOT_DELAY", "0"))
    if delay:
        await asyncio.sleep(delay)
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.exit("LISTEN_PID is not my pid")
    sock = socket.socket(fileno=3)
    server = await asyncio.start_server(handle, sock=sock)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, STOPPING.set)
    print(f"serving instance {os.environ.get('RUNTIME_INSTANCE')}", flush=True)
    sd_notify("READY=1")
    await STOPPING.wait()
    # Stop accepting first, let connections accepted in this loop pass attach to the
    # server, then close it: asyncio (3.11) drops a connection accepted in the same
    # pass as Server.close() without answering it (reset by peer).
    loop.remove_reader(sock.fileno())
    await asyncio.sleep(0.05)
    server.close()
    deadline = loop.time() + 5
    while ACTIVE and loop.time() < deadline:
        await asyncio.sleep(0.01)


asyncio.run(main())
