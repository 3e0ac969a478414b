"""Produce slowed down and counted, so that a broker kill lands in the middle of it."""
from __future__ import annotations

import time


def count_and_slow_sends(patch, pause_s: float = 0.01) -> dict:
    """Patches the producer's send (with `patch`, a pytest MonkeyPatch) to count messages and pause
    after each; returns the counter, {"messages": n}. The patch's undo restores the real send."""
    from fitbit_lakehouse.produce import _Sender

    sent = {"messages": 0}
    real_send = _Sender.send

    def counting_send(self, *args, **kwargs):
        sent["messages"] += 1
        time.sleep(pause_s)
        return real_send(self, *args, **kwargs)

    patch.setattr(_Sender, "send", counting_send)
    return sent
