"""A small evaluator of the Datadog monitor queries in docs/alerts/datadog-monitors.json, over OTLP metrics.

It answers "would this monitor fire on what the receiver got?" for the query forms that file uses:

    sum(last_1h):sum:llmwatch.cost{*} by {llmwatch.feature}.as_count() > 4.17
    max(last_5m):max:a{*} by {k} / max:b{*} by {k} > 0.95
    sum(last_15m):sum:errors{*} by {m}.as_count() / count:duration{*} by {m}.as_count() > 0.05
    percentile(last_10m):p95:duration{*} by {m} > 30

and refuses (``ValueError``) anything else, so a new monitor the evaluator cannot judge fails loudly
instead of passing by accident. Semantics, as Datadog applies them to OTLP data (docs/datadog.md):

- counters (OTLP sums): ``sum:`` over the window is the total of the increments. A delta series is
  summed point by point; a cumulative series counts its latest point (the series started in the
  process that sent it, inside the window), so a point exported again by a second flush is not
  counted twice.
- histograms: ``count:`` is the number of recorded values (temporality as for counters); ``pNN:``
  takes the buckets of every series of the group, finds the bucket holding the NNth percentile and
  answers its upper bound (the overflow bucket answers the point's max, else infinity). That is the
  value a backend's estimate cannot exceed, and a drill that needs "p95 > 30" puts its values in
  buckets whose lower bound is already past 30.
- gauges: ``max:`` over the window is the largest value seen (space and time maximum commute).

The time window itself is not applied: the data of one test run is seconds old, inside every window.
Tags are the data point's attributes over the resource's (``service`` is ``service.name``, as the
Datadog exporter maps it); booleans are the tag values ``true``/``false``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from otlp_receiver import Received, attributes

Group = tuple[tuple[str, str], ...]  # the ``by`` tags of one monitor group, in query order

COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
TAG_ALIASES = {"service": "service.name"}  # Datadog's name for a resource attribute
# (time aggregation, space aggregation, OTLP kind) the evaluator knows the meaning of.
SUPPORTED = {
    ("sum", "sum", "sum"),
    ("sum", "count", "histogram"),
    ("max", "max", "gauge"),
    ("min", "min", "gauge"),
    ("percentile", "p", "histogram"),
}

QUERY = re.compile(
    r"^(?P<time>sum|max|min|avg|percentile)\(last_(?P<n>\d+)(?P<unit>[mhd])\):(?P<expr>.+?)\s*"
    r"(?P<op>>=|<=|>|<)\s*(?P<threshold>-?\d+(?:\.\d+)?)$"
)
TERM = re.compile(
    r"^(?P<agg>sum|max|min|avg|count|p\d{2}):(?P<metric>[A-Za-z][\w.]*)\{(?P<scope>[^}]*)\}"
    r"(?:\s+by\s+\{(?P<by>[^}]*)\})?(?P<as_count>\.as_count\(\))?$"
)
UNITS = {"m": 60, "h": 3600, "d": 86400}


@dataclasses.dataclass(frozen=True)
class Point:
    """One OTLP data point, flattened: what the evaluator reads of it."""

    metric: str
    kind: str  # "sum" | "gauge" | "histogram"
    cumulative: bool
    attributes: Mapping[str, Any]  # the resource's attributes, then the point's
    time_ns: int = 0
    value: float = 0.0
    count: int = 0
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()
    maximum: float | None = None


def points_from(requests: Iterable[Received]) -> list[Point]:
    """Every metric data point of these (accepted) export requests."""
    found: list[Point] = []
    for request in requests:
        for resource_metrics in request.message.resource_metrics:
            resource = attributes(resource_metrics.resource.attributes)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    found.extend(_points(metric, resource))
    return found


def _points(metric: Any, resource: Mapping[str, Any]) -> Iterable[Point]:
    kind = metric.WhichOneof("data")
    if kind in ("sum", "gauge"):
        data = getattr(metric, kind)
        cumulative = kind == "sum" and data.aggregation_temporality == 2  # AGGREGATION_TEMPORALITY_CUMULATIVE
        for dp in data.data_points:
            value = dp.as_double if dp.WhichOneof("value") == "as_double" else dp.as_int
            attrs = {**resource, **attributes(dp.attributes)}
            yield Point(metric.name, kind, cumulative, attrs, dp.time_unix_nano, float(value))
    elif kind == "histogram":
        cumulative = metric.histogram.aggregation_temporality == 2
        for dp in metric.histogram.data_points:
            yield Point(
                metric.name,
                kind,
                cumulative,
                {**resource, **attributes(dp.attributes)},
                dp.time_unix_nano,
                dp.sum,
                dp.count,
                tuple(dp.explicit_bounds),
                tuple(dp.bucket_counts),
                dp.max if dp.HasField("max") else None,
            )
    else:  # exponential histograms and summaries: not what llmwatch exports by default
        raise ValueError(f"{metric.name}: {kind} points are not supported by this evaluator")


def tag_value(value: Any) -> str:
    """An attribute value as a Datadog tag value."""
    return str(value).lower() if isinstance(value, bool) else str(value)


@dataclasses.dataclass(frozen=True)
class Term:
    """``count:gen_ai.client.operation.duration{*} by {gen_ai.request.model}.as_count()``"""

    aggregation: str  # sum | max | min | avg | count | p95 ...
    metric: str
    filters: tuple[tuple[str, str, bool], ...]  # (tag, value, negated); () for {*}
    by: tuple[str, ...]
    as_count: bool

    def matches(self, point: Point) -> bool:
        if point.metric != self.metric:
            return False
        for tag, value, negated in self.filters:
            actual = point.attributes.get(TAG_ALIASES.get(tag, tag))
            if (actual is not None and tag_value(actual) == value) == negated:
                return False
        return True

    def group_of(self, point: Point) -> Group | None:
        """The group a point falls in, or None when it lacks a ``by`` tag (Datadog drops it from groups)."""
        values = []
        for tag in self.by:
            actual = point.attributes.get(TAG_ALIASES.get(tag, tag))
            if actual is None:
                return None
            values.append((tag, tag_value(actual)))
        return tuple(values)

    def evaluate(self, time_aggregation: str, points: Sequence[Point]) -> dict[Group, float]:
        """This term's value per group."""
        mine = [point for point in points if self.matches(point)]
        if not mine:
            return {}
        kinds = {point.kind for point in mine}
        if len(kinds) != 1:
            raise ValueError(f"{self.metric}: points of several kinds {sorted(kinds)}")
        kind = kinds.pop()
        space = "p" if self.aggregation.startswith("p") else self.aggregation
        if (time_aggregation, space, kind) not in SUPPORTED:
            raise ValueError(f"{time_aggregation}(...):{self.aggregation}: over {kind} points is not supported")
        groups: dict[Group, list[Point]] = {}
        for point in mine:
            group = self.group_of(point)
            if group is not None:
                groups.setdefault(group, []).append(point)
        return {group: self._value(kind, members) for group, members in groups.items()}

    def _value(self, kind: str, points: list[Point]) -> float:
        if kind == "gauge":
            values = [point.value for point in points]
            return max(values) if self.aggregation == "max" else min(values)
        series = _series_totals(points)
        if kind == "sum":
            return sum(point.value for point in series)
        if self.aggregation == "count":
            return float(sum(point.count for point in series))
        return _percentile_upper_bound(series, int(self.aggregation[1:]) / 100)


def _series_totals(points: list[Point]) -> list[Point]:
    """One point per series with what it counted: the latest of a cumulative series, the sum of a delta one."""
    by_series: dict[tuple[Any, ...], list[Point]] = {}
    for point in points:
        key = (point.metric, tuple(sorted((k, repr(v)) for k, v in point.attributes.items())))
        by_series.setdefault(key, []).append(point)
    totals = []
    for members in by_series.values():
        if members[0].cumulative:
            totals.append(max(members, key=lambda point: point.time_ns))
            continue
        buckets = [sum(column) for column in zip(*(point.bucket_counts for point in members), strict=True)]
        maxima = [point.maximum for point in members if point.maximum is not None]
        totals.append(
            dataclasses.replace(
                members[0],
                value=sum(point.value for point in members),
                count=sum(point.count for point in members),
                bucket_counts=tuple(buckets),
                maximum=max(maxima) if maxima else None,
            )
        )
    return totals


def _percentile_upper_bound(series: list[Point], quantile: float) -> float:
    bounds = series[0].bounds
    if any(point.bounds != bounds for point in series):
        raise ValueError("histogram series with different bucket bounds cannot be merged")
    counts = [sum(column) for column in zip(*(point.bucket_counts for point in series), strict=True)]
    total = sum(counts)
    if total == 0:
        return math.nan
    rank = math.ceil(quantile * total)
    seen = 0
    for index, count in enumerate(counts):
        seen += count
        if seen >= rank:
            if index < len(bounds):
                return bounds[index]
            maxima = [point.maximum for point in series if point.maximum is not None]
            return max(maxima) if maxima else math.inf
    return math.inf  # unreachable: the last bucket reaches the total


@dataclasses.dataclass(frozen=True)
class MonitorQuery:
    """A parsed ``query alert`` query."""

    text: str
    time_aggregation: str
    window_s: int
    numerator: Term
    denominator: Term | None
    comparator: str
    threshold: float

    def values(self, points: Sequence[Point]) -> dict[Group, float]:
        """The monitor's value per group (a ratio: groups both sides have, with a non-zero denominator)."""
        top = self.numerator.evaluate(self.time_aggregation, points)
        if self.denominator is None:
            return top
        bottom = self.denominator.evaluate(self.time_aggregation, points)
        return {group: top[group] / bottom[group] for group in top if bottom.get(group)}

    def firing(self, points: Sequence[Point]) -> dict[Group, float]:
        """The groups whose value crosses the threshold (a monitor group in alert)."""
        compare = COMPARATORS[self.comparator]
        return {group: value for group, value in self.values(points).items() if compare(value, self.threshold)}


def parse_term(text: str) -> Term:
    match = TERM.match(text.strip())
    if match is None:
        raise ValueError(f"not a metric term this evaluator knows: {text!r}")
    scope = match["scope"].strip()
    filters: list[tuple[str, str, bool]] = []
    if scope != "*":
        for item in scope.split(","):
            item = item.strip()
            negated = item.startswith("!")
            tag, sep, value = item.lstrip("!").partition(":")
            if not sep or not tag or not value:
                raise ValueError(f"scope {scope!r}: {item!r} is not tag:value or !tag:value")
            filters.append((tag, value, negated))
    by = tuple(tag.strip() for tag in (match["by"] or "").split(",") if tag.strip())
    return Term(match["agg"], match["metric"], tuple(filters), by, bool(match["as_count"]))


def parse(text: str) -> MonitorQuery:
    """Parse one Datadog metric monitor query (``ValueError`` for a form not listed in the docstring)."""
    match = QUERY.match(text.strip())
    if match is None:
        raise ValueError(f"not a monitor query this evaluator knows: {text!r}")
    sides = match["expr"].split(" / ")
    if len(sides) > 2:
        raise ValueError(f"more than one division: {text!r}")
    numerator = parse_term(sides[0])
    denominator = parse_term(sides[1]) if len(sides) == 2 else None
    if denominator is not None and denominator.by != numerator.by:
        raise ValueError(f"both sides of a ratio must group by the same tags: {text!r}")
    return MonitorQuery(
        text,
        match["time"],
        int(match["n"]) * UNITS[match["unit"]],
        numerator,
        denominator,
        match["op"],
        float(match["threshold"]),
    )
