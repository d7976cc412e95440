"""One fleet process for the tests: spend on a shared budget until refused, then report.

``python -m tests.fleet.spender STORE LIMIT SPANS_FILE [CALL_S [RUN_S]]``: STORE "" for no store. Each
call is ``llmwatch.llm_call`` for gpt-4o-mini with 1,000 input and 500 output tokens ($0.00045), taking
CALL_S seconds as a provider would. Stops after the first refusal that lasts 1 s (a refill on its way
is not the budget being spent), or after RUN_S seconds when given (then waits up to 10 s for the store
to be connected), then prints one JSON line: calls made, refusals, stats()["store"]. Any other
exception ends the process with a traceback and a non-zero code.
"""

from __future__ import annotations

import json
import sys
import time

import llmwatch


def main() -> None:
    store, limit, spans = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    call_s = float(sys.argv[4]) if len(sys.argv) > 4 else 0.002
    run_until = time.monotonic() + float(sys.argv[5]) if len(sys.argv) > 5 else None
    llmwatch.configure(
        service_name="fleet-test", exporter="file", file_path=spans, store=store or None, instrument=False
    )
    llmwatch.budget(limit, per="day", feature="search")
    time.sleep(0.3)  # the first lease
    made = refused = 0
    refusal_spent = 0.0
    refused_since: float | None = None
    with llmwatch.attributes(feature="search"):
        while run_until is None or time.monotonic() < run_until:
            try:
                with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
                    time.sleep(call_s)
                    call.set_output("ok", input_tokens=1000, output_tokens=500)
                made += 1
                refused_since = None
            except llmwatch.BudgetExceeded as exc:
                refused += 1
                refusal_spent = exc.spent_usd
                now = time.monotonic()
                refused_since = refused_since or now
                if now - refused_since >= 1.0:
                    break
                time.sleep(0.01)
    deadline = time.monotonic() + 10
    while run_until is not None and store and llmwatch.stats()["store"]["state"] != "connected":
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    stats = llmwatch.stats()
    llmwatch.shutdown()
    report = {"made": made, "refused": refused, "refusal_spent_usd": refusal_spent, "store": stats.get("store")}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
