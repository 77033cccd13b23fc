# Compact asyncio WebSocket client, RFC 6455 client side, for MicroPython.
# Enough for OCPP-J: text/binary messages, fragments, ping/pong, close
# handshake, subprotocol and Basic auth, ws:// and wss:// with verification.
import asyncio
import binascii
import hashlib
import os
import time
from errno import ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT
import micropython
from micropython import const

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
_TEXT = const(1)
_BINARY = const(2)
_CLOSE = const(8)
_PING = const(9)
_PONG = const(10)
_CLOSE_WAIT = const(2)  # seconds to wait for the peer's close frame
_MAX_HEADERS = const(40)  # response header lines accepted in the handshake
_KEEP = const(1024)  # largest frame scratch buffer kept between sends


class WSError(Exception):
    pass


@micropython.viper
def _mask(dst: ptr8, d: int, src: ptr8, s: int, n: int, key: ptr8, x: int):
    # dst[d:d+n] = src[s:s+n] XOR the masking key from payload byte x on (RFC
    # 6455 section 5.3). Native code: a Python loop per byte took 2.5 ms per
    # 5 KB on x64, tens of ms of event-loop stall on a microcontroller.
    for j in range(n):
        dst[d + j] = src[s + j] ^ key[(x + j) & 3]


def pem_to_der(text):
    # Every "-----BEGIN ...-----" block as DER bytes (this mbedTLS takes DER only).
    if not isinstance(text, str):
        text = str(text, "utf-8")
    return [binascii.a2b_base64(p[p.find("-----") + 5 : p.find("-----END")])
            for p in text.split("-----BEGIN ")[1:]]


def tls_context(cadata=None, certfile_der=None, keyfile_der=None):
    # Verifying client context; cadata: DER bytes or a list of them (one call per CA).
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        for der in [cadata] if isinstance(cadata, (bytes, bytearray)) else cadata or ():
            ctx.load_verify_locations(cadata=der)
        if certfile_der:  # client certificate: OCPP security profile 3
            ctx.load_cert_chain(certfile_der, keyfile_der)
    except (ValueError, OSError) as e:
        raise WSError("bad certificate or key: %s" % _why(e))
    return ctx


def _parse_url(url):
    # ws://host[:port]/path, wss://..., host may be an [IPv6] literal
    tls = url.startswith("wss://")
    if not (tls or url.startswith("ws://")):
        raise WSError("URL must start with ws:// or wss://: %s" % url)
    rest = url[6 if tls else 5 :]
    i = len(rest)
    for ch in "/?":  # the path (or a query without one) ends the host part
        j = rest.find(ch)
        if 0 <= j < i:
            i = j
    hp, path, port = rest[:i], rest[i:] or "/", 443 if tls else 80
    if path[0] == "?":
        path = "/" + path
    j = hp.rfind(":")
    if j > hp.rfind("]"):  # a port, not part of an IPv6 literal
        try:
            port = int(hp[j + 1 :])
        except ValueError:
            raise WSError("bad port in URL: %s" % url)
        hp = hp[:j]
    host = hp.strip("[]")
    if not host:
        raise WSError("no host in URL: %s" % url)
    return tls, host, port, path


def _b64(b):
    return binascii.b2a_base64(b)[:-1]  # without the trailing newline


def _utf8(b):
    # MicroPython's decoder checks the byte structure; also reject what it lets
    # through (RFC 3629): overlong forms, surrogates, code points above U+10FFFF.
    s = str(b, "utf-8")
    if len(s) != len(b):  # not pure ASCII
        for i in range(len(b)):
            c = b[i]
            if c >= 0xC0:
                d = b[i + 1]
                if (c < 0xC2 or c > 0xF4 or (c == 0xE0 and d < 0xA0) or (c == 0xED and d > 0x9F)
                        or (c == 0xF0 and d < 0x90) or (c == 0xF4 and d > 0x8F)):
                    raise UnicodeError
    return s


def _why(e):
    # One readable line from an exception, mbedTLS ones included.
    m = e.args[-1] if e.args and isinstance(e.args[-1], str) else str(e)
    if "CA_CHAIN_REQUIRED" in m:
        m = "no CA certificate configured"
    elif m.isdigit():
        m = "connection dropped (errno %s)" % m
    return "; ".join([x.strip() for x in m.split("\n") if x.strip()]) or "closed by peer"


async def connect(url, protocols=("ocpp1.6",), auth=None, ssl_context=None, max_size=65536, timeout=10):
    tls, host, port, path = _parse_url(url)
    if tls and ssl_context is None:
        ssl_context = tls_context()
    ws = WebSocket(max_size)
    try:
        await asyncio.wait_for(ws._handshake(tls and ssl_context, host, port, path, protocols, auth), timeout)
        return ws
    except asyncio.TimeoutError:
        err = "no WebSocket handshake with %s:%d within %s s" % (host, port, timeout)
    except WSError as e:
        err = e.args[0]
    except (OSError, EOFError, ValueError) as e:
        n = e.args[0] if isinstance(e, OSError) and e.args and type(e.args[0]) is int else 0
        why = _why(e)
        if ws._stage == 0 and n < 0:  # getaddrinfo errors are negative
            err = "cannot resolve %s: %s" % (host, why)
        elif ws._stage == 0 or ws._stage == 1 and n in (ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT):
            err = "cannot connect to %s:%d: %s" % (host, port, why)
        elif ws._stage == 1 and tls:  # includes a server rejecting our certificate
            err = "TLS handshake failed: %s" % why
        else:
            err = "connection lost during handshake: %s" % why
    ws._shut()
    raise WSError(err)


class WebSocket:
    def __init__(self, max_size):
        self.max_size = max_size
        self.protocol = None
        self.closed = False
        self.close_code = None
        self.close_reason = None
        self._s = None  # asyncio stream (reader and writer are one object)
        self._tcp = None  # the socket below TLS (or the stream's own)
        self._err = None  # open_connection's exception
        self._stage = 0  # handshake progress, for error messages
        self._close_sent = False
        self._busy = False  # a recv() is running
        self._lock = asyncio.Lock()  # one frame at a time on the wire
        self._done = asyncio.Event()  # set once the socket is closed
        self._hdr = bytearray(8)
        self.last_rx = time.ticks_ms()  # when the last frame arrived (link health)
        self._wbuf = bytearray(128)  # frame scratch, kept up to _KEEP bytes

    async def _open(self, host, port, ctx, ev):
        # A task nobody cancels: until TCP connects only open_connection holds
        # the socket, so cancelling it on timeout would leak the socket.
        # TLS is wrapped here, not by open_connection: a failed handshake
        # does not close the TCP socket below it, so _shut closes both.
        try:
            s = (await asyncio.open_connection(host, port))[0]
            self._tcp = s.s
            if ctx:  # the handshake runs at the first write (server_hostname: the name is checked)
                s.s = ctx.wrap_socket(s.s, server_hostname=host, do_handshake_on_connect=False)
                s.s.setblocking(False)
            self._s = s
            if self.closed:  # connect() gave up meanwhile
                self._shut()
        except Exception as e:
            self._err = e
        ev.set()

    async def _handshake(self, ctx, host, port, path, protocols, auth):
        # RFC 6455 section 4.1
        ev = asyncio.Event()
        asyncio.create_task(self._open(host, port, ctx, ev))
        await ev.wait()
        if self._err:
            raise self._err
        self._stage = 1
        s = self._s
        key = _b64(os.urandom(16))
        hp = "[%s]" % host if ":" in host else host
        if port != (443 if ctx else 80):
            hp += ":%d" % port
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n" % (path, hp, key.decode()))
        want = ", ".join(protocols)
        if protocols:
            req += "Sec-WebSocket-Protocol: %s\r\n" % want
        if auth:  # RFC 7617
            req += "Authorization: Basic %s\r\n" % _b64(("%s:%s" % auth).encode()).decode()
        s.write((req + "\r\n").encode())
        await s.drain()
        line = await s.readline()  # TLS handshake errors surface up to here
        self._stage = 2
        st = line.split(None, 2)
        if len(st) < 2 or not st[0].startswith(b"HTTP/"):
            raise WSError("server did not answer HTTP" if line else "server closed the connection")
        if st[1] != b"101":
            raise WSError("server answered HTTP %s" % str(b" ".join(st[1:]).strip(), "utf-8"))
        h = {}
        for _ in range(_MAX_HEADERS):
            line = await s.readline()
            if not line:
                raise EOFError
            if not line.strip():
                break
            i = line.find(b":")
            if i > 0:
                h[line[:i].strip().lower()] = line[i + 1 :].strip()
        else:
            raise WSError("too many HTTP header lines")
        if h.get(b"upgrade", b"").lower() != b"websocket" or b"upgrade" not in h.get(b"connection", b"").lower():
            raise WSError("server did not upgrade to WebSocket")
        if h.get(b"sec-websocket-accept") != _b64(hashlib.sha1(key + _GUID).digest()):
            raise WSError("bad Sec-WebSocket-Accept")
        if b"sec-websocket-extensions" in h:
            raise WSError("server selected an extension we did not offer")
        p = h.get(b"sec-websocket-protocol")
        if p is None and protocols:
            raise WSError("server did not select subprotocol %s" % want)
        if p is not None:
            p = str(p, "utf-8")
            if p not in protocols:
                raise WSError("server selected subprotocol %s, we offered %s" % (p, want or "none"))
        self.protocol = p

    def _shut(self):
        self.closed = True
        if self._s:
            self._s.s.close()  # idempotent
        if self._tcp:
            self._tcp.close()
        self._done.set()

    def _lost(self, e):
        if not self.closed:
            self.close_code = 1006  # RFC 6455 section 7.1.5: closed abnormally
            self.close_reason = _why(e)
        self._shut()

    async def _fail(self, code, why):
        # RFC 6455 section 7.1.7: send a close frame if we can, drop the connection
        if not self._close_sent:
            self._close_sent = True
            try:
                await self._send(_CLOSE, bytes((code >> 8, code & 255)))
                # Drop what the peer still sends until it closes: closing a socket
                # with unread data sends a TCP reset, which can destroy our close frame.
                await asyncio.wait_for(self._discard(), _CLOSE_WAIT)
            except (OSError, asyncio.TimeoutError):
                pass
        self._shut()
        raise WSError(why)

    async def _discard(self):
        while await self._s.read(256):
            pass

    # ---- writing ----------------------------------------------------------
    async def _send(self, op, data, parts=None):
        # RFC 6455 sections 5.2, 5.3: one masked frame of `data`, or of the
        # pieces that parts() yields (called twice: for the length, then for the
        # payload), so a large message's text is never whole in memory. The
        # frame goes out in ONE write from the scratch buffer (kept, up to _KEEP
        # bytes) or a buffer of its size; when the heap has no room for that,
        # in chunks of the scratch buffer (TCP's Nagle delay then adds latency).
        if parts is None:
            n = len(memoryview(data))  # a str gives its UTF-8 bytes
        else:
            n = 0
            for piece in parts():
                n += len(memoryview(piece))
        j = 2 if n < 126 else 4 if n < 65536 else 10  # header length before the mask
        t = j + 4 + n
        async with self._lock:  # the scratch buffer and the wire are shared
            b = self._wbuf
            if len(b) < t:
                try:
                    b = bytearray(t)
                    if t <= _KEEP:
                        self._wbuf = b
                except MemoryError:
                    pass  # chunks of the scratch buffer
            b[0] = 0x80 | op
            b[1] = 0x80 | (n if j == 2 else 126 if j == 4 else 127)
            for i in range(2, j):  # extended length, big-endian
                b[i] = (n >> (8 * (j - 1 - i))) & 255
            k = os.urandom(4)
            b[j : j + 4] = k
            i = j + 4
            m = len(b)
            x = 0  # payload byte count, for the mask
            for piece in (data,) if parts is None else parts():
                size = len(memoryview(piece))  # a str gives its UTF-8 bytes
                s = 0
                while s < size:
                    if i == m:  # scratch full: out it goes before it is refilled
                        self._s.write(b)
                        await self._s.drain()
                        i = 0
                    c = min(m - i, size - s)
                    _mask(b, i, piece, s, c, k, x)
                    i += c
                    s += c
                    x += c
            if x != n:  # parts() gave other pieces the second time: the frame is broken
                raise OSError("the message changed while it was being sent")
            self._s.write(memoryview(b)[:i])
            await self._s.drain()

    async def _send_app(self, op, data, parts=None):
        if self._close_sent or self.closed:
            raise WSError("connection is closed")
        try:
            await self._send(op, data, parts)
        except OSError as e:
            self._lost(e)
            raise WSError("connection lost: %s" % _why(e))

    async def send(self, data):
        # str -> text frame, bytes-like -> binary frame
        await self._send_app(_TEXT if isinstance(data, str) else _BINARY, data)

    async def send_parts(self, parts):
        # One text message from the str pieces parts() yields; parts() is
        # called twice and must yield the same text both times.
        await self._send_app(_TEXT, None, parts)

    async def ping(self, payload=b""):
        if len(payload) > 125:
            raise WSError("ping payload over 125 bytes")
        await self._send_app(_PING, payload)

    async def close(self, code=1000, reason=""):
        # RFC 6455 section 7.1.2: send close, wait briefly for the peer's, drop TCP
        if self.closed:
            return
        if not self._close_sent:
            self._close_sent = True
            try:
                await self._send(_CLOSE, bytes((code >> 8, code & 255)) + reason.encode()[:123])
            except OSError:
                self._shut()
                return
        try:
            if self._busy:  # another task's recv() will get the peer's close
                await asyncio.wait_for(self._done.wait(), _CLOSE_WAIT)
            else:
                await asyncio.wait_for(self._drain(), _CLOSE_WAIT)
        except (asyncio.TimeoutError, WSError):
            pass
        self._shut()

    async def _drain(self):
        while await self.recv() is not None:
            pass

    # ---- reading ----------------------------------------------------------
    async def _fill(self, buf, n):
        # read exactly n bytes into buf
        mv = memoryview(buf)
        i = 0
        while i < n:
            k = await self._s.readinto(mv[i:n])
            if k == 0:
                raise EOFError
            if k:  # None: nothing yet (TLS)
                i += k

    async def _frame(self):
        # RFC 6455 section 5.2: returns (fin, opcode, payload length)
        h = self._hdr
        await self._fill(h, 2)
        self.last_rx = time.ticks_ms()  # any frame proves the peer is alive
        b0, b1 = h[0], h[1]
        op, n = b0 & 15, b1 & 127
        if b0 & 0x70:
            await self._fail(1002, "protocol error: reserved bits set")
        if b1 & 0x80:
            await self._fail(1002, "protocol error: masked frame from server")
        if 2 < op < 8 or op > 10:
            await self._fail(1002, "protocol error: reserved opcode %d" % op)
        if op >= 8 and (n > 125 or not b0 & 0x80):  # section 5.5
            await self._fail(1002, "protocol error: control frame too long or fragmented")
        if n > 125:
            m = 2 if n == 126 else 8
            await self._fill(h, m)
            n = 0
            for i in range(m):
                n = n << 8 | h[i]
        return b0 & 0x80, op, n

    async def _payload(self, n):
        try:
            b = bytearray(n)
        except MemoryError:  # RFC 6455 section 7.4.1: 1009, too big for us to process
            await self._fail(1009, "no memory for a frame of %d bytes" % n)
        await self._fill(b, n)
        return b

    async def recv(self):
        if self.closed:
            return None
        self._busy = True
        try:
            return await self._recv()
        except (OSError, EOFError) as e:
            self._lost(e)
            return None
        except MemoryError:  # a message this heap cannot hold (decoding copies it): 1009
            await self._fail(1009, "message too big for the free memory")
        finally:
            self._busy = False

    async def _recv(self):
        msg = None
        mop = 0  # opcode of the message being reassembled (section 5.4)
        while True:
            fin, op, n = await self._frame()
            if op >= 8:  # control frames may come between fragments
                p = await self._payload(n)
                if op == _PING and not self._close_sent:
                    await self._send(_PONG, p)
                elif op == _CLOSE:
                    await self._on_close(p)
                    return None
                continue
            if (op == 0) != (mop != 0):
                await self._fail(1002, "protocol error: unexpected continuation or data frame")
            mop = op or mop
            size = n + (len(msg) if msg else 0)
            if size > self.max_size:
                await self._fail(1009, "message of %d bytes exceeds limit %d" % (size, self.max_size))
            p = await self._payload(n)
            if msg is None:
                msg = p
            else:
                msg += p
            if fin:
                if mop == _BINARY:
                    return bytes(msg)
                try:
                    return _utf8(msg)
                except UnicodeError:
                    await self._fail(1007, "invalid UTF-8 in text message")

    async def _on_close(self, p):
        # RFC 6455 section 5.5.1: echo the status code, then drop the connection
        code, reason = 1005, ""  # 1005: the frame had no status code
        if p:
            code = p[0] << 8 | p[1] if len(p) > 1 else 0
            if not (1000 <= code <= 1014 and code not in (1004, 1005, 1006) or 3000 <= code <= 4999):
                await self._fail(1002, "protocol error: bad close frame")  # section 7.4
            try:
                reason = _utf8(p[2:])
            except UnicodeError:
                await self._fail(1007, "invalid UTF-8 in close reason")
        self.close_code, self.close_reason = code, reason
        if not self._close_sent:
            self._close_sent = True
            try:
                await self._send(_CLOSE, p[:2])
            except OSError:
                pass
        self._shut()
