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
first line.
"""

import re

import tensorflow as tf

# Lines of an OpError's message that say where, not why, and the v1 Saver's guess at why a
# restore failed ('Restoring from checkpoint failed. This is most likely due to ...').
_CONTEXT = re.compile(
    r'^(Graph execution error|Detected at node|File "|Node: |\[\[|Restoring from checkpoint '
    r'failed|Original error)'
)


def reason(err):
    """The line of an Exception's message that says why (str): its first line that is not
    context after its last `Node: ` line (or in all of it, where it has none), else the error's
    type name. Of a tf.errors.OpError, its `message` (its str adds the op's Python stack)."""
    text = err.message if isinstance(err, tf.errors.OpError) else str(err)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    nodes = [i for i, line in enumerate(lines) if line.startswith('Node: ')]
    after = lines[nodes[-1] + 1 :] if nodes else lines
    causes = [line for line in after if not _CONTEXT.match(line)]
    return causes[0] if causes else type(err).__name__
