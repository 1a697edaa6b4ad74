"""Checkpoint watcher: evaluates every checkpoint a trainer writes, each exactly once, oldest first.

State lives in `eval_dir`, so a restarted watcher neither repeats nor skips:
  eval_ledger.jsonl   one JSON object per handled checkpoint, in handling order:
                      {"checkpoint": basename, "step", "status": "evaluated" | "unavailable",
                       "time", and for evaluated ones "metrics", "class_ap", "results_dir",
                       "seconds", "images_per_second"; for unavailable ones "reason"}.
                      Rewritten atomically (temporary file + rename) on every append.
  <checkpoint basename>/   the results of that checkpoint (see `eval_core`).
  history.csv, history.png   step, mAP per metric and per-class AP of every evaluated checkpoint.
  best/               the best checkpoint by `best_metric` (its files, a `checkpoint` state file so
                      it can be passed as a directory) with its results and best.json.
  events.out.tfevents.*   TensorBoard scalars at each checkpoint's global step.

Checkpoints are found in the `checkpoint` state file (`all_model_checkpoint_paths`) AND by
globbing `*.index`, and are handled in order of their `.index` modification time (then step,
then name). Before evaluating one, its files are hard-linked (copied when linking is not
possible) into `eval_dir`, so the trainer's `max_to_keep` deleting it mid-way cannot break the
evaluation; one already gone is recorded as "unavailable" with a log line. The watcher stops
when the trainer has finished (`training_finished.json` in its folder) and its last checkpoint
is handled, at --final_step, or after --eval_timeout seconds without a new checkpoint.
"""
import csv
import datetime
import glob
import io
import json
import os
import shutil
import time

import tensorflow as tf

from model import card as card_lib
from model import checkpoints
from evaluation import evaluate
from evaluation import outputs as eval_outputs
from tf_extended import atomic_io

LEDGER_NAME = 'eval_ledger.jsonl'
BEST_DIR = 'best'
EVALUATED, UNAVAILABLE = 'evaluated', 'unavailable'


def list_checkpoints(directory):
    """Checkpoint prefixes in `directory` whose `.index` exists, oldest first.

    Union of the state file's `all_model_checkpoint_paths` (relative paths taken relative to
    `directory`) and the `*.index` files. Order: `.index` mtime, then step, then path.
    """
    prefixes = {p[:-len('.index')] for p in glob.glob(os.path.join(glob.escape(directory), '*.index'))}
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError):  # a state file being rewritten: the glob still sees all
        state = None
    if state is not None:
        for path in list(state.all_model_checkpoint_paths) + [state.model_checkpoint_path]:
            if path:
                prefixes.add(path if os.path.isabs(path) else os.path.join(directory, path))
    found = []
    for prefix in prefixes:
        try:
            mtime = os.stat(prefix + '.index').st_mtime_ns
        except FileNotFoundError:
            continue
        step = checkpoints.checkpoint_step_from_name(prefix)
        found.append((mtime, -1 if step is None else step, os.path.normpath(prefix)))
    return [prefix for _, _, prefix in sorted(found)]


def stage_checkpoint(prefix, directory):
    """Hard-links (or copies) the checkpoint's `.index` and `.data-*` files into `directory`.

    Returns the staged prefix. Raises CheckpointUnavailable when a file is already gone.
    """
    os.makedirs(directory, exist_ok=True)
    files = [prefix + '.index'] + sorted(glob.glob(glob.escape(prefix) + '.data-*'))
    if len(files) < 2:
        raise checkpoints.CheckpointUnavailable(f'{prefix}: no .data-* file next to the .index.')
    for path in files:
        target = os.path.join(directory, os.path.basename(path))
        try:
            try:
                os.link(path, target)
            except OSError as err:
                if isinstance(err, FileNotFoundError):
                    raise
                shutil.copyfile(path, target)
        except FileNotFoundError:
            raise checkpoints.CheckpointUnavailable(f'{path} was deleted before it could be evaluated.') from None
    return os.path.join(directory, os.path.basename(prefix))


class Ledger:
    """The JSON-lines record of handled checkpoints (see the module docstring)."""

    def __init__(self, eval_dir):
        self.path = os.path.join(eval_dir, LEDGER_NAME)
        self.entries = []
        if os.path.exists(self.path):
            with open(self.path, encoding='utf-8') as fh:
                for line_no, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        entry = json.loads(line)
                        entry['checkpoint'], entry['status']
                    except (json.JSONDecodeError, KeyError, TypeError):
                        raise ValueError(f'{self.path}:{line_no}: not a ledger entry ({line.strip()[:80]!r}); '
                                         f'fix or remove the line (every line is a JSON object with '
                                         f'"checkpoint" and "status").') from None
                    self.entries.append(entry)

    @property
    def handled(self):
        return {entry['checkpoint'] for entry in self.entries}

    def append(self, entry):
        self.entries.append(entry)
        atomic_io.write_text_atomic(self.path, ''.join(json.dumps(e, sort_keys=True) + '\n'
                                                          for e in self.entries))

    def evaluated(self):
        return [e for e in self.entries if e['status'] == EVALUATED]

    def best(self, metric):
        """The evaluated entry with the highest `metric` (first one on ties), or None."""
        scored = [e for e in self.evaluated() if e['metrics'].get(metric) is not None]
        return max(scored, key=lambda e: e['metrics'][metric]) if scored else None


def write_history(ledger, eval_dir):
    """history.csv (one row per evaluated checkpoint, by step) and history.png (mAP vs step)."""
    entries = sorted(ledger.evaluated(), key=lambda e: e['step'])
    metrics = sorted({m for e in entries for m in e['metrics']})
    class_columns = sorted({(rule, name) for e in entries for rule, aps in e['class_ap'].items()
                            for name in aps})
    text = io.StringIO()
    out = csv.writer(text, lineterminator='\n')
    out.writerow(['step', 'checkpoint'] + [f'{m}_mAP' for m in metrics]
                 + [f'{rule}_AP_{name}' for rule, name in class_columns])

    def cell(value):
        return '' if value is None else repr(float(value))
    for e in entries:
        out.writerow([e['step'], e['checkpoint']] + [cell(e['metrics'].get(m)) for m in metrics]
                     + [cell(e['class_ap'].get(rule, {}).get(name)) for rule, name in class_columns])
    atomic_io.write_text_atomic(os.path.join(eval_dir, 'history.csv'), text.getvalue())
    if entries:
        import matplotlib
        matplotlib.use('Agg')
        from matplotlib import pyplot as plt
        fig, ax = plt.subplots(figsize=(6, 4))
        for m in metrics:
            points = [(e['step'], e['metrics'][m]) for e in entries if e['metrics'].get(m) is not None]
            if points:
                ax.plot(*zip(*points), marker='o', label=m)
        ax.set(xlabel='global step', ylabel='mAP', ylim=(0, 1))
        ax.grid(alpha=0.3)
        ax.legend()
        tmp = os.path.join(eval_dir, '.history.png.tmp')
        fig.savefig(tmp, dpi=80, format='png')
        plt.close(fig)
        os.replace(tmp, os.path.join(eval_dir, 'history.png'))


def _publish_best(staged_prefix, results_dir, entry, eval_dir, card):
    """Makes eval_dir/best hold the staged checkpoint files, its model card (model.json), its
    results and best.json."""
    best_dir = os.path.join(eval_dir, BEST_DIR)
    new = eval_outputs.make_staging_dir(best_dir)
    for path in glob.glob(glob.escape(staged_prefix) + '.*'):
        os.replace(path, os.path.join(new, os.path.basename(path)))
    name = os.path.basename(staged_prefix)
    atomic_io.write_text_atomic(os.path.join(new, 'checkpoint'),
                                   f'model_checkpoint_path: "{name}"\nall_model_checkpoint_paths: "{name}"\n')
    shutil.copytree(results_dir, os.path.join(new, 'results'))
    card_lib.write(os.path.join(new, card_lib.CARD_FILE), card)
    atomic_io.write_json_atomic(os.path.join(new, 'best.json'), entry)
    old = None
    if os.path.isdir(best_dir):
        old = eval_outputs.make_staging_dir(best_dir + '.old')
        os.rmdir(old)
        os.replace(best_dir, old)
    os.replace(new, best_dir)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def wait_for_card(checkpoint_dir, interval_secs, timeout_secs=None, log=None, clock=time.time,
                  sleep=time.sleep):
    """Waits until `checkpoint_dir` holds a model card or a checkpoint (a trainer writes its card
    before its first checkpoint), or `timeout_secs` pass; a folder that is not there yet counts
    as empty."""
    log = log or (lambda line: print(line, flush=True))
    start = clock()
    said = False
    while not (card_lib.find_for_checkpoint(checkpoint_dir) or
               (os.path.isdir(checkpoint_dir) and checkpoints.latest_in_directory(checkpoint_dir))):
        if timeout_secs is not None and clock() - start >= timeout_secs:
            return
        if not said:
            log(f'[watch] waiting for the trainer\'s model card or first checkpoint in {checkpoint_dir}')
            said = True
        sleep(interval_secs if timeout_secs is None else
              max(0., min(interval_secs, timeout_secs - (clock() - start))))


def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')


def watch(settings, checkpoint_dir, eval_dir, *, interval_secs=60., timeout_secs=None,
          final_step=None, best_metric='voc07', log=None, clock=time.time, sleep=time.sleep):
    """Evaluates the checkpoints of `checkpoint_dir` as they appear (see the module docstring).

    Args:
      settings: evaluate.EvalSettings (its num_threads / gpu_memory_fraction keep the trainer fed).
      checkpoint_dir: the trainer's folder.
      eval_dir: where the ledger, results, history, best/ and summaries go.
      interval_secs: pause between scans when nothing is pending.
      timeout_secs: stop after this long without a new checkpoint (None: never).
      final_step: stop once a checkpoint of this global step or later has been handled.
        In any case it stops once the trainer's `training_finished.json` (written at the
        trainer's normal end) names a checkpoint it has handled, or one that is gone.
      best_metric: 'voc07', 'voc12' or 'coco' (must be in settings.metrics).
      log: callable taking one line (default: print).
    Returns:
      the ledger entries written by this call, in order.
    """
    log = log or (lambda line: print(line, flush=True))
    if best_metric not in settings.metrics:
        raise ValueError(f'best_metric {best_metric!r} must be one of the evaluated metrics '
                         f'{list(settings.metrics)}.')
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f'--checkpoint_path {checkpoint_dir!r} must be the trainer\'s directory '
                                f'when waiting for checkpoints.')
    os.makedirs(eval_dir, exist_ok=True)
    ledger = Ledger(eval_dir)
    written = []
    last_new = clock()
    if ledger.entries:
        log(f'[watch] resuming: {len(ledger.entries)} checkpoint(s) already handled in {ledger.path}')
    while True:
        pending = [p for p in list_checkpoints(checkpoint_dir) if os.path.basename(p) not in ledger.handled]
        for prefix in pending:
            entry = _handle(settings, prefix, eval_dir, ledger, best_metric, log)
            written.append(entry)
            if final_step is not None and entry['step'] is not None and entry['step'] >= final_step:
                log(f'[watch] final step {final_step} reached ({entry["checkpoint"]}); stopping.')
                return written
        if pending:
            last_new = clock()
            continue
        finished = checkpoints.training_finished(checkpoint_dir)
        if finished is not None and (finished['checkpoint'] in ledger.handled or not os.path.exists(
                os.path.join(checkpoint_dir, finished['checkpoint'] + '.index'))):
            log(f'[watch] the trainer finished at step {finished["step"]} '
                f'({checkpoints.FINISHED_MARKER}, {finished["checkpoint"]}); stopping.')
            return written
        if timeout_secs is not None and clock() - last_new >= timeout_secs:
            log(f'[watch] no new checkpoint in {checkpoint_dir} for {timeout_secs:g} s; stopping.')
            return written
        wait = interval_secs if timeout_secs is None else min(interval_secs, timeout_secs - (clock() - last_new))
        sleep(max(wait, 0.))


def _handle(settings, prefix, eval_dir, ledger, best_metric, log):
    name = os.path.basename(prefix)
    step = checkpoints.checkpoint_step_from_name(prefix)
    staging_dir = os.path.join(eval_dir, f'.staged-{name}')
    try:
        try:
            staged = stage_checkpoint(prefix, staging_dir)
            result = evaluate.evaluate_checkpoint(settings, staged, os.path.join(eval_dir, name),
                                                   summary_dir=eval_dir, log=log,
                                                   source=os.path.abspath(prefix))
        except checkpoints.CheckpointUnavailable as err:
            log(f'[watch] skipping {name}: {err}')
            entry = {'checkpoint': name, 'step': step, 'status': UNAVAILABLE, 'time': _now(),
                     'reason': str(err)}
            ledger.append(entry)
            return entry
        entry = {'checkpoint': name, 'step': result.global_step, 'status': EVALUATED, 'time': _now(),
                 'metrics': result.metrics, 'class_ap': result.class_ap, 'results_dir': name,
                 'seconds': result.seconds, 'images_per_second': result.summary['images_per_second']}
        previous = ledger.best(best_metric)
        value = result.metrics.get(best_metric)
        if value is not None and (previous is None or value > previous['metrics'][best_metric]):
            _publish_best(staged, os.path.join(eval_dir, name), entry, eval_dir, settings.card)
            log(f'[watch] new best {best_metric} {100 * value:.2f} at step {result.global_step} '
                f'-> {os.path.join(eval_dir, BEST_DIR)}')
        ledger.append(entry)
        write_history(ledger, eval_dir)
        return entry
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)
