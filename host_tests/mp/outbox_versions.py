# Messages queued for one OCPP version are never seen by a session of the other,
# and wait in flash for one of their own; KEPT ones go to either. Prints one
# line per step for host_tests/test_transaction_queue.py.
import sys
from ocpp.outbox import Outbox, KEPT

root = sys.argv[1]


def heads(q):
    # drain what this session's version sees, in order
    out = []
    while True:
        e = q.peek()
        if e is None:
            return out
        out.append(e.action)
        q.pop(e)


q = Outbox(root)
q.put("StartTransaction", {"connectorId": 1}, 1)  # a 1.6 session's
q.proto = 2  # a 2.0.1 ChargePoint takes over
q.put("TransactionEvent", {"seqNo": 0}, 2)
q.put("SecurityEventNotification", {"type": "StartupOfTheDevice"}, KEPT)
q.put("StatusNotification", {"evseId": 1})  # volatile
print("v201 first", q.peek().action, q.pending_tx())
q = Outbox(root)  # a restart into a 1.6 session
print("after restart v16", q.pending_tx(), heads(q))
q.proto = 2
print("then v201", heads(q))
q = Outbox(root)
q.proto = 2
print("nothing left", heads(q))
