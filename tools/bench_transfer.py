"""Transfer figures for `make bench` (tools/bench.py calls run() and rows()), or alone:

    python tools/bench_transfer.py [--runs N] [--out build/bench_transfer.json]

lib/http.py and lib/ftp.py on the MicroPython unix port (the venv's, modules from source),
against the test suite's servers on loopback (host_tests/test_transfer.py: a threaded
http.server, also behind TLS with a test CA, and pyftpdlib): download and upload of a 1 MB
file of random bytes through a 1024-byte buffer, each RUNS times, with a 1 ms ticker task
beside the transfer (host_tests/mp/transfer_probe.py --ticker). Per transfer: the median
throughput in KB/s (the transfer alone: from the call to its return, connection and TLS
handshake included, process start and imports not), the longest loop stall over the runs
(the ticker's worst lateness beyond its 1 ms), and the bytes allocated per block (garbage
included: asyncio's own share of each pass through the loop is most of it). The bytes that
arrived are checked against the original (SHA-256 on the MicroPython side).
"""
import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "host_tests"))

from conftest import MICROPYTHON, make_cert, mp_env, server_tls  # noqa: E402
from test_transfer import PROBE, HTTPFixture, start_ftp  # noqa: E402

SIZE = 1024 * 1024
BUF = 1024
RUNS = 3
NAMES = ("http_download", "http_upload", "https_download", "https_upload", "ftp_download", "ftp_upload")


def probe(op, url, *args):
    cmd = [MICROPYTHON, PROBE, op, url, "--buf", str(BUF), "--ticker"] + list(args)
    p = subprocess.run(cmd, cwd=ROOT, env=mp_env(), capture_output=True, text=True, timeout=120)
    lines = {line.split()[0]: line.split()[1:] for line in p.stdout.splitlines() if line.strip()}
    if p.returncode or "DONE" not in lines:
        raise RuntimeError("transfer_probe %s %s: %s" % (op, url, (p.stdout + p.stderr).strip()[-300:]))
    return lines


def measure(op, url, data, args=(), check=None):
    kbs, stalls, allocs = [], [], []
    for _ in range(RUNS):
        lines = probe(op, url, *args)
        done = lines["DONE"]  # result bytes sha256 "us" N
        if int(done[1]) != len(data) or done[2] != hashlib.sha256(data).hexdigest():
            raise RuntimeError("%s %s: the bytes differ: %s" % (op, url, done))
        if check:
            check()
        kbs.append(len(data) / 1024 / (int(done[4]) / 1e6))
        stalls.append(max(0, int(lines["STALL"][0]) - 1000) / 1000)
        allocs.append(int(lines["ALLOC"][0]))
    return {"kb_s": round(statistics.median(kbs)), "kb_s_runs": [round(k) for k in kbs],
            "stall_ms": round(max(stalls), 1), "stall_ms_runs": stalls,
            "alloc_per_block_b": statistics.median(allocs), "bytes": len(data), "buffer": BUF}


def run(log=print):
    data = os.urandom(SIZE)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_cert(d, "ca", "/CN=Bench transfer CA", "basicConstraints=critical,CA:TRUE",
                  "keyUsage=critical,keyCertSign,cRLSign")
        make_cert(d, "server", "/CN=localhost", "basicConstraints=CA:FALSE",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1", ca="ca")
        src = d / "src"
        src.write_bytes(data)
        (d / "ftp" / "pub").mkdir(parents=True)
        (d / "ftp" / "pub" / "blob").write_bytes(data)
        servers = {"http": HTTPFixture(), "https": HTTPFixture(server_tls(d))}
        ftp = start_ftp(d / "ftp")
        try:
            for scheme, s in servers.items():
                s.files["blob"] = data
                extra = ("--ca", str(d / "ca.pem")) if scheme == "https" else ()
                host = "localhost" if scheme == "https" else "127.0.0.1"

                def check(s=s):  # the server got the bytes
                    assert s.received.pop()[3] == data, "upload differs"

                out[scheme + "_download"] = measure("get", s.url("/file/blob", scheme, host), data, extra)
                out[scheme + "_upload"] = measure("put", s.url("/up/blob", scheme, host), data,
                                                  extra + ("--in", str(src)), check)
            url = "ftp://bob:s3cr%%3At%%40x@127.0.0.1:%d/" % ftp.port
            out["ftp_download"] = measure("get", url + "pub/blob", data)

            def ftp_check():
                assert (d / "ftp" / "up").read_bytes() == data, "upload differs"

            out["ftp_upload"] = measure("put", url + "up", data, ("--in", str(src)), ftp_check)
        finally:
            for s in servers.values():
                s.stop()
            ftp.close_all()
    for name in NAMES:
        log("  transfer %s: %d KB/s, longest loop stall %.1f ms, %d B allocated per block"
            % (name, out[name]["kb_s"], out[name]["stall_ms"], out[name]["alloc_per_block_b"]))
    return out


def rows(res):
    # (what, figure, "", "") rows for bench.py's table
    out = []
    for name in NAMES:
        r = res.get(name)
        what = "%s %s of 1 MB, %d B buffer, loopback (median of %d; longest loop stall, 1 ms ticker beside)" % (
            name.split("_")[0].upper(), name.split("_")[1], BUF, RUNS)
        if r is None:
            out.append((what, "not measured: " + res.get("error", "?"), "", ""))
        else:
            out.append((what, "%d KB/s, stall %.1f ms, %d B allocated per block" % (
                r["kb_s"], r["stall_ms"], r["alloc_per_block_b"]), "", ""))
    return out


def main():
    global RUNS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench_transfer.json"))
    args = ap.parse_args()
    RUNS = args.runs
    t0 = time.time()
    res = run()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    for r in rows(res):
        print("| %s | %s |" % r[:2])
    print("took %.0f s; figures in %s" % (time.time() - t0, os.path.relpath(args.out, ROOT)))


if __name__ == "__main__":
    main()
