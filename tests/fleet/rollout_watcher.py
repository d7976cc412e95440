"""A fleet process for the rollout tests: ``python -m tests.fleet.rollout_watcher STORE NAME``.

Starts rollout NAME (share 0.05), prints ``ready``, then one JSON line ``{"state", "share", "at"}``
each time its state or share changes, until it sees ``rolled_back`` (30 s at most).
"""

from __future__ import annotations

import json
import sys
import time

import llmwatch


def main() -> None:
    store, name = sys.argv[1:3]
    llmwatch.configure(service_name="fleet-test", exporter="none", store=store, instrument=False)
    rollout = llmwatch.rollout(name, challenger={"model": "gpt-4o"}, share=0.05)
    print("ready", flush=True)
    seen = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = (rollout.state, rollout.share)
        if now != seen:
            seen = now
            print(json.dumps({"state": now[0], "share": now[1], "at": time.time()}), flush=True)
            if now[0] == "rolled_back":
                break
        time.sleep(0.01)
    llmwatch.shutdown()


if __name__ == "__main__":
    main()
