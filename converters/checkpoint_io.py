"""Writes numpy values into one of our SSD nets' variables as a TF checkpoint, atomically, and
checks the result by re-loading it and running a forward pass.

Builds its own graphs (tf.compat.v1 graph mode); callers need not disable eager execution.
"""

import dataclasses
import glob
import os
from typing import Dict, List, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_slim as slim

from datasets import folders
from model import card as card_lib
from model import checkpoints as checkpoints_lib
from nets import ssd_common
from preprocessing import preprocessing_factory
from tf_extended import atomic_io
from tf_extended import logs
from tf_extended import safe_io
from tf_extended import temp_dirs

v1 = tf.compat.v1


class CheckpointMismatchError(ValueError):
    """The values do not fit the net's variables (and partial output was not allowed)."""


@dataclasses.dataclass(frozen=True)
class Origin:
    """What the converted values come from, for the messages: `model` names it ('The Caffe
    model', or a file and its layout), `unit` one of its parts ('Caffe layer'), `kind_flag` the
    flag that picks the net it should fit."""

    model: str
    unit: str
    kind_flag: str


CAFFE = Origin('The Caffe model', 'Caffe layer', '--model_name')


@dataclasses.dataclass
class VariableMatch:
    """How converted values line up with a net's variables.

    missing: net variables with no value.
    mismatched: (name, value shape, variable shape) of values whose shape differs.
    unused: values with no variable of that name.
    matched: names with a value of the right shape (what gets saved).
    """

    missing: List[str]
    mismatched: List[Tuple[str, tuple, tuple]]
    unused: List[str]
    matched: List[str]

    def problems(self, expect_missing=False, origin=CAFFE):
        """Human-readable problem lines; missing variables are expected for a backbone."""
        lines = []
        if not expect_missing:
            lines += [
                'missing TF variable %s (no %s gave it a value)' % (n, origin.unit)
                for n in self.missing
            ]
        lines += [
            'shape mismatch for %s: the %s gives %s, the net has %s' % (n, origin.unit, a, b)
            for n, a, b in self.mismatched
        ]
        lines += ['converted value %s has no TF variable of that name' % n for n in self.unused]
        return lines


def match_variables(values, variables):
    """Compares {name: array} with tf.Variables by name ('scope/var', without ':0')."""
    by_name = {v.op.name: v for v in variables}
    missing = [n for n in by_name if n not in values]
    mismatched, matched = [], []
    for name, value in values.items():
        if name not in by_name:
            continue
        shape = tuple(by_name[name].shape.as_list())
        if tuple(value.shape) != shape:
            mismatched.append((name, tuple(value.shape), shape))
        else:
            matched.append(name)
    unused = [n for n in values if n not in by_name]
    return VariableMatch(missing, mismatched, unused, matched)


@dataclasses.dataclass
class _Net:
    inputs: tf.Tensor
    outputs: Dict[str, tf.Tensor]
    variables: List[tf.Variable]


# The end point the VGG backbone conversions end at (fc7 as a convolution).
BACKBONE_END_POINT = 'block7'


def _build(net_cls, params, check_end_point):
    ssd = net_cls(params)
    h, w = params.img_shape
    inputs = v1.placeholder(tf.float32, [1, h, w, 3], name='inputs')
    with slim.arg_scope(ssd.arg_scope(data_format='NHWC')):
        _, localisations, logits, end_points = ssd.net(inputs, is_training=False)
    if check_end_point:
        outputs = {check_end_point: end_points[check_end_point]}
    else:
        outputs = {
            'localisations': ssd_common.flatten_layers(localisations),
            'logits': ssd_common.flatten_layers(logits),
        }
    variables = v1.global_variables(scope=ssd.name + '/')
    return _Net(inputs, outputs, variables)


def check_input(net_cls, params, seed=0):
    """A deterministic normalised input `[1, H, W, 3]` for the forward check (random RGB)."""
    h, w = params.img_shape
    rgb = np.random.default_rng(seed).uniform(0, 255, (1, h, w, 3))
    pipeline = preprocessing_factory.get_preprocessing(net_cls.name)
    return ((rgb - np.asarray(pipeline.mean_rgb)) * pipeline.scale).astype(np.float32)


def write_checkpoint(
    net_cls,
    params,
    values,
    output_path,
    allow_partial=False,
    backbone_only=False,
    extra_problems=(),
    sidecar_files=None,
    origin=CAFFE,
):
    """Saves `values` into the variables of `net_cls(params)`, atomically, and checks it.

    The checkpoint holds exactly the variables that received a value of the right shape.
    Files are saved in a temp folder inside the output's folder (one a killed conversion left is
    removed by the next), then renamed into place: data, the sidecar files, the index, and last
    the `checkpoint` state file naming this checkpoint, when the folder has none or the one it
    has was written by this converter (`STATE_FILE_HEADER`); a state file of anything else (a
    trainer's) is left alone, with a warning.
    The check: forward pass on `check_input` with the assigned values, then the saved
    variables are re-randomised, restored from the written files, and the forward pass must
    give the same outputs.

    Args:
      net_cls: an SSDNet subclass (nets_factory.get_network(name)).
      params: its SSDParams.
      values: {full variable name: numpy array}.
      output_path: checkpoint prefix (`dir/name.ckpt`).
      allow_partial: save even when there are problems (they are still returned).
      backbone_only: a backbone checkpoint: variables without a value are not a problem, and
        the check compares the backbone's last end point (BACKBONE_END_POINT) instead of the
        flattened localisations and logits.
      extra_problems: problem lines found earlier (e.g. unmapped Caffe layers).
      sidecar_files: {path: text} written (atomically) with the checkpoint, before its index.
      origin: `Origin` of the values, for the messages.
    Returns:
      (VariableMatch, problem lines, max abs difference of the re-load check).
    Raises:
      IsADirectoryError, FileExistsError: `check_output_path` (nothing is written).
      CheckpointMismatchError: no value fits, problems and not allow_partial, or outputs that
        overflow on the check input (nothing is written).
      RuntimeError: the re-loaded checkpoint does not reproduce the outputs.
    """
    check_output_path(output_path, list(sidecar_files or {}))
    graph = tf.Graph()
    with graph.as_default():
        net = _build(net_cls, params, BACKBONE_END_POINT if backbone_only else None)
        match = match_variables(values, net.variables)
        problems = list(extra_problems) + match.problems(backbone_only, origin)
        if not match.matched:  # --allow_partial would write a checkpoint of nothing
            raise CheckpointMismatchError(
                '%s does not fit %s: none of its weights is one of the net\'s (check %s):\n  %s'
                % (origin.model, net_cls.name, origin.kind_flag, '\n  '.join(problems))
            )
        if problems and not allow_partial:
            raise CheckpointMismatchError(
                '%s does not fit %s (use --allow_partial to write the matching part anyway):\n  %s'
                % (origin.model, net_cls.name, '\n  '.join(problems))
            )
        by_name = {v.op.name: v for v in net.variables}
        saved = [by_name[n] for n in match.matched]
        feeds, assigns = {}, []
        for var in saved:
            ph = v1.placeholder(var.dtype.base_dtype, var.shape)
            assigns.append(var.assign(ph, read_value=False))
            feeds[ph] = values[var.op.name]
        saver = v1.train.Saver(var_list={v.op.name: v for v in saved}, write_version=2)
        scramble = v1.variables_initializer(saved)
        x = check_input(net_cls, params)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(assigns, feeds)
            expected = sess.run(net.outputs, {net.inputs: x})
            _check_finite(expected, values, saved, origin)
            _save_atomically(sess, saver, output_path, sidecar_files or {})
            # The check: overwrite the saved variables with fresh random values, restore them
            # from the written files and run the same forward pass again.
            sess.run(scramble)
            saver.restore(sess, output_path)
            actual = sess.run(net.outputs, {net.inputs: x})
    return match, problems, _compare(output_path, expected, actual)


# First line of the `checkpoint` state files the converters write (a text-proto comment, which
# TensorFlow's reader skips): the mark that a later conversion may replace the file, and that the
# trainer does not resume from the folder. model/checkpoints.py keeps it and the one check of it,
# `written_by_converter` (it imports no converter); a conversion also takes over the two-line file
# of versions before the header, by `has_converter_sidecar`.
STATE_FILE_HEADER = checkpoints_lib.CONVERTER_STATE_FILE_HEADER
# `provenance.converted_by` of the model cards the converters write (`<prefix>.model.json`).
CONVERTER_SCRIPTS = ('caffe_to_tensorflow.py', 'pytorch_to_tensorflow.py')
# The files beside a checkpoint that say a converter wrote it: its card, or (older versions,
# and a backbone's) its record.
_SIDECAR_SUFFIXES = (card_lib.CHECKPOINT_CARD_SUFFIX, card_lib.LEGACY_CHECKPOINT_SUFFIX)


def run_script(errors, convert, *args, **kwargs):
    """The body of a converter script's `main`: `convert(*args, **kwargs)`, where `errors` (the
    converter's own exception classes), `CheckpointMismatchError` and `OSError` end the script
    with one line `<script>: error: <message>`."""
    logs.absl_only()
    # The check re-load's restore line: the last line says the checkpoint was re-loaded.
    logs.drop_tensorflow_messages(checkpoints_lib.RESTORE_RECORD)
    try:
        return convert(*args, **kwargs)
    except (*errors, CheckpointMismatchError, OSError) as e:
        # The message names the file and what to do; a traceback would only bury it.
        logs.exit_error(e)


def interrupted_message(output_path):
    """A converter script's Ctrl-C line (`logs.run`): what is left at `output_path`."""
    return (
        f'{output_path} is written atomically: it is the previous one or absent; run '
        f'the same command again'
    )


def has_converter_sidecar(prefix):
    """True when a converter's card or record (`sidecar_is_ours`) is beside the checkpoint
    `prefix`: a converter wrote it (a training's has neither)."""
    return any(sidecar_is_ours(prefix + suffix) for suffix in _SIDECAR_SUFFIXES)


def _checkpoint_files(output_path):
    return glob.glob(glob.escape(output_path) + '.index') + glob.glob(
        glob.escape(output_path) + '.data-*'
    )


def sidecar_is_ours(path):
    """True when the JSON file at `path` is one a converter writes beside its checkpoint: a
    model card whose `provenance.converted_by` is a converter script, or a conversion record
    (`backbone_only`, which every version's `<prefix>.json` has). A training's model.json
    (`provenance.trained_by`), an export's metadata.json (`export`) or anything unreadable is
    not."""
    try:
        meta = safe_io.read_json(path, 'converter sidecar', card_lib.MAX_CARD_BYTES)
    except (OSError, ValueError):  # also UnsafeFileError: a link, a folder, a device
        return False
    if not isinstance(meta, dict) or 'export' in meta:
        return False
    provenance = meta.get('provenance')
    converted_by = provenance.get('converted_by') if isinstance(provenance, dict) else None
    return isinstance(meta.get('backbone_only'), bool) or converted_by in CONVERTER_SCRIPTS


def check_output_path(output_path, sidecar_paths=()):
    """Refuses, before any work, an --output_path a conversion must not write.

    Raises (one-line messages naming the path and what to do):
      NotADirectoryError: a file where a folder above it must be.
      IsADirectoryError: `output_path` is no checkpoint prefix: it ends with a path separator,
        is an existing folder, or has an empty name (TF would write hidden `.index` / `.data-*`
        files into the folder above).
      FileExistsError: a checkpoint is at `output_path` without a converter's card or record
        beside it (e.g. a training's), or a file of `sidecar_paths` (the card or record the
        conversion writes) exists and is not a converter's of that checkpoint (e.g. a
        training's model.json with --output_path=train_dir/model, an export's metadata.json).
    """
    output_path = os.fspath(output_path)
    separators = tuple(s for s in (os.sep, os.altsep) if s)
    folder = os.path.dirname(output_path)
    if (
        not os.path.basename(output_path)
        or output_path.endswith(separators)
        or os.path.isdir(output_path)
    ):
        suggestion = os.path.join(output_path.rstrip(''.join(separators)) or folder, 'model.ckpt')
        raise IsADirectoryError(
            f'--output_path={output_path!r} names a folder; it takes a checkpoint prefix (a '
            f'file name stem): pass e.g. --output_path={suggestion}'
        )
    # A file on the way made the bare "[Errno 17] File exists".
    above = folders.existing_ancestor(os.path.dirname(os.path.abspath(output_path)))
    if not os.path.isdir(above):
        raise NotADirectoryError(
            f'--output_path={output_path}: {above} is a file, not a folder; pass a prefix in a '
            'folder (a new one is created).'
        )
    checkpoint = _checkpoint_files(output_path)
    if checkpoint and not has_converter_sidecar(output_path):
        own = [output_path + suffix for suffix in _SIDECAR_SUFFIXES]
        raise FileExistsError(
            f'{output_path} is a checkpoint this converter did not write (no converter\'s '
            f'{" or ".join(os.path.basename(p) for p in own)} beside it, e.g. a '
            f'training\'s); refusing to replace it. Choose another --output_path.'
        )
    for path in sidecar_paths:
        if os.path.lexists(path) and not (checkpoint and sidecar_is_ours(path)):
            raise FileExistsError(
                f'{path} exists and was not written by a converter for a checkpoint '
                f'{output_path} (e.g. a training\'s model.json or an export\'s metadata.json); '
                f'--output_path={output_path} would replace it: choose another --output_path, '
                f'e.g. a new folder\'s model.ckpt.'
            )


def _save_atomically(sess, saver, output_path, sidecar_files):
    directory = os.path.dirname(os.path.abspath(output_path))
    os.makedirs(directory, exist_ok=True)
    basename = os.path.basename(output_path)
    temp_dirs.remove_stale(directory, 'ckpt', log=logging.info)
    with temp_dirs.made(directory, 'ckpt') as tmp_dir:
        saver.save(sess, os.path.join(tmp_dir, basename), write_meta_graph=False, write_state=False)
        files = sorted(os.listdir(tmp_dir))
        for name in files:  # on disk before any is renamed into place (a crash: old or new)
            atomic_io.fsync_file(os.path.join(tmp_dir, name))
        index = basename + '.index'
        for name in files:
            if name != index:
                os.replace(os.path.join(tmp_dir, name), os.path.join(directory, name))
        for path, text in sidecar_files.items():
            atomic_io.write_text_atomic(path, text)
        atomic_io.replace(os.path.join(tmp_dir, index), os.path.join(directory, index))
        # The CheckpointState text proto; a relative path keeps the folder movable (readers
        # join it with the folder). Only over a state file of ours: a trainer's stays.
        state = os.path.join(directory, 'checkpoint')
        if os.path.lexists(state) and not checkpoints_lib.written_by_converter(
            state, header_less_is_ours=has_converter_sidecar
        ):
            logging.warning(
                '%s was not written by this converter; left it alone, so the folder '
                'still names what it named: pass the checkpoint as %s, not as its '
                'folder.',
                state,
                output_path,
            )
        else:
            atomic_io.write_text_atomic(
                state,
                f'{STATE_FILE_HEADER}\nmodel_checkpoint_path: '
                f'"{basename}"\nall_model_checkpoint_paths: '
                f'"{basename}"\n',
            )


def _check_finite(outputs, values, saved, origin):
    """Refuses, before anything is written, weights whose forward pass on the check input
    overflows (finite but huge, e.g. from a diverged training)."""
    bad = sorted(key for key, value in outputs.items() if not np.all(np.isfinite(value)))
    if not bad:
        return
    name = max(
        (v.op.name for v in saved), key=lambda n: float(np.max(np.abs(values[n]), initial=0))
    )
    raise CheckpointMismatchError(
        '%s gives non-finite %s on the check input (a random image normalised as the net '
        'expects): its weights overflow float32 (the largest, %g, is in %s), as a diverged '
        'training\'s do; nothing was written'
        % (origin.model, ' and '.join(bad), float(np.max(np.abs(values[name]))), name)
    )


def _compare(output_path, expected, actual):
    diff, scale = 0.0, 1.0
    for key, value in expected.items():
        if not np.all(np.isfinite(value)):
            raise RuntimeError('the converted net gives non-finite %s on the check input' % key)
        diff = max(diff, float(np.max(np.abs(actual[key] - value))))
        scale = max(scale, float(np.max(np.abs(value))))
    # Same graph, same values: anything beyond float noise means the file lost something.
    if diff > 1e-6 * scale:
        raise RuntimeError(
            're-loading %s does not reproduce the converted net (max abs diff %g)'
            % (output_path, diff)
        )
    return diff


def restore_values(checkpoint_path, names=None):
    """{variable name: numpy array} read from a checkpoint (all variables, or `names`)."""
    reader = tf.train.load_checkpoint(checkpoint_path)
    names = names or sorted(reader.get_variable_to_shape_map())
    return {n: reader.get_tensor(n) for n in names}
