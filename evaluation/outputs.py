"""What an evaluation writes: atomically published folders, metric values, TensorBoard scalars and
precision/recall plots.

Metric keys used everywhere (summary JSON, TensorBoard tags, the watcher's history and best):
  'voc07': VOC2007 11-point mAP; 'voc12': VOC2010+ all-point mAP; 'coco': COCO AP@[.5:.95].
Per-class APs use the same keys: {'voc07'|'voc12'|'coco': {class name: AP or None}}.
"""

import numbers
import os
import re
import shutil
import uuid

import numpy as np

from tf_extended import file_names
from tf_extended import safe_io
from tf_extended import temp_dirs
from tf_extended import texts

METRICS = ('voc07', 'voc12', 'coco')
# What an evaluation writes in its results folder (evaluate.py's module docstring), by name.
# TensorBoard event files are not among them (history: each run appends its own file).
RESULT_FILES = ('results.json', 'results.txt', 'coco_detections.json', 'coco_ground_truth.json')
DEVKIT_FILE = re.compile(r'comp4_det_[^/]+\.txt')  # comp4_det_<split>_<stem>.txt
PR_CURVES_DIR = 'pr_curves'
PR_CURVE_FILE = re.compile(r'pr_[^/]+\.png')  # pr_curves/pr_<stem>.png
# results.json's list of the files its evaluation wrote (names relative to its folder): the files
# a later evaluation into the folder may replace or remove. Files of the names above that no
# results.json of ours lists (a user's, a copy) are never touched: the evaluation refuses.
OUTPUT_FILES_KEY = 'output_files'
# temp_dirs label of an evaluation's staging folder (the watcher removes stale ones at start).
STAGING_LABEL = 'staging'
_MAX_RESULTS_JSON_BYTES = 64 << 20
# An event's step is an int64 (as TF's global_step).
_EVENT_STEPS = (-(2**63), 2**63 - 1)


def make_staging_dir(target):
    """A fresh hidden folder inside `target` (created when missing): nothing is written outside
    the folder the caller named, and publishing is a rename on the same filesystem. Staging
    folders that killed runs left in `target` are removed first (`tf_extended.temp_dirs`: only
    those whose process has ended).

    Raises ValueError (one line), before anything is evaluated or written, when `target` holds
    files an evaluation would replace or remove that no evaluation of ours recorded writing
    (`foreign_outputs`)."""
    _refuse_foreign_outputs(target)
    temp_dirs.remove_stale(target, STAGING_LABEL)
    return temp_dirs.make(target, STAGING_LABEL)


def _publish_conflicts(staging, target):
    """[(path in `target`, what it is)] that publishing `staging` would write through or delete:
    a symlink (it may lead out of the folder), a folder where a file goes, a file where a folder
    goes."""
    found = []
    for name in sorted(os.listdir(staging)):
        source, dest = os.path.join(staging, name), os.path.join(target, name)
        if not os.path.lexists(dest):
            continue
        if os.path.islink(dest):
            found.append((dest, 'a symlink'))
        elif os.path.isdir(source) != os.path.isdir(dest):
            found.append((dest, 'a folder' if os.path.isdir(dest) else 'a file'))
        elif os.path.isdir(source):
            found += _publish_conflicts(source, dest)
    return found


def publish_dir(staging, target):
    """Moves the content of `staging` into `target` and removes `staging`.

    A missing `target` is created by one rename (all or nothing). An existing one (e.g. an
    eval_dir holding event files) gets each file replaced by a rename, folders merged; its
    results.json first, so that a publishing cut short leaves a results.json listing the files
    there. Raises ValueError (one line, nothing moved) when a destination is a symlink or of
    the other kind (file / folder): nothing is written through a link or deleted.
    """
    if not os.path.isdir(target):
        os.replace(staging, target)
        return
    conflicts = _publish_conflicts(staging, target)
    if conflicts:
        path, kind = conflicts[0]
        more = f' (and {len(conflicts) - 1} more)' if len(conflicts) > 1 else ''
        raise ValueError(
            f'{path} is {kind}{more} where the evaluation publishes an output of that name; '
            f'nothing was published. Move it away, or choose another --eval_dir.'
        )
    for name in sorted(os.listdir(staging), key=lambda entry: entry != RESULT_FILES[0]):
        source, dest = os.path.join(staging, name), os.path.join(target, name)
        if os.path.isdir(source) and os.path.isdir(dest):
            publish_dir(source, dest)
        else:
            os.replace(source, dest)
    shutil.rmtree(staging, ignore_errors=True)


def is_output_name(name):
    """True for the path (relative to its results folder, '/'-separated) of a file an
    evaluation writes: `RESULT_FILES`, `DEVKIT_FILE`, `PR_CURVE_FILE` in `PR_CURVES_DIR`."""
    folder, _, base = name.rpartition('/')
    if not folder:
        return base in RESULT_FILES or DEVKIT_FILE.fullmatch(base) is not None
    return folder == PR_CURVES_DIR and PR_CURVE_FILE.fullmatch(base) is not None


def _output_entries(folder):
    """[(name, is_folder)] of the entries of `folder` named like the files an evaluation writes
    (names relative to it, sorted: `RESULT_FILES`, `DEVKIT_FILE`, `PR_CURVE_FILE` in
    `PR_CURVES_DIR`); `is_folder` for a folder that is not a link."""

    def entries(directory, prefix=''):
        try:
            names = os.listdir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return []
        paths = [(prefix + name, os.path.join(directory, name)) for name in names]
        return [(name, os.path.isdir(path) and not os.path.islink(path)) for name, path in paths]

    found = [entry for entry in entries(folder) if is_output_name(entry[0])]
    curves = os.path.join(folder, PR_CURVES_DIR)
    if os.path.isdir(curves) and not os.path.islink(curves):
        found += [e for e in entries(curves, PR_CURVES_DIR + '/') if is_output_name(e[0])]
    return sorted(found)


def _output_files(folder):
    """The evaluation outputs in `folder` (`_output_entries`): files or links, never folders."""
    return [name for name, is_folder in _output_entries(folder) if not is_folder]


def _recorded_outputs(folder):
    """The names of `folder`'s files that an evaluation of ours demonstrably wrote: its
    results.json (a regular file with the fields every version wrote) and the output files it
    lists; for a results.json of an older version (no list), every file of an output's name.
    Empty when results.json is missing, a link, unreadable or not ours."""
    path = os.path.join(folder, RESULT_FILES[0])
    if os.path.islink(path):
        return set()
    try:
        summary = safe_io.read_json(path, 'results.json', _MAX_RESULTS_JSON_BYTES)
    except (OSError, ValueError):
        return set()
    if not (
        isinstance(summary, dict)
        and isinstance(summary.get('checkpoint'), str)
        and 'global_step' in summary
        and isinstance(summary.get('settings'), dict)
    ):
        return set()
    if OUTPUT_FILES_KEY not in summary:
        return set(_output_files(folder))
    listed = summary[OUTPUT_FILES_KEY] if isinstance(summary[OUTPUT_FILES_KEY], list) else []
    return {RESULT_FILES[0]} | {n for n in listed if isinstance(n, str) and is_output_name(n)}


def foreign_outputs(folder):
    """Entries of `folder` (relative names, sorted) an evaluation into it would replace, remove
    or write through that no evaluation of ours recorded writing (`_recorded_outputs`): files of
    an output's name, any symlink of such a name, a folder of such a name (`results.txt/`:
    publishing would stop there, after the evaluation), and a `pr_curves` that is a symlink or
    not a folder."""
    ours = _recorded_outputs(folder)
    found = [
        name + '/' if is_folder else name
        for name, is_folder in _output_entries(folder)
        if is_folder or name not in ours or os.path.islink(os.path.join(folder, name))
    ]
    curves = os.path.join(folder, PR_CURVES_DIR)
    if os.path.islink(curves) or os.path.lexists(curves) and not os.path.isdir(curves):
        found.append(PR_CURVES_DIR)
    return sorted(found)


def _refuse_foreign_outputs(folder):
    foreign = foreign_outputs(folder)
    if foreign:
        raise ValueError(
            f'{folder} holds {texts.listed(foreign, 3)}: named like the outputs of an '
            f'evaluation, which would replace or remove them, but no results.json of an '
            f'evaluation there lists them. Move them away, or choose another --eval_dir.'
        )


def staged_outputs(staging):
    """The value of results.json's `OUTPUT_FILES_KEY` for an evaluation staged in `staging`:
    the outputs there (`_output_files`) and results.json itself, to be written last."""
    return sorted(set(_output_files(staging)) | {RESULT_FILES[0]})


def remove_earlier_outputs(staging, target, log=None):
    """Removes from `target` the outputs of an earlier evaluation (those its results.json lists,
    `_recorded_outputs`) that the new one, staged in `staging`, does not write (publishing
    replaces the others): e.g. an earlier VOC evaluation's devkit files and PR curves
    beside a COCO-only results.json, where score_detections.py would score them. Other files (a
    user's, TensorBoard event files, the watcher's) stay, and `pr_curves/` goes only when nothing
    else is left in it. Logs what it removed; returns the paths.

    Raises ValueError (one line, nothing removed) when `target` holds `foreign_outputs`."""
    new = set(_output_files(staging))
    if not os.path.isdir(target):
        return []
    _refuse_foreign_outputs(target)
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


def write_tensorboard(summary_dir, step, values, class_ap, coco=None, writer=None):
    """Appends the mAPs (`eval/<metric>_mAP`), per-class APs (`eval/<metric>_AP/<class>`) and
    the 12 COCO numbers (`coco`: {name: value} of `coco_metrics.COCO_METRIC_NAMES`, as
    results.json has them, written as `eval/coco/<name>`; the TF Object Detection API writes all
    12 too) at `step` to the event file of `summary_dir`. Absent classes (AP None) and undefined
    numbers (None) are not written.

    writer: an open `tf.compat.v1.summary.FileWriter` to append to (flushed, left open), so a
      long run (the watcher) writes one event file; None: a new event file for this call.

    step: an int64 integer: a checkpoint's step (`checkpoints.checkpoint_step`, the watcher's
      ledger) or an export's (`card.export_step`), each checked where it is read from a file.
      Anything else is a caller's bug, refused (ValueError) rather than truncated by int()."""
    low, high = _EVENT_STEPS
    if not (
        isinstance(step, numbers.Integral) and not isinstance(step, bool) and low <= step <= high
    ):
        raise ValueError(f'TensorBoard step {texts.shown(step)} is not an int64 integer.')
    step = int(step)  # numpy's integers too
    import tensorflow as tf

    v1 = tf.compat.v1
    entries = [(f'eval/{key}_mAP', value) for key, value in values.items() if value is not None]
    for rule, aps in class_ap.items():
        entries += [(f'eval/{rule}_AP/{name}', ap) for name, ap in aps.items() if ap is not None]
    entries += [
        (f'eval/coco/{name}', value) for name, value in (coco or {}).items() if value is not None
    ]
    summary = v1.Summary(
        value=[v1.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in entries]
    )
    if writer is not None:
        writer.add_summary(summary, step)
        writer.flush()
        return
    writer = open_event_writer(summary_dir)
    try:
        writer.add_summary(summary, step)
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
