"""The main job on the built-in synthetic dataset (no download): `bash scripts/demo.sh`.

generate the dataset -> convert it to TFRecords -> train ssd_300_mobilenet -> evaluate (VOC07 and
VOC12 mAP, per-class table) -> export (frozen graph + float TFLite) -> detect on a few test images
(annotated PNGs) -> a training-curve PNG and a summary of where everything is. Every stage runs
the project's own script as a user would.

Re-runs: each stage records its settings in <work_dir>/stages.json. A stage is reused only when
its settings and its input are those of the earlier run (the log says "reusing"); otherwise it is
redone, with what depends on it, and the log says why (e.g. "depth_multiplier 0.25 -> 0.5"). An
interrupted training resumes from its last checkpoint. --fresh deletes <work_dir> first, but only
a folder the demo made (it holds the marker file .ssd_demo_work_dir); the demo never writes into
a folder holding anything else.

  python run_demo.py                                  # the full job, about 7 minutes on 2 cores
  python run_demo.py --num_images 24 --steps 4 --batch_size 2 --work_dir /tmp/tiny   # a check

The net is ssd_300_mobilenet at depth multiplier 0.5: a quarter of the multiply-adds of the full
width, so that training fits in minutes on a 2-core CPU; the shapes are easy enough for it.
"""

import argparse
import glob
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from datasets import folders
from tf_extended import atomic_io
from tf_extended import cpu_features
from tf_extended import signals

ROOT = os.path.dirname(os.path.abspath(__file__))
MODEL = 'ssd_300_mobilenet'
MARKER = '.ssd_demo_work_dir'
RECORDS = 'stages.json'
CURVE = 'training_curve.png'
# name: (number, folder in work_dir, the stage whose output it reads)
STAGES = {
    'dataset': (1, 'synthetic', None),
    'tfrecords': (2, 'tfrecords', 'dataset'),
    'train': (3, 'train', 'tfrecords'),
    'evaluate': (4, 'eval', 'train'),
    'export': (5, 'export', 'train'),
    'detect': (6, 'detections', 'export'),
}
# absl-formatted log lines: level, date, time, thread, file:line] message.
ABSL_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] (.*)$')
# TensorFlow start-up and session chatter that says nothing about the job.
NOISE = re.compile(
    r'^(WARNING: All log messages|INFO:tensorflow:|WARNING:tensorflow:|To enable the '
    r'following instructions|.*(UserWarning|warnings\.warn)|Instructions for updating:|'
    r'This API was designed for TensorFlow v1|\s*$)'
)
# Errors that are not: the CUDA probes on every machine without a GPU, and grappler's note that a
# frozen graph has no variable initialisers.
HARMLESS_ERRORS = (
    'cuda_platform.cc',
    'cuda_executor.cc',
    'cuda_diagnostics.cc',
    'grappler_item_builder.cc',
)
QUIET_SOURCES = (
    'port.cc',
    'cudart_stub.cc',
    'cpu_feature_guard.cc',
    'mlir_graph_optimization_pass.cc',
    'basic_session_run_hooks.py',
    'saver.py',
    'monitored_session.py',
    'session_manager.py',
    'builder_impl.py',
    'tf_tfl_flatbuffer_helpers.cc',
    'flatbuffer_export.cc',
    'device_compiler.h',
    'functional_saver.py',
    'fingerprinting_utils.py',
    'signature_serialization.py',
    'writer.cc',
    'loader.cc',
    'reader.cc',
    'asm_compiler.cc',
    'lite.py',
    'convert.py',
    'graph_util_impl.py',
    'deprecation.py',
)
# The trainer's step line (training/hooks.py): the curve's points.
STEP_LINE = re.compile(r'^step (\d+)/\d+ .*?: loss over \d+ steps? total=([-\d.e+]+|nan|inf) ')


class DemoError(Exception):
    """The demo cannot go on; the message says why (one line)."""


def log(message):
    print(f'[demo {time.strftime("%H:%M:%S")}] {message}', flush=True)


def shown(line):
    """The part of a script's output line worth showing, or None."""
    match = ABSL_LINE.match(line)
    if match:
        level, source, message = match.groups()
        if source in HARMLESS_ERRORS or (source in QUIET_SOURCES and level in 'IW'):
            return None
        return message
    return None if NOISE.match(line) else line


def run(args, on_line=None, env=None):
    """Runs a project script in environment `env` (None: this process's), showing its progress
    without TensorFlow's chatter (`on_line` gets each shown line); fails loudly with the full
    output when the script fails. On Ctrl-C (which the script receives too) waits for the script
    to stop and re-raises, showing nothing more; on SIGTERM, which a signal to the demo alone
    does not pass on, sends it to the script first (which ends as it ends on Ctrl-C)."""
    process, everything = None, []
    try:
        # A SIGTERM while the script starts is held until `process` is there to be passed it.
        with signals.held((signal.SIGTERM,)):
            process = subprocess.Popen(
                [sys.executable] + args,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                bufsize=1,
            )
        for raw in process.stdout:
            for line in raw.rstrip('\n').split('\r'):
                everything.append(line)
                text = shown(line)
                if text is not None:
                    print('    ' + text, flush=True)
                    if on_line:
                        on_line(text)
    except KeyboardInterrupt:
        if process is None:
            raise
        if signals.stop_signal() == signal.SIGTERM:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        raise
    if process.wait() != 0:
        sys.stderr.write('\n'.join(everything[-60:]) + '\n')
        raise DemoError(f'{args[0]} failed (exit {process.returncode}); its output is above.')


def latest_step(train_dir):
    steps = [
        int(m.group(1))
        for path in glob.glob(os.path.join(train_dir, 'model.ckpt-*.index'))
        for m in [re.search(r'-(\d+)\.index$', path)]
        if m
    ]
    return max(steps, default=None)


def points_up_to(points, step):
    """The recorded `[step, loss]` points that a training resumed after checkpoint `step` (0: from
    the start) will not log again: those up to `step`, one per step (the last recorded: a record
    of an older demo may repeat steps), by step; what is not such a point is dropped."""
    kept = {}
    for point in points if isinstance(points, list) else []:
        if isinstance(point, list) and len(point) == 2 and type(point[0]) is int:
            if point[0] <= step:
                kept[point[0]] = point[1]
    return [[s, loss] for s, loss in sorted(kept.items())]


# ---------------------------------------------------------------------------------------------
# The work folder and the stage records.


def unused_name(path):
    """`path`, or `path-2`, `path-3`, ... the first that does not exist."""
    candidate, number = path, 1
    while os.path.lexists(candidate):
        number += 1
        candidate = f'{path}-{number}'
    return candidate


def prepare_work_dir(work_dir, fresh):
    """Makes `work_dir` the demo's: creates it with the marker, or checks the marker is there.
    An existing folder without the marker is taken only when it is empty: folders named as the
    demo's stages (train, eval, export, ...) may be a user's own, which a redone stage deletes.
    --fresh deletes only a marked folder.

    Raises:
      DemoError: the folder is not the demo's (nothing is written or deleted then).
    """
    marker = os.path.join(work_dir, MARKER)
    if os.path.exists(work_dir) and not os.path.isdir(work_dir):
        raise DemoError(f'--work_dir {work_dir} is a file, not a folder.')
    # A regular file, not through a link: a planted link to any file would hand over the folder.
    marked = os.path.isfile(marker) and not os.path.islink(marker)
    if os.path.isdir(work_dir) and not marked:
        if os.listdir(work_dir):
            listed = folders.entries(work_dir, 5)
            raise DemoError(
                f'--work_dir {work_dir} exists and was not made by the demo (no {MARKER} in it; '
                f'it holds {listed}); refusing to {"delete" if fresh else "write into"} it. '
                f'Choose a new --work_dir, or delete this folder yourself if an older demo, '
                f'which made no marker, made it.'
            )
    if fresh and marked:
        log(f'fresh: removing {work_dir} (the demo made it: {MARKER})')
        shutil.rmtree(work_dir)
    os.makedirs(work_dir, exist_ok=True)
    if not os.path.isfile(marker):
        atomic_io.write_text_atomic(
            marker,
            'This folder was made by run_demo.py; run_demo.py '
            '--fresh may delete it with everything in it.\n',
        )
    atomic_io.remove_orphans(work_dir)


def resolve_precision(precision, flags=None):
    """(fp32 or bf16, why) of --precision; `flags`: the CPU's (default: this machine's).

    auto picks bf16 where the CPU has bf16 instructions (AMX tiles or AVX-512 BF16 dot
    products) and fp32 elsewhere, where bf16 is emulated and far slower. Measured on a 2-core
    AMD EPYC with AVX-512 BF16 (README): the whole job in 6:36 against 8:57 in fp32 (training
    74.6 against 53.6 images/s), VOC07 mAP 0.868 against 0.862; AMX multiplies bf16 4-10x
    faster still."""
    if precision != 'auto':
        return precision, 'as asked'
    units = cpu_features.matrix_units(flags)
    if cpu_features.has_bf16(flags):
        return 'bf16', f'auto: this CPU has {units}'
    return 'fp32', f'auto: this CPU has no bf16 instructions ({units}); bf16 would be emulated'


# The CPU flags on which TensorFlow turns its oneDNN kernels on by itself (its port.cc).
ONEDNN_DEFAULT_FLAGS = (
    'avx512_vnni',
    'avx512_bf16',
    'avx_vnni',
    'amx_tile',
    'amx_int8',
    'amx_bf16',
)


def stage_environment(precision, environ=None, flags=None):
    """(the stages' environment, a line saying what it does about oneDNN): a copy of `environ`
    (default: this process's) with TF_ENABLE_ONEDNN_OPTS=1 for fp32 unless the user set it;
    `flags`: the CPU's (default: this machine's), which the line's reason depends on.

    TF enables its oneDNN kernels by itself only on CPUs with AVX-512 VNNI/BF16 or AMX (there
    this changes nothing). On AVX2-only CPUs it runs its Eigen kernels, which trained the main
    job's net about 3x slower (measured on a 2-core AMD EPYC: 3.9 against 11.2 images/s). Not
    for bf16, which such CPUs emulate, nor for every script and test: oneDNN pays a set-up cost
    per new shape that small runs do not win back (the test suite ran slower with it)."""
    env = dict(os.environ if environ is None else environ)
    if 'TF_ENABLE_ONEDNN_OPTS' in env:
        return env, f'TF_ENABLE_ONEDNN_OPTS={env["TF_ENABLE_ONEDNN_OPTS"]} (as set)'
    if precision != 'fp32':
        return env, "oneDNN: TensorFlow's own choice for this CPU"
    env['TF_ENABLE_ONEDNN_OPTS'] = '1'
    flags = cpu_features.cpu_flags() if flags is None else flags
    if set(ONEDNN_DEFAULT_FLAGS) & flags:
        return env, "oneDNN kernels on (TensorFlow's default on this CPU)"
    return env, (
        'oneDNN kernels on (TensorFlow leaves them off on CPUs without VNNI or bf16 '
        'units; fp32 training runs about 3x faster with them there)'
    )


def settings_of(args):
    """What each stage's output depends on, besides its input stage's output."""
    return {
        'dataset': {'num_images': args.num_images, 'seed': args.seed},
        'tfrecords': {'splits': 'train,test'},
        'train': {
            'model': MODEL,
            'precision': args.precision,
            'depth_multiplier': args.depth_multiplier,
            'batch_size': args.batch_size,
            'steps': args.steps,
            'learning_rate': args.learning_rate,
            'seed': args.seed,
        },
        'evaluate': {'metrics': 'voc07,voc12', 'precision': args.precision},
        'export': {'formats': 'frozen_graph,tflite_float'},
        'detect': {'num_detect_images': args.num_detect_images, 'select_threshold': 0.5},
    }


def _changes(old, new):
    keys = sorted(set(old) | set(new))
    return ', '.join(
        f'{k} {old.get(k, "unset")} -> {new.get(k, "unset")}'
        for k in keys
        if old.get(k) != new.get(k)
    )


class StageRecords:
    """<work_dir>/stages.json: per stage, the settings it ran with and whether it finished."""

    def __init__(self, work_dir):
        self.path = os.path.join(work_dir, RECORDS)
        self.records = {}
        if os.path.isfile(self.path):
            try:
                with open(self.path, encoding='utf-8') as f:
                    records = json.load(f)
            except (OSError, ValueError, RecursionError):
                records = None
            # Unreadable, or not a record per stage: every stage is redone, which is safe.
            if isinstance(records, dict) and all(isinstance(r, dict) for r in records.values()):
                self.records = records

    def save(self):
        atomic_io.write_json_atomic(self.path, self.records)

    def why_redo(self, name, settings, redone, output_complete):
        """None when the stage's earlier output can be reused, else the reason to redo it."""
        record = self.records.get(name)
        if record is None:
            return (
                'first run'
                if not output_complete
                else 'no record of its settings (an older demo\'s output)'
            )
        if record.get('settings') != settings:
            return f'settings changed: {_changes(record.get("settings") or {}, settings)}'
        source = STAGES[name][2]
        if source in redone:
            return f'its input ({STAGES[source][0]}/6 {source}) was redone'
        if record.get('status') != 'done':
            return 'the earlier run of this stage did not finish'
        if not output_complete:
            return 'its output is missing or incomplete'
        return None

    def start(self, name, settings, **extra):
        self.records[name] = dict(
            settings=settings, status='started', started=time.strftime('%Y-%m-%dT%H:%M:%S'), **extra
        )
        self.save()

    def finish(self, name, **extra):
        self.records[name].update(status='done', **extra)
        self.save()


class Demo:
    def __init__(self, args, env=None):
        self.args = args
        self.env = env  # the scripts' environment (None: this process's)
        self.work_dir = os.path.abspath(args.work_dir)
        self.paths = {
            name: os.path.join(self.work_dir, folder) for name, (_, folder, _) in STAGES.items()
        }
        self.settings = settings_of(args)
        self.records = StageRecords(self.work_dir)
        self.redone = set()
        self.current = None

    def run(self, args, on_line=None):
        run(args, on_line, env=self.env)

    def stage(self, name, output_complete, resumable=False, keep_earlier=False):
        """Decides and says whether stage `name` runs; clears its folder when it is redone (moves
        it aside with `keep_earlier`: a training is minutes of work). Returns the reason it runs
        (None: reused)."""
        number = STAGES[name][0]
        self.current = name
        why = self.records.why_redo(name, self.settings[name], self.redone, output_complete)
        if why is None:
            return None
        resume = (
            resumable
            and why == 'the earlier run of this stage did not finish'
            and os.path.isdir(self.paths[name])
        )
        if not resume and os.path.exists(self.paths[name]):
            if keep_earlier:
                aside = unused_name(f'{self.paths[name]}.earlier-{time.strftime("%Y%m%d-%H%M%S")}')
                os.rename(self.paths[name], aside)
                log(
                    f'{number}/6 {name}: the earlier output is kept in {aside} (delete it when done)'
                )
            else:
                log(f'{number}/6 {name}: removing the earlier output in {self.paths[name]}')
                shutil.rmtree(self.paths[name])  # inside the demo's own work_dir
        self.redone.add(name)
        if not resume:
            self.records.start(name, self.settings[name])
        return 'resuming: ' + why if resume else why

    def generate(self):
        path = self.paths['dataset']
        why = self.stage('dataset', os.path.isfile(os.path.join(path, 'labels.txt')))
        if why is None:
            log(f'1/6 dataset: reusing {path}')
            return
        log(f'1/6 dataset: generating {self.args.num_images} synthetic images in {path} ({why})')
        self.run(
            [
                '-m',
                'datasets.synthetic',
                '--output_dir',
                path,
                '--num_images',
                str(self.args.num_images),
                '--seed',
                str(self.args.seed),
            ]
        )
        self.records.finish('dataset')

    def convert(self):
        path = self.paths['tfrecords']
        complete = all(
            os.path.isfile(os.path.join(path, f'{s}_metadata.json')) for s in ('train', 'test')
        )
        why = self.stage('tfrecords', complete)
        if why is None:
            log(f'2/6 tfrecords: reusing {path}/{{train,test}}_*.tfrecord')
            return
        for split in ('train', 'test'):
            log(f'2/6 tfrecords: converting the {split} split ({why})')
            self.run(
                [
                    'tf_convert_data.py',
                    '--dataset_name=pascalvoc',
                    '--dataset_dir=' + self.paths['dataset'],
                    '--labels_file=' + os.path.join(self.paths['dataset'], 'labels.txt'),
                    '--split=' + split,
                    '--output_dir=' + path,
                    '--output_name=' + split,
                ]
            )
        self.records.finish('tfrecords')

    def dataset_flags(self, split):
        return [
            '--dataset_name=custom',
            '--dataset_split_name=' + split,
            '--dataset_dir=' + self.paths['tfrecords'],
            '--model_name=' + MODEL,
        ]

    def train(self):
        args, path = self.args, self.paths['train']
        why = self.stage(
            'train', latest_step(path) == args.steps, resumable=True, keep_earlier=True
        )
        if why is None:
            log(f'3/6 train: reusing the step-{args.steps} checkpoint in {path}')
            return
        step = latest_step(path)
        log(
            f'3/6 train: {MODEL} (depth {args.depth_multiplier:.2f}, {args.precision}), '
            f'{args.steps} steps of batch {args.batch_size}'
            + (f', resuming at step {step}' if step else '')
            + f' ({why})'
        )
        # A resumed training logs again the steps after its checkpoint's: the interrupted run's
        # points past it go, so the record keeps one point per step, in order.
        record = self.records.records['train']
        losses = record['loss'] = points_up_to(record.get('loss'), step or 0)

        def on_line(text):
            match = STEP_LINE.match(text)
            if match:
                losses.append([int(match.group(1)), float(match.group(2))])

        try:
            self.run(
                ['train_ssd_network.py', '--train_dir=' + path]
                + self.dataset_flags('train')
                + [
                    f'--depth_multiplier={args.depth_multiplier:g}',
                    f'--batch_size={args.batch_size}',
                    f'--max_number_of_steps={args.steps}',
                    '--optimizer=adam',
                    f'--learning_rate={args.learning_rate:g}',
                    '--learning_rate_decay_type=cosine',
                    f'--warmup_steps={min(100, args.steps // 10)}',
                    '--end_learning_rate=1e-5',
                    '--weight_decay=1e-4',
                    '--batch_norm_decay=0.99',
                    f'--seed={args.seed}',
                    f'--save_interval_steps={max(100, args.steps // 4)}',
                    f'--log_every_n_steps={max(1, args.steps // 20)}',
                ]
                + (['--mixed_precision'] if args.precision == 'bf16' else []),
                on_line,
            )
        finally:
            self.records.save()  # the curve's points so far, also when interrupted
        self.records.finish('train')

    def evaluate(self):
        path = self.paths['evaluate']
        results = os.path.join(path, 'results.json')
        complete = False
        if os.path.isfile(results):
            with open(results, encoding='utf-8') as f:
                complete = json.load(f).get('global_step') == self.args.steps
        why = self.stage('evaluate', complete)
        if why is None:
            log(f'4/6 evaluate: reusing {results}')
            with open(os.path.join(path, 'results.txt'), encoding='utf-8') as f:
                print(f.read(), flush=True)
        else:
            log(f'4/6 evaluate: the test split, VOC07 and VOC12 rules ({why})')
            self.run(
                [
                    'eval_ssd_network.py',
                    '--checkpoint_path=' + self.paths['train'],
                    '--eval_dir=' + path,
                    f'--depth_multiplier={self.args.depth_multiplier:g}',
                    '--metrics=voc07,voc12',
                ]
                + (['--compute_dtype=bfloat16'] if self.args.precision == 'bf16' else [])
                + self.dataset_flags('test')
            )
            self.records.finish('evaluate')
        with open(results, encoding='utf-8') as f:
            return json.load(f)

    def export(self):
        path = self.paths['export']
        why = self.stage('export', os.path.isfile(os.path.join(path, 'metadata.json')))
        if why is None:
            log(f'5/6 export: reusing {path}')
            return
        log(f'5/6 export: frozen graph and float TFLite ({why})')
        self.run(
            [
                'export_ssd_network.py',
                '--checkpoint_path=' + self.paths['train'],
                '--output_dir=' + path,
                f'--depth_multiplier={self.args.depth_multiplier:g}',
                '--formats=frozen_graph,tflite_float',
            ]
            + self.dataset_flags('test')
        )
        self.records.finish('export')

    def detect(self):
        """Detection with the exported frozen graph on the first test images, saved as PNG."""
        import cv2

        path, dataset_dir = self.paths['detect'], self.paths['dataset']
        why = self.stage('detect', os.path.isfile(os.path.join(path, 'detections.json')))
        if why is None:
            log(f'6/6 detect: reusing {path}')
            return
        with open(os.path.join(dataset_dir, 'ImageSets', 'Main', 'test.txt')) as f:
            ids = f.read().split()[: self.args.num_detect_images]
        inputs = os.path.join(path, 'inputs')
        os.makedirs(inputs, exist_ok=True)
        for image_id in ids:
            image = cv2.imread(os.path.join(dataset_dir, 'JPEGImages', image_id + '.jpg'))
            cv2.imwrite(os.path.join(inputs, image_id + '.png'), image)
        log(f'6/6 detect: {len(ids)} test images with the exported frozen graph ({why})')
        self.run(
            [
                'detect_ssd_network.py',
                '--frozen_graph=' + os.path.join(self.paths['export'], 'frozen_graph.pb'),
                '--input=' + inputs,
                '--output_dir=' + path,
                '--select_threshold=0.5',
            ]
        )
        self.records.finish('detect')

    def curve(self, results):
        """Writes the training curve (loss against step, mAP where evaluated); returns its path
        or None when there is nothing to draw."""
        points = sorted(
            {
                step: loss for step, loss in self.records.records.get('train', {}).get('loss', [])
            }.items()
        )
        if not points:
            return None
        import matplotlib

        matplotlib.use('Agg')
        import matplotlib.pyplot as plt

        figure, loss_axis = plt.subplots(figsize=(8, 4.5))
        loss_axis.plot(
            [p[0] for p in points],
            [p[1] for p in points],
            color='tab:blue',
            marker='.',
            label='training loss (total, mean over each log interval)',
        )
        loss_axis.set_xlabel('step')
        loss_axis.set_ylabel('loss', color='tab:blue')
        handles = loss_axis.get_legend_handles_labels()
        map_axis = loss_axis.twinx()
        for metric, color in (('voc07', 'tab:orange'), ('voc12', 'tab:green')):
            value = results.get('metrics', {}).get(metric)
            if value is not None:
                map_axis.plot(
                    [results['global_step']],
                    [value],
                    'o',
                    color=color,
                    label=f'{metric.upper()} mAP (test split)',
                )
        map_axis.set_ylim(0, 1)
        map_axis.set_ylabel('mAP')
        lines, labels = (a + b for a, b in zip(handles, map_axis.get_legend_handles_labels()))
        loss_axis.legend(lines, labels, loc='upper right', fontsize=8)
        loss_axis.set_title(
            f'{MODEL} (depth {self.args.depth_multiplier:g}) on the synthetic dataset'
        )
        figure.tight_layout()
        path = os.path.join(self.work_dir, CURVE)
        png = io.BytesIO()
        figure.savefig(png, format='png', dpi=100)
        plt.close(figure)
        atomic_io.write_bytes_atomic(path, png.getvalue())
        return path

    def kept(self):
        """What an interrupted run leaves for the next one, in words."""
        done = [
            f'{STAGES[n][0]}/6 {n}'
            for n in STAGES
            if self.records.records.get(n, {}).get('status') == 'done' and n != self.current
        ]
        parts = [', '.join(done)] if done else []
        step = latest_step(self.paths['train'])
        if self.current == 'train' and step:
            parts.append(f'training checkpoints up to step {step} of {self.args.steps}')
        return '; kept: ' + ', '.join(parts) if parts else '; nothing finished yet'


def main(argv=None):
    class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
        """The docstring as written, and each flag's default."""

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=Formatter)
    parser.add_argument(
        '--helpfull', action='help', help='The same as --help (as the other scripts).'
    )
    parser.add_argument(
        '--work_dir',
        default=os.path.join(ROOT, 'work_dir'),
        help='where every stage writes (a new folder, or one the demo made)',
    )
    parser.add_argument(
        '--num_images',
        type=int,
        default=1200,
        help='synthetic images: 60%% train (the training split), 15%% val '
        '(unused here), 25%% test (evaluation and detection)',
    )
    parser.add_argument('--steps', type=int, default=1600, help='training steps')
    parser.add_argument('--batch_size', type=int, default=16)
    parser.add_argument(
        '--learning_rate',
        type=float,
        default=0.004,
        help='Adam, cosine decay to 1e-5 after a warm-up',
    )
    parser.add_argument(
        '--depth_multiplier',
        type=float,
        default=0.5,
        help='width of ssd_300_mobilenet (1: the full net)',
    )
    parser.add_argument(
        '--num_detect_images', type=int, default=4, help='test images drawn with their detections'
    )
    parser.add_argument('--seed', type=int, default=0, help='of the dataset and the training')
    parser.add_argument(
        '--precision',
        choices=('auto', 'fp32', 'bf16'),
        default='auto',
        help='arithmetic of training and evaluation (bf16: bfloat16 compute, float32 weights); '
        'auto: bf16 where the CPU has bf16 instructions (AMX or AVX-512 BF16), fp32 elsewhere '
        '(see the README)',
    )
    parser.add_argument(
        '--fresh',
        action='store_true',
        help='delete --work_dir (only if the demo made it) and start over',
    )
    args = parser.parse_args(argv)
    args.precision, why = resolve_precision(args.precision)
    env, onednn = stage_environment(args.precision)
    log(f'precision: {args.precision} ({why}); {onednn}')
    start = time.time()
    demo = None
    signal.signal(signal.SIGTERM, signals.terminate)
    try:
        prepare_work_dir(args.work_dir, args.fresh)
        demo = Demo(args, env)
        demo.generate()
        demo.convert()
        demo.train()
        results = demo.evaluate()
        demo.export()
        demo.detect()
        demo.current = None
        curve = demo.curve(results)
    except DemoError as err:
        sys.exit(f'demo: error: {err}')
    except KeyboardInterrupt:
        where = (
            f'during {STAGES[demo.current][0]}/6 {demo.current}'
            if demo and demo.current
            else 'while starting'
        )
        signum = signals.stop_signal()
        log(
            f'{signals.stopped_by(signum)} {where}{demo.kept() if demo else ""}; run the same '
            'command to resume'
        )
        if signum == signal.SIGTERM:  # ends by the signal, as its sender expects (143 in a shell)
            signals.end_by_signal(signum)
        sys.exit(130)
    metrics = results['metrics']
    log(
        f'done in {time.time() - start:.0f} s: VOC07 mAP {metrics["voc07"]:.3f}, VOC12 mAP '
        f'{metrics["voc12"]:.3f}'
    )
    for name, path in demo.paths.items():
        print(f'    {name:<11} {path}')
    if curve:
        print(f'    {"curve":<11} {curve}')


if __name__ == '__main__':
    main()
