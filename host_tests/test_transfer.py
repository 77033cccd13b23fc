"""lib/http.py and lib/ftp.py (the UpdateFirmware / GetDiagnostics transfer clients) on the
MicroPython unix port against real servers on 127.0.0.1 port 0: a threaded http.server (plain
and TLS with the test CA of conftest's pki), pyftpdlib, a listener that never answers, and a
closed port. Each transfer runs in a MicroPython subprocess (host_tests/mp/transfer_probe.py)
that hashes every block through the sink or source on its side and prints one line per fact.
"""
import hashlib
import http.server
import logging
import os
import socket
import subprocess
import threading
import time
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():  # pyftpdlib 2.2 imports asyncore and asynchat (deprecated in 3.11)
    warnings.simplefilter("ignore", DeprecationWarning)
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.servers import FTPServer

from conftest import MICROPYTHON, ROOT, mp_env, server_tls, free_port

PROBE = "host_tests/mp/transfer_probe.py"
BUF = 1024
SIZES = [0, 1, BUF, 300 * 1024]
BLOB = os.urandom(max(SIZES))


def sha(b):
    return hashlib.sha256(b).hexdigest()


def probe(op, url, *args, timeout=30, heapsize=None, mpy=None):
    # mpy: a directory of the modules compiled (mpy_tree), run from there
    main = str(mpy / "run.py") if mpy else PROBE
    cmd = [MICROPYTHON] + (["-X", "heapsize=" + heapsize] if heapsize else []) + [main, op, url] + list(args)
    p = subprocess.run(cmd, cwd=ROOT, env=mp_env(mpy and "%s:.frozen" % mpy), capture_output=True, text=True,
                       timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0 and "Traceback" not in out and out.rstrip().endswith("END"), out
    return {line.split()[0]: line for line in p.stdout.splitlines()}


@pytest.fixture(scope="module")
def mpy_tree(tmp_path_factory):
    """ws, transfer, http, ftp and the probe as .mpy (compiling from source costs the 64-bit port more
    heap than the transfer), with a run.py that imports the probe."""
    d = tmp_path_factory.mktemp("mpy")
    for src in ("lib/ws.py", "lib/transfer.py", "lib/http.py", "lib/ftp.py", PROBE):
        subprocess.run([str(Path(MICROPYTHON).parent / "mpy-cross"), "-march=x64", "-o",
                        str(d / Path(src).with_suffix(".mpy").name), src], cwd=ROOT, check=True)
    (d / "run.py").write_text("import transfer_probe\n")
    return d


def done(lines, n, data):
    # "DONE result bytes sha256 us N" with the MicroPython side's count and hash
    f = lines["DONE"].split()
    assert f[2] == str(n) and f[3] == sha(data), lines
    return int(f[1])


def error(lines):
    assert "ERROR" in lines and "DONE" not in lines, lines
    before, after = lines["FDS"].split()[1:]
    assert before == after, lines  # every socket of the transfer closed
    return lines["ERROR"]


# ---- HTTP server ----------------------------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # chunked answers need 1.1
    files = {}  # name -> bytes
    received = []  # (method, path, headers, body) of each upload

    def log_message(self, *a):
        pass

    def send_body(self, body, code=200, extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("/")  # "", kind, ...
        kind, name = parts[1], parts[-1]
        if kind == "file":
            self.send_body(self.files[name])
        elif kind == "chunked":  # chunks of varied sizes, one over the client's buffer
            body = self.files[name]
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            i, sizes = 0, [1, 700, 3000, 1024, 5]
            while i < len(body):
                n = sizes[i % len(sizes)]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + n]), body[i:i + n]))
                i += n
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif kind == "hop":  # /hop/<codes, one per remaining hop>/<name>: relative and absolute Locations
            codes = parts[2]
            if not codes:
                return self.send_body(self.files[name])
            nxt = "/hop/%s/%s" % (codes[3:], name)
            loc = nxt if len(codes) % 2 else "http://%s%s" % (self.headers["Host"], nxt)
            self.send_body(b"moved", int(codes[:3]), [("Location", loc)])
        elif kind == "loop":
            self.send_body(b"", 302, [("Location", self.path)])
        elif kind == "status":  # /status/<code>
            self.send_body(b"no", int(name))
        elif kind == "private":  # Basic auth: bob / "s3cr:t@x"
            if self.headers.get("Authorization") != "Basic Ym9iOnMzY3I6dEB4":
                return self.send_body(b"", 401, [("WWW-Authenticate", 'Basic realm="fw"')])
            self.send_body(self.files[name])
        elif kind == "short":  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(BLOB[:1000])
            self.close_connection = True
        elif kind == "toplain":  # https -> http redirect
            self.send_body(b"", 302, [("Location", "http://127.0.0.1:1/file/x")])

    def upload(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        if self.path.startswith("/again/") and not self.path.endswith("/there"):
            return self.send_body(b"", 307, [("Location", self.path + "/there")])
        self.received.append((self.command, self.path, dict(self.headers), body))
        self.send_body(b"stored", 201 if self.command == "PUT" else 200)

    do_PUT = do_POST = upload


class HTTPFixture:
    def __init__(self, tls=None):
        self.files, self.received = {}, []
        handler = type("H", (Handler,), {"files": self.files, "received": self.received})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        if tls:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, scheme="http", host="127.0.0.1"):
        return "%s://%s:%d%s" % (scheme, host, self.port, path)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def web():
    s = HTTPFixture()
    for n in SIZES:
        s.files["b%d" % n] = BLOB[:n]
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tls_web(pki):
    s = HTTPFixture(server_tls(pki))
    s.files["b300"] = BLOB[:300 * 1024]
    yield s
    s.stop()


# ---- FTP server -----------------------------------------------------------------------

def start_ftp(root):
    """pyftpdlib on 127.0.0.1 port 0 in a thread, serving root: bob / "s3cr:t@x" may read and
    write everywhere, anonymous may read root/pub. -> the server (.port; .close_all() stops it)."""
    logging.getLogger("pyftpdlib").setLevel(logging.WARNING)  # not a line per command
    (root / "pub").mkdir(exist_ok=True)
    auth = DummyAuthorizer()
    auth.add_user("bob", "s3cr:t@x", str(root), perm="elrw")
    auth.add_anonymous(str(root / "pub"))
    # a banner over 75 characters: pyftpdlib sends it as a multi-line reply
    handler = type("H", (FTPHandler,), {"authorizer": auth, "banner": "mpocpp test server; " * 5,
                                         "auth_failed_timeout": 0})
    server = FTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, kwargs={"timeout": 0.1}, daemon=True).start()
    server.port = server.address[1]
    return server


@pytest.fixture(scope="module")
def ftp(tmp_path_factory):
    root = tmp_path_factory.mktemp("ftp")
    (root / "pub").mkdir()
    (root / "in").mkdir()
    for n in SIZES:
        (root / "pub" / ("b%d" % n)).write_bytes(BLOB[:n])
    (root / "pub" / "my file").write_bytes(b"spaced")
    server = start_ftp(root)
    server.root = root
    yield server
    server.close_all()


# ---- a listener that never answers, a closed port ---------------------------------------

@pytest.fixture
def silent():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)  # the kernel completes the handshake; nobody accepts or answers
    yield s.getsockname()[1]
    s.close()


@pytest.fixture
def closed_port():
    return free_port()


# ---- tests: HTTP downloads -------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["file", "chunked"])
def test_http_download_gives_the_bytes_and_reports_the_size_first(web, tmp_path, kind, n):
    out = tmp_path / "out"
    lines = probe("get", web.url("/%s/b%d" % (kind, n)), "--out", str(out))
    assert done(lines, n, BLOB[:n]) == n
    assert out.read_bytes() == BLOB[:n]
    assert lines["SIZE"] == ("SIZE %d" % n if kind == "file" else "SIZE None")


def test_http_size_check_refuses_before_the_body(web, tmp_path):
    lines = probe("get", web.url("/file/b%d" % (300 * 1024)), "--max", "100000")
    assert "not enough room: 307200 bytes offered" in error(lines)
    assert "DATA" not in lines  # not one block was given to the sink


def test_http_follows_a_redirect_chain_of_each_kind(web):
    lines = probe("get", web.url("/hop/301302303307308/b1024"))
    assert done(lines, BUF, BLOB[:BUF]) == BUF


def test_http_redirects_are_bounded(web):
    assert "more than 5 redirects" in error(probe("get", web.url("/loop/x")))


@pytest.mark.parametrize("code,reason", [(404, "Not Found"), (500, "Internal Server Error"),
                                         (503, "Service Unavailable")])
def test_http_error_status_raises_with_status_and_reason(web, code, reason):
    err = error(probe("get", web.url("/status/%d" % code)))
    assert err.startswith("ERROR GET %s: HTTP %d %s code=%d" % (web.url("/status/%d" % code), code, reason, code))


def test_http_basic_auth_from_the_url(web):
    lines = probe("get", "http://bob:s3cr%%3At%%40x@127.0.0.1:%d/private/b1" % web.port)
    assert done(lines, 1, BLOB[:1]) == 1
    err = error(probe("get", "http://bob:wrong@127.0.0.1:%d/private/b1" % web.port))
    assert "HTTP 401 Unauthorized code=401" in err and "wrong" not in err  # no password in the log


def test_http_connection_closed_mid_body(web):
    assert "closed by the peer after 1000 of 5000 bytes" in error(probe("get", web.url("/short/x")))


def test_http_loop_keeps_running_during_300k(web):
    lines = probe("get", web.url("/file/b%d" % (300 * 1024)), "--ticker")
    done(lines, 300 * 1024, BLOB[:300 * 1024])
    gap_us, ticks = map(int, lines["STALL"].split()[1:])
    print(lines["STALL"], lines["DONE"], lines["ALLOC"])
    assert gap_us < 500_000  # sanity only: the bench holds the figure


def test_http_download_in_a_small_heap(web, mpy_tree):
    # 300 KB through a 64 KB heap (48K passes, modules .mpy): nothing is held whole in RAM.
    lines = probe("get", web.url("/chunked/b%d" % (300 * 1024)), heapsize="64K", mpy=mpy_tree)
    done(lines, 300 * 1024, BLOB[:300 * 1024])


# ---- tests: HTTP uploads -----------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("method", ["put", "post"])
def test_http_upload_sends_the_bytes(web, tmp_path, method, n):
    src = tmp_path / "src"
    src.write_bytes(BLOB[:n])
    del web.received[:]
    lines = probe(method, "http://u:p@127.0.0.1:%d/up/b%d" % (web.port, n), "--in", str(src))
    assert done(lines, n, BLOB[:n]) == (201 if method == "put" else 200)
    (m, path, headers, body), = web.received
    assert (m, path, body) == (method.upper(), "/up/b%d" % n, BLOB[:n])
    assert headers["Content-Length"] == str(n) and headers["Content-Type"] == "application/octet-stream"
    assert headers["Connection"] == "close" and headers["Host"] == "127.0.0.1:%d" % web.port
    assert headers["Authorization"] == "Basic dTpw"


def test_http_upload_redirect_sends_again_after_rewind(web, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(BLOB[:5000])
    del web.received[:]
    assert done(probe("put", web.url("/again/x"), "--in", str(src), "--rewind"), 10000, BLOB[:5000] * 2) == 201
    assert [(p, b) for _, p, _, b in web.received] == [("/again/x/there", BLOB[:5000])]
    err = error(probe("put", web.url("/again/x"), "--in", str(src)))
    assert "HTTP 307 redirect, and the data cannot be sent again" in err


# ---- tests: HTTPS ------------------------------------------------------------------------

def test_https_download_verified_with_the_ca(tls_web, pki, tmp_path):
    out = tmp_path / "out"
    lines = probe("get", tls_web.url("/file/b300", "https", "localhost"), "--ca", str(pki / "ca.pem"),
                  "--out", str(out), "--ticker")
    done(lines, 300 * 1024, BLOB[:300 * 1024])
    assert out.read_bytes() == BLOB[:300 * 1024]
    print(lines["STALL"], lines["DONE"])


def test_https_upload(tls_web, pki, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(BLOB[:5000])
    lines = probe("put", tls_web.url("/up/x", "https", "localhost"), "--ca", str(pki / "ca.pem"), "--in", str(src))
    assert done(lines, 5000, BLOB[:5000]) == 201
    assert tls_web.received[-1][3] == BLOB[:5000]


def test_https_chunked_download(tls_web, pki):
    lines = probe("get", tls_web.url("/chunked/b300", "https", "localhost"), "--ca", str(pki / "ca.pem"))
    done(lines, 300 * 1024, BLOB[:300 * 1024])


@pytest.mark.parametrize("ca", ["ca2.pem", None])
def test_https_refuses_a_server_the_ca_did_not_sign(tls_web, pki, ca):
    args = ["--ca", str(pki / ca)] if ca else []
    err = error(probe("get", tls_web.url("/file/b300", "https", "localhost"), *args))
    assert err.startswith("ERROR TLS handshake with localhost:%d: " % tls_web.port), err
    if not ca:
        assert "no CA certificate configured" in err


def test_https_refuses_a_redirect_to_plain_http(tls_web, pki):
    err = error(probe("get", tls_web.url("/toplain/x", "https", "localhost"), "--ca", str(pki / "ca.pem")))
    assert "redirect to a plain http:// URL refused" in err


# ---- tests: FTP ----------------------------------------------------------------------------

@pytest.mark.parametrize("n", SIZES)
def test_ftp_retr_anonymous_gives_the_bytes_and_size_first(ftp, tmp_path, n):
    out = tmp_path / "out"
    lines = probe("get", "ftp://127.0.0.1:%d/b%d" % (ftp.port, n), "--out", str(out))
    assert done(lines, n, BLOB[:n]) == n
    assert out.read_bytes() == BLOB[:n]
    assert lines["SIZE"] == "SIZE %d" % n


def test_ftp_retr_with_login_and_escaped_path(ftp):
    lines = probe("get", "ftp://bob:s3cr%%3At%%40x@127.0.0.1:%d/pub/my%%20file" % ftp.port)
    assert done(lines, 6, b"spaced") == 6


@pytest.mark.parametrize("n", SIZES)
def test_ftp_stor_sends_the_bytes(ftp, tmp_path, n):
    src = tmp_path / "src"
    src.write_bytes(BLOB[:n])
    lines = probe("put", "ftp://bob:s3cr%%3At%%40x@127.0.0.1:%d/in/up%d" % (ftp.port, n), "--in", str(src))
    assert done(lines, n, BLOB[:n]) == n
    assert (ftp.root / "in" / ("up%d" % n)).read_bytes() == BLOB[:n]


def test_ftp_refused_login_carries_the_reply(ftp):
    err = error(probe("get", "ftp://bob:nope@127.0.0.1:%d/pub/b1" % ftp.port))
    assert err.startswith("ERROR FTP server 127.0.0.1:%d refused the login as bob: 530 " % ftp.port), err
    assert "code=530" in err and "nope" not in err


def test_ftp_missing_file_carries_the_reply(ftp):
    err = error(probe("get", "ftp://127.0.0.1:%d/nothing.bin" % ftp.port))
    assert err.startswith("ERROR FTP server 127.0.0.1:%d refused RETR nothing.bin: 550 " % ftp.port), err


def test_ftp_anonymous_cannot_store(ftp, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"x")
    err = error(probe("put", "ftp://127.0.0.1:%d/x" % ftp.port, "--in", str(src)))
    assert "refused STOR x: 550 " in err and "code=550" in err


def test_ftp_loop_keeps_running_during_300k_in_a_small_heap(ftp, mpy_tree):
    lines = probe("get", "ftp://127.0.0.1:%d/b%d" % (ftp.port, 300 * 1024), "--ticker", heapsize="64K",
                  mpy=mpy_tree)
    done(lines, 300 * 1024, BLOB[:300 * 1024])
    print(lines["STALL"], lines["DONE"], lines["ALLOC"])
    assert int(lines["STALL"].split()[1]) < 500_000


# ---- tests: silent servers, closed ports, bad URLs -------------------------------------------

@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_silent_server_times_out(silent, scheme):
    err = error(probe("get", "%s://127.0.0.1:%d/x" % (scheme, silent), "--timeout", "1"))
    assert "answer from 127.0.0.1:%d: timed out after 1.0 s" % silent in err, err
    ms = int(err.split()[-1])
    assert 900 <= ms < 3000, err


@pytest.mark.parametrize("scheme", ["http", "ftp"])
def test_closed_port_is_a_clear_error(closed_port, scheme):
    err = error(probe("get", "%s://127.0.0.1:%d/x" % (scheme, closed_port)))
    assert "connection to 127.0.0.1:%d: connection refused" % closed_port in err, err


@pytest.mark.parametrize("url,why", [("gopher://h/x", "not an http:// or https:// URL"),
                                     ("http://h:99999/x", "bad port in URL http://h:99999"),
                                     ("http:///x", "bad URL (no host)"),
                                     ("ftp://127.0.0.1:1/", "no file name"),
                                     ("ftp://127.0.0.1:1/x%0D%0ADELE%20y", "line break in URL"),
                                     ("http://127.0.0.1:1/x HTTP/1.0\r\nX: y", "a space or line break"),
                                     ("127.0.0.1/x", "no scheme://")])
def test_bad_urls(url, why):
    assert why in error(probe("get", url))


# ---- tests: the caller's callbacks and cancels, the watchdog after the transfer ----------------

def test_sink_errors_pass_through_unchanged(web):
    lines = probe("get", web.url("/file/b1024"), "--sinkfail")
    assert lines["OSERROR"] == "OSERROR 28" and "ERROR" not in lines, lines


def test_callers_cancel_is_a_cancel_and_closes_the_socket(silent):
    lines = probe("get", "http://127.0.0.1:%d/x" % silent, "--cancel", "200", "--timeout", "5")
    assert "CANCELLED" in lines and "ERROR" not in lines, lines
    before, after = lines["FDS"].split()[1:]
    assert before == after, lines


def test_watchdog_stops_with_the_transfer(web, ftp):
    # a short timeout, then the loop runs on well past it: no stray cancel of the caller's task
    for url in (web.url("/file/b1024"), "ftp://127.0.0.1:%d/b1024" % ftp.port):
        lines = probe("get", url, "--timeout", "0.2", "--linger", "0.6")
        done(lines, BUF, BLOB[:BUF])


def test_timeout_while_tcp_connects_does_not_leak_the_socket():
    # A listener with a full accept queue drops SYNs: the connect hangs past the timeout.
    # Once the queue is drained the kernel's SYN retry gets through, and the late socket
    # must be closed (test_ws.py does the same for the WebSocket).
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = [socket.socket() for _ in range(3)]
    for f in fillers:
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", port))
    time.sleep(0.1)
    p = subprocess.Popen([MICROPYTHON, PROBE, "get", "http://127.0.0.1:%d/x" % port, "--timeout", "0.3",
                          "--linger", "1.5"], cwd=ROOT, env=mp_env(), stdout=subprocess.PIPE, text=True)
    late = []
    try:
        time.sleep(0.5)
        lst.settimeout(0.1)
        while p.poll() is None:  # drain the queue; the client's retried SYN lands here
            try:
                late.append(lst.accept()[0])
            except socket.timeout:
                pass
        lines = {line.split()[0]: line for line in p.stdout.read().splitlines()}
    finally:
        p.kill()
        for s in fillers + late:
            s.close()
        lst.close()
    assert "connection to 127.0.0.1:%d: timed out after 0.3 s" % port in lines["ERROR"], lines
    before, after = lines["FDS"].split()[1:]
    assert before == after, lines
