"""adapters/ws_direct.py over loopback: whole text frames reach `on_text` from the socket callback, everything else
the stock way, and the owner sees all messages in the order they were sent."""

import asyncio

from websockets.frames import Frame, Opcode
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from chargemanager.adapters import ws_direct


def test_order_is_kept_across_direct_and_assembled_messages():
    async def main():
        got = []
        done = asyncio.Event()

        async def handler(ws):
            ws.on_text = lambda text: got.append(("direct", text))
            try:
                async for message in ws:
                    got.append(("assembled", message))
            except ConnectionClosed:
                pass
            done.set()

        async with serve(handler, "127.0.0.1", 0, create_connection=ws_direct.direct(ServerConnection)) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect("ws://127.0.0.1:%d/" % port) as ws:
                await ws.send("a")
                await ws.send(["b1", "b2"])  # a fragmented message: assembled by websockets
                await ws.send("c")
                await ws.send(b"d")
                for i in range(50):
                    await ws.send("e%d" % i)
            await asyncio.wait_for(done.wait(), 10)
        texts = [m for _, m in got]
        assert texts == ["a", "b1b2", "c", b"d"] + ["e%d" % i for i in range(50)]
        assert ("assembled", "b1b2") in got and ("assembled", b"d") in got
        assert sum(1 for how, _ in got if how == "direct") >= 2
    asyncio.run(main())


def test_invalid_utf8_closes_with_1007_and_a_failing_callback_keeps_the_connection():
    async def main():
        closed = asyncio.get_running_loop().create_future()
        seen = []

        async def handler(ws):
            def on_text(text):
                seen.append(text)
                if text == "boom":
                    raise RuntimeError("a bug in the owner")
            ws.on_text = on_text
            try:
                async for _ in ws:
                    pass
            except ConnectionClosed:
                pass
            closed.set_result(ws.close_code)

        async with serve(handler, "127.0.0.1", 0, create_connection=ws_direct.direct(ServerConnection)) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect("ws://127.0.0.1:%d/" % port,
                               create_connection=ws_direct.direct(ClientConnection)) as ws:
                await ws.send("boom")
                await ws.send("still here")
                for _ in range(100):
                    if seen == ["boom", "still here"]:
                        break
                    await asyncio.sleep(0.01)
                assert seen == ["boom", "still here"]
                # a text frame with bytes that are not UTF-8, written below the library's own checks
                ws.protocol.send_frame(Frame(Opcode.TEXT, b"\xff\xfe"))
                ws.send_data()
                await asyncio.wait_for(ws.wait_closed(), 10)
                assert ws.close_code == 1007  # the server failed the connection: invalid data
                await asyncio.wait_for(closed, 10)
    asyncio.run(main())
