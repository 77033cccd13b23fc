"""lib/ws.py on the MicroPython unix port against real peers.

Each test starts a server on 127.0.0.1 port 0 in a background asyncio loop:
a `websockets` 17 server where one can do the job, a raw asyncio TCP server
for what websockets refuses to send (bad handshakes, malformed frames).
The client runs in a MicroPython subprocess (host_tests/mp/ws_probe.py) that
prints one line per event.
"""
import asyncio
import base64
import hashlib
import http
import os
import queue
import re
import socket
import ssl
import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from conftest import server_tls

ROOT = Path(__file__).resolve().parents[1]
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
PROBE = "host_tests/mp/ws_probe.py"
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
UNI = "h\u00e9\u20ac\U0001f600 ocpp"  # same text as ws_probe.py's "sendu"


def sha(b):
    return hashlib.sha1(b).hexdigest()[:12]


def text_n(n):  # same text as ws_probe.py's "sendn:N"
    return "0123456789abcdef" * (n // 16) + "x" * (n % 16)


def recv_line(data):
    if isinstance(data, str):
        b = data.encode()
        return ("RECV str %d %s %s" % (len(b), sha(b), data if len(data) <= 40 else "")).rstrip()
    return "RECV bytes %d %s" % (len(data), sha(data))


def probe(url, *args, timeout=20):
    env = dict(os.environ, MICROPYPATH="firmware:lib:.frozen")
    p = subprocess.run([str(MICROPYTHON), PROBE, url, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "Traceback" not in out, out
    return [line.rstrip() for line in p.stdout.splitlines()]


def error_line(lines):
    errs = [line for line in lines if line.startswith("WSERROR")]
    assert errs, lines
    return errs[0]


# ---- servers ------------------------------------------------------------------

class Loop:
    """An asyncio loop in a daemon thread; servers live there."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def loop():
    lp = Loop()
    yield lp
    lp.stop()


class Net:
    """Servers for one test, and a queue of what they observed."""

    def __init__(self, loop):
        self.loop = loop
        self.servers = []
        self.events = queue.Queue()

    def put(self, *event):
        self.events.put(event)

    def get(self, timeout=5):
        return self.events.get(timeout=timeout)

    def ws(self, handler, **kw):
        kw.setdefault("subprotocols", ["ocpp1.6"])
        if "sock" not in kw:
            kw["host"], kw["port"] = "127.0.0.1", 0

        async def start():
            return await serve(handler, **kw)

        srv = self.loop.run(start())
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    def raw(self, handler):
        async def cb(reader, writer):
            try:
                await handler(reader, writer)
            except Exception as e:  # reported to the test, not lost in the loop
                self.put("server error", repr(e))
            finally:
                writer.close()

        async def start():
            return await asyncio.start_server(cb, "127.0.0.1", 0)

        srv = self.loop.run(start())
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    def close(self):
        async def stop():
            for s in self.servers:
                s.close()
            for s in self.servers:
                try:
                    await asyncio.wait_for(s.wait_closed(), 2)
                except asyncio.TimeoutError:
                    pass

        self.loop.run(stop())


@pytest.fixture
def net(loop):
    n = Net(loop)
    yield n
    n.close()


def echo_handler(net):
    async def handler(ws):
        net.put("path", ws.request.path)
        try:
            async for m in ws:
                await ws.send(m)
            clean = True
        except ConnectionClosedError:
            clean = False
        net.put("closed", clean, ws.close_code, ws.close_reason)

    return handler


# Raw-server helpers (RFC 6455 by hand, for what websockets will not send).

async def raw_handshake(reader, writer, accept=None, proto=b"ocpp1.6", then=b""):
    head = await reader.readuntil(b"\r\n\r\n")
    key = re.search(rb"Sec-WebSocket-Key: *(\S+)", head).group(1)
    acc = accept or base64.b64encode(hashlib.sha1(key + GUID).digest())
    resp = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + acc + b"\r\n")
    if proto:
        resp += b"Sec-WebSocket-Protocol: " + proto + b"\r\n"
    writer.write(resp + b"\r\n" + then)  # frames right behind the headers: one TCP write
    await writer.drain()


def frame(op, payload=b"", fin=True):
    n = len(payload)
    b0 = (0x80 if fin else 0) | op
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + n.to_bytes(2, "big") + payload
    return bytes((b0, 127)) + n.to_bytes(8, "big") + payload


async def read_client_frame(reader):
    b0, b1 = await reader.readexactly(2)
    assert b1 & 0x80, "client frame not masked"
    n = b1 & 127
    if n >= 126:
        n = int.from_bytes(await reader.readexactly(2 if n == 126 else 8), "big")
    mask = await reader.readexactly(4)
    data = await reader.readexactly(n)
    reader.last_mask = mask
    return b0 & 15, bytes(c ^ mask[i % 4] for i, c in enumerate(data))


async def report_client_close(net, reader):
    # Reports the status code of the client's close frame (or "eof").
    try:
        while True:
            op, data = await read_client_frame(reader)
            if op == 8:
                net.put("client close", int.from_bytes(data[:2], "big") if data else None)
                return
            net.put("client frame", op, data)
    except asyncio.IncompleteReadError:
        net.put("client close", "eof")


# ---- certificates: the pki fixture and server_tls() live in conftest.py ---------

# ---- tests: websockets server -----------------------------------------------------

def test_echo_text_binary_all_length_encodings(net):
    port = net.ws(echo_handler(net))
    sizes = [0, 125, 126, 65535, 65536, 70000]  # 7-bit, 16-bit and 64-bit lengths
    steps = ["ping", "send:hello", "recv", "sendu", "recv", "sendb:00ff80", "recv"]
    for n in sizes:
        steps += ["sendn:%d" % n, "recv"]
    lines = probe("ws://127.0.0.1:%d/ocpp/CP001" % port, "--max", "100000", *steps, "close")
    assert lines == (["CONNECTED ocpp1.6", recv_line("hello"), recv_line(UNI), recv_line(b"\x00\xff\x80")]
                     + [recv_line(text_n(n)) for n in sizes]
                     + [lines[-2], "END closed"])
    assert lines[-2].startswith("CLOSED True")
    assert net.get() == ("path", "/ocpp/CP001")
    # websockets closes with 1002 on an unmasked or malformed client frame: it stayed clean.
    assert net.get() == ("closed", True, 1000, "")


def test_message_sent_in_pieces(net):
    # send_parts: one frame whose payload is masked piece by piece through the
    # frame buffer.
    port = net.ws(echo_handler(net))
    counts = [1, 3, 1000, 5000]  # 5000 pieces: about 49 KB

    def text(n):
        return "".join("piece-%d;" % i for i in range(n - 1)) + UNI

    steps = []
    for n in counts:
        steps += ["sendp:%d" % n, "recv"]
    lines = probe("ws://127.0.0.1:%d/ocpp/CP001" % port, "--max", "100000", *steps, "close")
    assert lines[:-2] == ["CONNECTED ocpp1.6"] + [recv_line(text(n)) for n in counts], lines
    assert lines[-2].startswith("CLOSED True")
    # With no room for a 49 KB frame buffer it goes out in chunks of the scratch buffer.
    lines = probe("ws://127.0.0.1:%d/ocpp/CP001" % port, "--max", "100000", "fill:30000", "sendp:5000", "free",
                  "recv", "close")
    assert lines[:2] == ["CONNECTED ocpp1.6", recv_line(text(5000))], lines
    # Pieces that differ between the length pass and the payload pass: the
    # frame is broken, so the connection is dropped rather than left corrupt.
    lines = probe("ws://127.0.0.1:%d/ocpp/CP001" % port, "sendchanging", "send:after")
    assert lines == ["CONNECTED ocpp1.6", "WSERROR connection lost: the message changed while it was being sent "
                     "closed", "WSERROR connection is closed closed", "END closed"], lines


def test_fragmented_messages_from_server(net):
    async def handler(ws):
        await ws.send(["frag1 ", "fr\u00e9g2 ", "frag3"])  # text in 3 frames (é split-safe: whole chars)
        await ws.send([b"\x00\x01", b"", b"\x02"])
        await ws.send(["x" * 40000, "y" * 40000])  # 16-bit lengths, 80000 reassembled
        await ws.wait_closed()

    port = net.ws(handler)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "--max", "100000", "recv", "recv", "recv", "close")
    assert lines[1:4] == [recv_line("frag1 fr\u00e9g2 frag3"), recv_line(b"\x00\x01\x02"),
                          recv_line("x" * 40000 + "y" * 40000)]


def test_server_ping_answered_with_one_write(net):
    async def handler(ws):
        lat = []
        for _ in range(7):
            t = time.perf_counter()
            await asyncio.wait_for(await ws.ping(), 2)  # resolves when our pong arrives
            lat.append(time.perf_counter() - t)
        net.put("latency", statistics.median(lat))
        await ws.close(1000, "done")

    port = net.ws(handler)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "recvall")
    assert lines == ["CONNECTED ocpp1.6", "RECV None 1000 'done' closed", "END closed"]
    ev = net.get()
    # A frame split over two writes costs ~40 ms (Nagle + delayed ACK); one write, well under 1 ms.
    assert ev[0] == "latency" and ev[1] < 0.02, ev


def test_server_initiated_close(net):
    async def handler(ws):
        await ws.send("bye")
        await ws.close(4001, "maintenance")
        net.put("closed", ws.close_code, ws.close_reason)

    port = net.ws(handler)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "recv", "recv", "recv")
    assert lines == ["CONNECTED ocpp1.6", recv_line("bye"), "RECV None 4001 'maintenance' closed",
                     "RECV None 4001 'maintenance' closed", "END closed"]
    # The server got our close frame echoing its code (RFC 6455 5.5.1): a complete handshake.
    assert net.get() == ("closed", 4001, "")


def test_client_close_handshake(net):
    port = net.ws(echo_handler(net))
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "send:hi", "recv", "close:1001:going away", "close", "recv")
    assert lines[:2] == ["CONNECTED ocpp1.6", recv_line("hi")]
    ms = int(lines[2].split()[-1])
    assert lines[2].startswith("CLOSED True") and ms < 500, lines
    assert lines[3].startswith("CLOSED True")  # idempotent
    assert lines[4].startswith("RECV None") and lines[5] == "END closed"
    net.get()  # path
    assert net.get() == ("closed", True, 1001, "going away")


def test_close_while_other_task_reads(net):
    # The supervisor's shape: a reader task sits in recv() while another task closes.
    port = net.ws(echo_handler(net))
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "bgclose")
    assert lines[1] == "RECV None 1000 'bye' closed", lines
    assert lines[2].startswith("CLOSED True") and int(lines[2].split()[-1]) < 500, lines
    net.get()
    assert net.get() == ("closed", True, 1000, "bye")


@pytest.mark.parametrize("status, text", [(401, "401 Unauthorized"), (404, "404 Not Found")])
def test_http_rejection(net, status, text):
    def process_request(connection, request):
        return connection.respond(http.HTTPStatus(status), "no\n")

    port = net.ws(echo_handler(net), process_request=process_request)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "send:x")
    assert lines[0].startswith("WSERROR server answered HTTP " + text), lines
    assert len(lines) == 1


def test_basic_auth_and_offer_reach_server(net):
    def process_request(connection, request):
        net.put("headers", request.path, request.headers.get("Authorization"),
                request.headers.get("Sec-WebSocket-Protocol"), request.headers.get("Host"))

    port = net.ws(echo_handler(net), process_request=process_request, subprotocols=["ocpp1.6"])
    lines = probe("ws://127.0.0.1:%d/ocpp/CP001" % port, "--auth", "CP001:s3cr:et \u00e9",
                  "--proto", "ocpp2.0.1,ocpp1.6", "send:hi", "recv", "close")
    assert lines[:2] == ["CONNECTED ocpp1.6", recv_line("hi")]
    expect = "Basic " + base64.b64encode("CP001:s3cr:et \u00e9".encode()).decode()
    assert net.get() == ("headers", "/ocpp/CP001", expect, "ocpp2.0.1, ocpp1.6", "127.0.0.1:%d" % port)


def test_server_selects_no_subprotocol(net):
    port = net.ws(echo_handler(net), subprotocols=None)
    lines = probe("ws://127.0.0.1:%d/CP001" % port)
    assert lines == [lines[0]] and "server did not select subprotocol ocpp1.6" in lines[0], lines


@pytest.mark.parametrize("msg, size", [("x" * 70000, 70000), (["y" * 40000, "z" * 40000], 80000)])
def test_oversized_message(net, msg, size):
    async def handler(ws):
        await ws.send(msg)
        try:
            await ws.recv()
        except ConnectionClosed:
            net.put("closed", ws.close_code)

    port = net.ws(handler)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "recv", "recv")
    assert lines == ["CONNECTED ocpp1.6", "WSERROR message of %d bytes exceeds limit 65536 closed" % size,
                     "RECV None None None closed", "END closed"]
    assert net.get() == ("closed", 1009)


def test_concurrent_senders_and_pongs_never_interleave(net):
    # A tiny receive buffer on the server forces partial writes on the client, so
    # frames from 3 sender tasks and pongs queue up behind the write lock.
    got = []

    async def handler(ws):
        async def pinger():
            while True:
                await ws.ping()
                await asyncio.sleep(0.005)

        p = asyncio.create_task(pinger())
        await asyncio.sleep(0.2)  # let the client's socket buffer fill up
        try:
            async for m in ws:
                got.append(m)
        finally:
            p.cancel()
        net.put("closed", ws.close_code, len(got), sorted(set((m[0], len(m)) for m in got)))

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    port = net.ws(handler, sock=sock)
    lines = probe("ws://127.0.0.1:%d/CP001" % port, "conc:3:10:50000")
    assert lines == ["CONNECTED ocpp1.6", "SENT 30", "CLOSED True 1000", "END closed"], lines
    assert net.get() == ("closed", 1000, 30, [("A", 50000), ("B", 50000), ("C", 50000)])


# ---- tests: raw servers (handshakes and frames websockets would not send) -----------

def test_bad_accept_key(net):
    async def handler(reader, writer):
        await raw_handshake(reader, writer, accept=base64.b64encode(b"\0" * 20))
        await reader.read()

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler))
    assert lines[0].startswith("WSERROR bad Sec-WebSocket-Accept"), lines


def test_wrong_subprotocol(net):
    async def handler(reader, writer):
        await raw_handshake(reader, writer, proto=b"ocpp2.0.1")
        await reader.read()

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler))
    assert lines[0].startswith("WSERROR server selected subprotocol ocpp2.0.1, we offered ocpp1.6"), lines


def test_handshake_timeout(net):
    async def handler(reader, writer):  # accepts TCP, never answers
        await reader.read()

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "--timeout", "0.5")
    assert lines[0].startswith("WSERROR no WebSocket handshake with 127.0.0.1:"), lines
    ms = int(lines[0].split()[-1])
    assert 450 <= ms < 2000, lines


def test_timeout_while_tcp_connects_does_not_leak_the_socket():
    # A listener with a full accept queue drops SYNs: the client's connect hangs
    # until the timeout. Once the queue is drained, the kernel's SYN retry gets
    # through and the client must close that late socket instead of leaking it.
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    for f in fillers:
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
    time.sleep(0.1)
    env = dict(os.environ, MICROPYPATH="firmware:lib:.frozen")
    p = subprocess.Popen([str(MICROPYTHON), PROBE, "ws://127.0.0.1:%d/CP001" % port, "--timeout", "0.3",
                          "--linger", "1.5"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        lst.settimeout(0.1)
        late = []
        while p.poll() is None:  # drain the queue; the client's retried SYN lands here
            try:
                late.append(lst.accept()[0])
            except socket.timeout:
                pass
        lines = p.stdout.read().splitlines()
    finally:
        p.kill()
        for s in fillers + late:
            s.close()
        lst.close()
    assert lines[0].startswith("WSERROR no WebSocket handshake with 127.0.0.1:%d within 0.3 s" % port), lines
    fds = [int(x) for x in lines[1].split()[1:]]
    assert fds[1] == fds[0] + 1 and fds[2] == fds[0], lines  # pending during connect, then closed


def test_connection_refused_and_bad_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    lines = probe("ws://127.0.0.1:%d/CP001" % port)
    assert lines[0].startswith("WSERROR cannot connect to 127.0.0.1:%d: " % port), lines
    assert "ECONNREFUSED" in lines[0]
    lines = probe("http://127.0.0.1/CP001")
    assert lines[0].startswith("WSERROR URL must start with ws:// or wss://"), lines


def test_frames_dribbled_byte_by_byte(net):
    # Partial reads everywhere; a ping between two fragments (RFC 6455 5.4) is answered.
    frames = (frame(1, b"part1-", fin=False) + frame(9, b"mid") + frame(0, b"\xc3", fin=False)
              + frame(0, b"\xa9" + b"z" * 300) + frame(2, bytes(range(256))))

    async def handler(reader, writer):
        await raw_handshake(reader, writer)
        for i in range(len(frames)):
            writer.write(frames[i:i + 1])
            await writer.drain()
            await asyncio.sleep(0 if i % 50 else 0.001)
        op, data = await read_client_frame(reader)
        net.put("pong", op, data)
        mask = reader.last_mask
        await report_client_close(net, reader)
        net.put("fresh mask", reader.last_mask != mask)

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "recv", "recv", "close")
    assert lines[1:3] == [recv_line("part1-\u00e9" + "z" * 300), recv_line(bytes(range(256)))], lines
    assert net.get() == ("pong", 10, b"mid")
    assert net.get() == ("client close", 1000)
    assert net.get() == ("fresh mask", True)


def test_tcp_drop_without_close_frame(net):
    async def handler(reader, writer):
        await raw_handshake(reader, writer, then=frame(1, b"last"))
        await asyncio.sleep(0.05)  # then the server goes away without a close frame

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "recv", "recv", "send:x", "recv")
    assert lines == ["CONNECTED ocpp1.6", recv_line("last"), "RECV None 1006 'closed by peer' closed",
                     "WSERROR connection is closed closed", "RECV None 1006 'closed by peer' closed",
                     "END closed"], lines


def test_frames_in_the_same_write_as_the_handshake(net):
    async def handler(reader, writer):
        await raw_handshake(reader, writer, then=frame(1, b"one") + frame(1, b"two") + frame(8, b"\x03\xe8"))
        await report_client_close(net, reader)

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "recvall")
    assert lines == ["CONNECTED ocpp1.6", recv_line("one"), recv_line("two"), "RECV None 1000 '' closed",
                     "END closed"]
    assert net.get() == ("client close", 1000)


@pytest.mark.parametrize("bad, why, code", [
    (b"\x83\x00", "reserved opcode 3", 1002),
    (b"\x8b\x00", "reserved opcode 11", 1002),
    (b"\x81\x85abcd" + bytes(c ^ b"abcd"[i % 4] for i, c in enumerate(b"hello")), "masked frame", 1002),
    (b"\xc1\x02hi", "reserved bits", 1002),
    (frame(9, b"p" * 126), "control frame", 1002),
    (frame(9, b"p", fin=False), "control frame", 1002),
    (frame(0, b"hi"), "unexpected continuation", 1002),
    (frame(1, b"a", fin=False) + frame(1, b"b"), "unexpected continuation or data", 1002),
    (frame(1, b"\xc3\x28"), "invalid UTF-8", 1007),
    (frame(1, b"\xed\xa0\x80"), "invalid UTF-8", 1007),  # a surrogate
    (frame(1, b"\xc0\xaf"), "invalid UTF-8", 1007),  # overlong "/"
    (frame(1, b"\xf4\x90\x80\x80"), "invalid UTF-8", 1007),  # above U+10FFFF
    (frame(8, b"\x03\xed"), "bad close frame", 1002),  # 1005 must not be sent
    (frame(8, b"\x03"), "bad close frame", 1002),
    (frame(8, b"\x03\xe8\xff"), "invalid UTF-8 in close reason", 1007),
    (b"\x82\x7f" + (1 << 40).to_bytes(8, "big"), "message of 1099511627776 bytes exceeds", 1009),
], ids=["opcode3", "opcode11", "masked", "rsv", "long-ping", "fragmented-ping", "lone-continuation",
        "data-in-fragmented", "bad-utf8", "surrogate", "overlong", "above-10ffff", "close-1005",
        "close-1-byte", "close-bad-reason", "64bit-length"])
def test_malformed_frames(net, bad, why, code):
    async def handler(reader, writer):
        await raw_handshake(reader, writer, then=frame(1, b"ok") + bad)
        await report_client_close(net, reader)

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "recv", "recv", "recv")
    assert lines[:2] == ["CONNECTED ocpp1.6", recv_line("ok")], lines
    assert lines[2].startswith("WSERROR ") and why in lines[2] and lines[2].endswith(" closed"), lines
    assert lines[3:] == ["RECV None None None closed", "END closed"], lines
    assert net.get() == ("client close", code)


def test_close_when_server_never_answers_close(net):
    # A reader task is blocked in recv(); close() gives up after its wait and the
    # reader still wakes up with None instead of hanging.
    async def handler(reader, writer):
        await raw_handshake(reader, writer)
        op, data = await read_client_frame(reader)
        net.put("client frame", op, data)
        await reader.read()  # ignore it; wait for the client to drop TCP

    lines = probe("ws://127.0.0.1:%d/CP001" % net.raw(handler), "bgclose")
    closed = [line for line in lines if line.startswith("CLOSED")]
    assert closed and closed[0].startswith("CLOSED True") and 1900 <= int(closed[0].split()[-1]) < 3000, lines
    assert "RECV None None None closed" in lines and lines[-1] == "END closed", lines
    assert net.get() == ("client frame", 8, b"\x03\xe8bye")


# ---- tests: TLS (wss) ---------------------------------------------------------------

def test_wss_echo_with_right_ca(net, pki):
    port = net.ws(echo_handler(net), ssl=server_tls(pki))
    for ca in ("ca.pem", "bundle.pem"):  # bundle: a foreign CA first, then ours
        lines = probe("wss://127.0.0.1:%d/CP001" % port, "--ca", str(pki / ca), "send:hello", "recv",
                      "sendn:70000", "recv", "--max", "70000", "close")
        assert lines[:3] == ["CONNECTED ocpp1.6", recv_line("hello"), recv_line(text_n(70000))], lines
        assert lines[-1] == "END closed"


@pytest.mark.parametrize("ca, cert, why", [
    ("ca2.pem", "server", "TLS handshake failed: The certificate is not correctly signed by the trusted CA"),
    (None, "server", "TLS handshake failed: no CA certificate configured"),
    ("ca.pem", "otherhost", "TLS handshake failed: The certificate Common Name (CN) does not match"),
])
def test_wss_rejects_untrusted_server(net, pki, ca, cert, why):
    port = net.ws(echo_handler(net), ssl=server_tls(pki, cert))
    args = ["--ca", str(pki / ca)] if ca else []
    lines = probe("wss://127.0.0.1:%d/CP001" % port, *args, "send:hello")
    assert len(lines) == 1 and lines[0].startswith("WSERROR " + why), lines


def test_wss_client_certificate(net, pki):
    # Security profile 3: the server requires a client certificate from our CA.
    async def handler(ws):
        cert = ws.transport.get_extra_info("peercert")
        net.put("client cn", dict(x[0] for x in cert["subject"])["commonName"])
        await echo_handler(net)(ws)

    port = net.ws(handler, ssl=server_tls(pki, client_ca="ca.pem"))
    url = "wss://127.0.0.1:%d/CP001" % port
    ca = ["--ca", str(pki / "ca.pem")]
    lines = probe(url, *ca, "--cert", str(pki / "client.pem"), "--key", str(pki / "client.key"),
                  "send:hi", "recv", "close")
    assert lines[:2] == ["CONNECTED ocpp1.6", recv_line("hi")], lines
    assert net.get() == ("client cn", "CP001")
    lines = probe(url, *ca)  # no client certificate: the server drops us
    assert len(lines) == 1 and lines[0].startswith("WSERROR TLS handshake failed"), lines


def test_failed_tls_handshake_closes_its_socket(pki, tmp_path):
    # A station retrying a CSMS whose certificate it refuses must not run out of sockets.
    from conftest import run_mp, server_tls, ROOT
    from dev_csms import DevCSMS
    der = tmp_path / "ca2.der"
    der.write_bytes(ssl.PEM_cert_to_DER_cert((pki / "ca2.pem").read_text()))
    csms = DevCSMS()
    csms.start_in_thread(ssl=server_tls(pki))
    try:
        out = run_mp(ROOT / "host_tests" / "mp" / "ws_tls_leak.py", "wss://localhost:%d/CP1" % csms.port, str(der))
    finally:
        csms.stop_thread()
    assert out.count("refused: TLS handshake failed") == 3, out
    before, after = map(int, re.search(r"before (\d+) after (\d+)", out).groups())
    assert after == before, out
