# What lib/http.py and lib/ftp.py share: the error, URL splitting, the
# connections of one transfer with the watchdog that bounds every network wait,
# and the two block loops through the caller's ONE buffer. Imported only while
# a transfer runs, never at boot.
import asyncio
import time
from errno import ECONNREFUSED
import ws  # its error wording; the station has imported it already


class TransferError(Exception):
    # str(e) is one line for the log; e.code the HTTP status or FTP reply code (0: none)
    def __init__(self, msg, code=0):
        super().__init__(msg)
        self.code = code


def unquote(s):
    # %XX escapes (RFC 3986 section 2.1) in user names, passwords, FTP paths
    p = s.split("%")
    b = bytearray(p[0].encode())
    for x in p[1:]:
        try:
            b.append(int(x[:2], 16))
        except ValueError:
            raise TransferError("bad %-escape in URL")
        b += x[2:].encode()
    if b"\r" in b or b"\n" in b:  # it would end an FTP command early: another would follow
        raise TransferError("line break in URL")
    return str(b, "utf-8")


def split_url(url):
    # scheme://[user[:password]@]host[:port][/path][?query] -> (scheme, user,
    # password, host, port or 0, path with the query); user and password %-decoded.
    i = url.find("://")
    if i < 1:
        raise TransferError("bad URL (no scheme://)")
    for ch in " \r\n":  # they would end the request line or an FTP command early
        if ch in url:
            raise TransferError("bad URL (a space or line break in it)")
    rest = url[i + 3 :]
    j = len(rest)
    for ch in "/?":  # the path, or a query without one, ends the host part
        k = rest.find(ch)
        if 0 <= k < j:
            j = k
    hp, path = rest[:j], rest[j:] or "/"
    if path[0] == "?":
        path = "/" + path
    user = pw = None
    k = hp.rfind("@")  # the last one: a password may hold a bare "@"
    if k >= 0:
        user, c = hp[:k], hp.find(":")
        if 0 <= c < k:
            user, pw = user[:c], unquote(user[c + 1 :])
        user, hp = unquote(user), hp[k + 1 :]
    port = 0
    k = hp.rfind(":")
    if k > hp.rfind("]"):  # a port, not part of an [IPv6] literal
        try:
            port = int(hp[k + 1 :])
            if not 0 < port < 65536:
                raise ValueError
        except ValueError:
            raise TransferError("bad port in URL %s%s" % (url[: i + 3], hp))
        hp = hp[:k]
    if not hp.strip("[]"):
        raise TransferError("bad URL (no host): %s" % url[: i + 3])
    return url[:i].lower(), user, pw, hp.strip("[]"), port, path


class Job:
    # One transfer: its connections, and a watchdog that cancels the
    # transfer's task when nothing moved for `timeout` s (a wait_for() per
    # block would cost a task each). An idle limit, not a total one: a slow
    # modem link may take minutes for a firmware image.
    def __init__(self, timeout):
        self.timeout = timeout
        self.t = time.ticks_ms()  # the last progress
        self.what = self.peer = ""  # what is awaited, for the error message
        self.cb = False  # a caller's callback runs: what it raises is the caller's
        self.fired = self.ended = False
        self._socks = []
        self._task = asyncio.current_task()
        self._dog = asyncio.create_task(self._watch())

    async def _watch(self):
        ms = int(self.timeout * 1000)
        while True:
            left = ms - time.ticks_diff(time.ticks_ms(), self.t)
            if left <= 0:
                break
            await asyncio.sleep_ms(left)
        self.fired = True
        self._task.cancel()

    async def run(self, coro):
        try:
            return await coro
        except asyncio.CancelledError:
            if not self.fired:
                raise  # the caller's own cancel
            err = "timed out after %s s" % self.timeout
        except (OSError, EOFError, ValueError) as e:
            if self.cb:
                raise
            err = ws._why(e)
            if isinstance(e, ValueError) and not self.what.startswith("TLS"):  # TLS verify errors are too
                err = "malformed answer (%s)" % err
            if isinstance(e, OSError) and e.args and e.args[0] == ECONNREFUSED:  # at the first read or write
                self.what, err = "connection to " + self.peer, "connection refused"
        finally:
            self.ended = True
            self._dog.cancel()
            for s in reversed(self._socks):  # TLS first, then the TCP socket below it
                s.close()
        raise TransferError("%s: %s" % (self.what, err))

    async def open(self, host, port, ctx=None):
        # -> an asyncio stream. open_connection resolves the name with a
        # blocking getaddrinfo (a board's DNS answer is usually cached: the
        # CSMS URL names a host too). The opener is a task nobody cancels:
        # until TCP connects only open_connection holds the socket, and
        # cancelling it would leak the socket.
        self.peer = "%s:%d" % (host, port)
        self.what = "connection to " + self.peer
        r = [None, None, asyncio.Event()]
        asyncio.create_task(self._open(host, port, ctx, r))
        await r[2].wait()
        self.t = time.ticks_ms()
        e = r[1]
        if isinstance(e, OSError) and e.args and type(e.args[0]) is int and e.args[0] < 0:
            raise TransferError("cannot resolve %s: %s" % (host, ws._why(e)))  # getaddrinfo's errors
        if e:
            raise e
        return r[0]

    async def _open(self, host, port, ctx, r):
        try:
            s = (await asyncio.open_connection(host, port))[0]
            self._socks.append(s.s)
            if ctx:  # wrapped here, not by open_connection: a failed TLS handshake
                # does not close the TCP socket below it, so the end closes both
                s.s = ctx.wrap_socket(s.s, server_hostname=host, do_handshake_on_connect=False)
                self._socks.append(s.s)
            if self.ended:  # the transfer gave up meanwhile
                for x in self._socks:
                    x.close()
            r[0] = s
        except Exception as e:
            r[1] = e
        r[2].set()


async def copy(j, c, mv, sink, left):
    # left bytes (None: until the peer closes) from stream c to sink, through mv
    n, full = 0, len(mv)
    while left is None or n < left:
        v = mv if left is None or left - n >= full else mv[: left - n]
        # What is there already (in the kernel, or a decrypted TLS record) is
        # read without a wait: a wait allocates in asyncio's IO queue, and the
        # unix port polls a TLS socket with a 1 ms sleep.
        k = c.s.readinto(v)
        if k is None:
            k = await c.readinto(v)
            if k is None:  # TLS: a record not complete yet
                continue
        else:
            await asyncio.sleep_ms(0)  # the other tasks still run between blocks
        if not k:
            if left is None:
                break
            raise TransferError("%s: closed by the peer after %d of %d bytes" % (j.what, n, left))
        j.cb = True
        sink(mv if k == full else mv[:k])  # a whole block: no new memoryview
        j.cb = False
        j.t = time.ticks_ms()  # after the sink: a slow flash write is not the network's time
        n += k
    return n


async def send(j, c, mv, source, left):
    # left bytes (None: until source returns 0) from source to stream c, through mv
    n, full = 0, len(mv)
    while left is None or n < left:
        j.cb = True
        k = source(mv if left is None or left - n >= full else mv[: left - n])
        j.cb = False
        if not k:
            if left is None:
                break
            raise TransferError("the data to send ended after %d of %d bytes" % (n, left))
        c.write(mv if k == full else mv[:k])  # what the socket does not take now is copied
        await c.drain()  # drain yields to the loop
        j.t = time.ticks_ms()
        n += k
    return n
