"""tools/netproxy.py: pass-through, cut (RST both ways), half-open (silence, no close), heal."""
import socket
import threading

import pytest

from netproxy import NetProxy


@pytest.fixture
def echo():
    # A TCP echo server; records how each of its connections ended.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    ends = []

    def serve(c):
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    ends.append("eof")
                    break
                c.sendall(d)
        except OSError as e:
            ends.append(type(e).__name__)
        c.close()

    def accept():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield srv.getsockname()[1], ends
    srv.close()


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    return s


def test_pass_through_cut_half_open_heal(echo):
    port, ends = echo
    p = NetProxy("127.0.0.1", port).start()
    try:
        s = connect(p.port)
        s.sendall(b"hello")
        assert s.recv(100) == b"hello"

        # Half-open: nothing comes back, and nothing is closed on either side.
        assert p.half_open() == 1
        s.sendall(b"held")
        s.settimeout(0.5)
        with pytest.raises(socket.timeout):
            s.recv(100)
        # New connections meanwhile are reset (refuse=True).
        s2 = connect(p.port)
        with pytest.raises(ConnectionResetError):
            s2.recv(10)
        assert ends == []
        # Healed with delivery: what was held arrives, as TCP would deliver it.
        assert p.heal(deliver=True) == 1
        s.settimeout(2)
        assert s.recv(100) == b"held"

        # Cut: reset on both sides.
        assert p.cut() == 1
        with pytest.raises(ConnectionResetError):
            s.recv(100)
        s.close()

        # Healed without delivery: the half-open connection is reset, new ones pass.
        s3 = connect(p.port)
        s3.sendall(b"x")
        assert s3.recv(10) == b"x"
        p.half_open()
        p.heal()
        with pytest.raises(ConnectionResetError):
            s3.recv(10)
        s4 = connect(p.port)
        s4.sendall(b"again")
        assert s4.recv(10) == b"again"
        s4.close()
        st = p.stats()
        assert st["connections"] == 4 and st["refused"] == 1 and st["cuts"] == 1 and st["half_opens"] == 2
        assert st["bytes_up"] == st["bytes_down"] == len(b"hello" + b"held" + b"x" + b"again")
    finally:
        p.stop()
