"""Checkpoint watcher: evaluates every checkpoint a trainer writes, each exactly once, by step.

State lives in `eval_dir`, so a restarted watcher neither repeats nor skips:
  eval_ledger.jsonl   one JSON object per handled checkpoint, in handling order:
                      {"checkpoint": basename, "path": the checkpoint's resolved prefix,
                       "train_dir": the trainer's resolved folder, "card_id": the run's model card
                       id ('' without a card), "index_mtime_ns", "step", "settings" (the
                       evaluation settings that change results: `results_settings`),
                       "status": "evaluated" | "unavailable", "time", and for evaluated ones
                       "metrics", "class_ap", "results_dir", "seconds", "images_per_second"; for
                       unavailable ones "reason"}. Rewritten atomically on every append.
                      A checkpoint is handled when an entry has its resolved path and its run
                      (the card id; without a card, the `.index` file's modification time): a
                      folder spelled another way is the same folder, and a new training run
                      whose checkpoints have the names of an earlier run's is a new run.
                      Entries of older versions (no "path") count as this run's. A watcher
                      refuses to start when entries of its run were evaluated with other
                      settings (entries of older versions, without "settings", match); the
                      images are compared as the images evaluated (the whole split for any
                      --max_num_batches x --batch_size covering it), not as the flags.
  <checkpoint basename>/   the results of that checkpoint (see `eval_core`); a name another run's
                      results (or anything the watcher did not write) already use gets
                      `.run-<card id[:8]>` (then `-2`, ...) appended (`_run_tag`: an id that
                      is not letters and digits gives `id-<8 hex digits of its digest>`).
  history.csv, history.png   step, mAP per metric and per-class AP of every evaluated checkpoint
                      of the run being watched (mAP in % in the plot, titled with the run and the
                      dataset, the best checkpoint marked).
  best/               the run's best checkpoint by `best_metric` (its files, a `checkpoint` state
                      file so it can be passed as a directory) with its results, model card and
                      best.json, whose "files" lists every file the watcher put there. It is
                      replaced only when it holds nothing else; another run's best/ is kept as
                      `best.run-<card id[:8]>` (`_run_tag`).
  events.out.tfevents.*   TensorBoard scalars at each checkpoint's global step, one event file
                      for each watch.
  .ssd.lock           the folder's lock (tf_extended/folder_lock: fcntl.flock) held while a
                      watcher runs: a second watcher, or an evaluation, into the same folder
                      refuses to start. The kernel releases it when the process ends, however it
                      ends. (Older versions' `.watcher.lock` is left alone.)

Nothing is written outside `eval_dir`; temporary folders in it are named by their process
(`tf_extended.temp_dirs`) and a watcher removes its own and evaluations' of dead processes when
it starts (a SIGKILL'd watcher restarts cleanly). Checkpoints are found in the `checkpoint` state file
(`all_model_checkpoint_paths`, only this folder's) AND by globbing `*.index`, and are handled in
order of their step (the `-<step>` suffix; then `.index` modification time, then name; names
without a step last), so a copied training folder is handled in order too. Before evaluating one,
its files are hard-linked (copied when linking is not possible) into a temporary folder of
`eval_dir`, so the trainer's `max_to_keep` deleting it mid-way cannot break the evaluation; one
already gone is recorded as "unavailable" with a log line. The watcher stops when the trainer has
finished (`training_finished.json` in its folder) and its last checkpoint is handled, at
--final_step, or after --eval_timeout seconds without a new checkpoint (an error when no
checkpoint of the run was evaluated: `NothingEvaluated`). With --final_step, a marker of an
earlier step is first taken as stale (a new trainer run extending the folder removes it only once
it has started); the same marker still there `STALE_MARKER_GRACE_SECS` (at least two scan
intervals) after the watcher first saw it, with no new checkpoint meanwhile, is taken as the end of
training after all (--final_step above where training stopped) and stops the watcher.
"""

import csv
import dataclasses
import datetime
import glob
import hashlib
import io
import json
import os
import re
import shutil
import socket
import time


from datasets import dataset_factory
from model import card as card_lib
from model import checkpoints
from evaluation import evaluate
from evaluation import outputs as eval_outputs
from tf_extended import atomic_io
from tf_extended import coco_metrics
from tf_extended import folder_lock
from tf_extended import safe_io
from tf_extended import signals
from tf_extended import temp_dirs
from tf_extended import texts
from tf_extended import tf_errors

LEDGER_NAME = 'eval_ledger.jsonl'
BEST_DIR = 'best'
BEST_JSON = 'best.json'
LOCK_NAME = folder_lock.LOCK_NAME
HISTORY_FILES = ('history.csv', 'history.png')
EVALUATED, UNAVAILABLE = 'evaluated', 'unavailable'
# With --final_step, how long a `training_finished.json` of an earlier step may stay before the
# watcher takes it as the end of training rather than as left by the run a new trainer run extends:
# that trainer removes it a few seconds to a minute after it starts (imports, graph, restore), so
# 120 s leave it twice its usual time; and at least two scan intervals (`max(this, 2 x
# interval_secs)`), so that the watcher has looked again for a new checkpoint or a removed marker
# before it stops, however rarely it scans.
STALE_MARKER_GRACE_SECS = 120.0
# How often `wait_for_card` looks for the trainer's card (at most --eval_interval_secs).
CARD_POLL_SECS = 1.0
# Reading limits for the watcher's own files in eval_dir (a ledger entry is about 2 KB).
_MAX_LEDGER_BYTES = 256 << 20
_MAX_JSON_BYTES = 16 << 20
# How far above 1 an evaluation's AP may be: the VOC07 AP of a class detected perfectly, eleven
# elevenths summed, is 1.0000000000000002.
_METRIC_ROUNDING = 1e-9
# Temporary-folder labels (tf_extended.temp_dirs) of the watcher in eval_dir.
_STAGED, _NEW_BEST, _OLD_BEST = 'staged', 'best-new', 'best-old'
# Those a watcher removes at start when their process has ended: its own, and an evaluation's
# staging folder (an evaluation into eval_dir itself). Other labels may be another tool's.
_STALE_LABELS = (_STAGED, _NEW_BEST, _OLD_BEST, eval_outputs.STAGING_LABEL)
# Names older versions gave their temporary files and folders in eval_dir (`.staged-<checkpoint>`
# folders of hard links, `.history.png.tmp`, atomic writes' `.<name>.<8 random characters>` and
# `.<name>.tmp-<pid>-<8 random characters>`). Nothing in them says which host's process made
# them, so they cannot be told from a user's files: they are left, with a log line.
_LEGACY_TEMPORARY = re.compile(
    r'\.staged-.+|\.history\.png\.tmp|\.('
    + '|'.join(re.escape(name) for name in (LEDGER_NAME,) + HISTORY_FILES)
    + r')\.(tmp-[0-9]+-)?[a-z0-9_]{8}'
)


class WatcherBusy(folder_lock.FolderBusy):
    """Another watcher (or evaluation) holds the eval folder's lock."""


class NothingEvaluated(ValueError):
    """The watch ended (timeout) without one evaluated checkpoint of the run."""


# EvalSettings fields that change an evaluation's numbers (the others set its speed, its outputs
# or where the card came from); `results_settings` adds the images evaluated, the card's detection
# settings and dtype.
_RESULT_FIELDS = (
    'dataset_name',
    'dataset_split_name',
    'dataset_dir',
    'matching_threshold',
    'iou_rule',
    'eval_resize',
    'remove_difficult',
    'moving_average_decay',
    'metrics',
)
# The images evaluated: at most the split's first `max_images` (--max_num_batches x
# --batch_size; None: all). Compared as the images they are (`_images_evaluated`): a bound at or
# above the split's size is the whole split.
_IMAGES = 'max_images'
# The flags that set it, recorded as given to name the images in the user's terms; not compared
# (batch_size alone changes no result).
_IMAGE_FLAGS = ('max_num_batches', 'batch_size')
# Recorded settings that are flags of eval_ssd_network.py (named `--<name>` in a refusal); the
# detection settings are the card's or a flag's (named `<name>=<value>`), the others the card's
# (clip).
_FLAG_SETTINGS = frozenset(_RESULT_FIELDS + _IMAGE_FLAGS + ('compute_dtype',))
_DETECTION_SETTINGS = frozenset(('select_threshold', 'nms_threshold', 'top_k', 'keep_top_k'))


def results_settings(settings):
    """The evaluation settings that change results, as every ledger entry records them: a small
    JSON dict, the same for the same settings in any watch (the dataset folder resolved, no
    times, no card). The images as `max_images` (--max_num_batches x --batch_size, None: the
    whole split; see `check_settings`) with the two flags as given; the card's detection settings
    and compute_dtype because flags may change them for a card."""
    record = {name: getattr(settings, name) for name in _RESULT_FIELDS}
    if settings.dataset_dir:
        record['dataset_dir'] = os.path.realpath(settings.dataset_dir)
    batches = settings.max_num_batches  # 0: all, as in evaluate
    record[_IMAGES] = batches * settings.batch_size if batches else None
    record['max_num_batches'] = settings.max_num_batches
    record['batch_size'] = settings.batch_size
    record.update(dataclasses.asdict(settings.card.detection))
    record['compute_dtype'] = settings.card.compute_dtype
    # Which metrics, not their order: --metrics=voc07,coco and coco,voc07 give the same results.
    record['metrics'] = sorted(record['metrics'])
    return json.loads(json.dumps(record))  # as the ledger gives it back (tuples as lists)


def split_size(settings):
    """The number of images of `settings`' split (its metadata's count, else its records'),
    which tells whether --max_num_batches x --batch_size covers it. Raises as
    `dataset_factory.get_dataset` (the evaluations would fail the same way)."""
    return dataset_factory.get_dataset(
        settings.dataset_name,
        settings.dataset_split_name,
        settings.dataset_dir,
        num_classes=settings.card.num_classes,
        model_class_names=settings.card.class_names,
    ).num_samples


def _is_count(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _max_images(values):
    """The `max_images` of a recorded settings dict: None (the whole split), a count, or 'unknown'.
    Entries written before `max_images` was recorded have max_num_batches (None or 0: all) and,
    with it, batch_size."""
    if _IMAGES in values:
        count = values[_IMAGES]
        return count if count is None or (_is_count(count) and count > 0) else 'unknown'
    batches, batch_size = values.get('max_num_batches', 'unknown'), values.get('batch_size')
    if batches is None or batches == 0:
        return None
    if _is_count(batches) and batches > 0 and _is_count(batch_size) and batch_size > 0:
        return batches * batch_size
    return 'unknown'


def _images_evaluated(max_images, total):
    """None (the whole split of `total` images) or the count of its first images evaluated."""
    if _is_count(max_images) and max_images >= total:
        return None
    return max_images


def _flag_value(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list):
        return ','.join(map(str, value))
    return str(value)


def _show(values, key):
    """A recorded setting in the user's terms: `--<flag>=<value>` ('no --<flag>': not given), a
    detection setting's `<name>=<value>` (the card's or a flag's), or the model card's value."""
    if key not in values:
        return f'{key} not recorded'
    value = values[key]
    if key in _DETECTION_SETTINGS:  # the card's, or a flag's that replaced it
        return f'{key}={_flag_value(value)}'
    if key not in _FLAG_SETTINGS:
        return f"the model card's {key}={_flag_value(value)}"
    return f'no --{key}' if value is None else f'--{key}={_flag_value(value)}'


def _show_images(values, images, total):
    """'the first 2 images (--max_num_batches=2 --batch_size=1)', 'all 4 images of the split (no
    --max_num_batches)'."""
    if images is None:
        what = f'all {total} images of the split'
    elif images == 'unknown':
        what = 'images not recorded'
    else:
        what = f'the first {images} images'
    given = _show(values, 'max_num_batches')
    if values.get('max_num_batches'):
        given += ' ' + _show(values, 'batch_size')
    return f'{what} ({given})'


def check_settings(ledger, record, this_run, eval_dir, total_images):
    """Raises ValueError when `ledger` holds checkpoints of this run (`this_run`: entry -> bool)
    evaluated with other settings than `record` (`results_settings`): a watcher going on would
    take them as handled and mix both in history.csv and best/. The images are compared as the
    images evaluated: the whole split for any --max_num_batches x --batch_size that covers it
    (`total_images`: a callable giving the split's size, called only when the two differ)."""
    images = _max_images(record)
    sizes = []

    def total():
        if not sizes:
            sizes.append(total_images())
        return sizes[0]

    for entry in ledger.evaluated(this_run):
        if 'settings' not in entry:
            # Written before the settings were recorded: taken as evaluated with these, so that
            # the eval folders of older versions keep working.
            continue
        old = entry['settings'] if isinstance(entry['settings'], dict) else {}
        if isinstance(old.get('metrics'), list):
            # Entries written before the metrics were recorded sorted.
            old = dict(old, metrics=sorted(old['metrics'], key=str))
        changed = []
        old_images = _max_images(old)
        if old_images != images:
            before, after = (_images_evaluated(n, total()) for n in (old_images, images))
            if before != after or 'unknown' in (before, after):
                changed.append(
                    f'{_show_images(old, before, total())} -> '
                    f'{_show_images(record, after, total())}'
                )
        changed += [
            f'{_show(old, key)} -> {_show(record, key)}'
            for key in list(record) + [k for k in old if k not in record]
            if key not in (_IMAGES,) + _IMAGE_FLAGS
            and (key in old, old.get(key)) != (key in record, record.get(key))
        ]
        if changed:
            raise ValueError(
                f'{eval_dir}: its {LEDGER_NAME} holds checkpoints of this run evaluated with '
                f'other settings ({texts.listed(changed, 3)}; '
                f'the first of them: {entry["checkpoint"]}): their results and new ones would be mixed in '
                f'history.csv and best/. Give another --eval_dir, or run with the earlier '
                f'settings.'
            )


def _scan(directory):
    """[(prefix, .index mtime_ns)] of the checkpoints in `directory`, oldest first (see
    `list_checkpoints`)."""
    prefixes = [
        p[: -len('.index')] for p in glob.glob(os.path.join(glob.escape(directory), '*.index'))
    ]
    latest, listed = checkpoints.checkpoint_state(directory)
    prefixes += listed + ([latest] if latest else [])
    # One entry per checkpoint, spelled as `directory` spells it where the glob found it: an
    # older trainer's state file holds absolute paths, and `directory` may be a symlink.
    spellings = {}
    for prefix in prefixes:
        spellings.setdefault(os.path.realpath(prefix), os.path.normpath(prefix))
    found = []
    for prefix in spellings.values():
        try:
            mtime = os.stat(prefix + '.index').st_mtime_ns
        except FileNotFoundError:
            continue
        step = checkpoints.checkpoint_step_from_name(prefix)
        # By step: modification times say nothing about the order in a copied folder (`cp -r`
        # gives every file a new one). Step-less names after the others.
        found.append((step is None, step or 0, mtime, prefix))
    return [(prefix, mtime) for _, _, mtime, prefix in sorted(found)]


def list_checkpoints(directory):
    """Checkpoint prefixes in `directory` whose `.index` exists, oldest (lowest step) first.

    Union of the state file's checkpoints (`checkpoints.checkpoint_state`: those of this folder,
    an older trainer's absolute paths read by name) and the `*.index` files. Order: the step of
    the name (`-<step>`), then `.index` mtime, then path; names without a step come last (by
    mtime, then path). The order is only the order of handling: which checkpoints are handled
    stays decided by `run_key` (a rewritten checkpoint of a new run is pending again, wherever
    its step sorts).
    """
    return [prefix for prefix, _ in _scan(directory)]


def run_key(path, card_id, index_mtime_ns):
    """What makes a ledger entry: the checkpoint's resolved prefix and its run (the card id;
    without a card, the `.index` modification time)."""
    return (path, card_id if card_id else f'index-mtime:{index_mtime_ns}')


class Ledger:
    """The JSON-lines record of handled checkpoints (see the module docstring)."""

    def __init__(self, eval_dir):
        self.path = os.path.join(eval_dir, LEDGER_NAME)
        self.entries = []
        if os.path.lexists(self.path):
            data = safe_io.read_bytes(self.path, _MAX_LEDGER_BYTES, 'watcher ledger')
            for line_no, line in enumerate(data.decode('utf-8', 'replace').splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError):
                    entry = None
                if not _is_entry(entry):
                    raise ValueError(
                        f'{self.path}:{line_no}: not a ledger entry ({texts.shown(line.strip())}); fix '
                        f'or remove the line (every line is a JSON object with "checkpoint" and '
                        f'"status"; an evaluated one\'s metrics and class_ap are null or numbers in '
                        f'[0, 1]).'
                    ) from None
                self.entries.append(entry)

    @property
    def handled(self):
        """Basenames of the handled checkpoints (of any run)."""
        return {entry['checkpoint'] for entry in self.entries}

    def keys(self):
        """`run_key`s of the entries that have one (entries of older versions do not)."""
        return {
            run_key(e['path'], e.get('card_id', ''), e.get('index_mtime_ns'))
            for e in self.entries
            if 'path' in e
        }

    def legacy_names(self):
        """Basenames of entries written by older versions (no path, no run)."""
        return {e['checkpoint'] for e in self.entries if 'path' not in e}

    def append(self, entry):
        self.entries.append(entry)
        atomic_io.write_text_atomic(
            self.path, ''.join(json.dumps(e, sort_keys=True) + '\n' for e in self.entries)
        )

    def evaluated(self, run=None):
        """Evaluated entries (of `run`: a callable entry -> bool, when given)."""
        return [e for e in self.entries if e['status'] == EVALUATED and (run is None or run(e))]

    def best(self, metric, run=None):
        """The evaluated entry (of `run`) with the highest `metric` (first one on ties), or None."""
        scored = [e for e in self.evaluated(run) if e['metrics'].get(metric) is not None]
        return max(scored, key=lambda e: e['metrics'][metric]) if scored else None


def _is_value(value):
    """A metric value as an evaluation gives it: None (undefined) or a finite number in [0, 1]
    (up to `_METRIC_ROUNDING` above); not an int beyond float64's range. A NaN never compared
    above another value and an Infinity was never beaten: either kept best/ from ever being
    published again."""
    return value is None or (
        coco_metrics.is_finite_number(value) and 0 <= value <= 1 + _METRIC_ROUNDING
    )


def _is_entry(entry):
    """True for a ledger entry's shape as the Ledger's readers use it: names and status strings,
    an evaluated one's int step, metrics a dict of values and class_ap a dict of dicts of
    values (`_is_value`: None or finite in [0, 1]), an int index_mtime_ns (or none). The Ledger
    refuses a file with any other line, naming it."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get('checkpoint'), str)
        and isinstance(entry.get('status'), str)
        and (
            entry['status'] != EVALUATED
            or coco_metrics.is_integer(entry.get('step'))
            and isinstance(entry.get('metrics'), dict)
            and all(map(_is_value, entry['metrics'].values()))
            and isinstance(entry.get('class_ap'), dict)
            and all(
                isinstance(aps, dict) and all(map(_is_value, aps.values()))
                for aps in entry['class_ap'].values()
            )
        )
        and all(isinstance(entry.get(k, ''), str) for k in ('path', 'card_id', 'results_dir'))
        and isinstance(entry.get('index_mtime_ns'), (int, type(None)))
    )


def write_history(ledger, eval_dir, run=None, title=None, best_metric=None, class_names=()):
    """history.csv (one row per evaluated checkpoint of `run`, by step) and history.png (mAP in %
    vs step, titled `title`, the best checkpoint by `best_metric` marked). The per-class columns
    follow `class_names` (label order, as the tables), other names after them, sorted."""
    entries = sorted(ledger.evaluated(run), key=lambda e: e['step'])
    metrics = sorted({m for e in entries for m in e['metrics']})
    order = {name: i for i, name in enumerate(class_names)}
    class_columns = [
        (rule, name)
        for rule in sorted({rule for e in entries for rule in e['class_ap']})
        for name in sorted(
            {n for e in entries for n in e['class_ap'].get(rule, {})},
            key=lambda n: (order.get(n, len(order)), n),
        )
    ]
    text = io.StringIO()
    out = csv.writer(text, lineterminator='\n')
    out.writerow(
        ['step', 'checkpoint']
        + [f'{m}_mAP' for m in metrics]
        + [f'{rule}_AP_{name}' for rule, name in class_columns]
    )

    def cell(value):
        return '' if value is None else repr(float(value))

    for e in entries:
        out.writerow(
            [e['step'], e['checkpoint']]
            + [cell(e['metrics'].get(m)) for m in metrics]
            + [cell(e['class_ap'].get(rule, {}).get(name)) for rule, name in class_columns]
        )
    atomic_io.write_text_atomic(os.path.join(eval_dir, 'history.csv'), text.getvalue())
    if entries:
        import matplotlib

        matplotlib.use('Agg')
        from matplotlib import pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        top = 0.0
        for m in metrics:
            points = [
                (e['step'], 100 * e['metrics'][m])
                for e in entries
                if e['metrics'].get(m) is not None
            ]
            if points:
                ax.plot(*zip(*points), marker='o', label=f'{m} mAP')
                top = max(top, max(value for _, value in points))
        best = ledger.best(best_metric, run) if best_metric else None
        if best is not None:
            value = 100 * best['metrics'][best_metric]
            ax.plot(
                [best['step']],
                [value],
                marker='*',
                markersize=16,
                color='gold',
                markeredgecolor='black',
                linestyle='none',
                label=f'best {best_metric}: {value:.2f} % (step {best["step"]})',
            )
        # From 0, up to a margin above the best value: a fixed 0-100 made early runs (a few %) flat.
        ax.set(xlabel='global step', ylabel='mAP (%)', ylim=(0, min(100.0, max(1.0, 1.2 * top))))
        if title:
            ax.set_title(title.replace('$', r'\$'), fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        buffer = io.BytesIO()
        fig.savefig(buffer, dpi=80, format='png')
        plt.close(fig)
        atomic_io.write_bytes_atomic(os.path.join(eval_dir, 'history.png'), buffer.getvalue())


def _files_under(directory):
    """Relative paths of every file (and symlink) under `directory`, sorted."""
    found = []
    for root, dirs, files in os.walk(directory):
        rel = os.path.relpath(root, directory)
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            found.append(os.path.normpath(os.path.join(rel, name)))
    return sorted(found)


def _read_best_json(best_dir):
    try:
        best = safe_io.read_json(os.path.join(best_dir, BEST_JSON), BEST_JSON, _MAX_JSON_BYTES)
    except (OSError, ValueError):
        return None
    return best if isinstance(best, dict) and 'checkpoint' in best else None


def foreign_files(best_dir):
    """Files in `best_dir` the watcher did not put there (empty list: all its own).

    Its own: those best.json lists under "files" (all of them for a best/ of an older version,
    whose best.json has no "files") that are regular files of the names the watcher gives:
    best.json, the model card, the checkpoint state file, the files of the checkpoint best.json
    names and, in results/, an evaluation's outputs. A listed name alone proves nothing (a
    best.json listing a user's notes.txt).
    """
    present = _files_under(best_dir)
    best = _read_best_json(best_dir)
    if best is None:
        return present
    listed = best.get('files')
    own = {f for f in listed if isinstance(f, str)} if isinstance(listed, list) else set(present)
    name = os.path.basename(str(best['checkpoint']))
    names = re.compile(
        '|'.join(re.escape(n) for n in (BEST_JSON, card_lib.CARD_FILE, checkpoints.STATE_FILE))
        + '|'
        + re.escape(name)
        + r'\.(index|data-\d{5}-of-\d{5})'
    )

    def written(path):
        folder, _, rel = path.partition('/')
        results = folder == 'results' and eval_outputs.is_output_name(rel)
        return (
            path in own
            and not os.path.islink(os.path.join(best_dir, path))
            and (results or names.fullmatch(path) is not None)
        )

    return [path for path in present if not written(path)]


def _publish_best(staged_prefix, results_dir, entry, eval_dir, card, run_info, log):
    """Makes eval_dir/best hold the staged checkpoint files, its model card (model.json), its
    results and best.json (the entry, the run and the list of files). Returns False (with a log
    line) when best/ holds files the watcher did not write: then it is left alone."""
    best_dir = os.path.join(eval_dir, BEST_DIR)
    if os.path.lexists(best_dir):
        foreign = (
            foreign_files(best_dir)
            if os.path.isdir(best_dir) and not os.path.islink(best_dir)
            else [BEST_DIR]
        )
        if foreign:
            log(
                f'[watch] not updating {best_dir}: it holds files the watcher did not write '
                f'({texts.listed(foreign, 5)}); move them away.'
            )
            return False
    new = old = None
    try:
        with signals.held():  # a Ctrl-C or SIGTERM as it is made: it is removed below
            new = temp_dirs.make(eval_dir, _NEW_BEST)
        for path in glob.glob(glob.escape(staged_prefix) + '.*'):
            os.replace(path, os.path.join(new, os.path.basename(path)))
        name = os.path.basename(staged_prefix)
        atomic_io.write_text_atomic(
            os.path.join(new, checkpoints.STATE_FILE),
            f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n',
        )
        shutil.copytree(results_dir, os.path.join(new, 'results'))
        card_lib.write(os.path.join(new, card_lib.CARD_FILE), card)
        files = _files_under(new) + [BEST_JSON]
        atomic_io.write_json_atomic(
            os.path.join(new, BEST_JSON), dict(entry, run=run_info, files=sorted(files))
        )
        move_aside = False
        if os.path.isdir(best_dir):
            previous = _read_best_json(best_dir) or {}
            previous_run = previous.get('run') or {}
            if not isinstance(previous_run, dict):  # not the watcher's: kept as another run's
                previous_run = {'card_id': previous_run}
            if previous_run and previous_run != run_info:
                keep = _free_name(
                    eval_dir, f'{BEST_DIR}.run-{_run_tag(previous_run.get("card_id"))}'
                )
                os.replace(best_dir, os.path.join(eval_dir, keep))
                log(
                    f'[watch] {best_dir} held the best checkpoint of another run '
                    f'({previous_run.get("train_dir")}, card {previous_run.get("card_id")}); '
                    f'kept it as {os.path.join(eval_dir, keep)}'
                )
            else:
                move_aside = True
        # Two renames that a Ctrl-C or SIGTERM must not part: the earlier best/ moved aside
        # (onto an empty folder: a POSIX rename), then the new one in place.
        with signals.held():
            if move_aside:
                old = temp_dirs.make(eval_dir, _OLD_BEST)
                os.replace(best_dir, old)
            os.replace(new, best_dir)
    except BaseException:
        if old and not os.path.lexists(best_dir):  # the new one failed to move in: the earlier back
            os.replace(old, best_dir)
        raise
    finally:
        if new is not None:  # gone once it moved in
            shutil.rmtree(new, ignore_errors=True)
        # With best/ in place, what `old` holds is replaced (also when a signal held over the
        # swap raises at its end), or it is the empty folder the earlier failed to move into.
        if old and os.path.lexists(best_dir):
            shutil.rmtree(old, ignore_errors=True)
    return True


def _run_tag(card_id):
    """What names a run in the watcher's folder names (`.run-<tag>`): the card id's first 8
    characters; 'nocard' without one; for any other value (a best.json's run, or a card that is
    not the project's, holds what its writer put there: '/../../x' took best/ out of eval_dir),
    'id-' and 8 hex digits of its digest, a file name whatever the value."""
    if not card_id:
        return 'nocard'
    if isinstance(card_id, str) and re.fullmatch(r'[0-9a-zA-Z]+', card_id):
        return card_id[:8]
    return 'id-' + hashlib.sha256(repr(card_id).encode('utf-8')).hexdigest()[:8]


def _free_name(directory, name):
    candidate, n = name, 1
    while os.path.lexists(os.path.join(directory, candidate)):
        n += 1
        candidate = f'{name}-{n}'
    return candidate


def wait_for_card(
    checkpoint_dir, interval_secs, timeout_secs=None, log=None, clock=time.time, sleep=time.sleep
):
    """Waits until `checkpoint_dir` holds a model card or a checkpoint (a trainer writes its card
    before its first checkpoint), or `timeout_secs` pass; a folder that is not there yet counts
    as empty. Looks every `interval_secs`, at most CARD_POLL_SECS: the trainer's first
    checkpoint follows its card within seconds, and the watcher fills its input cache between
    them. Returns True when one is there, False after the timeout."""
    log = log or (lambda line: print(line, flush=True))
    start = clock()
    said = False
    while not (
        card_lib.find_for_checkpoint(checkpoint_dir)
        or (os.path.isdir(checkpoint_dir) and checkpoints.latest_in_directory(checkpoint_dir))
    ):
        if timeout_secs is not None and clock() - start >= timeout_secs:
            return False
        if not said:
            missing = (
                ''
                if os.path.isdir(checkpoint_dir)
                else ' (the folder does not exist yet: is it the trainer\'s --train_dir?)'
            )
            log(
                f'[watch] waiting for the trainer\'s model card or first checkpoint in '
                f'{checkpoint_dir}{missing}'
            )
            said = True
        wait = min(interval_secs, CARD_POLL_SECS)
        sleep(
            wait if timeout_secs is None else max(0.0, min(wait, timeout_secs - (clock() - start)))
        )
    return True


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def _lock(eval_dir):
    """Takes the folder's lock (tf_extended/folder_lock) for a watch; returns its file descriptor
    (closing it releases the lock; the lock file stays). Raises WatcherBusy when another process
    holds it."""
    try:
        return folder_lock.acquire(eval_dir, '--eval_dir', 'watcher').fd
    except folder_lock.FolderBusy as err:
        raise WatcherBusy(str(err)) from None


def _clean_up_after_kill(eval_dir, log):
    """Removes, with a log line each, what a killed watcher or evaluation left (called with the
    lock held): the temporary folders of `_STALE_LABELS` whose process has ended (staged
    checkpoints, a half-built best/, evaluation staging folders, also inside results folders),
    an interrupted swap of best/ put back, and the temporary files of atomic writes of the
    watcher's files (`atomic_io.remove_orphans`). Older versions' temporaries
    (`_LEGACY_TEMPORARY`) are only named in a log line."""
    best_dir = os.path.join(eval_dir, BEST_DIR)
    for name in sorted(os.listdir(eval_dir)):
        info = temp_dirs.parse(name)
        path = os.path.join(eval_dir, name)
        if info is None or info['label'] not in _STALE_LABELS or not temp_dirs.is_stale(path):
            continue
        if info['label'] == _OLD_BEST and not os.path.lexists(best_dir) and _read_best_json(path):
            os.replace(path, best_dir)  # killed between moving best/ aside and the new one in
            log(f'[watch] put back {best_dir} (a watcher was killed while replacing it)')
        else:
            shutil.rmtree(path, ignore_errors=True)
            log(
                f'[watch] removed {path}, left by a watcher or evaluation that was killed '
                f'(process {info["pid"]})'
            )
    for own in (LEDGER_NAME,) + HISTORY_FILES:
        for path in atomic_io.remove_orphans(eval_dir, own):
            log(f'[watch] removed {path}, left by a watcher that was killed while writing {own}')
    legacy = sorted(name for name in os.listdir(eval_dir) if _LEGACY_TEMPORARY.fullmatch(name))
    if legacy:
        log(
            f'[watch] not removing {", ".join(legacy)} in {eval_dir}: named like the temporary '
            f'files that a killed watcher of an older version left, but they could be yours; '
            f'remove them by hand if they are not.'
        )
    # Evaluation staging folders inside results folders (evaluate's make_staging_dir), and the
    # results folder itself when the staging folder was all it held (the evaluation created it).
    for name in sorted(os.listdir(eval_dir)):
        path = os.path.join(eval_dir, name)
        if os.path.islink(path) or not os.path.isdir(path) or temp_dirs.parse(name):
            continue
        if temp_dirs.remove_stale(
            path, eval_outputs.STAGING_LABEL, log=lambda line: log(f'[watch] {line}')
        ) and not os.listdir(path):
            os.rmdir(path)
            log(f'[watch] removed {path}, empty once that staging folder was removed')


def _check_eval_dir(eval_dir):
    """Refuses a folder holding history files that no ledger explains (the watcher writes them
    after the ledger), and a best/ holding files the watcher did not write."""
    if not os.path.exists(os.path.join(eval_dir, LEDGER_NAME)):
        present = [n for n in HISTORY_FILES if os.path.lexists(os.path.join(eval_dir, n))]
        if present:
            raise ValueError(
                f'{eval_dir} holds {", ".join(present)} but no {LEDGER_NAME}: files the '
                f'watcher would replace, not written by a watcher (or its ledger was '
                f'removed). Move them away, or give another --eval_dir.'
            )
    best_dir = os.path.join(eval_dir, BEST_DIR)
    if os.path.lexists(best_dir):
        foreign = (
            foreign_files(best_dir)
            if os.path.isdir(best_dir) and not os.path.islink(best_dir)
            else [BEST_DIR]
        )
        if foreign:
            raise ValueError(
                f'{best_dir} holds files the watcher did not write '
                f'({texts.listed(foreign, 5)}); '
                f'the watcher replaces best/ and would delete them. Move them away.'
            )


class _EventStream:
    """One TensorBoard event file for a whole watch, opened at the first evaluation."""

    def __init__(self, directory):
        self.directory, self.writer = directory, None

    def write(self, result):
        """Appends an `evaluate.EvalResult`'s numbers."""
        if self.writer is None:
            self.writer = eval_outputs.open_event_writer(self.directory)
        eval_outputs.write_tensorboard(
            self.directory,
            result.global_step,
            result.metrics,
            result.class_ap,
            result.coco,
            writer=self.writer,
        )

    def close(self):
        if self.writer is not None:
            self.writer.close()


def _trainer_started_after_marker(checkpoint_dir):
    """A description of the training run holding `checkpoint_dir`'s lock ('pid N on H since T';
    for a run of another host, whose liveness cannot be read, with what to do if it was killed)
    when it started after `training_finished.json` was written (a resumed run removes the marker
    only once its graph is built, seconds later), else None. Started in the marker's second
    counts as after (the lock file keeps whole seconds)."""
    record = folder_lock.current_holder(checkpoint_dir)
    if record is None or record.get('role') != folder_lock.TRAINING_ROLE:
        return None
    try:
        since = datetime.datetime.fromisoformat(record['since']).timestamp()
        written = os.stat(os.path.join(checkpoint_dir, checkpoints.FINISHED_MARKER)).st_mtime
    except (KeyError, TypeError, ValueError, OSError):
        return None
    if since < int(written):
        return None
    described = f'pid {record.get("pid")} on {record.get("host")} since {record["since"]}'
    if record.get('host') == socket.gethostname():
        return described  # alive: current_holder drops a dead process of this host
    lock = os.path.join(checkpoint_dir, folder_lock.LOCK_NAME)
    return (
        f'{described}; this watcher cannot tell whether a process of another host is alive: if '
        f'that run was killed, delete its lock file {lock} and the watcher stops at the marker'
    )


def resolve_best_metric(best_metric, metrics):
    """`best_metric`, or without one the first of `metrics` (a --metrics=coco watcher was refused
    for a voc07 default it did not evaluate). Raises ValueError naming both flags unless it is
    one of `metrics`."""
    best_metric = best_metric or metrics[0]
    if best_metric not in metrics:
        raise ValueError(
            f'--best_metric={best_metric} is not among the evaluated --metrics='
            f'{",".join(metrics)}; add it to --metrics, or pick one of them.'
        )
    return best_metric


def _marker_step(marker):
    """The step of a `training_finished.json` for a log line (-1: its checkpoint has no step)."""
    return marker['step'] if marker['step'] >= 0 else 'unknown (no step in its checkpoint name)'


def _pct(value):
    return 'n/a' if value is None else f'{100 * value:.2f} %'


def watch(
    settings,
    checkpoint_dir,
    eval_dir,
    *,
    interval_secs=60.0,
    timeout_secs=None,
    final_step=None,
    best_metric=None,
    log=None,
    clock=time.time,
    sleep=time.sleep,
    lock=None,
    input_cache_mb=0,
):
    """Evaluates the checkpoints of `checkpoint_dir` as they appear (see the module docstring).

    Args:
      settings: evaluate.EvalSettings (its num_threads / gpu_memory_fraction keep the trainer fed;
        its card's card_id is the run's identity).
      checkpoint_dir: the trainer's folder.
      eval_dir: where the ledger, results, history, best/ and summaries go.
      interval_secs: pause between scans when nothing is pending.
      timeout_secs: stop after this long without a new checkpoint (None: never).
      final_step: stop once a checkpoint of this global step or later has been handled.
        Without it, the watcher stops once the trainer's `training_finished.json` (written at
        the trainer's normal end) names a checkpoint it has handled, or one that is gone; with
        it, a marker of step final_step or later does at once; an earlier one (or one whose
        checkpoint name has no step) is first taken as stale (a new trainer run extending the
        folder removes it only once it has started), and stops the watcher only when the same
        marker is still there max(STALE_MARKER_GRACE_SECS, 2 x interval_secs) after the watcher
        first saw it and no new checkpoint came meanwhile (training ended before final_step),
        with a log line naming both steps; or final_step, or the timeout, comes first.
      best_metric: 'voc07', 'voc12' or 'coco', one of settings.metrics (default: the first).
      log: callable taking one line (default: print).
      lock: the folder_lock.FolderLock of `eval_dir` the caller holds (eval_ssd_network.py takes
        it at its start); None: the watch takes the folder's lock itself.
      input_cache_mb: memory for the split's decoded network input (`evaluation.input_cache`;
        0: decoded by every evaluation), filled before the first evaluation.
    Returns:
      the ledger entries written by this call, in order.
    Raises:
      WatcherBusy: another watcher (or evaluation) runs on `eval_dir`.
      NothingEvaluated: the timeout passed and no checkpoint of this run is evaluated.
      ValueError: `eval_dir` holds files the watcher would replace but did not write, or is
        `checkpoint_dir`, or its ledger holds checkpoints of this run evaluated with other
        settings (`check_settings`; entries of older versions, without settings, match).
      ValueError, OSError: reading the split's size failed where the ledger's images and these
        differ (`split_size`).
      tf_errors.RecordsError (a ValueError): reading the records failed evaluating a checkpoint
        (bad records do not fix themselves: the watch stops; the checkpoint is not recorded).
    """
    log = log or (lambda line: print(line, flush=True))
    best_metric = resolve_best_metric(best_metric, settings.metrics)
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(
            f'--checkpoint_path {checkpoint_dir!r} must be the trainer\'s directory '
            f'when waiting for checkpoints.'
        )
    evaluate.check_eval_dir(eval_dir, checkpoint_dir)
    os.makedirs(eval_dir, exist_ok=True)
    own_lock = None
    events = _EventStream(eval_dir)
    # One graph and session for every checkpoint of the run (built at the first evaluation).
    evaluator = evaluate.CheckpointEvaluator(settings, input_cache_mb=input_cache_mb)
    try:
        if lock is None:
            # A Ctrl-C or SIGTERM as it is taken: closed below (a caller that goes on, a
            # notebook, found the folder held by itself).
            with signals.held():
                own_lock = _lock(eval_dir)
        _clean_up_after_kill(eval_dir, log)
        _check_eval_dir(eval_dir)
        return _watch(
            settings,
            checkpoint_dir,
            eval_dir,
            interval_secs,
            timeout_secs,
            final_step,
            best_metric,
            log,
            clock,
            sleep,
            events,
            evaluator,
        )
    finally:
        evaluator.close()
        events.close()
        if own_lock is not None:
            os.close(own_lock)


def _watch(
    settings,
    checkpoint_dir,
    eval_dir,
    interval_secs,
    timeout_secs,
    final_step,
    best_metric,
    log,
    clock,
    sleep,
    events,
    evaluator,
):
    ledger = Ledger(eval_dir)
    card_id = settings.card.card_id or ''
    train_dir = os.path.realpath(checkpoint_dir)
    run_info = {'train_dir': train_dir, 'card_id': card_id}
    legacy = ledger.legacy_names()
    record = results_settings(settings)

    def this_run(entry):
        return 'path' not in entry or (
            entry.get('card_id', '') == card_id and entry.get('train_dir') == train_dir
        )

    check_settings(ledger, record, this_run, eval_dir, lambda: split_size(settings))

    def handled(prefix, mtime):
        return (
            run_key(os.path.realpath(prefix), card_id, mtime) in ledger.keys()
            or os.path.basename(prefix) in legacy
        )

    if final_step is None:
        stops = ['when the trainer has finished']
    else:
        stops = [f'at step {final_step} (or when the trainer has finished at or after it)']
    if timeout_secs is not None:
        stops.append(f'after {timeout_secs:g} s without a new checkpoint')
    log(
        f'[watch] watching {checkpoint_dir} for checkpoints every {interval_secs:g} s (run: model '
        f'card {card_id or "none"}); stops {", ".join(stops)}; results, ledger, history and best/ '
        f'({best_metric} mAP) in {eval_dir}'
    )
    if ledger.entries:
        mine = [e for e in ledger.entries if this_run(e)]
        log(
            f'[watch] resuming: {len(mine)} checkpoint(s) of this run already handled in '
            f'{ledger.path}'
            + (
                f' ({len(ledger.entries) - len(mine)} entries of other runs kept apart)'
                if len(mine) < len(ledger.entries)
                else ''
            )
        )
        if legacy:
            log(
                f'[watch] {len(legacy)} ledger entries of an older version (no path or run) are '
                f'taken as this run\'s'
            )
    title = (
        f'run {os.path.basename(train_dir)} (card {card_id[:8] or "none"}), '
        f'{settings.dataset_name}/{settings.dataset_split_name}'
    )
    context = dict(
        eval_dir=eval_dir,
        ledger=ledger,
        best_metric=best_metric,
        log=log,
        run_info=run_info,
        record=record,
        this_run=this_run,
        title=title,
        events=events,
        evaluator=evaluator,
    )
    written = []
    last_new = clock()
    # The stale marker being waited out (see STALE_MARKER_GRACE_SECS) and when it was first seen.
    stale_marker, stale_since = None, None
    stale_grace = max(STALE_MARKER_GRACE_SECS, 2 * interval_secs)
    restart_seen = None
    fill_input = True

    def fill_input_cache():
        # Before any evaluation, and again when the records changed: the split's input is
        # decoded alone (while the trainer trains, or before the first pending checkpoint), so
        # every evaluation takes it from memory; not when the watcher stops at once (a finished
        # training). A read that fails here (the records, or a transient error) is left to the
        # evaluations.
        nonlocal fill_input
        if fill_input:
            try:
                evaluator.fill_input_cache(log)
            except tf_errors.RUN_ERRORS as err:
                fill_input = False
                log(
                    f'[watch] the input cache is not filled ({type(err).__name__}: '
                    f'{tf_errors.reason(err)}); the evaluations decode the split.'
                )

    while True:
        pending = [(p, m) for p, m in _scan(checkpoint_dir) if not handled(p, m)]
        if pending:
            fill_input_cache()
        for prefix, mtime in pending:
            entry = _handle(settings, prefix, mtime, **context)
            written.append(entry)
            if final_step is not None and entry['step'] is not None and entry['step'] >= final_step:
                log(f'[watch] final step {final_step} reached ({entry["checkpoint"]}); stopping.')
                return written
        if pending:
            last_new = clock()
            continue
        finished = checkpoints.training_finished(checkpoint_dir)
        restarted = finished is not None and _trainer_started_after_marker(checkpoint_dir)
        if restarted and restarted != restart_seen:
            log(
                f'[watch] {checkpoints.FINISHED_MARKER} (step {_marker_step(finished)}) is older '
                f'than the training run that holds {checkpoint_dir} ({restarted}): waiting for '
                f'its checkpoints.'
            )
        restart_seen = restarted
        if restarted:
            finished = None
        if finished is not None and final_step is not None and finished['step'] < final_step:
            if stale_marker != finished:
                log(
                    f'[watch] {checkpoints.FINISHED_MARKER} says the trainer finished at step '
                    f'{_marker_step(finished)}, before --final_step {final_step}: taken as left '
                    f'by an earlier run; waiting for step {final_step} (stopping if it is still '
                    f'there in {stale_grace:g} s with no new checkpoint).'
                )
                stale_marker, stale_since = finished, clock()
            # A new checkpoint since then: a trainer is running; the grace starts again.
            if clock() - max(stale_since, last_new) < stale_grace:
                finished = None
            else:
                log(
                    f'[watch] {checkpoints.FINISHED_MARKER} (the trainer finished at step '
                    f'{_marker_step(finished)}, {finished["checkpoint"]}) is still there '
                    f'{stale_grace:g} s after it was first seen and no new checkpoint came: '
                    f'training ended before --final_step {final_step}; stopping.'
                )
                return written
        if finished is not None:
            prefix = os.path.join(checkpoint_dir, finished['checkpoint'])
            try:
                mtime = os.stat(prefix + '.index').st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime is None or handled(prefix, mtime):
                log(
                    f'[watch] the trainer finished at step {finished["step"]} '
                    f'({checkpoints.FINISHED_MARKER}, {finished["checkpoint"]}); stopping.'
                )
                return written
        if timeout_secs is not None and clock() - last_new >= timeout_secs:
            if not ledger.evaluated(this_run):
                seen = [e for e in ledger.entries if this_run(e)]
                raise NothingEvaluated(
                    'no checkpoint evaluated: '
                    + (
                        f'the {len(seen)} checkpoint(s) found in {checkpoint_dir} were deleted before '
                        f'they could be evaluated'
                        if seen
                        else f'none appeared in {checkpoint_dir}'
                    )
                    + f' and none came for {timeout_secs:g} s (--eval_timeout). Is --checkpoint_path '
                    f'the trainer\'s --train_dir, and is the trainer running?'
                )
            log(f'[watch] no new checkpoint in {checkpoint_dir} for {timeout_secs:g} s; stopping.')
            return written
        fill_input_cache()
        wait = (
            interval_secs
            if timeout_secs is None
            else min(interval_secs, timeout_secs - (clock() - last_new))
        )
        sleep(max(wait, 0.0))


def _is_own_results(path, source, card_id):
    """True when `path` holds the results of this checkpoint and run (an evaluation killed before
    the watcher recorded it): its results.json names them."""
    try:
        summary = safe_io.read_json(
            os.path.join(path, 'results.json'), 'results.json', _MAX_JSON_BYTES
        )
        return (
            summary.get('checkpoint') == source
            and (summary.get('settings') or {}).get('model_card', {}).get('card_id', '') == card_id
        )
    except (OSError, ValueError, AttributeError):
        return False


def _results_name(eval_dir, name, ledger, source, card_id):
    """The results folder of a checkpoint: its name unless that is taken (by another run's
    results, or by anything the watcher did not write), then `<name>.run-<card id[:8]>`, ..."""
    used = {e.get('results_dir') for e in ledger.entries}
    candidates = [name, f'{name}.run-{_run_tag(card_id)}']
    candidates += [f'{candidates[1]}-{n}' for n in range(2, 1000)]
    for candidate in candidates:
        path = os.path.join(eval_dir, candidate)
        if candidate in used:
            continue
        if os.path.islink(path):  # it would take the results out of eval_dir
            continue
        own = _is_own_results(path, source, card_id) and not eval_outputs.foreign_outputs(path)
        if not os.path.lexists(path) or own or (os.path.isdir(path) and not os.listdir(path)):
            return candidate
    raise ValueError(f'{eval_dir}: no free results folder name for {name}.')


def _handle(
    settings,
    prefix,
    mtime,
    *,
    eval_dir,
    ledger,
    best_metric,
    log,
    run_info,
    record,
    this_run,
    title,
    events,
    evaluator,
):
    name = os.path.basename(prefix)
    step = checkpoints.checkpoint_step_from_name(prefix)
    card_id = run_info['card_id']
    identity = {
        'checkpoint': name,
        'path': os.path.realpath(prefix),
        'train_dir': run_info['train_dir'],
        'card_id': card_id,
        'index_mtime_ns': mtime,
        'settings': record,
    }
    source = os.path.abspath(prefix)
    with temp_dirs.made(eval_dir, _STAGED) as staging_dir:
        try:
            staged = checkpoints.stage_checkpoint(prefix, staging_dir)
            results_name = _results_name(eval_dir, name, ledger, source, card_id)
            if results_name != name:
                log(
                    f'[watch] {os.path.join(eval_dir, name)} holds other results; this one goes to '
                    f'{os.path.join(eval_dir, results_name)}'
                )
            with checkpoints.errors_naming(staged, prefix):
                result = evaluator.evaluate(
                    staged,
                    os.path.join(eval_dir, results_name),
                    summary_dir=None,
                    log=log,
                    source=source,
                )
        except tf_errors.RecordsError as err:
            # Not recorded: the checkpoint is evaluated once the records are fixed.
            raise tf_errors.RecordsError(err.records, err.reason, f'evaluating {name}') from None
        except checkpoints.CheckpointUnavailable as err:
            log(f'[watch] skipping {name}: {err}')
            entry = dict(identity, step=step, status=UNAVAILABLE, time=_now(), reason=str(err))
            ledger.append(entry)
            return entry
        entry = dict(
            identity,
            step=result.global_step,
            status=EVALUATED,
            time=_now(),
            metrics=result.metrics,
            class_ap=result.class_ap,
            results_dir=results_name,
            seconds=result.seconds,
            images_per_second=result.summary['images_per_second'],
        )
        events.write(result)
        previous = ledger.best(best_metric, this_run)
        value = result.metrics.get(best_metric)
        log(
            f'[watch] {name} (step {result.global_step}): '
            + ', '.join(f'{m} mAP {_pct(v)}' for m, v in result.metrics.items())
        )
        if value is not None and (previous is None or value > previous['metrics'][best_metric]):
            if _publish_best(
                staged,
                os.path.join(eval_dir, results_name),
                entry,
                eval_dir,
                settings.card,
                run_info,
                log,
            ):
                log(
                    f'[watch] new best {best_metric} mAP {_pct(value)} at step {result.global_step} '
                    f'-> {os.path.join(eval_dir, BEST_DIR)}'
                )
        ledger.append(entry)
        # The result's own class_ap is in label order (the ledger's JSON sorts its keys).
        labels = list(next(iter(result.class_ap.values()), {}))
        write_history(ledger, eval_dir, this_run, title, best_metric, labels)
        return entry
