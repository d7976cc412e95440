"""llmwatch's benchmark suite: ``python -m benchmarks [--quick] [--only NAME,...] [--out PATH]``.

Scenarios (one module each): ``overhead``, ``streaming``, ``load``, ``exporters``, ``memory``,
``import_time``. See ``benchmarks/run.py`` and docs/performance.md.
"""
