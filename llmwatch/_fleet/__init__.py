"""The fleet: budgets and kill switches shared by every process of a service through a store (Redis).

``_url`` parses and redacts the store's URL; ``_shares`` is the lease accounting the hot path reads
(pure, no I/O); ``_redis`` is the store's wire (one atomic script per lease sync, the switch hash and
its channel); ``_worker`` is the background thread that ties them together, and the only place that
waits on the network. See docs/fleet.md.
"""
