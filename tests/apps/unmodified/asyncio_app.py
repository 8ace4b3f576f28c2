"""An unmodified asyncio server on $PORT, answering its pid over HTTP/1.0.

`create_server`: loop.create_server(port=PORT), no host (binds 0.0.0.0 and ::);
`start_server`: asyncio.start_server(handler, "127.0.0.1", PORT). `--uvloop` runs it on uvloop.
"""

import asyncio
import os
import sys

PORT = int(os.environ["PORT"])
BODY = f"{os.getpid()}\n".encode()
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)


class Pid(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.data = b""

    def data_received(self, data: bytes) -> None:
        self.data += data
        if b"\r\n\r\n" in self.data:
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]
            self.transport.close()


async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(RESPONSE)
    await writer.drain()
    writer.close()


async def main() -> None:
    if sys.argv[1] == "create_server":
        server = await asyncio.get_running_loop().create_server(Pid, port=PORT)
    else:
        server = await asyncio.start_server(answer, "127.0.0.1", PORT)
    names = [s.getsockname() for s in server.sockets]
    print(f"serving on {names} with {type(asyncio.get_running_loop()).__module__}", flush=True)
    async with server:
        await server.serve_forever()


if "--uvloop" in sys.argv:
    import uvloop

    uvloop.run(main())
else:
    asyncio.run(main())
