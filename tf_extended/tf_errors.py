"""TensorFlow's errors in one line, for messages that name a user's file and say why it failed.

A graph-mode `tf.errors.OpError` (running a graph, restoring a checkpoint) reads

    [Restoring from checkpoint failed. ... Original error:]
    Graph execution error:
    Detected at node 'save/RestoreV2' defined at (most recent call last):
      File "...", line ..., in ...
    Node: 'save/RestoreV2'
    Read less bytes than requested                  <- the reason
        [[{{node save/RestoreV2}}]]

(measured with TF 2.21); errors of importing a graph (ValueError, TypeError) say why on their
first line. An error of the input pipeline (tf.data) ends with the iterator's node,
`[[IteratorGetNext]]` or `[[{{node IteratorGetNext}}]]`, and its reason may begin with tf.data's
`Error in user-defined function passed to <op> transformation with iterator: <path>: `. Where
such a message is not UTF-8 (it quotes a record that is not an Example), TF's session raises a
UnicodeDecodeError in its place, holding the message's bytes.
"""

import os
import re

import tensorflow as tf

from tf_extended import texts

# Lines of an OpError's message that say where, not why, and the v1 Saver's guess at why a
# restore failed ('Restoring from checkpoint failed. This is most likely due to ...').
_CONTEXT = re.compile(
    r'^(Graph execution error|Detected at node|File "|Node: |\[\[|Restoring from checkpoint '
    r'failed|Original error)'
)
# tf.data's prefix of an error in a map function: the pipeline's ops, nothing a user can act on.
_TF_DATA_PREFIX = re.compile(
    r'^Error in user-defined function passed to \S+ transformation with iterator: \S+: '
)
# TF's reason for a record that is not an Example quotes the record, whatever its size and bytes.
_NOT_AN_EXAMPLE = re.compile(r"^(Could not parse example input), value: '.*")
# The node line of an error raised by running an iterator's get_next (a clone's, an evaluation's).
_ITERATOR_NODE = re.compile(r'\[\[(\{\{node )?(\S+/)?IteratorGetNext(Sync)?(_\d+)?(\}\})?\]\]')
# A reason goes into a one-line message: long ones (an assertion's data) are cut.
_MAX_REASON = 500
# What running a graph raises: a tf.errors.OpError, or the UnicodeDecodeError TF's session
# raises in its place when the message is not UTF-8 (it quotes a record that is not an Example).
RUN_ERRORS = (tf.errors.OpError, UnicodeDecodeError)


# What a user does about bad records (they stay bad when the run restarts); each script ends
# the sentence with how to go on.
FIX_RECORDS = 'fix or convert the data again (tf_convert_data.py), then'


class RecordsError(ValueError):
    """Reading the records failed (a corrupted record, one that is not an Example or holds no
    image): they will not fix themselves. str: `<records>: reading the records failed
    <when> (<reason>)`; the scripts add what is kept and what to do."""

    def __init__(self, records, reason, when=''):
        # TF's "corrupted record at N" gives a byte offset; read as a record's index it misled.
        reason = re.sub(r'\bcorrupted record at (\d+)\b', r'corrupted record at byte \1', reason)
        self.records, self.reason = records, reason
        super().__init__(
            f'{records}: reading the records failed {when + " " if when else ""}({reason})'
        )


def _text(err):
    if isinstance(err, UnicodeDecodeError) and isinstance(err.object, (bytes, bytearray)):
        return bytes(err.object).decode('utf-8', 'replace')
    return err.message if isinstance(err, tf.errors.OpError) else str(err)


def reason(err):
    """The line of an Exception's message that says why (str): its first line that is not
    context after its last `Node: ` line (or in all of it, where it has none), without tf.data's
    prefix or a quoted record and cut to 500 characters, else the error's type name. Of a
    tf.errors.OpError, its `message` (its str adds the op's Python stack); of a
    UnicodeDecodeError, the bytes it could not decode (TF's message), decoded with replacement
    characters."""
    lines = [line.strip() for line in _text(err).splitlines() if line.strip()]
    nodes = [i for i, line in enumerate(lines) if line.startswith('Node: ')]
    after = lines[nodes[-1] + 1 :] if nodes else lines
    causes = [line for line in after if not _CONTEXT.match(line)]
    if not causes:
        return type(err).__name__
    cause = _TF_DATA_PREFIX.sub('', causes[0])
    cause = _NOT_AN_EXAMPLE.sub(r'\1: the record is not a tf.train.Example', cause)
    return texts.cut(cause, _MAX_REASON)


def input_reason(err):
    """`reason(err)` for an error of reading an input pipeline, else None: a tf.errors.OpError
    (but the end of the input, OutOfRangeError) raised by an iterator's get_next, or the
    UnicodeDecodeError TF raises in place of one (see the module docstring)."""
    if isinstance(err, tf.errors.OutOfRangeError) or not isinstance(err, RUN_ERRORS):
        return None
    return reason(err) if _ITERATOR_NODE.search(_text(err)) else None


def records_error(err, dataset, when=''):
    """A RecordsError naming `dataset`'s records (`records_of`) when `err` is a failure of
    reading them (`input_reason`), else None (the caller re-raises `err`)."""
    why = input_reason(err)
    return None if why is None else RecordsError(records_of(dataset), why, when)


def records_of(dataset):
    """How an error names a dataset's records (`datasets.dataset_factory.DetectionDataset`): its
    shard when it has one, else its shards' pattern."""
    if len(dataset.files) == 1:
        return dataset.files[0]
    return os.path.join(dataset.dataset_dir, dataset.file_pattern)
