"""Runs every benchmark and writes one JSON and one markdown report.

    python benchmarks/run_all.py [--full] [--only floor,nets,...] [--models ssd_300_mobilenet]
        [--output_dir benchmarks/results]

Each benchmark script runs in its own process (TensorFlow state and thread pools do not leak
between them), with short settings by default (about 10 minutes in all on 2 cores) or the
scripts' own longer defaults with --full. Their JSON outputs are collected into
`<output_dir>/all.json`, and `<output_dir>/README.md` gets the machine (CPU model, cores,
library versions, load), the command, a status line per benchmark (a failed or timed-out one
is reported there, the others still run), each benchmark's markdown table, and the ratio of
each measured forward pass to the compute floor of `bench_floor.py` (2·MACs at the measured
matmul GFLOP/s; run first and last, the faster run counts), with the speed targets. Both
files are written atomically.
"""

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Callable, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
from tf_extended import atomic_io  # noqa: E402
from tf_extended import cpu_features  # noqa: E402
from tf_extended import safe_io  # noqa: E402

MODELS = ('ssd_300_mobilenet', 'ssd_300_vgg', 'ssd_512_vgg')
QUICK_MODELS = ('ssd_300_mobilenet', 'ssd_300_vgg')
# bench_opencv.py names its nets by caffe_fixtures.PARITY_NETS key.
OPENCV_NETS = {
    'ssd_300_mobilenet': 'mobilenet_merged',
    'ssd_300_vgg': 'vgg300',
    'ssd_512_vgg': 'vgg512',
}
# The speed targets of issue #9 (stated in the report, not asserted).
FLOOR_TARGET = 1.5
MIXED_TARGET = 2.0
# Issue #17: OpenVINO fp32 batch-1 latency / the TF frozen graph's, per net; bf16 latency of
# MobileNet-SSD300 on an AMX CPU (ms); evaluation / forward-only throughput.
OPENVINO_FP32_TARGETS = {'ssd_300_mobilenet': 0.5, 'ssd_300_vgg': 0.6}
OPENVINO_BF16_AMX_MS = 5.9
EVAL_FORWARD_TARGET = 0.85


def _flag(flag):
    return lambda value: [flag, value]


def _comma(flag):
    return lambda models: [flag, ','.join(models)]


@dataclasses.dataclass
class Benchmark:
    """One benchmark script and how to drive it.

    output_args: JSON path -> the flags that make the script write it.
    models_args: model names -> the flags restricting the script to them (None: no such flag).
    quick_args / full_args: extra flags of the default / --full run.
    quick_models: the models of the default run (--full: all of MODELS).
    output_name: the JSON file name the script writes (when only its folder can be chosen).
    """

    name: str
    script: str
    output_args: Callable[[str], List[str]]
    models_args: Optional[Callable[[Tuple[str, ...]], List[str]]]
    quick_args: List[str]
    full_args: List[str] = dataclasses.field(default_factory=list)
    quick_models: Tuple[str, ...] = QUICK_MODELS
    output_name: Optional[str] = None

    def command(self, output_json, full, models=None):
        """The argv running this benchmark so that it writes `output_json`."""
        argv = [sys.executable, os.path.join(HERE, self.script)] + self.output_args(output_json)
        models = models or (MODELS if full else self.quick_models)
        if self.models_args:
            argv += self.models_args(tuple(models))
        return argv + (self.full_args if full else self.quick_args)


# Run first and again last (FLOOR_RUNS), with the same settings.
FLOOR = Benchmark(
    'floor',
    'bench_floor.py',
    _flag('--output'),
    _comma('--models'),
    quick_args=['--size', '2048', '--repeats', '5'],
    full_args=['--size', '4096', '--repeats', '10'],
    quick_models=MODELS,
)
BENCHMARKS = (
    FLOOR,
    Benchmark(
        'nets',
        'bench_nets.py',
        _flag('--output'),
        _comma('--models'),
        quick_args=['--repeats', '3'],
    ),
    Benchmark(
        'opencv',
        'bench_opencv.py',
        _flag('--output'),
        lambda models: ['--nets', ','.join(OPENCV_NETS[m] for m in models)],
        quick_args=[],
        full_args=['--repeats_scale', '3'],
    ),
    Benchmark(
        'inference',
        'bench_inference.py',
        _flag('--output'),
        _comma('--models'),
        quick_args=[],
    ),
    Benchmark(
        'eval',
        'bench_eval.py',
        _flag('--output'),
        _comma('--models'),
        # 300 images (the VOC-sized test split of the main job): with 64, start-up and warm-up
        # weigh on the evaluation's images/s, not on the forward rate it is compared with.
        quick_args=['--num_images', '300'],
        quick_models=('ssd_300_mobilenet',),
    ),
    Benchmark(
        'train',
        'bench_train.py',
        _flag('--output'),
        _comma('--models'),
        quick_args=['--steps', '3', '--input_batches', '4'],
    ),
    Benchmark(
        'preprocessing',
        'bench_preprocessing.py',
        lambda p: ['--output_dir', os.path.dirname(p)],
        lambda models: ['--models'] + [m for m in models if m != 'ssd_512_vgg'],
        quick_args=['--num_images', '256', '--warmup', '32', '--num_source_images', '16'],
        output_name='bench_preprocessing.json',
    ),
    Benchmark(
        'data',
        'bench_data.py',
        _flag('--output_json'),
        None,
        quick_args=['--num_images', '120', '--repeats', '2'],
    ),
    Benchmark(
        'caffe',
        'bench_caffe.py',
        _flag('--output_json'),
        None,
        quick_args=['--repeats', '2'],
    ),
    # The matmul rate swings up to 2x with the other jobs' load: measured again at the end,
    # the faster of the two is the floor.
    dataclasses.replace(FLOOR, name='floor_end'),
)
FLOOR_RUNS = ('floor', 'floor_end')


def run_benchmark(bench, work_dir, full, models, timeout, log):
    """Runs one benchmark; never raises for the script's failure.

    Returns:
      dict: name, command (shell-quoted), status ('ok', 'failed (exit N)', 'timed out after
      N s', 'no JSON written'), seconds, load_average_at_start (1 min), result (the script's
      JSON or None), markdown (its tables: the .md it wrote beside the JSON, else the tables
      it printed, else one made from its JSON rows), and output_tail (the last lines of its
      output when it did not succeed, else None).
    """
    out_dir = os.path.join(work_dir, bench.name)
    os.makedirs(out_dir, exist_ok=True)
    output_json = os.path.join(out_dir, bench.output_name or bench.name + '.json')
    argv = bench.command(output_json, full, models)
    # The temp folder's name would only be noise in the report.
    display = ' '.join(shlex.quote(a) for a in [os.path.relpath(argv[1], ROOT)] + argv[2:]).replace(
        work_dir, '$TMP'
    )
    log('[%s] python %s' % (bench.name, display))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    load = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            argv,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
        output, status = (
            proc.stdout,
            'ok' if proc.returncode == 0 else ('failed (exit %d)' % proc.returncode),
        )
    except subprocess.TimeoutExpired as e:
        output = (
            e.output.decode(errors='replace') if isinstance(e.output, bytes) else (e.output or '')
        )
        status = 'timed out after %d s' % timeout
    seconds = time.perf_counter() - start
    result = None
    if status == 'ok':
        try:
            with open(output_json, encoding='utf-8') as f:
                result = json.load(f)
        except (OSError, ValueError) as e:
            status = 'no JSON written (%s)' % e
    md_path = os.path.splitext(output_json)[0] + '.md'
    if status == 'ok' and os.path.exists(md_path):
        with open(md_path, encoding='utf-8') as f:
            markdown = f.read()
    else:
        markdown = printed_tables(output) or (json_table(result) if result else '')
    log('[%s] %s in %.0f s' % (bench.name, status, seconds))
    return {
        'name': bench.name,
        'command': 'python ' + display,
        'status': status,
        'seconds': round(seconds, 1),
        'load_average_at_start': load,
        'result': result,
        'markdown': markdown.strip(),
        'output_tail': None if status == 'ok' else output.strip().splitlines()[-15:],
    }


def printed_tables(output):
    """The markdown tables (runs of lines starting with '|') in a script's output."""
    blocks, current = [], []
    for line in output.splitlines() + ['']:
        if line.startswith('|'):
            current.append(line)
        elif current:
            blocks.append('\n'.join(current))
            current = []
    return '\n\n'.join(blocks)


def json_table(result):
    """A markdown table of the first list of row dicts in a benchmark's JSON ('' if none)."""
    rows = next(
        (
            v
            for v in result.values()
            if isinstance(v, list) and v and all(isinstance(r, dict) for r in v)
        ),
        None,
    )
    if not rows:
        return ''
    keys = list(dict.fromkeys(k for r in rows for k in r))

    def cell(v):
        return '%.3g' % v if isinstance(v, float) else str(v)

    lines = ['| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    lines += ['| ' + ' | '.join(cell(r.get(k, '')) for k in keys) + ' |' for r in rows]
    return '\n'.join(lines)


def forward_measurements(results):
    """Forward-pass times (net only, fp32) from the nets, opencv and eval benchmarks.

    Returns:
      list of (model, source, batch, ms per image).
    """
    out = []
    nets = results.get('nets')
    for r in (nets or {}).get('results', []):
        out.append((r['model'], 'bench_nets (TF, variables)', 1, r['latency_ms_b1']))
        out.append((r['model'], 'bench_nets (TF, variables)', 8, r['ms_per_image_b8']))
    for r in (results.get('opencv') or {}).get('rows', []):
        out.append((r['model'], 'bench_opencv %s' % r['framework'], r['batch'], r['ms_per_image']))
    for r in (results.get('eval') or {}).get('results', []):
        if r.get('source', 'checkpoint') == 'checkpoint':
            out.append(
                (r['model'], 'bench_eval forward', r['batch_size'], 1e3 / r['forward_images_per_s'])
            )
    for r in (results.get('inference') or {}).get('rows', []):
        # End to end: preprocessing and NMS included (the floor counts the convolutions only).
        ran = f' (ran {r["ran"]})' if r.get('ran', r['dtype']) != r['dtype'] else ''
        source = f'bench_inference {r["format"]} {r["dtype"]}{ran}, end to end'
        out.append((r['model'], source, 1, r['latency_ms']))
        out.append((r['model'], source, 8, r['batch8_ms_per_image']))
    return out


def best_floor(results):
    """The floor run (of FLOOR_RUNS) with the highest fp32 matmul rate, or None."""
    runs = [results[n] for n in FLOOR_RUNS if results.get(n)]
    return max(runs, key=lambda r: r['fp32_gflops_best'], default=None)


def floor_ratios(results):
    """Rows (model, source, batch, ms/img, floor ms/img, ratio) for the measured forwards."""
    floors = {r['model']: r['floor_ms_fp32'] for r in (best_floor(results) or {}).get('rows', [])}
    return [
        (model, source, batch, ms, floors[model], ms / floors[model])
        for model, source, batch, ms in forward_measurements(results)
        if model in floors
    ]


def mixed_precision_target(results):
    """Markdown lines of the mixed-precision training target: mixed / fp32 images/s per net and
    batch of bench_train, judged where it applies (a GPU, or a CPU with bf16 matrix units per
    bench_floor's CPU flags), else reported beside this CPU's bf16/fp32 matmul ratio, the
    ceiling of any bf16 speed-up here."""
    train = results.get('train') or {}
    rows = [
        r
        for r in train.get('results', [])
        if r.get('fp32_images_per_s') and r.get('mixed_images_per_s')
    ]
    if not rows:
        return ['- Mixed precision training vs fp32: not measured.']
    floor = best_floor(results) or {}
    flags = floor.get('bf16_cpu_flags') or []
    applies = train.get('gpu') or cpu_features.has_amx(set(flags))
    speedups = [
        '%s batch %d %.2fx (%.2f vs %.2f img/s)'
        % (
            r['model'],
            r['batch_size'],
            r['mixed_images_per_s'] / r['fp32_images_per_s'],
            r['mixed_images_per_s'],
            r['fp32_images_per_s'],
        )
        for r in rows
    ]
    if applies:
        return [
            '- Mixed precision (%s) training, %s: %s.'
            % (
                train.get('mixed_precision'),
                speedup,
                'met'
                if r['mixed_images_per_s'] >= MIXED_TARGET * r['fp32_images_per_s']
                else 'NOT met (target %.1fx)' % MIXED_TARGET,
            )
            for r, speedup in zip(rows, speedups)
        ]
    ceiling = ''
    if floor.get('bf16_gflops'):
        ceiling = '; bf16/fp32 matmul rate here %.2fx, the ceiling of any bf16 speed-up' % (
            floor['bf16_gflops'] / floor['fp32_gflops']['tensorflow']
        )
    return [
        '- Mixed precision training >= %.1fx fp32 applies where the CPU has bf16 matrix units '
        '(%s): this CPU has %s, so the target does not apply here. Measured: %s%s.'
        % (
            MIXED_TARGET,
            cpu_features.AMX_BF16_FLAG,
            ', '.join(flags) + ' only' if flags else 'no bf16 instructions',
            '; '.join(speedups),
            ceiling,
        )
    ]


def targets(results, ratios):
    """The speed targets of issue #9 as markdown lines (what was measured, met or not)."""
    lines = []
    opencv = {
        (r['model'], r['framework'], r['batch']): r['ms_per_image']
        for r in (results.get('opencv') or {}).get('rows', [])
    }
    cv = opencv.get(('ssd_300_mobilenet', 'opencv', 1))
    if cv is None:
        lines.append('- MobileNet-SSD300 batch-1 latency vs OpenCV DNN: not measured.')
    else:
        for framework in ('tf_checkpoint', 'tf_frozen'):
            ours = opencv.get(('ssd_300_mobilenet', framework, 1))
            lines.append(
                '- MobileNet-SSD300 batch-1 latency, ours (%s) %.1f ms vs OpenCV DNN '
                '%.1f ms: %s (%.2fx OpenCV\'s time).'
                % (framework, ours, cv, 'met' if ours <= cv else 'NOT met', ours / cv)
            )
    # Forward passes only (bench_inference's end-to-end rows are in the floor table).
    vgg8 = [
        r
        for r in ratios
        if r[0] == 'ssd_300_vgg'
        and r[2] == 8
        and 'opencv opencv' not in r[1]
        and 'end to end' not in r[1]
    ]
    if not vgg8:
        lines.append(
            '- VGG SSD300 batch-8 fp32 throughput vs %.1fx the compute floor: not '
            'measured.' % FLOOR_TARGET
        )
    for model, source, _, ms, floor_ms, ratio in vgg8:
        lines.append(
            '- VGG SSD300 batch-8 fp32, %s: %.1f ms/img (%.2f img/s) vs %.1fx floor = '
            '%.1f ms/img: %s (%.2fx the floor).'
            % (
                source,
                ms,
                1e3 / ms,
                FLOOR_TARGET,
                FLOOR_TARGET * floor_ms,
                'met' if ratio <= FLOOR_TARGET else 'NOT met',
                ratio,
            )
        )
    return lines + mixed_precision_target(results) + openvino_targets(results)


def openvino_targets(results):
    """Markdown lines of issue #17's targets: OpenVINO vs the TF frozen graph (batch-1 latency,
    same run), bf16 on AMX, evaluation vs forward throughput."""
    inference = results.get('inference') or {}
    rows = {(r['model'], r['format'], r['dtype']): r for r in inference.get('rows', [])}
    units = (inference.get('cpu_matrix_units') or {}).get('summary', 'unknown')
    lines = []
    for model, target in OPENVINO_FP32_TARGETS.items():
        ov = rows.get((model, 'openvino', 'fp32'))
        frozen = rows.get((model, 'frozen_graph', 'float32'))
        if not ov or not frozen:
            lines.append(f'- {model} batch-1 OpenVINO fp32 vs the TF frozen graph: not measured.')
            continue
        ratio = ov['latency_vs_frozen_fp32']
        verdict = 'met' if ratio <= target else 'NOT met'
        ops = ov.get('op_ms_batch1')
        split = ''
        if ops and 'floor_ms_fp32' in ov and ops['convolutions'] + ops['other'] > 0:
            # The counters' own cost lengthens every node (a busy machine measured 48.8 ms of
            # convolutions in a 25.6 ms call): their share, applied to the timed latency.
            share = ops['convolutions'] / (ops['convolutions'] + ops['other'])
            conv_ms = share * ov['latency_ms']
            split = (
                f' OpenVINO\'s convolutions are {share:.0%} of its time by its performance '
                f'counters, about {conv_ms:.1f} ms ({conv_ms / frozen["latency_ms"]:.2f}x the '
                f'frozen graph\'s latency); the fp32 compute floor is {ov["floor_ms_fp32"]:.1f} '
                f'ms ({ov["floor_ms_fp32"] / frozen["latency_ms"]:.2f}x).'
            )
        lines.append(
            f'- {model} batch-1 latency, OpenVINO fp32 {ov["latency_ms"]:.1f} ms vs TF '
            f'frozen graph {frozen["latency_ms"]:.1f} ms (medians; timed round by round, the '
            f'median of the rounds\' ratios): {ratio:.2f}x, {verdict} (target <= {target:.1f}x).'
            f'{split}'
        )
    bf16 = rows.get(('ssd_300_mobilenet', 'openvino', 'bf16'))
    fp32 = rows.get(('ssd_300_mobilenet', 'openvino', 'fp32'))
    if bf16 is None or fp32 is None:
        lines.append('- MobileNet-SSD300 batch-1 OpenVINO bf16: not measured.')
    elif bf16.get('ran') != 'bf16' or not units.startswith('AMX'):
        lines.append(
            f'- MobileNet-SSD300 batch-1 OpenVINO bf16 <= {OPENVINO_BF16_AMX_MS} ms '
            f'applies on an AMX CPU; this CPU: {units}; OpenVINO ran {bf16.get("ran")}: '
            f'{bf16["latency_ms"]:.1f} ms ({bf16["latency_vs_openvino_fp32"]:.2f}x its fp32, the '
            f'median of the rounds\' ratios).'
        )
    else:
        verdict = 'met' if bf16['latency_ms'] <= OPENVINO_BF16_AMX_MS else 'NOT met'
        lines.append(
            f'- MobileNet-SSD300 batch-1 OpenVINO bf16 on AMX: {bf16["latency_ms"]:.1f} '
            f'ms (median; fastest round {bf16["latency_fastest_ms"]:.1f} ms), {verdict} '
            f'(target <= {OPENVINO_BF16_AMX_MS} ms).'
        )
    evaluations = (results.get('eval') or {}).get('results', [])
    if not evaluations:
        lines.append(
            f'- Evaluation >= {EVAL_FORWARD_TARGET:.2f}x forward throughput: not measured.'
        )
    for r in evaluations:
        ratio = r['evaluation_images_per_s'] / r['forward_images_per_s']
        verdict = 'met' if ratio >= EVAL_FORWARD_TARGET else 'NOT met'
        lines.append(
            f'- Evaluation of {r["model"]} ({r.get("source", "checkpoint")}, batch '
            f'{r["batch_size"]}): {r["evaluation_images_per_s"]:.1f} img/s vs forward '
            f'{r["forward_images_per_s"]:.1f} img/s = {ratio:.2f}x ({100 * (1 - ratio):.0f} '
            f'% outside the forward pass), {verdict} (target >= {EVAL_FORWARD_TARGET:.2f}x).'
        )
    return lines


def machine_info():
    """CPU model, core counts, load, library versions and the git commit."""
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            cpu = next(
                (line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), cpu
            )
    except OSError:
        pass
    # Package metadata, not imports: importing TensorFlow here would only slow the runner.
    versions = {}
    for module, package in (
        ('tensorflow', 'tensorflow'),
        ('cv2', 'opencv-python-headless'),
        ('numpy', 'numpy'),
        ('openvino', 'openvino'),
    ):
        try:
            versions[module] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[module] = None
    try:
        commit = subprocess.run(
            ['git', 'rev-parse', '--short', 'HEAD'],
            cwd=ROOT,
            text=True,
            capture_output=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        'cpu_model': cpu,
        'matrix_units': cpu_features.matrix_units(),
        'cpus': os.cpu_count(),
        'cpus_usable': len(os.sched_getaffinity(0)),
        'load_average_at_start': [round(x, 2) for x in os.getloadavg()],
        'python': platform.python_version(),
        'versions': versions,
        'git_commit': commit,
        'platform': platform.platform(),
    }


def _floor_section(report):
    """The markdown lines comparing the forward passes with the compute floor."""
    heading = ['', '## Forward passes vs the compute floor', '']
    if report['floor_gflops'] is None:  # --only without floor: it said "rate, None"
        return heading + ['Not measured: bench_floor did not run (`--only` without `floor`).']
    lines = heading + [
        'Floor: 2·MACs / the best measured fp32 matmul rate, %s (bench_floor, the faster '
        'of its runs at the start and the end: %s); ratio = measured / floor (below 1: '
        'the convolutions beat the measured matmul rate). The floor and the forward '
        'passes ran at different times on a shared machine: see the load column above.'
        % (report['floor_gflops'], report['floor_runs_gflops']),
        '',
        '| model | source | batch | ms/img | fp32 floor ms/img | ratio |',
        '|---|---|---|---|---|---|',
    ]
    for model, source, batch, ms, floor_ms, ratio in report['floor_ratios']:
        lines.append(
            '| %s | %s | %d | %.1f | %.1f | %.2f |' % (model, source, batch, ms, floor_ms, ratio)
        )
    return lines


def markdown_report(report):
    m = report['machine']
    v = m['versions']
    lines = [
        REPORT_TITLE,
        '',
        '- date: %s' % report['date'],
        '- machine: %s, %d cores (%d usable), load average at start %s'
        % (
            m['cpu_model'],
            m['cpus'],
            m['cpus_usable'],
            ' / '.join('%.2f' % x for x in m['load_average_at_start']),
        ),
        '- TensorFlow %s, OpenCV %s, numpy %s, OpenVINO %s, Python %s; commit %s'
        % (v['tensorflow'], v['cv2'], v['numpy'], v.get('openvino'), m['python'], m['git_commit']),
        f'- CPU matrix units: {m.get("matrix_units")}',
        '- command: `%s` (%s settings), %.0f s in all'
        % (report['command'], 'full' if report['full'] else 'short', report['total_seconds']),
        '',
        'The machine is shared: compare numbers within one run. Medians after warm-up; see '
        'each script\'s docstring for what is timed.',
        '',
        '| benchmark | status | seconds | load at start | command |',
        '|---|---|---|---|---|',
    ]
    for b in report['benchmarks']:
        lines.append(
            '| %s | %s | %.0f | %.2f | `%s` |'
            % (b['name'], b['status'], b['seconds'], b['load_average_at_start'], b['command'])
        )
    lines += ['', '## Speed targets', ''] + report['targets']
    lines += _floor_section(report)
    for b in report['benchmarks']:
        lines += ['', '## %s' % b['name'], '', '`%s`: %s' % (b['command'], b['status']), '']
        if b['markdown']:
            # The scripts' own headings go below this section's.
            lines += [
                '##' + line if line.startswith('#') else line for line in b['markdown'].splitlines()
            ]
        if b['output_tail']:
            lines += ['```'] + b['output_tail'] + ['```']
    return '\n'.join(lines) + '\n'


REPORT_TITLE = '# Benchmark results'


def foreign_report_files(output_dir):
    """The names of `all.json` and `README.md` in `output_dir` that are not a report of this
    script (a README.md not starting with its title, an all.json without its keys): run_all
    would replace them (`--output_dir .` is the project's own README)."""
    foreign = []
    readme, data = (os.path.join(output_dir, n) for n in ('README.md', 'all.json'))
    if os.path.lexists(readme):
        try:
            ours = safe_io.read_bytes(readme, 1 << 20, 'README.md').startswith(
                REPORT_TITLE.encode() + b'\n'
            )
        except OSError:
            ours = False
        if not ours:
            foreign.append('README.md')
    if os.path.lexists(data):
        try:
            report = safe_io.read_json(data, 'all.json', 64 << 20)
            ours = isinstance(report, dict) and {'benchmarks', 'machine'} <= set(report)
        except (OSError, ValueError):
            ours = False
        if not ours:
            foreign.append('all.json')
    return foreign


def run_all(benchmarks, output_dir, full=False, models=None, timeout=900, command='', log=print):
    """Runs `benchmarks`, writes `all.json` and `README.md` to `output_dir`; returns the report."""
    start = time.perf_counter()
    machine = machine_info()
    with tempfile.TemporaryDirectory() as work_dir:
        runs = [run_benchmark(b, work_dir, full, models, timeout, log) for b in benchmarks]
    results = {r['name']: r['result'] for r in runs}
    ratios = floor_ratios(results)
    best = best_floor(results)
    report = {
        'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC'),
        'command': command,
        'full': full,
        'machine': machine,
        'total_seconds': round(time.perf_counter() - start, 1),
        'benchmarks': runs,
        'floor_ratios': ratios,
        'targets': targets(results, ratios),
        'floor_gflops': '%.1f GFLOP/s' % best['fp32_gflops_best'] if best else None,
        'floor_runs_gflops': ', '.join(
            '%s %.1f GFLOP/s' % (n, results[n]['fp32_gflops_best'])
            for n in FLOOR_RUNS
            if results.get(n)
        ),
    }
    os.makedirs(output_dir, exist_ok=True)
    atomic_io.write_json_atomic(os.path.join(output_dir, 'all.json'), report)
    atomic_io.write_text_atomic(os.path.join(output_dir, 'README.md'), markdown_report(report))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--full', action='store_true', help='the scripts\' longer settings and all nets'
    )
    parser.add_argument(
        '--only',
        default=None,
        help='comma-separated benchmarks: ' + ','.join(b.name for b in BENCHMARKS),
    )
    parser.add_argument(
        '--models',
        default=None,
        help='comma-separated nets for every benchmark that takes nets '
        '(default: per benchmark, all with --full)',
    )
    parser.add_argument('--output_dir', default=os.path.join(HERE, 'results'))
    parser.add_argument(
        '--timeout',
        type=int,
        default=None,
        help='seconds per benchmark (default 600, 3600 with --full)',
    )
    args = parser.parse_args(argv)
    names = {b.name: b for b in BENCHMARKS}
    chosen = args.only.split(',') if args.only else list(names)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(
            'unknown benchmark(s) %s in --only; choose from %s' % (unknown, ','.join(names))
        )
    foreign = foreign_report_files(args.output_dir)
    if foreign:
        parser.error(
            '--output_dir %s holds %s that this script did not write and would replace; choose '
            'another folder' % (args.output_dir, ' and '.join(foreign))
        )
    models = tuple(args.models.split(',')) if args.models else None
    bad = [m for m in models or () if m not in MODELS]
    if bad:
        parser.error('unknown --models %s; choose from %s' % (bad, ','.join(MODELS)))
    command = ' '.join(
        ['python', 'benchmarks/run_all.py']
        + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
    )
    report = run_all(
        [names[n] for n in chosen],
        args.output_dir,
        args.full,
        models,
        args.timeout or (3600 if args.full else 600),
        command,
    )
    failed = [b['name'] for b in report['benchmarks'] if b['status'] != 'ok']
    print(
        'wrote %s and %s%s'
        % (
            os.path.join(args.output_dir, 'all.json'),
            os.path.join(args.output_dir, 'README.md'),
            '; not ok: ' + ', '.join(failed) if failed else '',
        )
    )


if __name__ == '__main__':
    main()
