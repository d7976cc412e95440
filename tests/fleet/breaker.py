"""One fleet process for the circuit tests. ``python -m tests.fleet.breaker STORE BASE_URL MODEL MODE``.

Every mode sets ``circuit_breaker(model=MODEL, min_calls=20, open_s=1.5)`` against the same store, prints
``ready`` and waits for a line on stdin before it starts:

- ``call``: sends a chat call every 30 ms until one is refused with ``CircuitOpen`` (30 s at most);
  prints ``{"sent": n, "refused_at": t}``;
- ``watch``: sends nothing; prints ``{"state": s, "at": t}`` each time its circuit's state changes, until
  it has seen ``closed`` after ``open`` (30 s at most).
"""

from __future__ import annotations

import json
import sys
import time

import llmwatch


def main() -> None:
    store, base_url, model, mode = sys.argv[1:5]
    llmwatch.configure(service_name="fleet-test", exporter="none", store=store, instrument=False)
    llmwatch.circuit_breaker(model=model, min_calls=20, failure_rate=0.5, open_s=1.5)
    print("ready", flush=True)
    sys.stdin.readline()
    if mode == "call":
        call(base_url, model)
    else:
        watch(model)
    llmwatch.shutdown()


def call(base_url: str, model: str) -> None:
    import openai

    client = llmwatch.instrument(openai.OpenAI(api_key="sk-test", base_url=base_url, max_retries=0))
    sent = 0
    refused_at = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        except llmwatch.CircuitOpen:
            refused_at = time.time()
            break
        except openai.APIError:
            pass
        sent += 1
        time.sleep(0.03)
    print(json.dumps({"sent": sent, "refused_at": refused_at}), flush=True)


def watch(model: str) -> None:
    seen = None
    opened = False
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        state = llmwatch.stats()["circuits"][f"model={model}"]["state"]
        if state != seen:
            seen = state
            opened = opened or state == "open"
            print(json.dumps({"state": state, "at": time.time()}), flush=True)
            if opened and state == "closed":
                return
        time.sleep(0.01)


if __name__ == "__main__":
    main()
