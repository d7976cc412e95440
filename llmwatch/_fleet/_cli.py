"""``llmwatch switch set|clear|list``: the fleet's kill switches, from a shell.

``set --feature search`` engages a switch in the store (``--store``, else ``LLMWATCH_STORE``) for the
service (``--service``, else ``OTEL_SERVICE_NAME``): every process of that service configured with the
store refuses the feature's calls within 2 s (pub/sub, with a 1 s polling fallback), before any
request reaches the provider. ``clear`` lifts it; ``list`` shows what is engaged.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from llmwatch import _config
from llmwatch._errors import ConfigurationError
from llmwatch._fleet._redis import FEATURE, MODEL, RedisStore
from llmwatch._fleet._url import parse_store

EXIT_OK = 0
EXIT_FAILED = 2


def add_parser(commands: Any) -> None:
    switch = commands.add_parser(
        "switch",
        help="engage, clear or list the fleet's kill switches in the store",
        description="Kill switches shared by every process configured with the same store and service.",
    )
    switch.add_argument("action", choices=("set", "clear", "list"))
    switch.add_argument("--feature", action="append", default=[], metavar="F", help="a feature (repeatable)")
    switch.add_argument("--model", action="append", default=[], metavar="M", help="a model (repeatable; gpt-4*)")
    switch.add_argument("--store", metavar="URL", help="redis://host:6379/0 (default: $LLMWATCH_STORE)")
    switch.add_argument("--service", metavar="NAME", help="the service's name (default: $OTEL_SERVICE_NAME)")
    switch.add_argument("--json", action="store_true", help="list: one JSON document")


def run(args: argparse.Namespace) -> int:
    try:
        store = _store(args)
        if args.action == "list":
            return _list(store, args.json)
        targets = [(FEATURE, name) for name in args.feature] + [(MODEL, name) for name in args.model]
        if not targets:
            print("llmwatch switch: name what to switch with --feature F or --model M", file=sys.stderr)
            return EXIT_FAILED
        for kind, name in targets:
            store.set_switch(kind, name, args.action == "set")
            print(f"{'engaged' if args.action == 'set' else 'cleared'}: {kind}={name} ({store.prefix[:-1]})")
        return EXIT_OK
    except ConfigurationError as exc:
        print(f"llmwatch switch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # the store unreachable, refused auth...: said plainly, URL redacted
        print(f"llmwatch switch: the store could not be reached: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _store(args: argparse.Namespace) -> RedisStore:
    url = parse_store("--store", args.store) if args.store else _config.env("store")
    if url is None:
        raise ConfigurationError("no store: pass --store redis://host:6379/0 or set LLMWATCH_STORE")
    service = args.service or _config.env("service_name")
    return RedisStore(url, service, timeout_s=5.0)


def _list(store: RedisStore, as_json: bool) -> int:
    engaged = store.client.hgetall(store.switches_key)
    rows = sorted((str(field), _when(value)) for field, value in engaged.items())
    if as_json:
        print(json.dumps({"service": store.prefix[len("llmwatch:") : -1], "switches": dict(rows)}))
    elif not rows:
        print(f"no switches engaged ({store.prefix[:-1]})")
    for field, when in rows if not as_json else ():
        kind, name = field.split(":", 1)
        print(f"{kind}={name}  since {when}")
    return EXIT_OK


def _when(value: Any) -> str:
    try:
        return dt.datetime.fromtimestamp(float(value), tz=dt.UTC).isoformat(timespec="seconds")
    except (TypeError, ValueError):
        return str(value)
