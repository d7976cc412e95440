"""``llmwatch serve-fake``: the loopback provider server on its own, for a local trial of an app.

The server that ``llmwatch demo`` and the tests use (:mod:`llmwatch._demo._server`) speaks the
OpenAI and Anthropic wire formats; run alone, it lets a user point their own application at it
(``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL``, any API key) and see llmwatch's spans and report with
no key, no network and no bill, including the failures worth rehearsing (errors, 429s, cut streams).

It listens on loopback unless asked otherwise: it has no authentication, and anything that can reach
it can make it answer. It runs until Ctrl-C or SIGTERM, then stops its connections and exits 0.
"""

from __future__ import annotations

import contextlib
import ipaddress
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType
from typing import IO

from llmwatch._demo._server import SCENARIOS, FakeLLMServer

LOOPBACK = "127.0.0.1"
_WAKE_S = 0.5  # how often the waiting main thread looks up (signal handlers run between waits)


def is_loopback(host: str) -> bool:
    """True when every address ``host`` resolves to is a loopback address (``localhost`` included)."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return False
    addresses = {info[4][0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(str(addr).split("%")[0]).is_loopback for addr in addresses)


def banner(server: FakeLLMServer, host: str) -> list[str]:
    """What to tell the user once the server listens: the URLs to set, and how to pick a scenario."""
    base = server.base_url
    reach = "loopback only" if is_loopback(host) else f"listening on {host}, reachable from other machines"
    return [
        f"llmwatch fake LLM server on {base} ({reach}); Ctrl-C or SIGTERM stops it",
        "Point your app at it (the SDKs read these; any API key works):",
        f"  export OPENAI_BASE_URL={server.openai_base_url}",
        f"  export ANTHROPIC_BASE_URL={server.anthropic_base_url}",
        "  export OPENAI_API_KEY=sk-fake ANTHROPIC_API_KEY=sk-ant-fake   # when your app has no key set",
        f"  google-genai: genai.Client(http_options=types.HttpOptions(base_url='{base}'))",
        f"  boto3: boto3.client('bedrock-runtime', endpoint_url='{base}', region_name='us-east-1')",
        "OpenAI: POST /v1/chat/completions, /v1/responses, /v1/embeddings; Anthropic: POST /v1/messages,"
        " /v1/messages/count_tokens; Gemini: /v1beta/models/{model}:generateContent and its stream;"
        " Bedrock: /model/{id}/converse, /converse-stream, /invoke, /invoke-with-response-stream",
        "Scenarios: put [[scenario:NAME]] in the last user message, or send the header x-fake-scenario: NAME",
        "  " + " ".join(sorted(SCENARIOS)),
    ]


def serve_fake(
    *,
    host: str = LOOPBACK,
    port: int = 0,
    latency_s: float = 0.0,
    ttft_s: float = 0.0,
    chunk_delay_s: float = 0.0,
    out: IO[str],
    err: IO[str],
    stop: threading.Event | None = None,
) -> int:
    """Serve until ``stop`` is set, SIGTERM or Ctrl-C; returns the exit code (0, or 2 when the address
    cannot be bound)."""
    stop = stop or threading.Event()
    server = FakeLLMServer(latency_s=latency_s, ttft_s=ttft_s, chunk_delay_s=chunk_delay_s)
    try:
        server.start(host=host, port=port)
    except (OSError, OverflowError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"llmwatch serve-fake: cannot listen on {host}:{port}: {reason}", file=err)
        return 2
    try:
        if not is_loopback(host):
            print(
                f"llmwatch serve-fake: warning: listening on {host}, not loopback: anyone who can reach this "
                "port can use the server (it has no authentication). Use --host 127.0.0.1 for a local trial.",
                file=err,
                flush=True,
            )
        print("\n".join(banner(server, host)), file=out, flush=True)
        with _stop_on_signals(stop):
            while not stop.wait(_WAKE_S):
                pass
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed, or off the main thread
        pass
    finally:
        server.stop()
    print(f"llmwatch serve-fake: stopped after {len(server.requests)} request(s)", file=err, flush=True)
    return 0


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while inside; previous handlers restored after. Only the main
    thread may set signal handlers: elsewhere (a test calling this from a thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {signum: signal.signal(signum, handler) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
