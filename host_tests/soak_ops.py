"""The CSMS-initiated operations of the fault-injection soak (test_fault_injection.py), each
with a fault at a point chosen by the seed, and the judges of what they leave behind.

  fw-download   UpdateFirmware from a slow HTTP server; a kill, or a flash power cut (console
                `flash cut N`: the block writes after the N-th from now are dropped), while the
                update file is downloaded
  fw-install    the same while it is installed (unpacked into the spare slot)
  fw-firstboot  the same during the first boot of the new slot, before it confirms (a power
                cut: the new life starts with FLASH_CUT_AFTER_WRITES=N)
  profile       a kill / flash cut while SetChargingProfile is being stored
  cert          a kill / flash cut while InstallCertificate is being stored
  upload        GetDiagnostics or GetLog to an HTTP server that dies in the middle of the upload
                (while a vehicle charges)

What must hold afterwards (judged here, reported as problems):
  firmware  the station boots and is Accepted on a working application, old or new; the
            FirmwareStatusNotifications since the request follow the legal order
            (fw_status_problems) and end in exactly one of Installed / InstallationFailed /
            DownloadFailed, which matches the version it then runs; a kill (not a power cut of
            the flash) during the download or the install never loses the update: the
            stored request goes on after the restart and ends Installed; a first boot that
            logged "confirmed" before the power went stays Installed
  profile   after the restart GetCompositeSchedule gives the new limit or the one before
            (intact or cleanly absent); the new one if the station answered Accepted on
            live flash (before the cut) or before a kill
  cert      after the restart GetInstalledCertificateIds lists what it listed before, plus
            the new certificate or not (the same rule for Accepted); nothing else
  upload    DiagnosticsStatusNotification: Uploading (one per attempt), then UploadFailed; or
            LogStatusNotification Uploading..., UploadFailure, all with the requestId; the
            charging session goes on (the transaction judge checks it)

Security events (security_judge): every critical event the firmware logged ("security: KIND
(critical): info", written to the outbox journal before the line) reaches the CSMS exactly
once. The CSMS books an event under (cp, type, timestamp, techInfo): the event has no id of
its own, so that is how a CSMS database would key it. A retransmission (the same four fields
again, after a lost answer or a restart) is absorbed and only counted; a *duplicate* is a
second distinct record for one event: the same type and techInfo with another timestamp,
matched to no other event the firmware logged (a resend that was restamped, say). An event
matches a record with its type and techInfo whose timestamp is within SEC_SLACK s of the
moment its line was logged.
"""
import http.server
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from ocpp.v16 import call

ROOT = Path(__file__).resolve().parent.parent
OP_KINDS = ("fw-download", "fw-install", "fw-firstboot", "profile", "cert", "upload")
VERSIONS = ("9.1.0-soak", "9.2.0-soak")
TERMINAL = ("Installed", "InstallationFailed", "DownloadFailed")
# OCPP 1.6 §4.5 / §6.24: a download may be retried (or go on after a restart), an install follows
# a download, and a restart before the install ended starts the stored request from its download.
FW_NEXT = {None: {"Downloading"},
           "Downloading": {"Downloading", "Downloaded", "DownloadFailed"},
           "Downloaded": {"Installing", "Downloading"},
           "Installing": {"Installed", "InstallationFailed", "Downloading"}}
RX_OUT = re.compile(r'ocpp: >> \[2, ?"([^"]*)"')
LINK_LOST = "connection to the CSMS lost"
SEC_SLACK = 20  # s between an event's timestamp and its log line (raised before the flash is up: logged later)
RATE = 64 * 1024  # bytes per second the slow server sends an update file at


def iso(t=None):
    return datetime.fromtimestamp(time.time() if t is None else t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s):
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


# ---- judges (pure functions: test_the_judge_itself runs them on made-up records) -----------

def fw_status_problems(statuses, lost_power=False):
    """What is wrong with the FirmwareStatusNotification statuses of one update request, in order.

    lost_power: a life of the station ended (killed) or its link was lost during the request.
    The statuses wait in RAM until they go (one CALL at a time), so those not yet sent go with
    the power or the link: any that the legal order has may be missing (Installed alone, say),
    but the order of those that came must still be legal and the update must still end, in one final status (sent again if
    the power went before its answer)."""
    problems = []
    prev = None
    rank = {"Downloading": 0, "Downloaded": 1, "Installing": 2}
    for i, s in enumerate(statuses):
        if lost_power and s == prev and s in TERMINAL:
            continue  # sent, and the power went before its answer: reported again (at least once)
        if prev in TERMINAL:
            problems.append("%s after the final %s (statuses %s)" % (s, prev, statuses))
            break
        if lost_power:
            ok = s == "Downloading" or s in TERMINAL or (s in rank and rank[s] >= rank.get(prev, -1))
            ok = ok and not (s == "DownloadFailed" and prev in ("Downloaded", "Installing"))
        else:
            ok = s in FW_NEXT.get(prev, ())
        if not ok:
            problems.append("%s may not follow %s (statuses %s)" % (s, prev or "the request", statuses))
            break
        prev = s
    else:
        if prev not in TERMINAL:
            problems.append("the update never ended (statuses %s)" % (statuses,))
    return problems


RX_SEC = re.compile(r"INFO\s+security: (\w+) \(critical\)(?:: (.*))?$")


def security_events_of(lives):
    """[(type, techInfo, time logged, life n, ghost)] of every critical security event logged."""
    out = []
    for life in lives:
        end = life.live_end()
        times = getattr(life, "times", None) or []
        for i, ln in enumerate(life.lines):
            m = RX_SEC.search(ln)
            if m:
                t = times[i] if i < len(times) else None
                out.append((m.group(1), m.group(2), t, life.n, i >= end))
    return out


def security_judge(lives, records, cp, final=True):
    """-> {"checked", "lost", "duplicated", "absorbed", "ghosts", "problems", "missing"}.

    records: the CSMS's security_events {(cp, type, timestamp, techInfo): {"n": frames}}."""
    events = security_events_of(lives)
    recs = [(k[1], k[3], parse_iso(k[2]), k[2], v["n"]) for k, v in records.items() if k[0] == cp]
    used = [False] * len(recs)
    problems, missing = [], []
    checked = lost = ghosts = 0

    def match(kind, info, t):
        best = None
        for j, (rk, ri, rt, _, _) in enumerate(recs):
            if used[j] or rk != kind or (ri or None) != (info or None) or rt is None:
                continue
            d = abs(rt - t) if t is not None else 0
            if d <= SEC_SLACK and (best is None or d < best[0]):
                best = (d, j)
        if best is not None:
            used[best[1]] = True
            return True
        return False

    # live events first, in the order they were logged (they must arrive), then those logged
    # after a flash cut (they may)
    unmatched = []
    for kind, info, t, n, ghost in sorted(events, key=lambda e: (e[4], e[2] or 0)):
        if ghost:
            ghosts += 1
            match(kind, info, t)
            continue
        checked += 1
        if not match(kind, info, t):
            unmatched.append((kind, info, t, n))
    # Two events of one type and techInfo in the same second (two boots a kill apart) have one
    # key: the CSMS cannot tell them apart. One with a matched record of its kind within
    # SEC_SLACK is counted as merged, not lost.
    merged = 0
    for kind, info, t, n in unmatched:
        if t is not None and any(used[j] and rk == kind and (ri or None) == (info or None) and rt is not None
                                 and abs(rt - t) <= SEC_SLACK for j, (rk, ri, rt, _, _) in enumerate(recs)):
            merged += 1
            continue
        missing.append((kind, info))
        if final:
            lost += 1
            problems.append("security event %s (%s) logged by life %d at %s never reached the CSMS" % (
                kind, info, n, iso(t) if t else "?"))
    dup = 0
    for j, (kind, info, _, stamp, _) in enumerate(recs):
        if not used[j]:
            dup += 1
            problems.append("the CSMS recorded security event %s (%s) at %s, which matches no event the "
                            "firmware logged (a second record of one event, or one it never raised)" % (
                                kind, info, stamp))
    absorbed = sum(r[4] - 1 for r in recs)
    return {"checked": checked, "lost": lost, "duplicated": dup, "absorbed": absorbed, "ghosts": ghosts,
            "merged": merged, "problems": problems, "missing": missing}


# ---- servers ------------------------------------------------------------------------------

class _Files(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        body = self.server.files.get(self.path.split("/")[-1])
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        step = RATE // 20
        try:
            for i in range(0, len(body), step):  # slowly: a download takes seconds, time to cut it
                self.wfile.write(body[i:i + step])
                self.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass  # the station died mid-download


class FileServer:
    def __init__(self, files):
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
        self.srv.daemon_threads = True
        self.srv.files = files
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class DyingServer:
    """An HTTP server that takes an upload's request and `after` bytes of its body, then dies:
    the connection reset, the listening socket closed (a retry finds nobody)."""

    def __init__(self, after):
        self.after = after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.got = None  # bytes taken before it died
        self.died = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        try:
            self.sock.settimeout(60)
            conn, _ = self.sock.accept()
        except OSError:
            self.sock.close()
            self.died.set()
            return
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                b = conn.recv(512)
                if not b:
                    break
                data += b
            body = data.split(b"\r\n\r\n", 1)[-1]
            while len(body) < self.after:
                b = conn.recv(min(256, self.after - len(body)))
                if not b:
                    break
                body += b
                time.sleep(0.01)
            self.got = len(body)
        except OSError:
            pass
        self.sock.close()  # the server is gone
        import struct
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        except OSError:
            pass
        conn.close()
        self.died.set()

    def stop(self):
        try:
            self.sock.close()
        except OSError:
            pass


def build_bundles(workdir):
    """The two update files the soak alternates between -> {version: bytes}; cached in build/."""
    out = {}
    cache = ROOT / "build" / "soak"
    cache.mkdir(parents=True, exist_ok=True)
    src_stamp = max(p.stat().st_mtime for p in (ROOT / "firmware").rglob("*.py"))
    for v in VERSIONS:
        f = cache / ("%s.bin" % v)
        lock = cache / ("%s.lock" % v)
        for _ in range(600):  # shards build it once between them
            try:
                fd = lock.open("x")
                break
            except FileExistsError:
                time.sleep(0.1)
        else:
            lock.unlink(missing_ok=True)
            fd = lock.open("x")
        try:
            if not f.exists() or f.stat().st_mtime < src_stamp:
                tmp = Path(workdir) / ("%s.bin" % v)
                p = subprocess.run([sys.executable, str(ROOT / "tools" / "bundle.py"), "--version", v, "--board",
                                    "unix", "--out", str(tmp)], cwd=ROOT, capture_output=True, text=True, timeout=300)
                assert p.returncode == 0, p.stdout + p.stderr
                tmp.replace(f)
        finally:
            fd.close()
            lock.unlink(missing_ok=True)
        out[v] = f.read_bytes()
    return out


# ---- the operations -------------------------------------------------------------------------

class Ops:
    def __init__(self, h, workdir):
        self.h = h
        self.workdir = Path(workdir)
        self.bundles = None
        self.web = None
        self.outcomes = Counter()  # "<kind>: <outcome>" -> n
        self.checked = Counter()  # what was verified: kind -> n
        self.cert_n = 0
        self.msg_n = 0

    def close(self):
        if self.web:
            self.web.stop()

    # -- helpers --
    def _fw(self):
        if self.bundles is None:
            self.bundles = build_bundles(self.workdir)
            self.web = FileServer({v + ".bin": b for v, b in self.bundles.items()})
        return self.bundles

    def problem(self, k, text):
        self.h.findings.append("session %s: %s" % (k, text))
        self.h.note(k, "PROBLEM: " + text)

    def boots(self):
        # [(firmwareVersion, frame index)] of the charge point's BootNotifications
        return [(m[3].get("firmwareVersion"), i) for i, (_, d, cp, m) in enumerate(list(self.h.csms.frames))
                if d == "<<" and cp == self.h.cp and isinstance(m, list) and len(m) == 4 and m[0] == 2
                and m[2] == "BootNotification"]

    def version(self):
        b = self.boots()
        return b[-1][0] if b else None

    def ghost_ids(self):
        # message ids of the CALLs the firmware sent after an emulated power cut: what a dead
        # board would not have sent (tolerated, not judged)
        # -> {message id: (from, to)}: the time span of the life that sent it (ids may repeat in
        # a later life: its counter was not kept by the dead flash)
        out = {}
        with self.h.fw._lock:
            lives = list(self.h.fw.lives)
            for n, life in enumerate(lives):
                if life.cut_at is None or not life.times:
                    continue
                span = (life.times[0], lives[n + 1].times[0] if n + 1 < len(lives) and lives[n + 1].times
                        else time.time() + 1)
                for ln in life.lines[life.cut_at:]:
                    m = RX_OUT.search(ln)
                    if m:
                        out[m.group(1)] = span
        return out

    def statuses(self, action, mark, ghosts=False):
        frames = list(self.h.csms.frames)[mark:]
        skip = {} if ghosts else self.ghost_ids()
        return [(m[3].get("status"), m[3].get("requestId"), mark + i) for i, (t, d, cp, m) in enumerate(frames)
                if d == "<<" and cp == self.h.cp and isinstance(m, list) and len(m) == 4 and m[0] == 2
                and m[2] == action and not (m[1] in skip and skip[m[1]][0] <= t <= skip[m[1]][1])]

    def up(self, k, timeout=90):
        """The firmware alive, its current life Accepted and connected; restarts a dead one."""
        h, fw = self.h, self.h.fw
        end = time.time() + timeout
        while time.time() < end:
            if not fw.alive():
                life = fw.life
                life.done.wait(5)
                if not life.killed and life.exit != 75:
                    h.findings.append("firmware life %d exited by itself (code %s) in an operation of session "
                                      "%s:\n%s" % (life.n, life.exit, k, life.tail(20)))
                h.restart(session=k)
                continue
            life = fw.life
            if life.cut_at is None and h.cp in h.csms.handlers and h.csms_up and self.linked(life):
                return life
            time.sleep(0.1)
        raise AssertionError("session %s: the station did not come back (booted and Accepted) within %d s; "
                             "last lines:\n%s" % (k, timeout, fw.life.tail(30)))

    @staticmethod
    def linked(life):
        # Accepted, and the link is up now (its last connection came after its last loss)
        acc, conn, lost = False, -1, -1
        for i, ln in enumerate(life.lines):
            if "accepted this charge point" in ln:
                acc = True
            elif "link: connected" in ln:
                conn = i
            elif "connection to the CSMS lost" in ln or "cannot connect" in ln or "connection is dead" in ln:
                lost = i
        return acc and conn > lost

    def ask(self, k, payload, timeout=10):
        # A CALL the operation needs answered: again (once the station is back) if it was not
        for _ in range(4):
            a = self.call(payload, timeout)
            if a is not None:
                return a
            self.up(k)
        raise AssertionError("session %s: %s never answered" % (k, type(payload).__name__))

    def power_cut_run(self, life, rng):
        # What the harness does on the emulated cut: the power goes at once, or the board
        # runs on dead flash a little (it must not crash).
        mode = "kill" if rng.random() < 0.5 else round(rng.uniform(0.5, 2.5), 1)
        with self.h.fw._lock:
            life.on_cut = mode
            if life.cut_at is not None and not life.killed:
                if mode == "kill":
                    self.h.fw._kill(life, "the emulated power cut")
                else:
                    threading.Timer(mode, self.h.fw.kill, args=(life, "%.1f s after the emulated power cut"
                                                                % mode)).start()
        return mode

    def call(self, payload, timeout=10):
        # -> the answer, or None when the station died / did not answer
        try:
            return self.h.csms.run_call(self.h.cp, payload, timeout=timeout)
        except Exception:
            return None

    def kill_now(self, why):
        fw = self.h.fw
        if fw.alive():
            fw.kill(why=why)

    def wait_in(self, life, text, timeout):
        # a line of life containing text, from its first (restart() reads past its boot lines)
        end = time.time() + timeout
        while time.time() < end:
            if any(text in ln for ln in list(life.lines)):
                return
            if life.done.is_set() or life.killed:
                from test_fault_injection import Died
                raise Died()
            time.sleep(0.02)
        raise AssertionError("life %d never logged %r:\n%s" % (life.n, text, life.tail(30)))

    def wait_dead(self, life, timeout):
        end = time.time() + timeout
        while time.time() < end and not life.done.is_set():
            time.sleep(0.05)
        return life.done.is_set()

    # -- entry --
    def run(self, kind, k, rng):
        h = self.h
        self.up(k)
        try:
            if kind.startswith("fw-"):
                self.firmware(kind, k, rng)
            elif kind == "profile":
                self.profile(k, rng)
            elif kind == "cert":
                self.cert(k, rng)
        finally:
            h.fw.disarm()
        if h.fw.life.env and h.fw.alive():  # a flash cut run (first boot) still going: the power goes now
            h.fw.kill(why="flash cut run over")
        self.up(k)

    # -- firmware update --
    def firmware(self, kind, k, rng):
        h, fw = self.h, self.h.fw
        bundles = self._fw()
        old = self.version()
        new = VERSIONS[1] if old == VERSIONS[0] else VERSIONS[0]
        size = len(bundles[new])
        mode = "kill" if rng.random() < 0.5 else "flashcut"
        mark = len(h.csms.frames)
        life = fw.life
        first_line = len(life.lines)
        h.note(k, "%s: UpdateFirmware %s -> %s, %s" % (kind, old, new, mode))
        self.ask(k, call.UpdateFirmware(location="%s/%s.bin" % (self.web.url, new), retrieve_date=iso(time.time() - 1),
                                      retries=1, retry_interval=2))
        strict = None  # the outcome a kill must lead to
        try:
            if kind == "fw-download":
                fw.wait_line(r"update: Downloading", 20)
                if mode == "kill":
                    d = rng.uniform(0.05, size / RATE * 0.9)
                    h.note(k, "kill %.2f s into the download (life %d)" % (d, life.n))
                    fw.sleep(d)
                    fw.kill(why="kill during the firmware download")
                    strict = "Installed"
                else:
                    n = rng.randint(0, size // 256)
                    self.power_cut_run(life, rng)
                    h.note(k, "flash cut after %d more block writes, in the download (life %d)" % (n, life.n))
                    fw.send("flash cut %d" % n)
            elif kind == "fw-install":
                fw.wait_line(r"update: Installing", 40)
                if mode == "kill":
                    d = rng.uniform(0, 1.5)
                    h.note(k, "kill %.2f s into the install (life %d)" % (d, life.n))
                    fw.sleep(d)
                    if fw.life is life and not any("restarting into version" in ln for ln in life.lines):
                        fw.kill(why="kill during the firmware install")
                        strict = "Installed"
                else:
                    n = rng.randint(0, 2 * size // 256)
                    self.power_cut_run(life, rng)
                    h.note(k, "flash cut after %d more block writes, in the install (life %d)" % (n, life.n))
                    fw.send("flash cut %d" % n)
            else:  # fw-firstboot
                fw.wait_line(r"update: restarting into version", 60)
                self.wait_dead(life, 10)
                if mode == "kill":
                    nl = h.restart(session=k)
                    self.wait_in(nl, "slots: trying version", 15)
                    d = rng.uniform(0, 2.0)
                    h.note(k, "kill %.2f s into the first boot of %s (life %d)" % (d, new, nl.n))
                    fw.sleep(d)
                    fw.kill(why="kill in the first boot of a new slot")
                    confirmed = any("slots: version %s confirmed" % new in ln for ln in nl.lines)
                    strict = "Installed" if confirmed else None
                else:
                    n = rng.randint(0, 80)
                    nl = h.restart({"FLASH_CUT_AFTER_WRITES": str(n)}, k)
                    self.power_cut_run(nl, rng)
                    threading.Timer(rng.uniform(3, 8), fw.kill, args=(nl, "flash cut run over")).start()
        except Exception as e:  # Died: the fault or the station was quicker; the outcome is judged below
            from test_fault_injection import Died
            if not isinstance(e, Died):
                raise
        # drive it to its end: restart what dies (a power supply would), until a final status came
        end = time.time() + 150
        while time.time() < end:
            st = [s for s, _, _ in self.statuses("FirmwareStatusNotification", mark)]
            if any(s in TERMINAL for s in st) and fw.alive() and fw.life.cut_at is None and self.linked(fw.life):
                break
            if not fw.alive():
                dead = fw.life
                dead.done.wait(5)
                # a life that ran on after a flash cut may end by itself (its restart into the
                # new version came before the harness's kill): it is restarted like any other
                if not dead.killed and dead.exit != 75:
                    h.findings.append("firmware life %d exited by itself (code %s) in %s:\n%s" % (
                        dead.n, dead.exit, kind, dead.tail(20)))
                h.restart(session=k)
            time.sleep(0.2)
        time.sleep(1.0)  # a late second final status would show now
        got = self.statuses("FirmwareStatusNotification", mark)
        st = [s for s, _, _ in got]
        self.checked["FirmwareStatusNotification"] += len(st)
        # statuses wait in RAM: a kill, or a lost link (they are dropped with it), may take some
        lost_power = any(lf.killed or any(LINK_LOST in ln for ln in lf.lines[first_line if lf is life else 0:])
                         for lf in fw.lives[life.n - 1:])
        for p in fw_status_problems(st, lost_power):
            self.problem(k, "%s (%s): %s" % (kind, mode, p))
        final = [(s, i) for s, _, i in got if s in TERMINAL]
        outcome = final[-1][0] if final else "none"
        self.outcomes["%s %s: %s" % (kind, mode, outcome)] += 1
        boots = [(v, i) for v, i in self.boots() if i >= mark]
        running = self.version()
        if outcome == "Installed":
            if running != new:
                self.problem(k, "%s: Installed reported, but the station runs %s (not %s)" % (kind, running, new))
            elif not any(v == new and i < final[-1][1] for v, i in boots):
                self.problem(k, "%s: Installed came before the BootNotification of %s" % (kind, new))
        elif outcome in TERMINAL and running != old:
            self.problem(k, "%s: %s reported, but the station runs %s (was %s)" % (kind, outcome, running, old))
        if strict and outcome != strict:
            self.problem(k, "%s (kill): ended %s, where the update must survive a kill and end %s; lines:\n%s" % (
                kind, outcome, strict, "\n".join(ln for life_ in fw.lives[life.n - 1:] for ln in life_.lines
                                                  if "update:" in ln or "slots:" in ln)[-3000:]))

    # -- a charging profile --
    def composite(self):
        a = self.ask("-", call.GetCompositeSchedule(connector_id=1, duration=60, charging_rate_unit="A"))
        if a.status != "Accepted" or not a.charging_schedule:
            return None
        periods = a.charging_schedule.get("charging_schedule_period") or []
        return float(periods[0]["limit"]) if periods else None

    def _answered_live(self, life, msg_id):
        # Was the answer to CALL msg_id sent while the flash still worked? -> True / False (no answer)
        for i, ln in enumerate(life.lines):
            if "ocpp: >> [3" in ln and msg_id in ln:
                return life.cut_at is None or i < life.cut_at
        return False

    def _fault_call(self, k, rng, what, payload, action):
        # Sends payload with a kill or a flash cut in its storing; returns (answer, durable)
        h, fw = self.h, self.h.fw
        life = fw.life
        mode = "kill" if rng.random() < 0.5 else "flashcut"
        if mode == "kill":
            d = rng.uniform(0, 0.08)
            h.note(k, "%s: kill %.3f s after the %s arrives (life %d)" % (what, d, action, life.n))
            fw.arm("%s + %.3f s" % (action, d), r'ocpp: << \[2, ?"[^"]*", ?"%s"' % action, delay=d)
        else:
            n = rng.randint(0, 14)
            self.power_cut_run(life, rng)
            h.note(k, "%s: flash cut after %d more block writes, then %s (life %d)" % (what, n, action, life.n))
            fw.send("flash cut %d" % n)
            time.sleep(0.1)
        uid_mark = len(h.csms.frames)
        answer = self.call(payload, timeout=6)
        msg_id = None
        for _, d, cp, m in list(h.csms.frames)[uid_mark:]:
            if d == ">>" and isinstance(m, list) and m[0] == 2 and m[2] == action:
                msg_id = m[1]
        time.sleep(0.3)
        # the power goes now if the fault has not taken it yet (a late cut: a plain power cut)
        with fw._lock:
            if not life.killed and life.proc.poll() is None and (life.cut_at is None or mode == "kill"):
                fw._kill(life, "power cut after the %s" % action)
        self.wait_dead(life, 5)
        self.kill_now("power cut after the %s" % action)
        durable = answer is not None and msg_id is not None and self._answered_live(life, msg_id)
        return mode, answer, durable

    def profile(self, k, rng):
        h = self.h
        before = self.composite()
        limit = round(rng.uniform(16, 31.9), 1)
        while limit == before:
            limit = round(rng.uniform(16, 31.9), 1)
        p = {"chargingProfileId": 9001, "stackLevel": 0, "chargingProfilePurpose": "ChargePointMaxProfile",
             "chargingProfileKind": "Absolute", "chargingSchedule": {
                 "chargingRateUnit": "A", "startSchedule": iso(time.time() - 3600),
                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}}
        mode, answer, durable = self._fault_call(k, rng, "profile %.1f A (was %s)" % (limit, before),
                                                 call.SetChargingProfile(connector_id=0, cs_charging_profiles=p),
                                                 "SetChargingProfile")
        self.up(k)
        after = self.composite()
        accepted = answer is not None and answer.status == "Accepted"
        self.checked["profile"] += 1
        outcome = "kept" if after == limit else "absent" if after == before else "wrong"
        self.outcomes["profile %s: %s" % (mode, outcome)] += 1
        if after not in (before, limit):
            self.problem(k, "profile: after the %s the composite limit is %s, neither the new %.1f A nor the "
                         "%s before" % (mode, after, limit, before))
        elif accepted and durable and after != limit:
            self.problem(k, "profile: Accepted before the %s, but gone after the restart (limit %s, not %.1f A)"
                         % (mode, after, limit))
        self._store_warnings(k, "profile")

    def _store_warnings(self, k, what):
        # the stores parse: the boot after the fault complains about none of them
        life = self.h.fw.life
        bad = [ln for ln in life.lines if ("storage:" in ln or "certs:" in ln) and "WARN" in ln
               and ("cannot" in ln or "corrupt" in ln or "broken" in ln)]
        if bad:
            self.outcomes["%s: a store needed its backup" % what] += 1
            self.h.note("-", "%s: store warnings after the restart: %s" % (what, bad[:3]))

    # -- a certificate --
    def cert_ids(self):
        a = self.ask("-", call.GetInstalledCertificateIds(certificate_type="ManufacturerRootCertificate"))
        if a.status != "Accepted":
            return []
        return sorted(h["serial_number"].lower().lstrip("0") for h in a.certificate_hash_data or [])

    def cert(self, k, rng):
        import testpki
        from cryptography.hazmat.primitives import serialization
        h = self.h
        before = self.cert_ids()
        self.cert_n += 1
        key = testpki.ec_key()
        c = testpki.issue("Soak root %d-%d" % (h.seed % 10000, self.cert_n), key, ca=True, days=30)
        pem = c.public_bytes(serialization.Encoding.PEM).decode()
        hd = testpki.cert_id(c)
        serial = hd["serialNumber"].lower().lstrip("0")
        mode, answer, durable = self._fault_call(
            k, rng, "certificate %s" % serial[:8],
            call.InstallCertificate(certificate_type="ManufacturerRootCertificate", certificate=pem),
            "InstallCertificate")
        self.up(k)
        after = self.cert_ids()
        accepted = answer is not None and answer.status == "Accepted"
        self.checked["certificate"] += 1
        if not isinstance(after, list) or not isinstance(before, list):
            self.problem(k, "certificate: GetInstalledCertificateIds failed (before %s, after %s)" % (before, after))
            return
        extra = sorted(set(after) - set(before) - {serial})
        gone = sorted(set(before) - set(after))
        has = serial in after
        self.outcomes["cert %s: %s" % (mode, "kept" if has else "absent")] += 1
        if extra or gone or len(after) != len(set(after)):
            self.problem(k, "certificate: after the %s the store lists %s (before %s, new %s)" % (
                mode, after, before, serial))
        elif accepted and durable and not has:
            self.problem(k, "certificate: Accepted before the %s, but gone after the restart" % mode)
        self._store_warnings(k, "cert")
        if has:  # keep the store small (at most 10 roots)
            hd = dict(hd)
            d = self.call(call.DeleteCertificate(certificate_hash_data={
                "hash_algorithm": hd["hashAlgorithm"], "issuer_name_hash": hd["issuerNameHash"],
                "issuer_key_hash": hd["issuerKeyHash"], "serial_number": hd["serialNumber"]}))
            if d is None or d.status != "Accepted":
                self.problem(k, "certificate: DeleteCertificate answered %s" % (d and d.status))

    # -- an upload to a server that dies --
    def upload(self, k, rng):
        # In a thread, while a vehicle charges.
        h, fw = self.h, self.h.fw
        life = fw.life
        after = rng.randint(0, 3000)
        retries = rng.randint(0, 1)
        srv = DyingServer(after)
        getlog = rng.random() < 0.5
        mark = len(h.csms.frames)
        first_line = len(life.lines)
        loc = "http://127.0.0.1:%d/up/" % srv.port
        self.msg_n += 1
        rid = 100 + self.msg_n
        h.note(k, "upload: %s to a server that dies after %d bytes, %d retries" % (
            "GetLog" if getlog else "GetDiagnostics", after, retries))
        if getlog:
            a = self.call(call.GetLog(log={"remoteLocation": loc}, log_type="DiagnosticsLog", request_id=rid,
                                      retries=retries, retry_interval=1))
            action, failed = "LogStatusNotification", "UploadFailure"
        else:
            a = self.call(call.GetDiagnostics(location=loc, retries=retries, retry_interval=1))
            action, failed = "DiagnosticsStatusNotification", "UploadFailed"
        if a is None:
            srv.stop()
            self.outcomes["upload: not asked (the station was down)"] += 1
            return
        end = time.time() + 30
        while time.time() < end:
            st = self.statuses(action, mark)
            if any(s in (failed, "Uploaded") for s, _, _ in st) or fw.life is not life:
                break
            time.sleep(0.2)
        srv.stop()
        st = self.statuses(action, mark)
        if fw.life is not life or life.cut_at is not None:  # killed, or on dead flash: its statuses are ghosts
            self.outcomes["upload: interrupted by another fault"] += 1
            return
        got = [s for s, _, _ in st]
        self.checked[action] += len(got)
        want = ["Uploading"] * (retries + 1) + [failed]
        self.outcomes["upload %s: %s" % ("GetLog" if getlog else "GetDiagnostics", got[-1] if got else "none")] += 1
        if any(LINK_LOST in ln for ln in life.lines[first_line:]):
            # the statuses wait in RAM and are dropped with the link: those that came, in order
            rest = iter(want)
            want = got if all(s in rest for s in got) else want
        if got != want:
            self.problem(k, "upload: %s to a dying server: %s %s, expected %s (server took %s bytes)" % (
                "GetLog" if getlog else "GetDiagnostics", action, got, want, srv.got))
        if getlog and any(r != rid for _, r, _ in st):
            self.problem(k, "upload: LogStatusNotification without requestId %d: %s" % (rid, st))
