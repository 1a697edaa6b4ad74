"""Checkpoint paths and scope-based restoring.

`resolve_checkpoint` turns whatever users pass as a checkpoint (a prefix, one of its `.index` /
`.data-*` files, a TF1 V1 single-file checkpoint such as TF-Slim's `vgg_16.ckpt`, or a directory)
into the prefix that `tf.compat.v1.train.Saver.restore` and `tf.train.load_checkpoint` take.
"""
import glob
import os
import re

import tensorflow as tf

_DATA_SUFFIX = re.compile(r'\.data-\d{5}-of-\d{5}$')
_STEP_SUFFIX = re.compile(r'-(\d+)$')


def _step_of(prefix):
    match = _STEP_SUFFIX.search(prefix)
    return int(match.group(1)) if match else -1


def latest_in_directory(directory):
    """The newest checkpoint prefix in `directory`, or None when it holds none.

    The `checkpoint` state file decides when it names a checkpoint that exists; otherwise (state
    file missing, or naming deleted files) the `.index` file with the highest `-<step>` suffix,
    then the newest modification time, wins.
    """
    prefix = tf.train.latest_checkpoint(directory)
    if prefix is not None:
        return prefix
    candidates = [p[:-len('.index')] for p in glob.glob(os.path.join(directory, '*.index'))]
    if not candidates:
        return None
    return max(candidates, key=lambda p: (_step_of(p), os.path.getmtime(p + '.index')))


def resolve_checkpoint(path):
    """The checkpoint prefix that `path` names.

    Args:
      path: a checkpoint prefix (`model.ckpt-1000`), its `.index` or `.data-NNNNN-of-NNNNN`
        file, a V1 single-file checkpoint (`vgg_16.ckpt`), or a directory (its latest
        checkpoint, see `latest_in_directory`).
    Returns:
      str: the prefix (for V1 files, the file itself).
    Raises:
      FileNotFoundError: nothing loadable there; the message says what was looked for.
    """
    if not path:
        raise FileNotFoundError('No checkpoint path given.')
    path = os.path.expanduser(path)
    if os.path.isdir(path):
        prefix = latest_in_directory(path)
        if prefix is None:
            raise FileNotFoundError(f'{path} is a directory without checkpoints (no `checkpoint` '
                                    f'state file and no *.index files).')
        return prefix
    if path.endswith('.index'):
        prefix = path[:-len('.index')]
    else:
        prefix = _DATA_SUFFIX.sub('', path)
    if os.path.isfile(prefix + '.index'):
        return prefix
    if prefix == path and os.path.isfile(path):
        return path  # V1 format: one file, no index.
    raise FileNotFoundError(f'No checkpoint at {path}: expected {prefix}.index (and its .data-* '
                            f'files), a V1 checkpoint file, or a directory holding checkpoints.')
