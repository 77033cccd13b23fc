# Small asyncio HTTP/1.1 client for firmware downloads and diagnostics uploads
# (OCPP 1.6 §5.19 UpdateFirmware, §5.9 GetDiagnostics), http:// and https://.
# Imported only while a transfer runs. A body streams through ONE buffer the
# caller owns (e.g. bytearray(1024)); nothing is held whole in RAM.
#
#   n = await download(url, buf, sink, size=None, ssl_context=None, timeout=30)
#   status = await upload(url, buf, source, length, method="PUT", ...)
#
# sink(mv) gets each block received (a memoryview into buf, valid until sink
# returns); size(n) the Content-Length (None: not known) before the body is
# read, and may raise to refuse it; source(mv) fills mv and returns the byte
# count. They are plain functions; what they raise passes through unchanged.
# Every other failure raises TransferError (e.code: the HTTP status, if any).
import time
import ws  # the verifying TLS context; the station has imported it already
from micropython import const
from transfer import Job, TransferError, copy, send, split_url

_HOPS = const(5)  # redirects followed
_LINES = const(40)  # header lines accepted per answer


def _join(url, loc):
    # a Location (RFC 9110 section 10.2.2), made absolute against url
    if "://" in loc:
        return loc
    i = url.find("://") + 3
    if loc[:2] == "//":
        return url[: i - 2] + loc
    k = url.find("/", i)
    root, path = (url, "/") if k < 0 else (url[:k], url[k:].split("?")[0])
    return root + (loc if loc[:1] == "/" else path[: path.rfind("/") + 1] + loc)


async def _head(j, c):
    # status line and header fields -> (status, reason, Content-Length or None, chunked, Location)
    while True:
        line = await c.readline()
        j.t = time.ticks_ms()
        st = line.split(None, 2)
        if len(st) < 2 or not st[0].startswith(b"HTTP/"):
            raise TransferError("%s: %s" % (j.what, "not HTTP" if line else "closed without an answer"))
        clen, chunked, loc = None, False, None
        for _ in range(_LINES):
            line = await c.readline()
            if not line:
                raise EOFError
            if not line.strip():
                break
            i = line.find(b":")
            k, v = line[:i].strip().lower(), line[i + 1 :].strip()
            if k == b"content-length":
                clen = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"location":
                loc = str(v, "utf-8")
        else:
            raise TransferError("%s: too many header lines" % j.what)
        if int(st[1]) >= 200:  # 1xx: informational, the answer follows (RFC 9110 section 15.2)
            return int(st[1]), str(st[2].strip(), "utf-8") if len(st) > 2 else "", clen, chunked, loc


async def _exchange(j, method, url, mv, source, length, ctype, rewind, ctx):
    # the request, redirects followed -> (stream, status, Content-Length, chunked)
    for _ in range(_HOPS + 1):
        scheme, user, pw, host, port, path = split_url(url)
        tls = scheme == "https"
        if not tls and scheme != "http":
            raise TransferError("not an http:// or https:// URL: %s://%s%s" % (scheme, host, path))
        dflt = 443 if tls else 80
        port = port or dflt
        c = await j.open(host, port, tls and (ctx or ws.tls_context()))  # no CA given: https fails
        hp = ("[%s]" % host if ":" in host else host) + ("" if port == dflt else ":%d" % port)
        shown = "%s %s://%s%s" % (method, scheme, hp, path)  # the URL without its credentials
        req = "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: mpocpp\r\n" % (method, path, hp)
        if user is not None:  # RFC 7617
            req += "Authorization: Basic %s\r\n" % ws._b64(("%s:%s" % (user, pw or "")).encode()).decode()
        if source:
            req += "Content-Type: %s\r\nContent-Length: %d\r\n" % (ctype, length)
        if tls:
            j.what = "TLS handshake with " + j.peer
        c.write((req + "\r\n").encode())  # a refused connection or a TLS failure surfaces here
        await c.drain()
        j.t = time.ticks_ms()
        if source:
            j.what = "upload to " + j.peer
            await send(j, c, mv, source, length)
        j.what = "answer from " + j.peer
        st, reason, clen, chunked, loc = await _head(j, c)
        if st < 300 or source and st == 303:  # 303 after an upload: done, the answer is elsewhere
            return c, st, clen, chunked
        if st not in (301, 302, 303, 307, 308) or not loc:
            raise TransferError("%s: HTTP %d %s" % (shown, st, reason), st)
        c.s.close()
        url = _join(url, loc)
        if tls and not url.startswith("https:"):  # the download would lose its protection
            raise TransferError("%s: redirect to a plain http:// URL refused" % shown)
        if source:  # the data goes again, to the new place
            if not rewind:
                raise TransferError("%s: HTTP %d redirect, and the data cannot be sent again" % (shown, st), st)
            rewind()
    raise TransferError("%s: more than %d redirects" % (shown, _HOPS))


async def _download(j, url, mv, sink, size, ctx):
    c, st, clen, chunked = await _exchange(j, "GET", url, mv, None, 0, None, None, ctx)
    if size:
        j.cb = True
        size(None if chunked else clen)
        j.cb = False
    if not chunked:
        return await copy(j, c, mv, sink, clen)  # no Content-Length: until the server closes
    n = 0
    while True:  # RFC 9112 section 7.1
        k = int((await c.readline()).split(b";")[0].strip(), 16)  # chunk size [; extensions]
        if not k:
            break
        n += await copy(j, c, mv, sink, k)
        if (await c.readline()).strip():
            raise ValueError
    for _ in range(_LINES):  # trailer fields, then an empty line
        if not (await c.readline()).strip():
            break
    return n


async def download(url, buf, sink, size=None, ssl_context=None, timeout=30):
    # GET url -> the number of bytes given to sink. https: ssl_context from ws.tls_context(CA DER)
    j = Job(timeout)
    return await j.run(_download(j, url, memoryview(buf), sink, size, ssl_context))


async def upload(url, buf, source, length, method="PUT", content_type="application/octet-stream",
                 rewind=None, ssl_context=None, timeout=30):
    # PUT (or POST) length bytes from source -> the HTTP status. After a 301, 302,
    # 307 or 308 redirect the data goes again once rewind() was called; without
    # rewind such a redirect raises TransferError.
    j = Job(timeout)
    return (await j.run(_exchange(j, method, url, memoryview(buf), source, length, content_type, rewind,
                                  ssl_context)))[1]
