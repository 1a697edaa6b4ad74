"""OpenVINO IR speed where the model will run: latency (batch 1) and throughput (batch 8) of
exported IRs at each precision hint and thread count, with only `openvino` and numpy installed
(no TensorFlow: copy the export folder and this repository's benchmarks/, inference/ and
tf_extended/ to the deployment machine and time it there).

    python benchmarks/bench_openvino_ir.py --models EXPORT/model_openvino.xml[,...] \
        [--precisions fp32,bf16] [--threads 2,0] [--repeats 50] [--profile] \
        [--output output/benchmarks/bench_openvino_ir.json]

What is timed: one synchronous call of the IR (preprocessing, net, decoding and NMS inside) on
`--image_shape` uint8 RGB images of one fixed random draw, compiled for that batch shape with the
latency hint (what `OpenVINODetector` runs once a shape recurs), medians of `--repeats` rounds
after WARM_UP_CALLS calls, every (IR, precision, threads) once per round so that their ratios
share the machine's load of the moment. `--threads 0` leaves the count to OpenVINO (rows say
how many it used). The bf16 rows say what OpenVINO compiled ('ran': bf16 only where the CPU has
bf16 instructions, else fp32) and the report names the CPU and its matrix units (AMX, AVX-512
BF16 or neither): AMX multiplies large bf16 matmuls 4-10x over fp32, an SSD much less (its
depthwise convolutions, small feature maps and the work around the net gain little). An int8
IR (`--formats openvino_int8`: FakeQuantize operations) is timed like the others; its non-int8
operations follow the precision hint. bench_inference.py times the same IRs beside the TF
formats on a machine with the whole framework.

"vs fp32" (rows' `latency_vs_fp32`, `batch8_vs_fp32`): the median of the rounds' ratios of the
row's call to the call of the fp32-hint row at the same thread count (`median_ratio`) of the IR
named by the row's `vs_fp32_of`: the IR itself,
but for an int8 IR the float IR of the same model when `--models` has it (the same export
metadata in the IRs: checkpoint and model card; without it, an IR in the same folder), so that
int8 is compared with fp32, not with itself under another hint. Without that IR, `vs_fp32_of`
is null, the table shows "—" and says so under it.

Writes JSON and a markdown table beside it.
"""

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

try:
    from inference import openvino_runtime
    from tf_extended import atomic_io
    from tf_extended import cpu_features
except ImportError as err:  # copied without the repository's folders it needs
    sys.exit(
        f'bench_openvino_ir: {err}; copy this repository\'s benchmarks/, inference/ and '
        f'tf_extended/ folders together (openvino and numpy installed; no TensorFlow needed).'
    )

WARM_UP_CALLS = 3
BATCHES = (1, 8)
# OpenVINO CPU plugin node types that run the net's convolutions (depthwise: GroupConvolution).
CONVOLUTIONS = ('Convolution', 'GroupConvolution')
# Node types named in a profile, the slowest first; the rest are summed as 'others'.
PROFILED_TYPES = 8
# Export metadata that differs between IRs of one model exported apart (time, commit, files,
# int8 calibration): left out when matching an int8 IR with its float IR.
EXPORT_ONLY_KEYS = ('export', 'files', 'openvino', 'int8')


def cpu_name(path='/proc/cpuinfo'):
    """The CPU's model name from `path` (platform.processor() elsewhere)."""
    try:
        with open(path, encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'unknown'


def compile_for(core, model, batch, image_shape, precision, threads):
    """(compiled model, infer request) of `model` reshaped to the static batch shape."""
    model = model.clone()
    model.reshape({model.input(0).get_any_name(): [batch, *image_shape]})
    config = openvino_runtime.compile_config(precision, threads or None)
    compiled = openvino_runtime.compile_model(core, model, config)
    return compiled, compiled.create_infer_request()


def _read_export(core, path, image_shape=None):
    """`openvino_runtime.read_ir` of an IR with our exports' input, one uint8 `[B, H, W, 3]`
    (with `image_shape`, `[H, W, 3]`, H and W free or those of an IR exported with
    --fixed_size); ValueError naming the file otherwise."""
    model = openvino_runtime.read_ir(core, path)
    inputs = [(i.get_element_type().get_type_name(), i.get_partial_shape()) for i in model.inputs]
    if len(inputs) != 1 or inputs[0][0] != 'u8' or inputs[0][1].rank.get_length() != 4:
        raise ValueError(
            f'{path}: inputs {[f"{t} {shape}" for t, shape in inputs]}, where an export of '
            f'export_ssd_network.py --formats=openvino has one, uint8 [B, H, W, 3].'
        )
    height, width = openvino_runtime.static_dims(inputs[0][1])[1:3]
    if image_shape is not None and height and width and (height, width) != tuple(image_shape[:2]):
        raise ValueError(
            f'{path} was exported with --fixed_size: it takes {height}x{width} (height x width) '
            f'images only, not --image_shape={",".join(map(str, image_shape))}; pass '
            f'--image_shape={height},{width},3.'
        )
    return model


def is_int8(model):
    """Whether an IR is quantised: NNCF's FakeQuantize operations (`--formats openvino_int8`)."""
    return any(op.get_type_name() == 'FakeQuantize' for op in model.get_ops())


def model_key(model):
    """What names the model an IR was exported from (JSON text): the exported checkpoint and the
    rest of the export metadata in the IR but EXPORT_ONLY_KEYS; None without such metadata."""
    try:
        meta = openvino_runtime.rt_info_metadata(model)
    except ValueError:
        return None
    export = meta.get('export') if meta else None
    checkpoint = export.get('checkpoint') if isinstance(export, dict) else None
    if not checkpoint:
        return None
    rest = {k: v for k, v in meta.items() if k not in EXPORT_ONLY_KEYS}
    return json.dumps([checkpoint, rest], sort_keys=True)


def fp32_references(models):
    """{path: the IR whose fp32-hint rows the "vs fp32" ratios of `path`'s rows divide by, or
    None} for `models` ({path: ov.Model}): each float IR itself; an int8 IR the first float IR of
    the same model (`model_key`; where either IR has none, the same folder: an export's), None
    when `models` holds none."""
    keys = {path: model_key(model) for path, model in models.items()}
    floats = [path for path, model in models.items() if not is_int8(model)]

    def same_model(a, b):
        if keys[a] is not None and keys[b] is not None:
            return keys[a] == keys[b]
        return os.path.dirname(os.path.abspath(a)) == os.path.dirname(os.path.abspath(b))

    return {
        path: path if path in floats else next((f for f in floats if same_model(path, f)), None)
        for path in models
    }


def median_ratio(seconds, reference):
    """The median over rounds of seconds[i] / reference[i], rounded to 3 digits: a ratio of
    calls made within one round (tens of milliseconds apart for MobileNet-SSD300; seconds for
    VGG, whose few rounds this helps less). Not the ratio of the medians: the machine's speed can
    change by 1.7x for seconds at a time (seen on a 2-core AMX VM), which moves the medians of
    setups timed in different rounds' phases apart."""
    return round(float(np.median(np.divide(seconds, reference))), 3)


def add_ratios(rows, times, references):
    """Sets each row's `int8`, `vs_fp32_of` (its IR's `fp32_references` entry) and, where that
    IR has an fp32-hint row at the row's thread count, `latency_vs_fp32` and `batch8_vs_fp32`:
    `median_ratio`s of the rounds (`times`: {batch: [seconds per call, a round each]} of each
    row)."""
    timed = {(r['model'], r['precision'], r['threads']): t for r, t in zip(rows, times)}
    for row, seconds in zip(rows, times):
        reference = references[row['model']]
        row['int8'] = reference != row['model']  # a float IR is its own reference
        row['vs_fp32_of'] = reference
        fp32 = timed.get((reference, 'fp32', row['threads']))
        if fp32:
            row['latency_vs_fp32'] = median_ratio(seconds[1], fp32[1])
            row['batch8_vs_fp32'] = median_ratio(seconds[8], fp32[8])


def op_ms(path, image, precision='fp32', threads=None, runs=20):
    """Where an IR's batch-1 latency goes, from the CPU plugin's performance counters (a
    separate compilation with PERF_COUNT, the latency hint, the batch shape of `image[None]`,
    WARM_UP_CALLS calls first): medians over `runs` calls of the ms per call in the convolutions,
    in every other operation (resize, decoding, NMS, layout changes: what no kernel speed-up
    removes) and in all (`total`; the counters' own cost makes it longer than an untimed call:
    compare shares, not milliseconds, with the latency), and `by_type` the mean ms of the
    PROFILED_TYPES slowest node types."""
    core = openvino_runtime.load().Core()
    model = _read_export(core, path)
    model.reshape({model.input(0).get_any_name(): [1, *image.shape]})
    config = dict(openvino_runtime.compile_config(precision, threads), PERF_COUNT=True)
    request = openvino_runtime.compile_model(core, model, config).create_infer_request()
    for _ in range(WARM_UP_CALLS):
        request.infer({0: image[None]})
    calls, by_type = [], {}
    for _ in range(runs):
        request.infer({0: image[None]})
        conv = other = 0.0
        for op in request.profiling_info:
            ms = op.real_time.total_seconds() * 1000
            by_type[op.node_type] = by_type.get(op.node_type, 0.0) + ms / runs
            if op.node_type in CONVOLUTIONS:
                conv += ms
            else:
                other += ms
        calls.append((conv, other, conv + other))
    conv, other, total = np.median(calls, axis=0)
    slowest = sorted(by_type.items(), key=lambda item: -item[1])
    shown = {name: round(ms, 2) for name, ms in slowest[:PROFILED_TYPES]}
    shown['others'] = round(sum(ms for _, ms in slowest[PROFILED_TYPES:]), 2)
    return {
        'convolutions': round(float(conv), 2),
        'other': round(float(other), 2),
        'total': round(float(total), 2),
        'by_type': shown,
    }


def bench(paths, precisions, threads, image_shape, repeats, profile=False, log=print):
    """Rows {model, precision, ran, threads, threads_used, latency_ms, batch8_ms_per_image, ...},
    one per (IR, precision, threads), timed round by round (see the module docstring), each
    round starting one setup further so that none always runs first; "vs fp32" ratios as
    `add_ratios`; with `profile`, each row's `op_ms_batch1` (`op_ms`), measured after the
    timings."""
    core = openvino_runtime.load().Core()
    models = {path: _read_export(core, path, image_shape) for path in paths}
    setups = [(p, precision, n) for p in paths for precision in precisions for n in threads]
    rows = [
        {'model': path, 'precision': precision, 'threads': n or 'all'}
        for path, precision, n in setups
    ]
    row_times = [{} for _ in setups]  # batch -> seconds per call, a round each
    images = np.random.RandomState(0).randint(0, 256, (max(BATCHES), *image_shape), np.uint8)
    for batch in BATCHES:
        requests = []
        for row, (path, precision, n) in zip(rows, setups):
            start = time.perf_counter()
            compiled, request = compile_for(core, models[path], batch, image_shape, precision, n)
            row[f'compile_s_batch{batch}'] = round(time.perf_counter() - start, 2)
            row['ran'] = openvino_runtime.compiled_precision(compiled)
            row['threads_used'] = int(compiled.get_property('INFERENCE_NUM_THREADS'))
            requests.append(request)
        inputs = images[:batch]
        for _ in range(WARM_UP_CALLS):
            for request in requests:
                request.infer({0: inputs}, share_inputs=True)
        times = [[] for _ in requests]
        for round_index in range(repeats):
            first = round_index % len(requests)
            for i in list(range(first, len(requests))) + list(range(first)):
                start = time.perf_counter()
                requests[i].infer({0: inputs}, share_inputs=True)
                times[i].append(time.perf_counter() - start)
        for row, row_time, seconds in zip(rows, row_times, times):
            row_time[batch] = seconds
            median = float(np.median(seconds))
            if batch == 1:
                row['latency_ms'] = round(median * 1000, 2)
                row['latency_p90_ms'] = round(float(np.percentile(seconds, 90)) * 1000, 2)
            else:
                row[f'batch{batch}_ms_per_image'] = round(median * 1000 / batch, 2)
                row[f'batch{batch}_images_per_s'] = round(batch / median, 1)
    add_ratios(rows, row_times, fp32_references(models))
    for row, (path, _, n) in zip(rows, setups):
        if profile:
            row['op_ms_batch1'] = op_ms(path, images[0], row['precision'], n or None)
        log(row)
    return rows


def markdown(rows, cpu, units):
    lines = [
        f'CPU: {cpu}, {os.cpu_count()} logical cores; matrix units: {units["summary"]} '
        f'(OpenVINO CPU capabilities: {", ".join(units["openvino_capabilities"]) or "unknown"}; '
        f'cpuinfo: {", ".join(units["cpu_flags"]) or "none of avx2/avx512/amx"}).',
        '',
        '| IR | precision (ran) | threads | latency batch 1 (ms) | p90 (ms) | vs fp32 | '
        'batch 8 (ms/img) | vs fp32 | batch 8 (img/s) | batch 1 profile: convolutions / other '
        'of total ms (convolutions\' share) |',
        '|---|---|---|---|---|---|---|---|---|---|',
    ]
    profiles = []
    for r in rows:
        ops = r.get('op_ms_batch1')
        split = (
            f'{ops["convolutions"]} / {ops["other"]} of {ops["total"]} '
            f'({100 * ops["convolutions"] / max(ops["total"], 1e-9):.0f} %)'
            if ops
            else ''
        )
        threads = f'{r["threads_used"]}' + (' (all)' if r['threads'] == 'all' else '')
        precision = f'int8 + {r["precision"]}' if r['int8'] else r['precision']
        lines.append(
            f'| `{r["model"]}` | {precision} ({r["ran"]}) | {threads} | '
            f'{r["latency_ms"]} | {r["latency_p90_ms"]} | {r.get("latency_vs_fp32", "—")} | '
            f'{r["batch8_ms_per_image"]} | {r.get("batch8_vs_fp32", "—")} | '
            f'{r["batch8_images_per_s"]} | {split} |'
        )
        if ops:
            types = ', '.join(f'{name} {ms}' for name, ms in ops['by_type'].items())
            profiles.append(f'- `{r["model"]}` {r["ran"]}, {threads} threads: {types}')
    int8 = {r['model']: r['vs_fp32_of'] for r in rows if r['int8']}
    if int8:
        lines += [
            '',
            'int8 + fp32 (or bf16): the quantised operations in int8, the others under that '
            "precision hint. vs fp32: the median of the rounds' ratios to the fp32-hint row at "
            'the same thread count of the same IR, or for an int8 IR of the fp32 IR of the same '
            'model:',
        ] + [
            f'- `{path}` (int8): against `{reference}`'
            if reference
            else f'- `{path}` (int8): "—", the fp32 IR of its model is not in --models (add it '
            f'to compare int8 with fp32)'
            for path, reference in int8.items()
        ]
    if profiles:
        lines += [
            '',
            'Batch 1 by operation type (ms per call, performance counters; a profiled call is '
            'longer than a timed one by the counters\' cost: compare shares, not milliseconds, '
            'with the latency):',
        ] + profiles
    return '\n'.join(lines) + '\n'


def _csv(text, kind=str):
    return [kind(v) for v in text.split(',') if v.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--models', required=True, help='IR .xml files, comma-separated')
    parser.add_argument('--precisions', default='fp32,bf16', help='fp32, bf16, comma-separated')
    parser.add_argument('--threads', default='0', help='CPU threads, comma-separated; 0: all')
    parser.add_argument('--image_shape', default='480,640,3', help='H,W,3 of the test images')
    parser.add_argument('--repeats', type=int, default=50)
    parser.add_argument(
        '--profile',
        action='store_true',
        help='also time each operation type at batch 1 (OpenVINO performance counters)',
    )
    parser.add_argument('--output', default='output/benchmarks/bench_openvino_ir.json')
    args = parser.parse_args()
    precisions = _csv(args.precisions)
    bad = sorted(set(precisions) - set(openvino_runtime.PRECISIONS))
    if bad:
        parser.error(f'--precisions: {bad} not among {sorted(openvino_runtime.PRECISIONS)}')
    try:
        threads = _csv(args.threads, int)
        image_shape = _csv(args.image_shape, int)
    except ValueError as err:
        parser.error(f'--threads and --image_shape take integers ({err})')
    if len(image_shape) != 3 or image_shape[2] != 3 or min(image_shape) < 1:
        parser.error(f'--image_shape is H,W,3 (positive integers); got {args.image_shape!r}')
    if not threads or min(threads) < 0:
        parser.error(f'--threads lists counts of 0 (all cores) or more; got {args.threads!r}')
    report = os.path.splitext(args.output)[0] + '.md'
    for path in (args.output, report):
        if os.path.isdir(path):
            parser.error(f'--output: {path} is a folder; give a file name (.json)')
    start, load_at_start = time.perf_counter(), os.getloadavg()[0]
    try:
        rows = bench(
            _csv(args.models), precisions, threads, image_shape, max(1, args.repeats), args.profile
        )
    except (OSError, ValueError) as err:  # a missing or refused IR: one line naming it
        sys.exit(f'bench_openvino_ir: {err}')
    units = openvino_runtime.cpu_matrix_units()
    cpu = cpu_name()
    result = {
        'rows': rows,
        'image_shape': image_shape,
        'openvino': openvino_runtime.load().__version__,
        'cpu': cpu,
        'cpu_matrix_units': units,
        'has_amx': cpu_features.has_amx(),
        'machine': platform.machine(),
        'cpus': os.cpu_count(),
        'load_average_at_start': round(load_at_start, 2),
        'load_average_at_end': [round(x, 2) for x in os.getloadavg()],
        'total_seconds': round(time.perf_counter() - start, 1),
    }
    busy = cpu_features.busy_note(load_at_start, os.getloadavg()[0], os.cpu_count())
    table = markdown(rows, cpu, units) + (f'\n{busy}\n' if busy else '')
    print(table)  # first: a file that cannot be written loses no result
    try:
        os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
        atomic_io.write_json_atomic(args.output, result)
        atomic_io.write_text_atomic(report, table)
    except OSError as err:
        sys.exit(f'bench_openvino_ir: cannot write {args.output} or {report} ({err})')
    print(f'total {result["total_seconds"]} s; wrote {args.output} and {report}')


if __name__ == '__main__':
    main()
