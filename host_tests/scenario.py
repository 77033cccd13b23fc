"""Helpers for end-to-end scenarios: boot the firmware, watch statuses, check
the order of frames, and a CSMS that answers with full idTagInfo (parentIdTag,
expiryDate) for the authorization tests."""
from datetime import datetime, timedelta, timezone

import pytest
from ocpp.routing import on
from ocpp.v16 import call_result

import dev_csms


def boot(fw, csms, settings=()):
    """Start (or restart) the firmware, wait until it is accepted and has sent
    its statuses, then apply `set key value` console settings."""
    before = len(csms.calls("StatusNotification"))
    fw.start()
    fw.wait_line(r"accepted this charge point")
    csms.wait_for(lambda: len(csms.calls("StatusNotification")) >= before + 3, 10, "boot statuses")
    settle(fw, settings)


def settle(fw, settings):
    for key, value in settings:
        fw.send("set %s %s" % (key, value))
        fw.wait_line(r"set %s: Accepted" % key)


def restart(fw, csms, settings=()):
    """The firmware process stops (quit) and a new one starts on the same flash."""
    fw.stop()
    boot(fw, csms, settings)


def statuses(csms, cid):
    return [p["status"] for _, _, p in csms.calls("StatusNotification") if p["connectorId"] == cid]


def wait_status(csms, cid, status, timeout=10):
    csms.wait_for(lambda: statuses(csms, cid)[-1:] == [status], timeout, "connector %d %s" % (cid, status))


def iso(seconds_from_now):
    t = datetime.now(timezone.utc) + timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def answer_index(csms, action):
    """Index in csms.frames of our last answer to the CSMS's last `action` CALL."""
    ids = [m[1] for _, d, _, m in csms.frames if d == ">>" and isinstance(m, list) and m[0] == 2 and m[2] == action]
    for i, (_, d, _, m) in enumerate(csms.frames):
        if d == "<<" and isinstance(m, list) and m[0] == 3 and m[1] == ids[-1]:
            return i
    raise AssertionError("no answer to " + action)


def call_indexes(csms, action):
    return [i for i, (_, d, _, m) in enumerate(csms.frames)
            if d == "<<" and isinstance(m, list) and m[0] == 2 and m[2] == action]


_Handler = dev_csms.ChargePointHandler


class InfoHandler(_Handler):
    """Authorize and StartTransaction answers carry csms.infos[idTag] too."""

    @on("Authorize")
    def on_authorize(self, id_tag):
        return call_result.Authorize(id_tag_info=self.csms.tag_info(id_tag))

    @on("StartTransaction")
    def on_start(self, **kw):
        answer = _Handler.on_start(self, **kw)
        answer.id_tag_info = self.csms.tag_info(kw["id_tag"])
        return answer


def info_csms(monkeypatch, **kw):
    monkeypatch.setattr(dev_csms, "ChargePointHandler", InfoHandler)
    c = dev_csms.DevCSMS(**kw)
    c.infos = {}
    c.tag_info = lambda tag: dict({"status": c.tag_status(tag)}, **c.infos.get(tag, {}))
    c.start_in_thread()
    return c


@pytest.fixture
def icsms(monkeypatch):
    """A dev CSMS with full idTagInfo answers; a test may take it down for good."""
    c = info_csms(monkeypatch)
    yield c
    if c.loop.is_running():
        c.stop_thread()


def go_offline(fw, csms):
    csms.stop_thread()
    fw.wait_line(r"connection to the CSMS lost")
