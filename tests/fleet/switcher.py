"""One fleet process for the switch tests: call a feature every 5 ms until a kill switch refuses it.

``python -m tests.fleet.switcher STORE``: prints ``ready`` after its first call, then one JSON line,
``{"last_ok": t, "refused_at": t}`` (wall-clock seconds; refused_at null after 30 s without a refusal).
"""

from __future__ import annotations

import json
import sys
import time

import llmwatch


def main() -> None:
    llmwatch.configure(service_name="fleet-test", exporter="none", store=sys.argv[1], instrument=False)
    last_ok: float | None = None
    refused_at: float | None = None
    deadline = time.monotonic() + 30
    with llmwatch.attributes(feature="search"):
        while time.monotonic() < deadline:
            try:
                started = time.time()
                with llmwatch.llm_call(provider="openai", model="gpt-4o-mini") as call:
                    call.set_output("ok", input_tokens=10, output_tokens=5)
                if last_ok is None:
                    print("ready", flush=True)
                last_ok = started
            except llmwatch.FeatureDisabled:
                refused_at = time.time()
                break
            time.sleep(0.005)
    llmwatch.shutdown()
    print(json.dumps({"last_ok": last_ok, "refused_at": refused_at}), flush=True)


if __name__ == "__main__":
    main()
