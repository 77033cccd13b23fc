# The journaled outbox: entries survive a "restart" (a new Outbox on the same
# flash), a torn last line is discarded, and thinning keeps first/last samples.
import sys
from hw import unixflash
from ocpp.outbox import Outbox

root = unixflash.mount(sys.argv[1])
q = Outbox(root)
q.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "x"}, 1)
q.put("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t", "sampledValue": [{"value": "5", "context": "Sample.Periodic"}]}]}, 1, True)
q.put("StatusNotification", {"connectorId": 1}, None)
q.put("StopTransaction", {"meterStop": 9, "timestamp": "y", "reason": "Local"}, 1)
# A power cut in the middle of the next append: half a line at the end.
with open(root + "/txq.log", "ab") as f:
    f.write(b'0badc0de ["P", 99, "MeterVal')

q2 = Outbox(root)
print("after restart: %d queued" % len(q2))
order = []
while True:
    e = q2.peek()
    if e is None:
        break
    order.append(e.action)
    q2.pop(e)
print("order ok" if order == ["StartTransaction", "MeterValues", "StopTransaction"] else "order bad %r" % order)

# Thinning: a small budget keeps Start, Stop, and the first and last sample.
q3 = Outbox(root, budget=1200)
q3.put("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 0, "timestamp": "x"}, 2)
for i in range(12):
    q3.put("MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": "t%d" % i, "sampledValue": [{"value": str(i), "context": "Sample.Periodic"}]}]}, 2, True)
q3.put("StopTransaction", {"meterStop": 9, "timestamp": "y", "reason": "Local"}, 2)
q4 = Outbox(root, budget=1200)
seen = []
while True:
    e = q4.peek()
    if e is None:
        break
    seen.append(e.payload["meterValue"][0]["sampledValue"][0]["value"] if e.action == "MeterValues" else e.action)
    q4.pop(e)
ok = seen[0] == "StartTransaction" and seen[-1] == "StopTransaction" and seen[1] == "0" and seen[-2] == "11" and len(seen) < 14
print("thinned ok" if ok else "thinned bad %r" % seen)
