"""What an evaluation writes: atomically published folders, metric values, TensorBoard scalars and
precision/recall plots.

Metric keys used everywhere (summary JSON, TensorBoard tags, the watcher's history and best):
  'voc07': VOC2007 11-point mAP; 'voc12': VOC2010+ all-point mAP; 'coco': COCO AP@[.5:.95].
Per-class APs use the same keys: {'voc07'|'voc12'|'coco': {class name: AP or None}}.
"""

import os
import re
import shutil
import uuid

import numpy as np

from tf_extended import file_names
from tf_extended import temp_dirs

METRICS = ('voc07', 'voc12', 'coco')
# What an evaluation writes in its results folder (evaluate.py's module docstring), by name:
# `remove_earlier_outputs` removes those of an earlier evaluation that the new one does not write.
# TensorBoard event files are not among them (history: each run appends its own file).
RESULT_FILES = ('results.json', 'results.txt', 'coco_detections.json', 'coco_ground_truth.json')
DEVKIT_FILE = re.compile(r'comp4_det_.+\.txt')  # comp4_det_<split>_<stem>.txt
PR_CURVES_DIR = 'pr_curves'
PR_CURVE_FILE = re.compile(r'pr_.+\.png')  # pr_curves/pr_<stem>.png


def make_staging_dir(target):
    """A fresh hidden folder inside `target` (created when missing): nothing is written outside
    the folder the caller named, and publishing is a rename on the same filesystem. Staging
    folders that killed runs left in `target` are removed first (`tf_extended.temp_dirs`: only
    those whose process has ended)."""
    temp_dirs.remove_stale(target, 'staging')
    return temp_dirs.make(target, 'staging')


def publish_dir(staging, target):
    """Moves the content of `staging` into `target` and removes `staging`.

    A missing `target` is created by one rename (all or nothing). An existing one (e.g. an
    eval_dir holding event files) gets each file replaced by a rename, folders merged.
    """
    if not os.path.isdir(target):
        os.replace(staging, target)
        return
    for name in os.listdir(staging):
        source, dest = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(source) and os.path.isdir(dest):
            publish_dir(source, dest)
        else:
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(source, dest)
    shutil.rmtree(staging, ignore_errors=True)


def _output_files(folder):
    """The evaluation outputs in `folder` (names relative to it, `RESULT_FILES`, `DEVKIT_FILE`,
    `PR_CURVE_FILE` in `PR_CURVES_DIR`): files or links, never folders."""

    def files(directory, prefix=''):
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return [
            prefix + name
            for name in names
            if not os.path.isdir(os.path.join(directory, name))
            or os.path.islink(os.path.join(directory, name))
        ]

    found = [name for name in files(folder) if name in RESULT_FILES or DEVKIT_FILE.fullmatch(name)]
    curves = os.path.join(folder, PR_CURVES_DIR)
    if os.path.isdir(curves) and not os.path.islink(curves):
        found += [
            name
            for name in files(curves, PR_CURVES_DIR + '/')
            if PR_CURVE_FILE.fullmatch(name[len(PR_CURVES_DIR) + 1 :])
        ]
    return sorted(found)


def remove_earlier_outputs(staging, target, log=None):
    """Removes from `target` the outputs of an earlier evaluation (`_output_files`) that the new
    one, staged in `staging`, does not write (publishing replaces the others): e.g. an earlier
    VOC evaluation's devkit files and PR curves beside a COCO-only results.json, where
    score_detections.py would score them. Other files (a user's, TensorBoard event files, the
    watcher's) stay, and `pr_curves/` goes only when nothing else is left in it. Logs what it
    removed; returns the paths."""
    if not os.path.isdir(target):
        return []
    new = set(_output_files(staging))
    removed = []
    for name in _output_files(target):
        if name not in new:
            path = os.path.join(target, name)
            try:
                os.remove(path)
            except FileNotFoundError:  # removed meanwhile
                continue
            removed.append(path)
    curves = os.path.join(target, PR_CURVES_DIR)
    if (
        not os.path.isdir(os.path.join(staging, PR_CURVES_DIR))
        and any(os.path.dirname(path) == curves for path in removed)
        and not os.listdir(curves)  # else files that are not ours stay in it
    ):
        os.rmdir(curves)
        removed.append(curves + os.sep)
    if removed and log is not None:
        names = ', '.join(
            PR_CURVES_DIR + '/' if path == curves + os.sep else os.path.relpath(path, target)
            for path in removed
        )
        log(
            f'[eval] removed {len(removed)} output(s) of an earlier evaluation in {target} that '
            f'this one does not write: {names}'
        )
    return removed


def metric_values(voc_result, coco_metrics, metrics):
    """{'voc07': mAP, 'voc12': mAP, 'coco': AP} for the requested `metrics` (None when undefined)."""
    values = {}
    if 'voc07' in metrics:
        values['voc07'] = voc_result.map_voc07
    if 'voc12' in metrics:
        values['voc12'] = voc_result.map_voc12
    if 'coco' in metrics:
        values['coco'] = coco_metrics['AP']
    return values


def per_class_ap(voc_result, coco_class_ap, metrics):
    """{'voc07': {class: AP}, 'voc12': {...}, 'coco': {...}} for the requested `metrics`; None marks
    a class without ground truth. `coco_class_ap` is `COCOResult.class_ap` (AP@[.5:.95] by class
    name), needed when 'coco' is requested."""
    class_ap = {rule: voc_result.ap(rule) for rule in ('voc07', 'voc12') if rule in metrics}
    if 'coco' in metrics:
        if coco_class_ap is None:
            raise ValueError(
                "per_class_ap: 'coco' is requested but no COCO per-class AP was given."
            )
        class_ap['coco'] = dict(coco_class_ap)
    return class_ap


def format_coco_table(coco_result, class_names):
    """A fixed-width text table of COCO AP by class (AP in %), then pycocotools' 12 numbers.

    Args:
      coco_result: `coco_metrics.COCOResult` (per-class AP keyed by class name).
      class_names: {id shown in the "label" column: class name}, one row each, in its order.
        The evaluation and score_detections.py both show the COCO category id where the data
        has one (else the model's label), so the column means the same in every table.
    """

    def pct(value):
        return 'absent' if value is None else f'{100.0 * value:.2f}'

    width = max([len('class')] + [len(name) for name in class_names.values()])
    head = f'{"label":>5}  {"class":<{width}}  {"AP %":>6}  {"AP50 %":>6}'
    lines = [
        'COCO box AP (pycocotools), IoU .50:.95 and .50, area all, maxDets 100',
        head,
        '-' * len(head),
    ]
    for label, name in class_names.items():
        lines.append(
            f'{label:>5}  {name:<{width}}  {pct(coco_result.class_ap[name]):>6}  '
            f'{pct(coco_result.class_ap50[name]):>6}'
        )
    lines.append('-' * len(head))
    present = sum(ap is not None for ap in coco_result.class_ap.values())
    lines.append(
        f'{"":>5}  {"mAP":<{width}}  {pct(coco_result.metrics["AP"]):>6}  '
        f'{pct(coco_result.metrics["AP50"]):>6}  (over {present} of {len(class_names)} classes)'
    )
    lines.append(
        'COCO: '
        + ', '.join(
            f'{name} {"n/a" if value is None else f"{100 * value:.2f}"}'
            for name, value in coco_result.metrics.items()
        )
    )
    return '\n'.join(lines)


def open_event_writer(summary_dir):
    """A new `tf.compat.v1.summary.FileWriter` on its own event file in `summary_dir`.

    TF names event files by the second and the host only: two writers opened in the same second
    (two evaluations, a re-started watcher) would share one file, the second truncating the first.
    A random suffix keeps every writer's file."""
    import tensorflow as tf

    with tf.Graph().as_default():  # the v1 writer refuses to be created eagerly
        return tf.compat.v1.summary.FileWriter(
            summary_dir, graph=None, filename_suffix=f'.{os.getpid()}.{uuid.uuid4().hex[:8]}'
        )


def write_tensorboard(summary_dir, step, values, class_ap, writer=None):
    """Appends the mAPs (`eval/<metric>_mAP`) and per-class APs (`eval/<metric>_AP/<class>`) at
    `step` to the event file of `summary_dir`. Absent classes (AP None) are not written.

    writer: an open `tf.compat.v1.summary.FileWriter` to append to (flushed, left open), so a
      long run (the watcher) writes one event file; None: a new event file for this call."""
    import tensorflow as tf

    v1 = tf.compat.v1
    entries = [(f'eval/{key}_mAP', value) for key, value in values.items() if value is not None]
    for rule, aps in class_ap.items():
        entries += [(f'eval/{rule}_AP/{name}', ap) for name, ap in aps.items() if ap is not None]
    summary = v1.Summary(
        value=[v1.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in entries]
    )
    if writer is not None:
        writer.add_summary(summary, int(step))
        writer.flush()
        return
    writer = open_event_writer(summary_dir)
    try:
        writer.add_summary(summary, int(step))
    finally:
        writer.close()


def _plain_text(text):
    """`text` as matplotlib shows it literally ('$' would start mathtext)."""
    return text.replace('$', r'\$')


def plot_pr_curves(voc_result, directory):
    """One PNG per present class, `<directory>/pr_<stem>.png` (`<stem>`: the class name made safe
    for file names, `tf_extended.file_names`): precision against recall with the VOC07 and VOC12
    APs in the title (the real name). Returns the paths written."""
    import matplotlib

    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    os.makedirs(directory, exist_ok=True)
    stems = file_names.safe_file_names(c.name for c in voc_result.classes)
    paths = []
    # One figure for every class, its lines' data replaced: building the axes is half the time
    # of a plot (about 25 ms a class on a 2-core machine; the watcher plots every checkpoint).
    fig, ax = plt.subplots(figsize=(4.5, 4))
    (curve,) = ax.plot([], [], lw=1, label='precision')
    (envelope,) = ax.plot([], [], lw=1, ls='--', label='envelope (VOC12)')
    legend = ax.legend(loc='lower left', fontsize=8)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel='recall', ylabel='precision')
    ax.grid(alpha=0.3)
    try:
        for c in voc_result.classes:
            if c.absent:
                continue
            curve.set_data(c.recall, c.precision)
            envelope.set_data(c.recall, np.maximum.accumulate(c.precision[::-1])[::-1])
            for artist in (curve, envelope, legend):
                artist.set_visible(len(c.recall) > 0)
            ax.set_title(
                f'{_plain_text(c.name)}: AP07 {100 * c.ap_voc07:.1f}, AP12 {100 * c.ap_voc12:.1f}'
            )
            path = os.path.join(directory, f'pr_{stems[c.name]}.png')
            fig.savefig(path, dpi=80)
            paths.append(path)
    finally:
        plt.close(fig)
    return paths
