# An in-memory stand-in for the WebSocket, to drive ocpp.rpc.Rpc from a
# MicroPython script: recv() hands out the given frames, then None (closed);
# send() records what was sent (its first `keep` characters, if given).
import asyncio


class MemoryLink:
    def __init__(self, frames, keep=None):
        self.inbox = list(frames)
        self.sent = []
        self.keep = keep

    async def recv(self):
        await asyncio.sleep(0)
        return self.inbox.pop(0) if self.inbox else None

    async def send(self, text):
        self.sent.append(text if self.keep is None else text[:self.keep])

    async def send_parts(self, parts):
        # the real link streams the pieces; this one keeps the whole text
        await self.send("".join(parts()))
