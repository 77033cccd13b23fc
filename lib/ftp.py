# Small asyncio FTP client (RFC 959) for firmware downloads and diagnostics
# uploads (OCPP 1.6 §5.19, §5.9): login, binary type, passive mode, RETR and
# STOR. Imported only while a transfer runs. URLs as RFC 1738 writes them:
# ftp://[user[:password]@]host[:port]/path, anonymous without a user; the
# path is relative to the login directory ("%2F" first for an absolute one).
#
#   n = await download(url, buf, sink, size=None, timeout=30)
#   n = await upload(url, buf, source, timeout=30)
#
# sink, size and source as in lib/http.py (size gets SIZE's answer, None if the
# server has no SIZE); failures raise TransferError with the server's reply
# (e.code: its reply code).
import time
from micropython import const
from transfer import Job, TransferError, copy, send, split_url, unquote

_LINES = const(50)  # lines accepted in one multi-line reply


async def _reply(j, c):
    # one reply, multi-line ones too (RFC 959 section 4.2) -> (code, its last line)
    line = await c.readline()
    code = line[:3]
    if line[3:4] == b"-":
        for _ in range(_LINES):
            line = await c.readline()
            if not line or line[:3] == code and line[3:4] == b" ":
                break
        else:
            raise TransferError("%s: reply too long" % j.what)
    if not line:
        raise EOFError
    j.t = time.ticks_ms()
    return int(code), str(line, "utf-8").strip()


async def _cmd(j, c, line):
    c.write(line.encode() + b"\r\n")
    await c.drain()
    return await _reply(j, c)


def _refused(where, what, reply):
    return TransferError("FTP server %s refused %s: %s" % (where, what, reply[1]), reply[0])


async def _login(j, url):
    # -> (control stream, "host:port", host, path)
    scheme, user, pw, host, port, path = split_url(url)
    if scheme != "ftp":
        raise TransferError("not an ftp:// URL: %s://%s%s" % (scheme, host, path))
    path = unquote(path[1:])
    if not path:
        raise TransferError("no file name in %s://%s/" % (scheme, host))
    port = port or 21
    where = "%s:%d" % (host, port)
    c = await j.open(host, port)
    j.what = "answer from " + where
    r = await _reply(j, c)
    if r[0] != 220:  # e.g. 421: too many users
        raise _refused(where, "the connection", r)
    user = user or "anonymous"
    r = await _cmd(j, c, "USER " + user)
    if r[0] == 331:  # a password is needed
        r = await _cmd(j, c, "PASS " + (pw if pw is not None else "anonymous@"))
    if r[0] not in (230, 202):
        raise _refused(where, "the login as " + user, r)
    r = await _cmd(j, c, "TYPE I")  # binary: the bytes as they are
    if r[0] != 200:
        raise _refused(where, "TYPE I", r)
    return c, where, host, path


async def _data(j, c, where, host, cmd):
    # A passive data connection, then cmd on the control one -> the data stream.
    # Only PASV's port is used: the data goes to the control connection's host,
    # as CPython's ftplib does by default (a server behind NAT often announces
    # its private address, and a hostile one could aim us at another host).
    r = await _cmd(j, c, "PASV")
    if r[0] != 227:
        raise _refused(where, "PASV", r)
    nums, n = [], None  # "227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)."
    for ch in r[1][4:] + ".":
        if "0" <= ch <= "9":
            n = (n or 0) * 10 + ord(ch) - 48
        elif n is not None:
            nums.append(n)
            n = None
    if len(nums) < 6:
        raise ValueError
    d = await j.open(host, nums[4] << 8 | nums[5])
    j.what = "answer from " + where
    r = await _cmd(j, c, cmd)
    if r[0] not in (125, 150):  # the transfer starts
        raise _refused(where, cmd, r)
    return d


async def _end(j, c, where, cmd, d):
    # the data connection closed (in stream mode the end of the file), the transfer's reply
    d.s.close()
    j.what = "answer from " + where
    r = await _reply(j, c)
    if r[0] not in (226, 250):
        raise _refused(where, cmd, r)
    c.write(b"QUIT\r\n")  # polite; the answer is not awaited
    await c.drain()


async def _download(j, url, mv, sink, size):
    c, where, host, path = await _login(j, url)
    r = await _cmd(j, c, "SIZE " + path)  # RFC 3659; the size in TYPE I is the file's
    n = int(r[1][4:]) if r[0] == 213 else None
    if size:
        j.cb = True
        size(n)
        j.cb = False
    d = await _data(j, c, where, host, "RETR " + path)
    j.what = "download from " + where
    got = await copy(j, d, mv, sink, None)
    await _end(j, c, where, "RETR " + path, d)
    if n is not None and got != n:
        raise TransferError("download from %s: %d bytes, SIZE said %d" % (where, got, n))
    return got


async def _upload(j, url, mv, source):
    c, where, host, path = await _login(j, url)
    d = await _data(j, c, where, host, "STOR " + path)
    j.what = "upload to " + where
    n = await send(j, d, mv, source, None)
    await _end(j, c, where, "STOR " + path, d)
    return n


async def download(url, buf, sink, size=None, timeout=30):
    # RETR -> the number of bytes given to sink
    j = Job(timeout)
    return await j.run(_download(j, url, memoryview(buf), sink, size))


async def upload(url, buf, source, timeout=30):
    # STOR what source gives -> the number of bytes sent
    j = Job(timeout)
    return await j.run(_upload(j, url, memoryview(buf), source))
