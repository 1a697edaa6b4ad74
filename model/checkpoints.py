"""Checkpoint paths and scope-based restoring.

`resolve_checkpoint` turns whatever users pass as a checkpoint (a prefix, one of its `.index` /
`.data-*` files, a TF1 V1 single-file checkpoint such as TF-Slim's `vgg_16.ckpt`, or a directory)
into the prefix that `tf.compat.v1.train.Saver.restore` and `tf.train.load_checkpoint` take.
"""

import contextlib
import difflib
import glob
import json
import os
import re
import shutil
import time

from absl import logging
from google.protobuf import text_format
import numpy as np
import tensorflow as tf
from tensorflow.python.training import checkpoint_state_pb2

from tf_extended import atomic_io
from tf_extended import texts
from tf_extended import safe_io
from tf_extended import tf_errors

_DATA_SUFFIX = re.compile(r'\.data-\d{5}-of-\d{5}$')
_STEP_SUFFIX = re.compile(r'-(\d+)$')


def _step_of(prefix):
    match = _STEP_SUFFIX.search(prefix)
    return int(match.group(1)) if match else -1


# The CheckpointState text proto TF's savers keep in a checkpoint folder.
STATE_FILE = 'checkpoint'
# The start of TF's log record for every Saver restore (a regular expression), for the scripts
# that name what they restored in a line of their own.
RESTORE_RECORD = r'Restoring parameters from '
_MAX_STATE_BYTES = 1 << 20
# First line of the `checkpoint` state files the checkpoint converters write (a text-proto
# comment TF's reader skips; converters/checkpoint_io.py writes it, this module may not import
# it): the folder holds converted weights, not a training.
CONVERTER_STATE_FILE_HEADER = (
    '# written by the ssd-tf checkpoint converter (converters/checkpoint_io.py); '
    'a later conversion into this folder replaces it'
)
# The two-line state file of converter versions before the header. TF's savers write the same two
# lines for a folder listing one checkpoint (--max_to_keep=1, a training's first save).
_HEADER_LESS_CONVERTER_STATE = re.compile(
    r'model_checkpoint_path: "([^"/\\]+)"\n'
    r'all_model_checkpoint_paths: "\1"\n'
)


def _exists(prefix):
    return os.path.isfile(prefix + '.index') or os.path.isfile(prefix)


def _read_state(directory):
    """The state file's CheckpointState as written (paths not joined), or None when there is
    none or it is not one (TF's readers ignore such a file too)."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.lexists(path):
        return None
    try:
        text = safe_io.read_bytes(path, _MAX_STATE_BYTES, 'checkpoint state file').decode()
        state = checkpoint_state_pb2.CheckpointState()
        text_format.Merge(text, state)  # as TF's reader: a repeated field's last value wins
    except (OSError, ValueError, text_format.ParseError):  # UnicodeDecodeError, UnsafeFileError
        return None
    return state if state.model_checkpoint_path else None


def written_by_converter(path, header_less_is_ours=None):
    """True when the `checkpoint` state file at `path` was written by a checkpoint converter.

    The one check of the converters' mark, for both that ask: a conversion (may it replace the
    folder's state file? converters/checkpoint_io.py) and `resume_checkpoint` (does --train_dir
    hold converted weights?). The file is read with safe_io, as `_read_state` reads it: at most
    _MAX_STATE_BYTES, and a missing, unreadable or larger file, a folder, a FIFO or a device (also
    through a link) is no converter's (False; nothing blocks or raises). CRLF and CR line ends
    count as LF, as text mode reads them.

    Args:
      path: the state file.
      header_less_is_ours: None: only a file starting with CONVERTER_STATE_FILE_HEADER counts
        (the trainer's rule: it refuses a folder by the header alone). Or a function of a
        checkpoint prefix, True when a converter wrote that checkpoint (the converters pass
        theirs: a converter's card or record beside it; this module imports no converter and no
        card): then the two-line file of converter versions before the header counts too when
        the checkpoint it names (in the state file's folder) passes. TF writes the same two
        lines for one listed checkpoint, so the lines alone tell nothing.
    """
    if not os.path.lexists(path):
        return False
    try:
        data = safe_io.read_bytes(path, _MAX_STATE_BYTES, 'checkpoint state file')
    except OSError:  # also UnsafeFileError
        return False
    data = data.replace(b'\r\n', b'\n').replace(b'\r', b'\n')
    if data.startswith(CONVERTER_STATE_FILE_HEADER.encode() + b'\n'):
        return True
    if header_less_is_ours is None:
        return False
    try:
        old = _HEADER_LESS_CONVERTER_STATE.fullmatch(data.decode('utf-8'))
    except UnicodeDecodeError:
        return False
    return old is not None and bool(
        header_less_is_ours(os.path.join(os.path.dirname(path), old.group(1)))
    )


def _inside(prefix, directory):
    here = os.path.realpath(directory)
    return os.path.commonpath([os.path.realpath(prefix), here]) == here


def checkpoint_state(directory):
    """The checkpoints `directory`'s `checkpoint` state file names, as checkpoints of `directory`.

    A path outside `directory` counts by its name: TF's savers write absolute paths by default (and
    this trainer did before it wrote relative ones), so a copied or moved training folder still
    names the original's files. An entry with no checkpoint of its name here is left out: read
    as written, a copy would evaluate, export or resume from (and with max_to_keep, delete) the
    original folder's checkpoints.

    Returns:
      (latest, listed): the state's latest checkpoint (None when it names none that exists
      here) and its listed ones that exist, oldest first; prefixes joined to `directory` as
      given. (None, []) without a readable state file.
    """
    state = _read_state(directory)
    if state is None:
        return None, []

    def local(path):
        prefix = os.path.join(directory, path)  # an absolute path stays as it is
        if not _inside(prefix, directory):
            prefix = os.path.join(directory, os.path.basename(path))
        return prefix if _exists(prefix) else None

    listed = [local(p) for p in state.all_model_checkpoint_paths]
    return local(state.model_checkpoint_path), [p for p in dict.fromkeys(listed) if p]


def localize_state_file(train_dir):
    """Makes `train_dir`'s state file name, by relative paths, the checkpoints `checkpoint_state`
    and `latest_in_directory` read there (the latest last), when it does not already.

    For the (only) writer of train_dir, before it resumes: TF's resume (MonitoredTrainingSession)
    and its Saver's max_to_keep read the state file as written, so a copied folder with absolute
    paths resumed from, and deleted, the original's checkpoints; with no state file (or one
    naming deleted files), TF started from scratch or failed where `latest_in_directory` had
    found a checkpoint by its `.index`.

    Returns:
      The path of the rewritten state file, or None when it was left as it is.
    """
    latest = latest_in_directory(train_dir)
    if latest is None or not _inside(latest, train_dir):  # none, or a pointer: resume_checkpoint
        return None
    _, listed = checkpoint_state(train_dir)
    names = list(dict.fromkeys(os.path.basename(p) for p in listed + [latest]))
    names.remove(os.path.basename(latest))
    names.append(os.path.basename(latest))
    state = _read_state(train_dir)
    if state is not None and (
        state.model_checkpoint_path,
        list(state.all_model_checkpoint_paths),
    ) == (names[-1], names):
        return None
    wanted = checkpoint_state_pb2.CheckpointState(
        model_checkpoint_path=names[-1], all_model_checkpoint_paths=names
    )
    path = os.path.join(train_dir, STATE_FILE)
    atomic_io.write_text_atomic(path, text_format.MessageToString(wanted))
    return path


# The checkpoints a resume unlisted (`unlist_beyond_newest`) and has not removed yet, by name.
UNLISTED_FILE = '.unlisted_checkpoints.json'


# The names of the trainer's checkpoints (training/trainer.py saves `model.ckpt-<step>`).
_TRAINER_CHECKPOINT = re.compile(r'model\.ckpt-[0-9]+')


def _read_unlisted(record):
    """The checkpoint names in UNLISTED_FILE `record` ([] when there is none). A record that
    cannot be read (not a regular file, over 1 MiB, not a JSON list) is logged and taken as
    empty: the checkpoints it named stay on disk."""
    if not os.path.lexists(record):
        return []
    try:
        names = safe_io.read_json(record, 'record of unlisted checkpoints', 1 << 20)
        if not isinstance(names, list):
            raise ValueError(f'{record}: the record of unlisted checkpoints is not a JSON list.')
    except (OSError, ValueError) as err:
        logging.warning(
            '%s; the checkpoints it names (if any) are kept: remove them and the record by hand.',
            str(err).rstrip('.'),
        )
        return []
    # The trainer's checkpoint names only: a record naming paths or other files (planted, or
    # edited) must not make a resume delete them.
    return [n for n in names if isinstance(n, str) and _TRAINER_CHECKPOINT.fullmatch(n)]


def unlist_beyond_newest(train_dir, max_to_keep):
    """Rewrites `train_dir`'s state file without the checkpoints it lists beyond its `max_to_keep`
    newest, and records them in UNLISTED_FILE; for the (only) writer of train_dir, before it
    resumes (after `localize_state_file`). Returns every recorded prefix, oldest first (also those
    of an earlier resume that ended before its first save): `remove_checkpoints` deletes them once
    the run has written a checkpoint of its own (a resume that fails before then has lost nothing,
    and the next one removes them).

    A resume with a lower --max_to_keep: TF's Saver takes over the listed checkpoints and removes
    one per save, so the folder kept as many as before, forever. 0 or None keeps all, as in TF.

    Only the trainer's checkpoints (`model.ckpt-<step>` in `train_dir`) are rotated: others the
    state file lists (a user's `my_best_weights`, planted or edited in) are taken off the list TF's Saver
    rotates and never recorded, so their files stay (a resume deleted them).
    """
    record = os.path.join(train_dir, UNLISTED_FILE)
    names = _read_unlisted(record)
    latest, listed = checkpoint_state(train_dir)
    # The trainer's: `model.ckpt-<step>` in train_dir itself (`sub/model.ckpt-9` is not).
    ours = [
        p
        for p in listed
        if _TRAINER_CHECKPOINT.fullmatch(os.path.basename(p))
        and os.path.normpath(os.path.dirname(p)) == os.path.normpath(train_dir)
    ]
    beyond = len(ours) - max_to_keep if max_to_keep else 0
    if beyond > 0 or len(ours) < len(listed):
        dropped, kept = ours[: max(beyond, 0)], ours[max(beyond, 0) :]
        names += [os.path.basename(p) for p in dropped if p not in names]
        # The record first: a kill between the two leaves recorded listed ones, never unrecorded
        # unlisted ones.
        atomic_io.write_json_atomic(record, names)
        # The latest stays what it was (a resume restores it), unless it is to be removed.
        newest = latest if latest and latest not in dropped else (kept or listed)[-1]
        state = checkpoint_state_pb2.CheckpointState(
            model_checkpoint_path=os.path.basename(newest),
            all_model_checkpoint_paths=[os.path.basename(p) for p in kept],
        )
        atomic_io.write_text_atomic(
            os.path.join(train_dir, STATE_FILE), text_format.MessageToString(state)
        )
        listed = kept
    # A recorded one listed again (a kill between the two writes, then a higher --max_to_keep)
    # is kept.
    listed = {os.path.basename(p) for p in listed}
    return [os.path.join(train_dir, n) for n in dict.fromkeys(names) if n not in listed]


def remove_checkpoints(train_dir, prefixes):
    """Deletes the files of the checkpoints `prefixes` (`.index`, `.meta`, data shards; not
    other files beside them, such as a `.model.json`; files already gone are fine), then
    `unlist_beyond_newest`'s record."""
    for prefix in prefixes:
        for path in glob.glob(glob.escape(prefix) + '.*'):
            if path[len(prefix) :] in ('.index', '.meta') or _DATA_SUFFIX.search(path):
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass
    try:
        os.remove(os.path.join(train_dir, UNLISTED_FILE))
    except FileNotFoundError:
        pass


# Files the other steps write in their output folders, with keys every version of them holds
# (evaluation/watcher.py LEDGER_NAME and BEST_JSON, evaluation/outputs.py RESULT_FILES,
# model/card.py EXPORT_METADATA_FILE, inference/detection.py DETECTIONS_FILE): a --train_dir
# holding one is another step's folder. Files of those names without the keys (an experiment
# tracker's results.json) are a user's, and no reason to refuse.
OUTPUT_FOLDERS = {
    'eval_ledger.jsonl': ("an eval watcher's --eval_dir", ('checkpoint', 'status')),
    'best.json': ("the eval watcher's best/ copy of a checkpoint", ('checkpoint', 'metrics')),
    'results.json': ("an evaluation's --eval_dir", ('checkpoint', 'global_step', 'settings')),
    'metadata.json': ("an export's --output_dir", ('model_name', 'export')),
    'detections.json': ("a detection run's --output_dir", ('model', 'num_processed')),
}
# Read at most this much of such a file; a larger one (a long video's detections.json) is
# taken as the step's by its name.
_OUTPUT_RECORD_BYTES = 16 << 20


def _written_by_a_step(path, keys):
    """True when the JSON object in `path` (the first line of a .jsonl) has `keys`."""
    try:
        data = safe_io.read_bytes(path, _OUTPUT_RECORD_BYTES, 'output record')
    except safe_io.UnsafeFileError:
        return os.path.isfile(path)  # only too large: a regular file
    except OSError:
        return False
    text = data.split(b'\n', 1)[0] if path.endswith('.jsonl') else data
    try:
        record = json.loads(text.decode('utf-8'))
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and all(key in record for key in keys)


def check_train_dir(train_dir):
    """Refuses (ValueError) a --train_dir that is another step's output folder: training there
    would mix its checkpoints with the evaluation's, export's or detection's files (a resume in
    the watcher's best/ rewrote the checkpoint it keeps)."""
    for name, (what, keys) in OUTPUT_FOLDERS.items():
        if _written_by_a_step(os.path.join(train_dir, name), keys):
            start = (
                'to start from its model, pass it as --checkpoint_path'
                if name == 'best.json'  # the one that keeps a checkpoint
                else 'to start from the model it came from, pass that training folder or '
                'checkpoint as --checkpoint_path'
            )
            raise ValueError(
                f'--train_dir {train_dir} holds {name}: it is {what}, not a training folder. '
                f'Train into a folder of its own ({start}).'
            )


def resume_checkpoint(train_dir):
    """The checkpoint a training that writes `train_dir` resumes from: `latest_in_directory`, or
    None for a missing folder or one without checkpoints.

    Raises:
      ValueError: the folder holds no checkpoint of its own but its state file names another
        folder's (a pointer). TF would resume from it and, with max_to_keep, delete that folder's
        checkpoints: a user's other training. Or its state file is a converter's (the folder
        holds converted weights, which have no global step or optimizer slots to resume). Or a
        file of its latest checkpoint is not a regular file (`irregular_file`).
    """
    if not os.path.isdir(train_dir):
        return None
    latest = latest_in_directory(train_dir)
    state = os.path.join(train_dir, STATE_FILE)
    if latest is not None and written_by_converter(state):
        raise ValueError(
            f'{state} was written by a checkpoint converter: {train_dir} holds converted '
            f'weights ({os.path.basename(latest)}), not a training to resume; pass them as '
            f'--checkpoint_path={latest} with a new --train_dir.'
        )
    if latest is not None and not _inside(latest, train_dir):
        raise ValueError(
            f'{state} names a checkpoint of another folder, {latest}: training in {train_dir} '
            f'would resume from it and delete that folder\'s older checkpoints (--max_to_keep). '
            f'To go on with that training, pass its folder as --train_dir; to start from it in '
            f'{train_dir}, move {state} away and pass --checkpoint_path={latest}.'
        )
    problem = latest and _irregular_checkpoint(latest)
    if problem:
        raise ValueError(
            f'--train_dir {train_dir}: its latest checkpoint cannot be resumed: {problem}'
        )
    return latest


def latest_in_directory(directory):
    """The newest checkpoint prefix in `directory`, or None when it holds none.

    The `checkpoint` state file decides when it names a checkpoint that exists here (see
    `checkpoint_state`); otherwise (state file missing, or naming deleted files or another
    folder's) the `.index` file with the highest `-<step>` suffix, then the newest modification
    time, wins. A folder without checkpoints of its own whose state file names another
    folder's latest checkpoint (a pointer, which TF allows) resolves to that one, as in TF.
    """
    prefix, _ = checkpoint_state(directory)
    if prefix is not None:
        return prefix
    candidates = [p[: -len('.index')] for p in glob.glob(os.path.join(directory, '*.index'))]
    if candidates:
        return max(candidates, key=lambda p: (_step_of(p), os.path.getmtime(p + '.index')))
    state = _read_state(directory)
    pointed = state and os.path.join(directory, state.model_checkpoint_path)
    return pointed if pointed and _exists(pointed) else None


# Written by the trainer when it stops normally, removed when a run starts; the eval watcher
# stops once it has handled the checkpoint it names.
FINISHED_MARKER = 'training_finished.json'


def mark_training_finished(train_dir):
    """Writes `<train_dir>/training_finished.json` {"checkpoint": basename, "step", "time"} for the
    directory's newest checkpoint (atomically)."""
    prefix = latest_in_directory(train_dir)
    atomic_io.write_json_atomic(
        os.path.join(train_dir, FINISHED_MARKER),
        {
            'checkpoint': os.path.basename(prefix),
            'step': _step_of(prefix),
            'time': time.strftime('%Y-%m-%dT%H:%M:%S'),
        },
    )


def clear_training_finished(train_dir):
    """Removes the marker (a run is starting or resuming)."""
    path = os.path.join(train_dir, FINISHED_MARKER)
    if os.path.exists(path):
        os.remove(path)


# What TF's savers leave behind when killed (or out of disk space) while saving:
# `<prefix>_temp/` (sharded saves, the saver's own comment says it "can be safely removed"),
# `<file>.tempstate<N>` (a tensor bundle being written), `<prefix>.meta.tmp<hex>` (the graph,
# written last) and `checkpoint.tmp<hex>` (the state file being replaced).
_INTERRUPTED_SAVE = re.compile(
    r'^(model\.ckpt-\d+(_temp(_[0-9a-f]{32})?|\..*\.tempstate\d+|\.meta\.tmp[0-9a-f]{32})'
    r'|checkpoint\.tmp[0-9a-f]{32})$'
)


def remove_interrupted_saves(train_dir):
    """Removes the temporary files of saves that a kill interrupted (see `_INTERRUPTED_SAVE`) and
    of our own atomic writes there; call it when the (only) writer of train_dir starts.
    Returns the removed paths."""
    if not os.path.isdir(train_dir):
        return []
    removed = atomic_io.remove_orphans(train_dir)
    for name in os.listdir(train_dir):
        path = os.path.join(train_dir, name)
        if not _INTERRUPTED_SAVE.match(name):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
        removed.append(path)
    if removed:
        logging.info(
            'Removed %d temporary file(s) of an interrupted save: %s',
            len(removed),
            ', '.join(os.path.basename(p) for p in removed),
        )
    return removed


def training_finished(train_dir):
    """The marker's dict, or None while training runs (or never ran to its end). Raises
    ValueError naming the file when it is not a marker the trainer writes."""
    path = os.path.join(train_dir, FINISHED_MARKER)
    if not os.path.lexists(path):
        return None
    fix = 'delete it (the trainer writes it again when it finishes)'
    try:
        marker = safe_io.read_json(path, 'training marker', 1 << 20)
    except (OSError, ValueError) as err:
        raise ValueError(f'{err} If no trainer wrote it, {fix}.') from None
    if not (
        isinstance(marker, dict)
        and isinstance(marker.get('checkpoint'), str)
        and os.path.basename(marker['checkpoint']) == marker['checkpoint']
        and isinstance(marker.get('step'), int)
    ):
        raise ValueError(
            f'{path}: not the marker the trainer writes when it finishes (a JSON object with '
            f'a checkpoint file name and a step); {fix}.'
        )
    return marker


class CheckpointError(ValueError):
    """`--checkpoint_path` names something that is not a loadable checkpoint (one line: the file
    and what is wrong with it)."""


def _first_line(err):
    text = getattr(err, 'message', None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


# The models export_ssd_network.py writes (inference/export.py FILES), by the kind detect's flags
# name (--frozen_graph, ...): (their file type, None for a folder; what a message calls them).
# Here, not in inference, which imports this module: given as a checkpoint, such a file is named
# as what it is.
EXPORT_KINDS = {
    'openvino_model': ('.xml', 'an OpenVINO model'),
    'frozen_graph': ('.pb', 'a frozen graph'),
    'tflite_model': ('.tflite', 'a TFLite model'),
    'saved_model_dir': (None, 'a SavedModel folder'),
}


def export_kind_text(kind):
    """What a message asks for: 'a frozen graph file (.pb)', 'a SavedModel folder'."""
    suffix, noun = EXPORT_KINDS[kind]
    return f'{noun} file ({suffix})' if suffix else noun


def export_kinds_text():
    """Every kind of export, for a message ('an OpenVINO model file (.xml), ... or a SavedModel
    folder')."""
    texts = [export_kind_text(kind) for kind in EXPORT_KINDS]
    return ', '.join(texts[:-1]) + ' or ' + texts[-1]


# Weights of other frameworks that the converters read, by file type: (what a message calls
# them, the converter).
CONVERTED_KINDS = {
    '.caffemodel': ('a Caffe model', 'caffe_to_tensorflow.py'),
    '.pth': ('a PyTorch file', 'pytorch_to_tensorflow.py'),
    '.pt': ('a PyTorch file', 'pytorch_to_tensorflow.py'),
}


def checkpoint_files(prefix):
    """The files TensorFlow reads of the checkpoint `prefix` (as `resolve_checkpoint` returns
    it): a V1 checkpoint's single file (no `.index` beside it), else its `.index` and `.data-*`
    files (those there, sorted)."""
    if os.path.lexists(prefix) and not os.path.lexists(prefix + '.index'):
        return [prefix]
    return [prefix + '.index'] + sorted(glob.glob(glob.escape(prefix) + '.data-*'))


def irregular_file(prefix):
    """'<file> is <what it is>, not a regular file' (str) for the first of the checkpoint's files
    (`checkpoint_files`) that is a FIFO, a device, a folder or a broken link, else None (missing
    files are left to the reader's error). TensorFlow's readers opened a FIFO and waited for a
    writer forever; a checkpoint unpacked from an archive can hold one."""
    for path in checkpoint_files(prefix):
        what = safe_io.kind(path) if os.path.lexists(path) else None
        if what:
            return f'{path} is {what}, not a regular file'
    return None


def _irregular_checkpoint(prefix):
    """`irregular_file`'s finding with what to do, or None."""
    problem = irregular_file(prefix)
    return problem and (
        f"{problem}; a checkpoint is read from regular files only: put the checkpoint's files "
        'there, or use another checkpoint.'
    )


def _check_readable(prefix, v1_file):
    """Opens the checkpoint's table (the `.index`, or the V1 file) as the readers will, once its
    files are shown to be regular files (`irregular_file`)."""
    problem = _irregular_checkpoint(prefix)
    if problem:
        raise CheckpointError(problem)
    try:
        tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, OSError, ValueError, RuntimeError) as err:
        if v1_file:
            suffix = os.path.splitext(prefix)[1].lower()
            what = next((noun for s, noun in EXPORT_KINDS.values() if s == suffix), None)
            if what:
                raise CheckpointError(
                    f'{prefix}: {what}, not a TensorFlow checkpoint: give the checkpoint it was '
                    f'exported from (metadata.json\'s export.checkpoint.path); eval and detect '
                    f'run it as it is (--exported_model={prefix}).'
                ) from None
            if suffix in CONVERTED_KINDS:
                noun, converter = CONVERTED_KINDS[suffix]
                raise CheckpointError(
                    f'{prefix}: {noun}, not a TensorFlow checkpoint: convert it with '
                    f'{converter} first (README.md, "Pretrained weights", gives the command for '
                    f'each published model) and pass the checkpoint it writes.'
                ) from None
            reason = _first_line(err)
            if 'bad magic number' in reason:  # any other file: TF's advice is about restore ops
                reason = 'its first bytes are not a checkpoint table\'s'
            raise CheckpointError(
                f'{prefix}: not a TensorFlow checkpoint (no {os.path.basename(prefix)}.index '
                f'beside it, and not a V1 checkpoint file either: {reason}).'
            ) from None
        raise CheckpointError(
            f'{prefix}.index: not a readable checkpoint index (corrupt or '
            f'not a checkpoint: {_first_line(err)}).'
        ) from None


def resolve_checkpoint(path):
    """The checkpoint prefix that `path` names, checked to be readable.

    Args:
      path: a checkpoint prefix (`model.ckpt-1000`), its `.index`, `.meta` or
        `.data-NNNNN-of-NNNNN` file, a V1 single-file checkpoint (`vgg_16.ckpt`, also as its
        `.meta`), or a directory (its latest checkpoint, see `latest_in_directory`).
    Returns:
      str: the prefix (for V1 files, the file itself).
    Raises:
      FileNotFoundError: nothing loadable there; the message says what was looked for.
      CheckpointError (a ValueError): the file is there but is not a checkpoint, or its
        `.index` is corrupt; the message names the file.
    """
    if not path:
        raise FileNotFoundError('no checkpoint path given.')
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        prefix = latest_in_directory(path)
        # model/card.py's EXPORT_METADATA_FILE (card imports this module, not the reverse).
        if prefix is None and os.path.isfile(os.path.join(path, 'metadata.json')):
            raise FileNotFoundError(
                f'{path} is an export folder of export_ssd_network.py (it holds metadata.json), '
                f'not a checkpoint: give the checkpoint it was exported from (metadata.json\'s '
                f'export.checkpoint.path); eval and detect also run its model files '
                f'(--exported_model=<file>).'
            )
        if prefix is None and os.path.isfile(os.path.join(path, 'saved_model.pb')):
            parent = os.path.dirname(os.path.normpath(path)) or '.'
            exported_from = (
                f" (metadata.json's export.checkpoint.path in {parent})"
                if os.path.isfile(os.path.join(parent, 'metadata.json'))
                else ''
            )
            raise FileNotFoundError(
                f'{path} is a SavedModel folder (it holds saved_model.pb), not a checkpoint: '
                f'give the checkpoint it was exported from{exported_from}; eval and detect also '
                f'run the SavedModel itself (--exported_model={path}).'
            )
        if prefix is None:
            raise FileNotFoundError(
                f'{path} is a directory without checkpoints (no *.index files, and no '
                f'`checkpoint` state file naming one that exists).'
            )
        _check_readable(prefix, v1_file=False)
        return prefix
    meta = path.endswith('.meta')
    if meta or path.endswith('.index'):
        prefix = os.path.splitext(path)[0]
    else:
        prefix = _DATA_SUFFIX.sub('', path)
    if os.path.lexists(prefix + '.index'):  # a FIFO or a broken link is named as such
        _check_readable(prefix, v1_file=False)
        return prefix
    # V1 format: one file, no index (a TF1 Saver writes its graph beside it as <file>.meta). A
    # FIFO or a broken link there is named as such (`_check_readable`), not "no checkpoint".
    if (prefix == path or meta) and os.path.lexists(prefix) and not os.path.isdir(prefix):
        _check_readable(prefix, v1_file=True)
        return prefix
    if meta:
        raise FileNotFoundError(
            f'no checkpoint at {path}: a .meta file holds the graph, not the weights; pass the '
            f'prefix {prefix}, with its .index and .data-* files (or the V1 checkpoint file '
            f'{prefix}) beside it.'
        )
    folder = os.path.dirname(prefix) or '.'
    try:
        names = [n[: -len('.index')] for n in os.listdir(folder) if n.endswith('.index')]
    except OSError:  # no such folder, or not one
        names = []
    # A step that is not (or no longer) there: the folder's checkpoints, the latest last.
    steps = {n: checkpoint_step_from_name(n) for n in names}
    names.sort(key=lambda n: (-1 if steps[n] is None else steps[n], n))
    shown = ''
    if names:
        latest = ' (the latest five)' if len(names) > 5 else ''
        shown = f'; {folder} holds {", ".join(names[-5:])}{latest}'
    raise FileNotFoundError(
        f'no checkpoint at {path}: expected {prefix}.index (and its .data-* '
        f'files), a V1 checkpoint file, or a directory holding checkpoints{shown}.'
    )


# ---------------------------------------------------------------------------------------------
# Scopes.


def parse_scopes(text):
    """Comma-separated scope prefixes -> list without empty items or trailing '/'."""
    if not text:
        return []
    if isinstance(text, (list, tuple)):
        text = ','.join(text)
    return [s.strip().rstrip('/') for s in text.split(',') if s.strip().rstrip('/')]


def in_scopes(name, scopes):
    """True when variable `name` (with or without `:0`) lies in one of `scopes`, matched on scope
    boundaries: `ssd/conv1` contains `ssd/conv1/weights` but not `ssd/conv10/weights`."""
    name = name.split(':')[0]
    return any(name == s or name.startswith(s + '/') for s in scopes)


def filter_variables(variables, include_scopes=None, exclude_scopes=None):
    """`variables` inside `include_scopes` (all when empty) and outside `exclude_scopes`."""
    include, exclude = parse_scopes(include_scopes), parse_scopes(exclude_scopes)
    return [
        v
        for v in variables
        if (not include or in_scopes(v.op.name, include)) and not in_scopes(v.op.name, exclude)
    ]


def check_scopes_match(flag, text, variables):
    """Raises ValueError naming `flag` when one of its comma-separated scopes (`text`) contains
    none of `variables`, suggesting the closest of their scopes: a typo would otherwise train, or
    restore, what the user meant to leave out."""
    names = [v.op.name for v in variables]
    unmatched = [s for s in parse_scopes(text) if not any(in_scopes(n, [s]) for n in names)]
    if not unmatched:
        return
    known = sorted({n.rsplit('/', k)[0] for n in names for k in range(1, n.count('/') + 1)})
    hints = []
    for scope in unmatched:
        # The outermost scopes it begins (`block4` of `block4_box`) first, else similar ones.
        begun = [k for k in known if k.startswith(scope)]
        close = [k for k in begun if not any(k.startswith(b + '/') for b in begun)][:2] or (
            difflib.get_close_matches(scope, known, n=2, cutoff=0.6)
        )
        hints.append(f'{scope}' + (f' (did you mean {" or ".join(close)}?)' if close else ''))
    raise ValueError(
        f'{flag}: {", ".join(hints)} {"matches" if len(hints) == 1 else "match"} no variable of '
        f'the model; a scope is a leading part of variable names, such as '
        f'{_layer_scope(names[-1])}.'
    )


def rewrite_leading_scope(name, scope, new_scope):
    """`name` with its leading `scope` replaced by `new_scope` (on the scope boundary only);
    names outside `scope` are returned unchanged."""
    if name == scope:
        return new_scope
    if name.startswith(scope + '/'):
        return new_scope + name[len(scope) :]
    return name


# ---------------------------------------------------------------------------------------------
# TF-Slim ImageNet backbones.
#
# VGG16 fc6/fc7 -> SSD conv6/conv7, as Caffe's "VGG_ILSVRC_16_layers_fc_reduced" (ParseNet, used
# by SSD: "we convert fc6 and fc7 to convolutional layers, subsample parameters from fc6 and fc7"):
# fc6 [7, 7, 512, 4096] keeps the spatial taps 0, 3, 6 (a 3x3 kernel that the dilation 6 spreads
# over about the original 7x7 x 2 field) and every 4th output channel -> [3, 3, 512, 1024]; fc7
# [1, 1, 4096, 4096] keeps every 4th input and output channel -> [1, 1, 1024, 1024]; the biases
# keep every 4th entry.
FC_SPATIAL_STEP = 3  # taps 0, 3, 6 of 7
FC_CHANNEL_STEP = 4


def vgg_fc6_to_conv6(weights):
    """TF-Slim `vgg_16/fc6/weights` `[7, 7, C, 4096]` -> `conv6/weights` `[3, 3, C, 1024]`."""
    return weights[::FC_SPATIAL_STEP, ::FC_SPATIAL_STEP, :, ::FC_CHANNEL_STEP]


def vgg_fc7_to_conv7(weights):
    """TF-Slim `vgg_16/fc7/weights` `[1, 1, 4096, 4096]` -> `conv7/weights` `[1, 1, 1024, 1024]`."""
    return weights[:, :, ::FC_CHANNEL_STEP, ::FC_CHANNEL_STEP]


def vgg_fc_biases(biases):
    """fc6/fc7 biases `[4096]` -> conv6/conv7 biases `[1024]`."""
    return biases[::FC_CHANNEL_STEP]


def _vgg_16_map(relative):
    """Our `ssd_*_vgg/<relative>` -> (`vgg_16/...` name, numpy transform or None), or None."""
    if re.fullmatch(r'conv[1-5]/conv[1-5]_[1-3]/(weights|biases)', relative):
        return 'vgg_16/' + relative, None
    match = re.fullmatch(r'conv([67])/(weights|biases)', relative)
    if match:
        layer, kind = match.groups()
        transform = (
            vgg_fc_biases
            if kind == 'biases'
            else vgg_fc6_to_conv6
            if layer == '6'
            else vgg_fc7_to_conv7
        )
        return 'vgg_16/fc%s/%s' % (layer, kind), transform
    return None


def _mobilenet_v1_map(relative):
    """Our `ssd_300_mobilenet/<relative>` -> (`MobilenetV1/...` name, None), or None."""
    match = re.fullmatch(r'conv0/(weights|BatchNorm/\w+)', relative)
    if match:
        return 'MobilenetV1/Conv2d_0/' + match.group(1), None
    match = re.fullmatch(r'conv(\d+)/dw/(depthwise_weights|BatchNorm/\w+)', relative)
    if match and 1 <= int(match.group(1)) <= 13:
        return 'MobilenetV1/Conv2d_%s_depthwise/%s' % match.groups(), None
    match = re.fullmatch(r'conv(\d+)/(weights|BatchNorm/\w+)', relative)
    if match and 1 <= int(match.group(1)) <= 13:
        return 'MobilenetV1/Conv2d_%s_pointwise/%s' % match.groups(), None
    return None


# checkpoint_model_scope -> name map of a TF-Slim ImageNet classifier checkpoint. Our variables
# without an entry (extra layers, heads, L2 normalisation) keep their initialisers.
TF_SLIM_NAME_MAPS = {'vgg_16': _vgg_16_map, 'MobilenetV1': _mobilenet_v1_map}


# ---------------------------------------------------------------------------------------------
# Restore plans.


class RestoreItem:
    """One variable to restore: `variable` <- `transform(checkpoint[checkpoint_name])`."""

    def __init__(self, variable, checkpoint_name, transform=None):
        self.variable = variable
        self.checkpoint_name = checkpoint_name
        self.transform = transform

    @property
    def name(self):
        return self.variable.op.name

    @property
    def by_class(self):
        """Whether the transform picks the checkpoint's classes (`ClassGather`), not a slice."""
        return isinstance(self.transform, ClassGather)


class ClassGather:
    """A class head's checkpoint value with its classes picked by name: the last axis is
    anchor-major `[A * C]` (C the checkpoint's classes, background first); it becomes
    `[A * len(indices)]` with class `indices[j]` of each anchor at position j."""

    def __init__(self, indices, num_classes):
        self.indices = list(indices)
        self.num_classes = num_classes

    def __call__(self, value):
        if value.shape[-1] % self.num_classes:
            return value  # not this many classes: the shape check then names it
        per_anchor = value.reshape(value.shape[:-1] + (-1, self.num_classes))
        picked = np.take(per_anchor, self.indices, axis=-1)
        return picked.reshape(value.shape[:-1] + (-1,))


def _layer_scope(name):
    """The layer scope of a variable: `a/conv/weights` -> `a/conv`, `a/conv/BatchNorm/beta` ->
    `a/conv`."""
    scope = name.rsplit('/', 1)[0]
    return scope[: -len('/BatchNorm')] if scope.endswith('/BatchNorm') else scope


def _checkpoint_entry(name, model_scope, checkpoint_model_scope, class_heads=None):
    """(checkpoint name, transform or None) for our variable `name` under this
    --checkpoint_model_scope, or None where a TF-Slim name map leaves it out (not backbone).
    class_heads: as `plan_restore`'s."""
    name_map = TF_SLIM_NAME_MAPS.get(checkpoint_model_scope)
    if name_map is None:
        checkpoint_name = rewrite_leading_scope(
            name, model_scope, checkpoint_model_scope or model_scope
        )
        return checkpoint_name, (class_heads[1] if class_heads and name in class_heads[0] else None)
    if not name.startswith(model_scope + '/'):
        return None
    return name_map(name[len(model_scope) + 1 :])


def _restored_shape(shape, transform):
    """The shape (list) a checkpoint entry of `shape` restores as, after `transform` (or None)."""
    if transform is None:
        return list(shape)
    # Basic slicing of a zero-stride view: the output shape without reading data.
    return list(transform(np.broadcast_to(np.float32(0), shape)).shape)


def _checkpoint_scopes(checkpoint_shapes):
    """The checkpoint's top-level scopes, sorted. global_step and Adam's powers have none, and
    optimizer slots and moving averages sit under their variable's scope: the model's weights'.
    The fp16 loss scale's own scope is left out."""
    return sorted(
        {
            name.split('/')[0]
            for name in checkpoint_shapes
            if '/' in name and name.rsplit('/', 1)[1] not in _LOSS_SCALE_STATE
        }
    )


def _scope_hint(
    variables, candidates, checkpoint_shapes, model_scope, checkpoint_model_scope, class_heads
):
    """The one-line fix when the checkpoint's weights sit under one top-level scope other than
    the one --checkpoint_model_scope reads, and reading that one finds some of `candidates`
    (the variables not excluded) with their shapes; else None. Names alone would send another
    net's checkpoint to the flag: ssd_300_vgg's `conv6/weights` and `conv7/weights` are names of
    ssd_300_mobilenet's too, of other shapes."""
    scopes = _checkpoint_scopes(checkpoint_shapes)
    if len(scopes) != 1 or scopes[0] == (checkpoint_model_scope or model_scope):
        return None
    scope = scopes[0]
    fix = None if scope == model_scope else scope
    found = 0
    for variable in candidates:
        entry = _checkpoint_entry(variable.op.name, model_scope, fix, class_heads)
        if entry and entry[0] in checkpoint_shapes:
            shape = _restored_shape(checkpoint_shapes[entry[0]], entry[1])
            found += shape == variable.shape.as_list()
    if not found:
        return None
    then = f"it then finds {found} of the model's {len(variables)} variables"
    if fix is None:
        return (
            f"the checkpoint's variables are under {scope}/, as the model's: leave out "
            f'--checkpoint_model_scope={checkpoint_model_scope} ({then}).'
        )
    ours = (
        f'not {checkpoint_model_scope}/'
        if checkpoint_model_scope
        else f"the model's under {model_scope}/"
    )
    return (
        f"the checkpoint's variables are under {scope}/, {ours}: pass "
        f'--checkpoint_model_scope={scope} ({then}).'
    )


def _nothing_matches(checkpoint_shapes, model_scope, checkpoint_model_scope):
    """The error when no variable of the model is found in the checkpoint and no other
    --checkpoint_model_scope would find one: most likely another net."""
    scopes = _checkpoint_scopes(checkpoint_shapes)
    held = (
        f'under {texts.listed([s + "/" for s in scopes], 5)}'
        if scopes
        else texts.listed(sorted(checkpoint_shapes), 5) or 'none'
    )
    read_as = f' (read as {checkpoint_model_scope}/)' if checkpoint_model_scope else ''
    return (
        f"no variable of the model matches the checkpoint: its variables are {held}, the "
        f"model's under {model_scope}/{read_as}; check --checkpoint_path and --model_name, or "
        f"pass the checkpoint's scope as --checkpoint_model_scope "
        f"({' and '.join(TF_SLIM_NAME_MAPS)} map TF-Slim's ImageNet backbones)."
    )


def _lacks(missing, candidates, variables, exclude_scopes):
    """The error when the checkpoint lacks `missing` ((name, checkpoint name) pairs) of the
    `candidates` it otherwise restores: the scopes to exclude, and --ignore_missing_vars last."""
    lacking = {name for name, _ in missing}
    scopes = [s for s, whole in _whole_scopes([v.op.name for v in candidates], lacking) if whole]
    examples = [n if n == c else f'{n} as {c}' for n, c in missing[:2]]
    return (
        f"the checkpoint lacks {len(missing)} of the model's {len(variables)} variables "
        f"(e.g. {', '.join(examples)}): pass --checkpoint_exclude_scopes="
        f"{','.join(parse_scopes(exclude_scopes) + scopes)} to leave them out, or "
        f'--ignore_missing_vars to start whatever the checkpoint lacks from its initialiser.'
    )


def plan_restore(
    variables,
    checkpoint_shapes,
    model_scope,
    checkpoint_model_scope=None,
    exclude_scopes=None,
    ignore_missing_vars=False,
    exclude_mismatched_vars=False,
    log=None,
    class_heads=None,
):
    """Decides which variables come from which checkpoint entries.

    Args:
      variables: the candidates (usually the model variables).
      checkpoint_shapes: dict checkpoint name -> shape list (`reader.get_variable_to_shape_map()`).
      model_scope: the model's variable scope (`ssd_300_vgg`).
      checkpoint_model_scope: the checkpoint's name for `model_scope` (a leading-scope rewrite),
        or a key of `TF_SLIM_NAME_MAPS` for a TF-Slim ImageNet backbone, or None (same names).
      exclude_scopes: comma-separated scopes (our names) never restored.
      ignore_missing_vars: skip (with a warning) variables the checkpoint lacks, else fail.
      exclude_mismatched_vars: skip (with a warning) variables whose shape differs from the
        checkpoint's (e.g. class heads after a `num_classes` change), else fail naming the
        scopes to exclude.
      log: callable(str) for the warnings (default: absl warning).
      class_heads: (names of the class heads' variables, a `ClassGather`) to restore those
        with the checkpoint's classes picked by name, or None.
    Returns:
      list of `RestoreItem` (`describe_restore` summarises it).
    Raises:
      ValueError: the checkpoint's scope when it is not the one read (first), missing or
        mismatched variables that are not to be skipped, or nothing to restore at all.
    """
    log = log or logging.warning
    candidates = filter_variables(variables, exclude_scopes=exclude_scopes)
    items, missing, mismatched = [], [], []
    for variable in candidates:
        name = variable.op.name
        entry = _checkpoint_entry(name, model_scope, checkpoint_model_scope, class_heads)
        if entry is None:
            continue  # Not part of the ImageNet backbone.
        checkpoint_name, transform = entry
        if checkpoint_name not in checkpoint_shapes:
            missing.append((name, checkpoint_name))
            continue
        shape = _restored_shape(checkpoint_shapes[checkpoint_name], transform)
        if shape != variable.shape.as_list():
            mismatched.append((name, checkpoint_name, variable.shape.as_list(), shape))
            continue
        items.append(RestoreItem(variable, checkpoint_name, transform))
    if missing and (not items or not ignore_missing_vars):
        # Another scope first: --ignore_missing_vars would train those variables from scratch.
        hint = _scope_hint(
            variables,
            candidates,
            checkpoint_shapes,
            model_scope,
            checkpoint_model_scope,
            class_heads,
        )
        if hint:
            raise ValueError(hint)
    if not items and not mismatched:
        raise ValueError(_nothing_matches(checkpoint_shapes, model_scope, checkpoint_model_scope))
    if missing:
        if not ignore_missing_vars:
            raise ValueError(_lacks(missing, candidates, variables, exclude_scopes))
        # The checkpoint's name only where it is another (a scope rewrite, a TF-Slim name map):
        # 'm/b (as m/b)' doubled each of a long list.
        names = [name if name == wanted else f'{name} (as {wanted})' for name, wanted in missing]
        log(
            'Not in the checkpoint, left at their initial values: %d variable(s): %s'
            % (len(missing), texts.listed(names))
        )
    if mismatched:
        listing = texts.listed(
            ['%s %s (checkpoint %s: %s)' % (n, s, c, cs) for n, c, s, cs in mismatched]
        )
        scopes = sorted({_layer_scope(m[0]) for m in mismatched})
        if not exclude_mismatched_vars:
            raise ValueError(
                'shapes differ between the model and the checkpoint: %d variable(s): %s. Exclude '
                'them with --checkpoint_exclude_scopes=%s or pass '
                '--exclude_mismatched_vars.'
                % (len(mismatched), listing, ','.join(parse_scopes(exclude_scopes) + scopes))
            )
        log(
            'Shapes differ, left at their initial values: %d variable(s) in %d scope(s) (%s): %s'
            % (len(mismatched), len(scopes), texts.listed(scopes), listing)
        )
        if len(mismatched) > len(items):
            log(
                'More variables differ in shape from the checkpoint (%d) than fit it (%d): it is '
                'probably another model (another --model_name, --depth_multiplier or '
                '--anchor_sizes); --exclude_mismatched_vars is meant for the class heads after '
                'a --num_classes change.' % (len(mismatched), len(items))
            )
    if not items:  # every one of another shape, and skipped
        raise ValueError(_nothing_matches(checkpoint_shapes, model_scope, checkpoint_model_scope))
    return items


def _whole_scopes(names, chosen, depth=0):
    """The shallowest scopes of the variables `names` (in order) each of whose variables is, or
    each of whose is not, in the set `chosen`: [(scope, in `chosen`)]; `depth`: of the scopes
    tried first (0: top level)."""
    groups = {}
    for name in names:
        groups.setdefault('/'.join(name.split('/')[: depth + 1]), []).append(name)
    scopes = []
    for scope, members in groups.items():
        kinds = {n in chosen for n in members}
        if len(kinds) == 1:
            scopes.append((scope, kinds.pop()))
        else:  # Mixed: never one variable, whose name is its deepest scope.
            scopes += _whole_scopes(members, chosen, depth + 1)
    return scopes


# A layer scope's name: `conv4` (4, ''), `conv14_2` (14, '_2'), `block4_box` (4, '', '_box').
_NUMBERED_SCOPE = re.compile(r'([A-Za-z]+)(\d+)((?:_\d+)*)(.*)')


def _follows(first, second):
    """True when scope name `second` is `first` numbered one more (`conv1` -> `conv2`)."""
    a, b = _NUMBERED_SCOPE.fullmatch(first), _NUMBERED_SCOPE.fullmatch(second)
    return bool(a and b and a.group(1, 3, 4) == b.group(1, 3, 4) and int(b[2]) == int(a[2]) + 1)


def _endings(names):
    """Scope name -> what follows its layer number (`block4_box` -> `_box`), where something
    does."""
    return {n: m[4] for n in names for m in [_NUMBERED_SCOPE.fullmatch(n)] if m and m[4]}


def _abbreviated(leaves, siblings):
    """The scope names `leaves` (of one parent, in order) in short: `*_box` where they hold
    every one (two or more) of `siblings` (the parent's) that ends in `_box`, `conv1..conv7` for
    three or more numbered in a row."""
    endings = _endings(siblings)
    ends = list(endings.values())
    starred = {
        e
        for e in ends
        if ends.count(e) > 1 and all(n in leaves for n in endings if endings[n] == e)
    }
    runs = []
    for leaf in leaves:
        name = '*' + endings[leaf] if endings.get(leaf) in starred else leaf
        if [name] in runs:
            continue  # One star for them all.
        if runs and _follows(runs[-1][-1], name):
            runs[-1].append(name)
        else:
            runs.append([name])
    shown = []
    for run in runs:
        shown += [f'{run[0]}..{run[-1]}'] if len(run) > 2 else run
    return shown


def _scopes_text(scopes, names, limit=12):
    """`scopes` (whole scopes of the variables `names`, in order) in short, each under its
    parent's name: `ssd_300_vgg/conv1..conv7, ssd_300_vgg/*_box`; `limit` of them at most."""
    by_parent = {}
    for scope in scopes:
        parent, _, leaf = scope.rpartition('/')
        by_parent.setdefault(parent, []).append(leaf)
    shown = []
    for parent, leaves in by_parent.items():
        depth = parent.count('/') + 1 if parent else 0
        siblings = {n.split('/')[depth] for n in names if not parent or n.startswith(parent + '/')}
        shown += [f'{parent}/{s}' if parent else s for s in _abbreviated(leaves, siblings)]
    return texts.listed(shown, limit)


def describe_restore(items, variables):
    """What the restore plan `items` (of `plan_restore`) restores of `variables` (the model's)
    and what starts from its initialiser, by scope, in one line: `30 of the model's 71 variables
    restored: ssd_300_vgg/conv1..conv7 (conv6, conv7 sub-sampled from vgg_16/fc6, vgg_16/fc7);
    41 start from their initialisers: ssd_300_vgg/block8..block11, ssd_300_vgg/*_box.`"""
    names = [v.op.name for v in variables]
    restored = {i.name for i in items}
    scopes = _whole_scopes(names, restored)
    line = f"{len(restored)} of the model's {len(names)} variables restored: " + _scopes_text(
        [s for s, whole in scopes if whole], names
    )
    # The other transforms are basic slicing (`plan_restore` takes their shapes so).
    converted = [i for i in items if i.transform is not None and not i.by_class]
    if converted:
        ours = dict.fromkeys(_layer_scope(i.name).rsplit('/', 1)[-1] for i in converted)
        theirs = dict.fromkeys(_layer_scope(i.checkpoint_name) for i in converted)
        line += f' ({", ".join(ours)} sub-sampled from {", ".join(theirs)})'
    by_class = sum(1 for i in items if i.by_class)
    if by_class:
        line += f" ({by_class} of the class heads' variables with the checkpoint's classes by name)"
    fresh = [s for s, whole in scopes if not whole]
    if fresh:
        line += f'; {len(names) - len(restored)} start from their initialisers: ' + _scopes_text(
            fresh, names
        )
    return line + '.'


def frozen_at_start(variables, items, trainable_scopes):
    """The trainable `variables` that a run with --trainable_scopes never trains and the restore
    plan `items` (of `plan_restore`; empty: nothing restored) leaves at their initial values: they
    keep those through the whole run. Returns (their count, their scopes in short, as
    `describe_restore` gives them), or None when there are none or no --trainable_scopes."""
    scopes = parse_scopes(trainable_scopes)
    if not scopes:
        return None
    restored = {i.name for i in items}
    names = [v.op.name for v in variables]
    frozen = {n for n in names if n not in restored and not in_scopes(n, scopes)}
    if not frozen:
        return None
    whole = [s for s, fresh in _whole_scopes(names, frozen) if fresh]
    return len(frozen), _scopes_text(whole, names)


class Restorer:
    """Graph ops restoring a plan; build it before the graph is finalised.

    `restore(session)` loads the direct entries with a `Saver` and the transformed ones through
    placeholders.
    """

    def __init__(self, checkpoint_prefix, items):
        self.checkpoint_prefix = checkpoint_prefix
        self.items = list(items)
        direct = {i.checkpoint_name: i.variable for i in self.items if i.transform is None}
        self._saver = tf.compat.v1.train.Saver(direct, reshape=False) if direct else None
        self._assigns = []
        for item in self.items:
            if item.transform is not None:
                value = tf.compat.v1.placeholder(
                    item.variable.dtype.base_dtype, item.variable.shape
                )
                self._assigns.append((item, value, item.variable.assign(value)))

    def restore(self, session):
        if self._saver is not None:
            restore(self._saver, session, self.checkpoint_prefix)
        if self._assigns:
            reader = tf.train.load_checkpoint(self.checkpoint_prefix)
            for item, value, assign in self._assigns:
                data = item.transform(reader.get_tensor(item.checkpoint_name))
                session.run(assign, {value: data.astype(value.dtype.as_numpy_dtype)})


class CheckpointUnavailable(Exception):
    """The checkpoint's files are gone (deleted by the trainer's max_to_keep) or unreadable."""


def restore(saver, session, prefix):
    """`saver.restore(session, prefix)`, TF's error in one line (after `check_restorable`, which
    rules out the Saver's guess that a variable is missing).

    Raises:
      CheckpointUnavailable: damaged or missing files (a truncated or missing `.data` file, a
        corrupt entry), naming the checkpoint and TF's reason.
      ValueError: any other failure (e.g. a variable of another dtype), likewise.
    """
    try:
        saver.restore(session, prefix)
    except tf.errors.OpError as err:
        reason = tf_errors.reason(err)
        if isinstance(
            err, (tf.errors.NotFoundError, tf.errors.DataLossError, tf.errors.OutOfRangeError)
        ):
            raise CheckpointUnavailable(
                f'{prefix}: restoring failed ({reason}): its files are damaged or incomplete '
                f'(copied while being written?), or were removed meanwhile. Copy the checkpoint '
                f'again, or use another one.'
            ) from None
        raise ValueError(f'{prefix}: restoring failed ({type(err).__name__}: {reason}).') from None


@contextlib.contextmanager
def errors_naming(staged, prefix):
    """Errors (ValueError, CheckpointUnavailable) raised inside name the checkpoint `prefix`
    where they name its staged copy `staged` (a hidden folder the user never gave)."""
    try:
        yield
    except (ValueError, CheckpointUnavailable) as err:
        err.args = tuple(a.replace(staged, prefix) if isinstance(a, str) else a for a in err.args)
        raise


def stage_checkpoint(prefix, directory):
    """Hard-links (or, across file systems, copies) the checkpoint's files into `directory` (a
    folder of the caller's own; files of those names there are replaced), so that a training
    deleting it (max_to_keep) no longer matters to whoever reads the staged copy.

    Args:
      prefix: as `resolve_checkpoint` returns it: its `.index` and `.data-*` files are staged,
        or for a V1 single-file checkpoint the file itself.
    Returns:
      The staged prefix.
    Raises:
      CheckpointUnavailable: a file is already gone, or is not a regular file (`irregular_file`).
    """
    os.makedirs(directory, exist_ok=True)
    problem = _irregular_checkpoint(prefix)  # a FIFO would be linked, then read forever
    if problem:
        raise CheckpointUnavailable(problem)
    files = checkpoint_files(prefix)
    if files[0] != prefix and len(files) < 2 and os.path.exists(files[0]):
        raise CheckpointUnavailable(f'{prefix}: no .data-* file next to the .index.')
    for path in files:
        target = os.path.join(directory, os.path.basename(path))
        if os.path.lexists(target):
            os.remove(target)
        try:
            try:
                os.link(path, target)
            except OSError as err:
                if isinstance(err, FileNotFoundError):
                    raise
                shutil.copyfile(path, target)
        except FileNotFoundError:
            raise CheckpointUnavailable(
                f'{path} was deleted before it could be read (a training removing old '
                f'checkpoints?).'
            ) from None
    return os.path.join(directory, os.path.basename(prefix))


@contextlib.contextmanager
def staged_copy(prefix, parent):
    """Yields the prefix of `stage_checkpoint`'s copy in a new hidden folder of `parent` (an
    atomic_io temporary: removed on exit, or as an orphan once its process is gone)."""
    with atomic_io.temp_dir(os.path.join(parent, 'checkpoint')) as directory:
        staged = stage_checkpoint(prefix, directory)
        with errors_naming(staged, prefix):
            yield staged


def read_checkpoint(prefix):
    """TF's reader of the checkpoint; CheckpointUnavailable when it cannot be read."""
    try:
        return tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, OSError, ValueError) as err:
        raise CheckpointUnavailable(f'{prefix}: cannot read the checkpoint ({err}).') from None


def checkpoint_step(prefix):
    """The checkpoint's `global_step` variable, else its `-<step>` name suffix, else 0."""
    reader = read_checkpoint(prefix)
    if reader.has_tensor('global_step'):
        step = np.asarray(reader.get_tensor('global_step'))
        if step.size != 1 or step.dtype.kind not in 'iu':
            raise CheckpointUnavailable(
                f'{prefix}: its global_step is not one integer ({step.dtype} of shape '
                f'{list(step.shape)}); not a checkpoint this framework or TF-Slim wrote.'
            )
        return int(step.reshape(()))
    step = checkpoint_step_from_name(prefix)
    return 0 if step is None else step


def checkpoint_step_from_name(prefix):
    """The `-<step>` suffix of a checkpoint prefix (`model.ckpt-1000` -> 1000), or None."""
    match = _STEP_SUFFIX.search(prefix)
    return int(match.group(1)) if match else None


# The name suffix of tf.compat.v1.train.ExponentialMovingAverage's averages in a checkpoint.
AVERAGE_SUFFIX = '/ExponentialMovingAverage'


def variables_to_restore(moving_average_decay=None):
    """{checkpoint name: variable} of the graph's variables; with a decay, trainable variables read
    their exponential moving averages (`<name>/ExponentialMovingAverage`)."""
    if moving_average_decay:
        return tf.compat.v1.train.ExponentialMovingAverage(
            moving_average_decay
        ).variables_to_restore()
    return {v.op.name: v for v in tf.compat.v1.global_variables()}


def has_moving_averages(prefix):
    """Whether the checkpoint holds `<name>/ExponentialMovingAverage` variables (CheckpointUnavailable
    when it cannot be read)."""
    names = read_checkpoint(prefix).get_variable_to_shape_map()
    return any(n.endswith(AVERAGE_SUFFIX) for n in names)


def check_moving_averages(prefix, moving_average_decay):
    """ValueError in one line when --moving_average_decay asks for averages the checkpoint lacks
    (else the restore's error names 129 missing variables and blames the model's flags)."""
    if moving_average_decay and not has_moving_averages(prefix):
        raise ValueError(
            f'{prefix} holds no moving averages (its training had no --moving_average_decay): '
            'leave --moving_average_decay unset.'
        )


def unused_averages_note(prefix, moving_average_decay, card=None):
    """A note when the checkpoint holds moving averages of its weights (a training with
    --moving_average_decay) that a run without the flag leaves unused, else None. The decay named
    is the training's, from its card's provenance, when recorded.

    Raises:
      CheckpointUnavailable: the checkpoint cannot be read.
    """
    if moving_average_decay or not has_moving_averages(prefix):
        return None
    provenance = card.provenance if card is not None else None
    settings = provenance.get('settings') if isinstance(provenance, dict) else None
    decay = settings.get('moving_average_decay') if isinstance(settings, dict) else None
    known = isinstance(decay, float) and 0 < decay < 1
    flag = f'--moving_average_decay={decay}' if known else '--moving_average_decay'
    return (
        'note: the checkpoint also holds exponential moving averages of its weights; the raw '
        f'weights are used: add {flag} to use the averages'
    )


def likely_flag(variable_name):
    """The model flag most likely to differ when `variable_name` has another shape."""
    # By scope part (VGG's block4_box/conv_cls, MobileNet's conv11_mbox_conf): "loc" is also
    # in every VGG "block".
    parts = variable_name.split('/')
    if any(p == 'conv_cls' or p.endswith('_conf') for p in parts):
        return '--num_classes (the class head)'
    if any(p == 'conv_loc' or p.endswith('_loc') for p in parts):
        return '--anchor_sizes or the anchor ratios (anchors per cell of the box head)'
    return '--depth_multiplier or --model_name (the backbone\'s width)'


def _its_flag(name, trained):
    """How to resume with --`name` as the checkpoint's training had it: `with --name=value` from
    `trained` (the settings its card records), `without --name` where it was unset, else
    `with its --name`."""
    if not isinstance(trained, dict) or name not in trained:
        return f'with its --{name}'
    value = trained[name]
    return f'without --{name}' if value in (None, '') else f'with --{name}={value}'


def check_restorable(prefix, var_map, card_path=None, trained=None):
    """Raises ValueError naming missing or mis-shaped variables before the Saver fails obscurely.

    The message names each variable with both shapes, the flag that most likely differs (with
    the value the checkpoint's training used, where `trained`, the settings its model card
    records, holds it), and whether the model came from a card (`card_path`) or from flags.
    Returns the checkpoint's {name: shape}.
    """
    shapes = read_checkpoint(prefix).get_variable_to_shape_map()
    missing = sorted(name for name in var_map if name not in shapes)
    wrong = sorted(
        (name, list(shapes[name]), var.shape.as_list())
        for name, var in var_map.items()
        if name in shapes and list(shapes[name]) != var.shape.as_list()
    )
    if not (missing or wrong):
        return shapes
    source = (
        f'the model card {card_path}'
        if card_path
        else 'the flags (no model card was found: pass the flags the model was trained with, '
        'or give its model.json with --model_card)'
    )
    lines = [f'{prefix} does not fit the model built from {source}:']
    for name, theirs, ours in wrong[:5]:
        lines.append(f'  {name}: checkpoint {theirs}, model {ours}; check {likely_flag(name)}')
    if len(wrong) > 5:
        lines.append(f'  ... and {len(wrong) - 5} more of another shape')
    if missing:
        lines.append(
            f'  {len(missing)} variable(s) missing (e.g. {missing[:3]}); '
            f'{_missing_hint(missing, shapes, var_map, trained)}'
        )
    raise ValueError('\n'.join(lines))


# Adam's (tf.compat.v1) accumulators of its decay powers: variables of their own, not slots.
_OPTIMIZER_NON_SLOTS = ('beta1_power', 'beta2_power')
# The dynamic loss scale of fp16 mixed precision (GPU): MixedPrecisionLossScaleOptimizer's state.
_LOSS_SCALE_STATE = ('current_loss_scale', 'good_steps')


def _slot_names(names, var_map):
    """The slot names (`<variable>/<slot name>`, the variable one of `var_map`'s) among `names`."""
    return {n.rsplit('/', 1)[1] for n in names if '/' in n and n.rsplit('/', 1)[0] in var_map}


def check_resumable(prefix, var_map, card_path=None, trained=None):
    """`check_restorable`, and that the run keeps every variable of the checkpoint it resumes.

    Its Saver writes the graph's variables only, and TF's CheckpointSaverHook saves the resumed
    step again at start: the optimizer slots of variables a narrower --trainable_scopes leaves
    out, or the moving averages of a run resumed without --moving_average_decay, were dropped
    from that checkpoint, in place, and from every later one.

    Raises:
      ValueError: one message naming the variables and the flag that most likely differs.
    """
    shapes = check_restorable(prefix, var_map, card_path, trained)
    # The fp16 loss scale (GPU) re-learns itself in a few steps: dropping it loses nothing.
    dropped = sorted(
        name
        for name in shapes
        if name not in var_map and name.rsplit('/', 1)[-1] not in _LOSS_SCALE_STATE
    )
    if not dropped:
        return

    theirs = _slot_names(dropped, var_map)
    if any(n.endswith(AVERAGE_SUFFIX) for n in dropped):
        hint = f'its moving averages: resume {_its_flag("moving_average_decay", trained)}'
    elif theirs and theirs <= _slot_names(var_map, var_map):
        known = isinstance(trained, dict) and 'trainable_scopes' in trained
        scopes = (
            _its_flag('trainable_scopes', trained)
            if known
            else 'with the --trainable_scopes it was trained with (none where it trained every '
            'variable)'
        )
        hint = f'the optimizer state of variables this run would not train: resume {scopes}'

    elif theirs or any(n in _OPTIMIZER_NON_SLOTS for n in dropped):
        hint = (
            f'the state of its optimizer (slots: {", ".join(sorted(theirs)) or "none"}), which '
            f'this run\'s --optimizer does not keep: resume {_its_flag("optimizer", trained)}'
        )
    else:
        hint = 'variables this model does not have: check --model_name'
    raise ValueError(
        f'{prefix}: this run would drop {len(dropped)} of its variables from it and from later '
        f'checkpoints (e.g. {dropped[:3]}), {hint}, or start a new --train_dir with '
        f'--checkpoint_path={prefix} to fine-tune from its weights.'
    )


def _missing_hint(missing, shapes, var_map, trained=None):
    """What most likely differs when the checkpoint lacks the variables `missing` of `var_map`;
    `trained`: as `check_restorable` takes it."""
    if 'global_step' in missing:
        return (
            'it has no global_step: these are not a training\'s checkpoints (converted or '
            'classification weights); fine-tune from them with --checkpoint_path and a new '
            '--train_dir'
        )
    if any(n.endswith(AVERAGE_SUFFIX) for n in missing):
        return 'leave --moving_average_decay unset: the checkpoint has no moving averages'
    if any(n.rsplit('/', 1)[-1] in _LOSS_SCALE_STATE for n in missing):
        return (
            'the checkpoint has no fp16 loss scale (that of --mixed_precision on a GPU): it was '
            'trained in float32, or in bfloat16 on a CPU; resume without --mixed_precision here'
        )

    ours = _slot_names(missing, var_map) | {n for n in missing if n in _OPTIMIZER_NON_SLOTS}
    if not ours:
        return 'check --model_name: the checkpoint holds another net'
    theirs = _slot_names(shapes, var_map) - {AVERAGE_SUFFIX[1:]}
    fine_tune = 'or start a new --train_dir with --checkpoint_path to fine-tune from its weights'
    if ours <= theirs:
        return (
            f'they are optimizer slots of variables the checkpoint\'s training did not train: '
            f'resume {_its_flag("trainable_scopes", trained)}, {fine_tune}'
        )
    return (
        f'they are the optimizer\'s state: the checkpoint was trained with another --optimizer '
        f'(its slots: {", ".join(sorted(theirs)) or "none"}); resume '
        f'{_its_flag("optimizer", trained) if trained else "with that one"}, {fine_tune}'
    )


def session_config(num_threads=None, gpu_memory_fraction=None):
    """ConfigProto limiting CPU threads and GPU memory so an evaluation can run beside training."""
    config = tf.compat.v1.ConfigProto(allow_soft_placement=True)
    if num_threads:
        config.intra_op_parallelism_threads = int(num_threads)
        config.inter_op_parallelism_threads = int(num_threads)
    if gpu_memory_fraction:
        config.gpu_options.per_process_gpu_memory_fraction = float(gpu_memory_fraction)
    else:
        config.gpu_options.allow_growth = True
    return config
