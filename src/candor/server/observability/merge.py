"""One ``/metrics`` for all workers of a host (``candor serve --workers N``).

Each worker serves its own exposition on a loopback port; the supervisor scrapes them when it is
scraped, merges them with prometheus_client's own parser, and serves the result on ``--metrics-port``,
so a pod or container is one scrape target and the fleet recording rules, which sum over pods, stay
exact and unchanged.

Why not prometheus_client's multiprocess mode: it covers only the library's own Counter, Gauge and
Histogram objects, and most of Candor's series come from custom collectors computed at scrape time
(drift windows, feedback totals, queue depth), which that mode cannot carry across processes.

How each kind merges (``docs/metrics.md`` lists every metric):

* **counters and histograms** (``_total``, ``_bucket``, ``_count``, ``_sum``): summed over workers. A
  worker that is restarted starts again at 0, so each worker slot keeps the last values its previous
  processes reported and adds them: the merged counter never goes down, and Prometheus never takes a
  restart for a reset of the whole pod (which would count everything again);
* ``_created``: the earliest;
* gauges in :data:`SUMMED_GAUGES` (the host's queue, calls in flight, cached and buffered rows): summed;
* gauges in :data:`SAME_GAUGES` (facts about a version every worker loads alike): one series, the largest;
* gauges in :data:`LOWEST_GAUGES` (health): the lowest, so one worker without the version ready, or
  without its store, shows;
* every other gauge (the drift window's signals, which describe one worker's own recent traffic and
  cannot be added up): one series per worker, with a ``worker`` label.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

SUMMED_GAUGES = frozenset({"candor_queue_rows", "candor_inflight_requests", "candor_prediction_store_rows",
                           "candor_prediction_log_buffer_rows"})  # fmt: skip
SAME_GAUGES = frozenset({"candor_model_info", "candor_reference_accuracy", "candor_reference_mean_confidence",
                         "candor_reference_confidence_share", "candor_reference_class_share",
                         "candor_prediction_set_level", "candor_reference_prior", "candor_label_shift_p_value",
                         "candor_label_shift_total_variation", "candor_label_shift_rows",
                         "candor_label_shift_prior"})  # fmt: skip
LOWEST_GAUGES = frozenset({"candor_model_ready", "candor_feedback_store_up"})
WORKER_LABEL = "worker"
MONOTONIC_TYPES = ("counter", "histogram")
SCRAPE_TIMEOUT_S = 5.0

Key = tuple[str, tuple[tuple[str, str], ...]]  # (sample name, sorted labels)


@dataclass
class _Slot:
    """One worker position: the process serving it now, and what the earlier ones counted."""

    url: str | None = None
    generation: int = 0  # one more for each process that ended: a scrape of an ended one is not merged
    offsets: dict[str, dict[Key, float]] = field(default_factory=dict)  # family -> sample -> value of ended processes
    last: dict[str, dict[Key, float]] = field(default_factory=dict)  # family -> sample -> newest value of this process


def _key(name: str, labels: dict[str, str]) -> Key:
    return name, tuple(sorted(labels.items()))


def fetch(url: str, timeout: float = SCRAPE_TIMEOUT_S) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (loopback URLs this process made)
        return response.read().decode("utf-8")


class WorkersCollector(Collector):
    """The merged exposition of ``slots`` workers; the supervisor tells it when a worker starts or ends."""

    def __init__(self, slots: int):
        self._slots = [_Slot() for _ in range(slots)]
        self._meta: dict[str, tuple[str, str]] = {}  # family -> (help, type)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=min(16, max(1, slots)), thread_name_prefix="candor-merge")
        self.scrape_failures = 0

    def started(self, slot: int, metrics_url: str) -> None:
        with self._lock:
            self._slots[slot].url = metrics_url

    def ended(self, slot: int) -> None:
        """The slot's process is gone: what it counted becomes part of the slot's offsets."""
        with self._lock:
            s = self._slots[slot]
            for family, samples in s.last.items():
                held = s.offsets.setdefault(family, {})
                for key, value in samples.items():
                    held[key] = held.get(key, 0.0) + value
            s.last, s.url = {}, None
            s.generation += 1

    def _scrape(self) -> list[tuple[int, int, list[Metric] | None]]:
        with self._lock:
            urls = [(i, s.generation, s.url) for i, s in enumerate(self._slots) if s.url]

        def one(url: str) -> list[Metric] | None:
            try:
                return list(text_string_to_metric_families(fetch(url)))
            except (OSError, ValueError):  # a worker restarting, or stopping: its counters come from what it last said
                return None

        found = self._pool.map(one, [u for _, _, u in urls])
        return [(i, generation, families) for (i, generation, _), families in zip(urls, found, strict=True)]

    def collect(self) -> Iterable[Metric]:
        scraped = self._scrape()
        with self._lock:
            return self._merge(scraped)

    def _merge(self, scraped: list[tuple[int, int, list[Metric] | None]]) -> list[Metric]:
        monotonic: dict[str, dict[Key, float]] = {}
        created: dict[str, dict[Key, float]] = {}
        gauges: dict[str, dict[Key, float]] = {}
        for slot, generation, families in scraped:
            s = self._slots[slot]
            if s.generation != generation:
                continue  # the process ended while it was being scraped: ended() already kept its counts
            if families is None:
                self.scrape_failures += 1
                continue
            s.last = {}
            for family in families:
                self._meta.setdefault(family.name, (family.documentation, family.type))
                if family.type in MONOTONIC_TYPES:
                    samples = s.last.setdefault(family.name, {})
                    for sample in family.samples:
                        if sample.name.endswith("_created"):
                            _merge_into(created.setdefault(family.name, {}), _key(sample.name, sample.labels), sample.value, min)
                        else:
                            samples[_key(sample.name, sample.labels)] = sample.value
                elif family.name.endswith("_created") and family.type == "gauge":
                    for sample in family.samples:
                        _merge_into(created.setdefault(family.name, {}), _key(sample.name, sample.labels), sample.value, min)
                else:
                    self._gauge(gauges.setdefault(family.name, {}), family, slot)
        for s in self._slots:  # every slot counts: the live process's newest values (or its last), plus the ended ones'
            for source in (s.offsets, s.last):
                for family, samples in source.items():
                    total = monotonic.setdefault(family, {})
                    for key, value in samples.items():
                        total[key] = total.get(key, 0.0) + value
        out = []
        for group in (monotonic, created, gauges):
            for family, samples in group.items():
                doc, kind = self._meta.get(family, ("", "untyped"))
                metric = Metric(family, doc, kind)
                for (name, labels), value in samples.items():
                    metric.add_sample(name, dict(labels), value)
                out.append(metric)
        return out

    @staticmethod
    def _gauge(into: dict[Key, float], family: Metric, slot: int) -> None:
        for sample in family.samples:
            if family.name in SUMMED_GAUGES:
                _merge_into(into, _key(sample.name, sample.labels), sample.value, lambda a, b: a + b)
            elif family.name in SAME_GAUGES:
                _merge_into(into, _key(sample.name, sample.labels), sample.value, max)
            elif family.name in LOWEST_GAUGES:
                _merge_into(into, _key(sample.name, sample.labels), sample.value, min)
            else:
                into[_key(sample.name, {**sample.labels, WORKER_LABEL: str(slot)})] = sample.value

    def close(self) -> None:
        self._pool.shutdown(wait=False)


def _merge_into(into: dict[Key, float], key: Key, value: float, combine) -> None:
    into[key] = value if key not in into else combine(into[key], value)
