"""Beam's DaskRunner, completed for the transforms the components use.

`--runner=DaskRunner --dask_client_address=<scheduler>` runs a component's
Beam pipeline on a Dask distributed cluster (`pipeline_options()` maps the
name to `DaskRunner` below). Beam 2.77 ships a DaskRunner
(`apache_beam.runners.dask`) that translates a pipeline to Dask bags, but on
the components' pipelines it loses data and counters:

- it computes only the last transform's bag, so of several sinks (one per
  split, the quarantine) one is written;
- every consumer of a multi-output ParDo (`with_outputs`, `Partition`) gets
  all its outputs mixed;
- what a DoFn emits in `finish_bundle` is dropped (BatchElements' last batch,
  the file a sink wrote), and every bundle sets its DoFn up and tears it down
  again (a tokenizer built per bundle);
- side inputs are computed again inside the consuming task, outside the graph;
- `Read` of a bounded source (ReadFromTFRecord) yields nothing, and Reshuffle
  leaves everything in the partition it was read into;
- it reports no metrics (`metrics()` raises), and the components count rows with them.

This runner keeps Beam's translations of Create, GroupByKey and Flatten and
its DoFn invocation, and replaces the rest: bags per PCollection (tagged
outputs routed by tag), every sink computed in one graph, side inputs as graph
dependencies, DoFns set up once per worker process and reused bundle after
bundle, bounded sources read per split, Reshuffle as a repartition over the
cluster's threads, and counters gathered from each bundle. Batch pipelines in
the global window only: that is what the components run.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import threading
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics.execution import MetricKey, MetricResult, MetricsContainer
from apache_beam.metrics.metric import MetricResults
from apache_beam.pipeline import AppliedPTransform, PipelineVisitor
from apache_beam.runners.common import (
    DoFnContext,
    DoFnInvoker,
    DoFnSignature,
    Receiver,
    _OutputHandler,
)
from apache_beam.runners.dask import dask_runner as beam_dask
from apache_beam.runners.dask import overrides as beam_dask_overrides
from apache_beam.runners.dask import transform_evaluator as beam_dask_ops
from apache_beam.runners.runner import PipelineResult, PipelineState
from apache_beam.runners.worker import statesampler
from apache_beam.transforms.sideinputs import SideInputMap
from apache_beam.transforms.window import GlobalWindow, GlobalWindows
from apache_beam.utils import counters
from apache_beam.utils.windowed_value import WindowedValue

# DoFns kept set up per worker process, by ParDo; the oldest are torn down beyond this.
_MAX_SET_UP_PARDOS = 64
# Bags split by Reshuffle: this many partitions per worker thread, for balance.
_PARTITIONS_PER_THREAD = 2


class SetUpDoFns:
    """DoFns already set up in this process, lent to one bundle at a time.

    Beam's SDK workers set a DoFn up once and run bundle after bundle through
    it; so does this pool, per Dask worker process. A DoFn serves one bundle
    at a time (worker threads each get their own instance).
    """

    def __init__(self, max_pardos: int = _MAX_SET_UP_PARDOS):
        self.max_pardos = max_pardos
        self.idle: collections.OrderedDict[str, list[beam.DoFn]] = collections.OrderedDict()
        self.lock = threading.Lock()

    def acquire(self, key: str, make: Callable[[], beam.DoFn]) -> beam.DoFn:
        with self.lock:
            idle = self.idle.setdefault(key, [])
            self.idle.move_to_end(key)
            if idle:
                return idle.pop()
        fn = make()
        fn.setup()
        return fn

    def release(self, key: str, fn: beam.DoFn) -> None:
        with self.lock:
            self.idle.setdefault(key, []).append(fn)
            evicted = []
            while len(self.idle) > self.max_pardos:
                evicted.extend(self.idle.popitem(last=False)[1])
        for old in evicted:
            old.teardown()


    def count(self) -> int:
        with self.lock:
            return sum(len(fns) for fns in self.idle.values())


# One pool per worker process: what it holds outlives a task, as a set-up DoFn must.
_SET_UP_DOFNS = SetUpDoFns()


def set_up_dofn_count() -> int:
    """Set-up DoFns this process keeps (on a Dask worker: `client.run(set_up_dofn_count)`)."""
    return _SET_UP_DOFNS.count()


class _Collector(dict):
    """Receivers for a bundle's outputs: (tag, element) in output order; tag None is the main output."""

    def __init__(self):
        super().__init__()
        self.outputs: list[tuple[str | None, Any]] = []

    def __missing__(self, tag):
        receiver = self[tag] = _TagReceiver(tag, self.outputs)
        return receiver


class _TagReceiver(Receiver):
    def __init__(self, tag: str | None, outputs: list):
        self.tag, self.outputs = tag, outputs

    def receive(self, windowed_value: WindowedValue) -> None:
        self.outputs.append((self.tag, windowed_value.value))

    def receive_batch(self, windowed_batch) -> None:
        raise NotImplementedError("DaskRunner: batched DoFn outputs are not supported")

    def flush(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class _ParDoSpec:
    """What a worker needs to run one ParDo's bundles (pickled into the task graph)."""

    key: str  # Names the ParDo in the worker's pool of set-up DoFns.
    label: str
    fn: beam.DoFn
    args: tuple
    kwargs: dict
    side_input_specs: tuple  # (side input type, view options) per side input.


def _global(value: Any) -> WindowedValue:
    return WindowedValue(value, 0, (GlobalWindow(),))


def _run_bundle(elements: Iterable[Any], spec: _ParDoSpec, *side_values: list) -> list:
    """One bundle through a set-up DoFn; returns [(outputs, counters)]."""
    # A copy: tasks may share one unpickled spec, and a DoFn serves one bundle at a time.
    fn = _SET_UP_DOFNS.acquire(spec.key, lambda: copy.deepcopy(spec.fn))
    collector = _Collector()
    side_inputs = [SideInputMap(kind, options, [_global(v) for v in values])
                   for (kind, options), values in zip(spec.side_input_specs, side_values)]
    handler = _OutputHandler(window_fn=GlobalWindows(), main_receivers=collector[None], tagged_receivers=collector,
                             per_element_output_counter=None, output_batch_converter=None,
                             process_yields_batches=False, process_batch_yields_elements=False)
    invoker = DoFnInvoker.create_invoker(
        DoFnSignature(fn), handler, context=DoFnContext(spec.label, state=None), side_inputs=side_inputs,
        input_args=list(spec.args), input_kwargs=spec.kwargs, user_state_context=None,
        bundle_finalizer_param=beam.DoFn.BundleFinalizerParam())
    metrics = MetricsContainer(spec.label)
    sampler = statesampler.StateSampler("", counters.CounterFactory())
    statesampler.set_current_tracker(sampler)
    try:
        with sampler.scoped_state(spec.label, "process", metrics_container=metrics):
            invoker.invoke_start_bundle()
            for element in elements:
                invoker.invoke_process(_global(element))
            invoker.invoke_finish_bundle()
    finally:
        statesampler.set_current_tracker(None)
    _SET_UP_DOFNS.release(spec.key, fn)
    bundle_counters = {(key.step, key.metric.namespace, key.metric.name): value
                       for key, value in metrics.get_cumulative().counters.items()}
    return [(collector.outputs, bundle_counters)]


def _outputs_tagged(bundle: list, tag: str | None) -> list:
    outputs, _ = bundle[0]
    return [element for output_tag, element in outputs if output_tag == tag]


def _bundle_counters(bundle: list) -> list:
    return [bundle[0][1]]


def _read_splits(splits: Iterable[Any]) -> list:
    """Bundles of a bounded source (SourceBundle) -> their records."""
    records = []
    for split in splits:
        tracker = split.source.get_range_tracker(split.start_position, split.stop_position)
        records.extend(split.source.read(tracker))
    return records


def _concatenate(*partitions: list) -> list:
    return [element for partition in partitions for element in partition]


def _merge_counters(bundle_counters: list, _sinks_done: list) -> dict:
    totals: collections.Counter = collections.Counter()
    for partition in bundle_counters:
        for counters_of_bundle in partition:
            totals.update(counters_of_bundle)
    return dict(totals)


class _Translation(PipelineVisitor):
    """Beam primitives -> Dask bags, one per PCollection."""

    def __init__(self, bag_kwargs: dict, reshuffle_partitions: int):
        self.bag_kwargs, self.reshuffle_partitions = bag_kwargs, reshuffle_partitions
        self.bags: dict[pvalue.PCollection, Any] = {}
        self.consumed: set[pvalue.PCollection] = set()
        self.counter_bags: list = []

    def visit_transform(self, node: AppliedPTransform) -> None:
        transform = node.transform
        main_inputs = [value for value in node.inputs if isinstance(value, pvalue.PCollection)]
        self.consumed.update(main_inputs)
        self.consumed.update(side.pvalue for side in node.side_inputs)
        inputs = [self.bags[value] for value in main_inputs]
        outputs: dict[Any, Any]
        if isinstance(transform, beam_dask_overrides._GroupAlsoByWindow):
            outputs = {None: inputs[0]}  # Beam's GroupByKey translation already grouped in the global window.
        elif isinstance(transform, beam.ParDo):
            outputs = self._par_do(node, transform, inputs[0])
        elif isinstance(transform, beam_dask_overrides._Read):
            outputs = {None: self._read(transform.source)}
        elif isinstance(transform, beam_dask_overrides._Reshuffle):
            outputs = {None: inputs[0].repartition(npartitions=self.reshuffle_partitions)}
        elif isinstance(transform, beam_dask_overrides._Flatten):
            outputs = {None: beam_dask_ops.Flatten(node).apply(inputs)}
        elif isinstance(transform, beam_dask_overrides._Create):
            outputs = {None: beam_dask_ops.Create(node, bag_kwargs=self.bag_kwargs).apply(None)}
        elif isinstance(transform, beam_dask_overrides._GroupByKeyOnly):
            outputs = {None: beam_dask_ops.GroupByKey(node).apply(inputs[0])}
        else:
            raise NotImplementedError(f"DaskRunner: {type(transform).__name__} ({node.full_label}) "
                                      "has no Dask translation")
        for tag, output in node.outputs.items():
            self.bags[output] = outputs[tag]  # Outputs of a primitive are PCollections.

    def _par_do(self, node: AppliedPTransform, transform: beam.ParDo, input_bag) -> dict:
        args, kwargs = transform.raw_side_inputs
        spec = _ParDoSpec(key=uuid.uuid4().hex, label=node.full_label, fn=transform.fn, args=tuple(args),
                          kwargs=dict(kwargs),
                          side_input_specs=tuple((type(side), side._view_options()) for side in node.side_inputs))
        side_values = [self._whole(self.bags[side.pvalue]) for side in node.side_inputs]
        bundles = input_bag.map_partitions(_run_bundle, spec, *side_values)
        self.counter_bags.append(bundles.map_partitions(_bundle_counters))
        # The main output is tag None, as the collector tags what goes to the main receiver.
        return {tag: bundles.map_partitions(_outputs_tagged, tag) for tag in node.outputs}

    def _read(self, source):
        import dask.bag as db

        splits = list(source.split(desired_bundle_size=64 << 20))
        return db.from_sequence(splits, npartitions=max(1, len(splits))).map_partitions(_read_splits)

    @staticmethod
    def _whole(bag):
        """A bag as one value (a list), for a side input: a dependency in the same graph."""
        import dask

        return dask.delayed(_concatenate)(*bag.to_delayed(optimize_graph=False))

    def sinks_done(self):
        """One small value per unconsumed PCollection: computing them runs every sink."""
        return [self.bags[pcoll].map_partitions(lambda partition: [sum(1 for _ in partition)])
                for pcoll in self.bags if pcoll not in self.consumed]


class DaskRunnerResult(PipelineResult):
    """Waits for the pipeline's graph; its counters are the sum over bundles."""

    def __init__(self, client, future, closes_client: bool):
        super().__init__(PipelineState.RUNNING)
        self.client, self.future, self.closes_client = client, future, closes_client
        self.counters: dict = {}

    def wait_until_finish(self, duration=None) -> str:
        try:
            self.counters = self.future.result(timeout=duration / 1000 if duration else None)
            self._state = PipelineState.DONE
        except BaseException:
            self._state = PipelineState.FAILED
            raise
        finally:
            if self.closes_client:
                self.client.close()
        return self._state

    def cancel(self) -> str:
        self.future.cancel()
        self._state = PipelineState.CANCELLED
        return self._state

    def metrics(self) -> BundleCounters:
        return BundleCounters(self.counters)


class BundleCounters(MetricResults):
    """Counters summed over the bundles that ran (attempted = committed: a retried bundle counts again)."""

    def __init__(self, totals: dict):
        self.totals = totals

    def query(self, filter=None):
        from apache_beam.metrics.metricbase import MetricName

        results = []
        for (step, namespace, name), value in sorted(self.totals.items()):
            key = MetricKey(step, MetricName(namespace, name))
            if filter is None or self.matches(filter, key):
                results.append(MetricResult(key, value, value))
        return {self.COUNTERS: results, self.DISTRIBUTIONS: [], self.GAUGES: [], self.STRINGSETS: [],
                self.BOUNDED_TRIES: []}


class DaskRunner(beam_dask.DaskRunner):
    """Executes a batch pipeline on a Dask distributed cluster (`--dask_client_address`)."""

    def run_pipeline(self, pipeline, options):
        import dask
        from dask import distributed

        dask_options = options.view_as(beam_dask.DaskOptions).get_all_options(drop_default=True, current_only=True)
        bag_kwargs = beam_dask.DaskOptions._extract_bag_kwargs(dask_options)
        client = distributed.Client(**dask_options)
        threads = sum(client.nthreads().values()) or 1
        pipeline.replace_all(beam_dask_overrides.dask_overrides())
        translation = _Translation(bag_kwargs, bag_kwargs.get("npartitions") or _PARTITIONS_PER_THREAD * threads)
        pipeline.visit(translation)
        counter_partitions = [bag.to_delayed(optimize_graph=False) for bag in translation.counter_bags]
        sinks = [bag.to_delayed(optimize_graph=False) for bag in translation.sinks_done()]
        done = dask.delayed(_merge_counters)([p for ps in counter_partitions for p in ps],
                                             [p for ps in sinks for p in ps])
        return DaskRunnerResult(client, client.compute(done), closes_client=True)
