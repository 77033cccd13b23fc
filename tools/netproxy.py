"""A TCP proxy between the firmware and the CSMS that a test can break on purpose.

It runs an asyncio loop in a background thread of the test process (CPython) and
listens on 127.0.0.1 port 0; the firmware connects to the proxy, the proxy to the
target (the dev CSMS). From the test thread:

    proxy = NetProxy("127.0.0.1", csms.port).start()   # proxy.port: where the firmware connects
    proxy.cut()        # every live connection closed abruptly on both sides (TCP RST)
    proxy.half_open()  # nothing forwarded any more, in either direction, but no socket
                       # is closed: neither peer sees a FIN or a RST. The firmware has to
                       # find out by itself (WebSocket ping/pong timeout).
    proxy.heal()       # forwarding again; connections that were half-open are reset
                       # (heal(deliver=True): they resume and what was held is delivered,
                       # as TCP does when a route comes back before it gives up)
    proxy.stop()

While half-open, new connections are accepted and reset at once (refuse=True, the
default: "connection refused/reset" on a dead network) or accepted and left
silent (refuse=False: a black hole; the WebSocket handshake of the firmware times
out). Figures: proxy.connections (accepted in total), proxy.active(),
proxy.bytes_up (firmware -> CSMS), proxy.bytes_down (CSMS -> firmware), proxy.cuts.

Command line, for experiments by hand:
    python tools/netproxy.py --target 127.0.0.1:9000 --port 9100
"""
import argparse
import asyncio
import socket
import struct
import threading
import time


def _rst(writer):
    # Close with a TCP reset: SO_LINGER on, timeout 0, then abort.
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


class _Conn:
    """One proxied connection: the firmware side (a) and the target side (b)."""

    def __init__(self, proxy, a_reader, a_writer):
        self.proxy = proxy
        self.ar, self.aw = a_reader, a_writer
        self.br = self.bw = None
        self.held = False  # frozen by half_open(): nothing read, nothing forwarded
        self.dead = False
        self.tasks = []
        self.opened = time.time()

    async def run(self):
        p = self.proxy
        try:
            self.br, self.bw = await asyncio.open_connection(p.target_host, p.target_port)
        except OSError:
            _rst(self.aw)  # target down: the firmware sees its connection reset
            p._conns.discard(self)
            return
        if self.dead:  # cut while connecting
            _rst(self.bw)
            return
        up = asyncio.ensure_future(self._pump(self.ar, self.bw, "up"))
        down = asyncio.ensure_future(self._pump(self.br, self.aw, "down"))
        self.tasks = [up, down]
        await asyncio.gather(up, down, return_exceptions=True)
        p._conns.discard(self)

    async def _pump(self, reader, writer, direction):
        p = self.proxy
        try:
            while True:
                if self.held:  # half-open: stop reading, the kernel buffers fill up
                    await p._flowing.wait()
                    if self.held:  # healed without delivery: reset() will come
                        await asyncio.sleep(3600)
                data = await reader.read(65536)
                if self.held:  # read while the link went half-open: hold it back
                    await p._flowing.wait()
                    if self.held:
                        await asyncio.sleep(3600)
                if not data:
                    # Orderly close from one side: pass the FIN on.
                    try:
                        if writer.can_write_eof():
                            writer.write_eof()
                    except OSError:
                        pass
                    return
                if direction == "up":
                    p.bytes_up += len(data)
                else:
                    p.bytes_down += len(data)
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ConnectionError):
            self.reset()
        except asyncio.CancelledError:
            pass

    def reset(self):
        if self.dead:
            return
        self.dead = True
        for w in (self.aw, self.bw):
            if w is not None:
                _rst(w)
        for t in self.tasks:
            t.cancel()
        self.proxy._conns.discard(self)


class NetProxy:
    def __init__(self, target_host="127.0.0.1", target_port=None, host="127.0.0.1", port=0):
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = port
        self.connections = 0  # accepted in total
        self.refused = 0  # accepted and reset while half-open
        self.bytes_up = 0  # firmware -> target
        self.bytes_down = 0  # target -> firmware
        self.cuts = 0
        self.half_opens = 0
        self.state = "ok"  # "ok" | "half-open"
        self.refuse = True
        self.loop = None
        self._server = None
        self._conns = set()
        self._flowing = None  # asyncio.Event, set while forwarding

    # ---- asyncio side ----------------------------------------------------------
    async def _accept(self, reader, writer):
        self.connections += 1
        if self.state == "half-open":
            if self.refuse:
                self.refused += 1
                _rst(writer)
            else:
                c = _Conn(self, reader, writer)
                c.held = True  # a black hole: never connected onwards
                self._conns.add(c)
            return
        c = _Conn(self, reader, writer)
        self._conns.add(c)
        await c.run()

    async def serve(self):
        self.loop = asyncio.get_running_loop()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _close(self):
        self._server.close()
        for c in list(self._conns):
            c.reset()
        self._flowing.set()
        await self._server.wait_closed()

    def _do(self, fn):
        # Run fn() in the proxy's loop and wait for it (thread-safe).
        done = threading.Event()
        box = []

        def call():
            try:
                box.append(fn())
            finally:
                done.set()

        self.loop.call_soon_threadsafe(call)
        if not done.wait(10):
            raise RuntimeError("netproxy: loop does not answer")
        return box[0] if box else None

    # ---- controls (call from any thread) -------------------------------------------
    def start(self):
        ready = threading.Event()

        def run():
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self.serve())
            ready.set()
            loop.run_forever()
            loop.close()

        self.thread = threading.Thread(target=run, daemon=True, name="netproxy")
        self.thread.start()
        if not ready.wait(10):
            raise RuntimeError("netproxy did not start")
        return self

    def stop(self):
        if self.loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop = None

    def cut(self):
        """Reset every live connection on both sides; new ones pass as before."""
        def go():
            n = len(self._conns)
            for c in list(self._conns):
                c.reset()
            return n
        self.cuts += 1
        return self._do(go)

    def half_open(self, refuse=True):
        """Stop forwarding in both directions without closing anything."""
        def go():
            self.state = "half-open"
            self.refuse = refuse
            self._flowing.clear()
            for c in self._conns:
                c.held = True
            return len(self._conns)
        self.half_opens += 1
        return self._do(go)

    def heal(self, deliver=False):
        """Forward again. Half-open connections are reset, or resumed with deliver=True."""
        def go():
            self.state = "ok"
            held = [c for c in self._conns if c.held]
            for c in held:
                if deliver and c.bw is not None:
                    c.held = False
                else:
                    c.reset()
            self._flowing.set()
            return len(held)
        return self._do(go)

    def retarget(self, host, port):
        """Send new connections elsewhere (live ones keep their target)."""
        self.target_host, self.target_port = host, port

    def active(self):
        return self._do(lambda: len(self._conns))

    def stats(self):
        return {"connections": self.connections, "active": self.active(), "refused": self.refused,
                "bytes_up": self.bytes_up, "bytes_down": self.bytes_down, "cuts": self.cuts,
                "half_opens": self.half_opens, "state": self.state}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="host:port to forward to")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    host, _, port = args.target.rpartition(":")
    p = NetProxy(host or "127.0.0.1", int(port), port=args.port).start()
    print("netproxy on 127.0.0.1:%d -> %s; type cut, half, heal, stats, quit" % (p.port, args.target), flush=True)
    while True:
        try:
            cmd = input().strip()
        except EOFError:
            break
        if cmd == "cut":
            print("reset", p.cut(), "connection(s)")
        elif cmd == "half":
            print("holding", p.half_open(), "connection(s)")
        elif cmd == "heal":
            print("healed", p.heal(), "connection(s)")
        elif cmd == "stats":
            print(p.stats())
        elif cmd == "quit":
            break
    p.stop()


if __name__ == "__main__":
    main()
