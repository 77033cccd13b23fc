# lib/ws.py when a message does not fit the free heap: the connection is failed
# with close code 1009 (RFC 6455 section 7.4.1) instead of a MemoryError escaping.
# An in-memory stream plays the server; sizes follow the free heap.
import asyncio
import gc
import ws


class Sock:
    def close(self):
        pass


class Stream:
    # parts: bytes, or (count, byte value) for long runs that are never stored whole
    def __init__(self, parts):
        self.parts = list(parts)
        self.out = bytearray()
        self.s = Sock()

    async def readinto(self, mv):
        i = 0
        while i < len(mv) and self.parts:
            p = self.parts[0]
            if isinstance(p, tuple):
                k = min(p[0], len(mv) - i)
                for j in range(i, i + k):
                    mv[j] = p[1]
                self.parts[0] = (p[0] - k, p[1])
                if p[0] == k:
                    self.parts.pop(0)
            else:
                k = min(len(p), len(mv) - i)
                mv[i:i + k] = p[:k]
                self.parts[0] = p[k:]
                if len(p) == k:
                    self.parts.pop(0)
            i += k
        return i

    async def read(self, n):
        b = bytearray(min(n, 64))
        return b[:await self.readinto(b)]

    def write(self, b):
        self.out += b

    async def drain(self):
        pass


async def main():
    for kind in ("frame", "fragments"):
        gc.collect()
        n = gc.mem_free() + 4096 if kind == "frame" else gc.mem_free() // 3 + 2048
        hdr = bytes((0x81 if kind == "frame" else 0x01, 127)) + n.to_bytes(8, "big")
        parts = [hdr, (n, 97)]
        if kind == "fragments":  # two fragments: each fits, joining them does not
            parts += [bytes((0x80, 127)) + n.to_bytes(8, "big"), (n, 98)]
        s = Stream(parts)
        sock = ws.WebSocket(max_size=10 ** 9)
        sock._s = s
        try:
            got = await sock.recv()
            print(kind, "returned", type(got).__name__)
        except ws.WSError as e:
            close = s.out[:2 + 4 + 2]
            k = close[2:6]
            code = ((close[6] ^ k[0]) << 8) | (close[7] ^ k[1])
            print(kind, "WSError", e, "close", close[0] & 15, code)
        parts = s = sock = None


asyncio.run(main())
