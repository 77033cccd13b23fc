# The boot-loop guard and the reset cause: after as many unclean boots as make
# safe mode, a boot that began with the power coming on is counted afresh. The
# unix port has no reset cause, so the board's answer is stood in for here.
import tasks


class MemStore:
    def __init__(self, boots):
        self.d = {"boots": boots}

    def load(self, name, default=None):
        return self.d.get(name, default)

    def save(self, name, value):
        self.d[name] = value


print("unix says powered on:", tasks._powered_on())
for cause in ("watchdog", "power"):
    tasks._powered_on = lambda: cause == "power"
    st = MemStore({"count": tasks.BOOT_LOOP_LIMIT, "crashed": ["reader"]})
    print(cause, "disabled", tasks.boot_check(st), "count", st.d["boots"]["count"], "crashed", st.d["boots"]["crashed"])
