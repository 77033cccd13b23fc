"""Bad frames on a 2.0.1 session, end to end: the firmware on the unix port answers each
with OCPP 2.0.1's error codes (part 4 §4.2.3, §4.3), never 1.6's, and keeps the session.
The frames and their answers are test_tables.RPC_FRAMES (its 2.0.1 column), the same the
RPC layer alone is tested with, with an action the station handles (GetTransactionStatus)
where those name Heartbeat (a station answers a Heartbeat CALL with NotSupported), and
without the one too big for the WebSocket message limit."""
from test_tables import RPC_FRAMES
from v201help import CP, start
import scenario


def test_bad_frames_get_2_0_1_error_codes(csms201, firmware_factory):
    fw = firmware_factory(csms201, ocpp="2.0.1")
    start(fw, csms201)
    # (not the 200 KB one: past the WebSocket message limit the link itself closes, 1009)
    frames = [(f.replace('"Heartbeat"', '"GetTransactionStatus"'), w) for f, _, w in RPC_FRAMES if len(f) < 65536]
    n0 = len(csms201.frames)
    for frame, _ in frames:
        csms201.send_raw(CP, frame)
    last = RPC_FRAMES[-1][2][0]  # a valid Heartbeat: its answer comes after all the others

    def answers():
        return [[m[1], "result" if m[0] == 3 else m[2]] for _, d, _, m in csms201.frames[n0:]
                if d == "<<" and isinstance(m, list) and len(m) > 2 and m[0] in (3, 4)]
    csms201.wait_for(lambda: [last, "result"] in answers(), 30, "the answer to the last frame")
    want = [list(w) for _, w in frames if w]
    assert answers() == want
    assert csms201.connections == 1  # the session went on
    assert scenario.firmware_failure(fw) is None
