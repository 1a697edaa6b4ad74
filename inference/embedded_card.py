"""The export metadata (the model card and what the export holds) inside a model file.

A SavedModel carries its metadata in `assets.extra/` and an OpenVINO IR in its runtime info
(`openvino_runtime.CARD_RT_INFO`); this gives the frozen graph and the TFLite models theirs, so
that a model file copied alone still says its net, input, normalisation, anchors and class
names:

  frozen graph  a Const node `model_card`, a scalar string (the JSON) that no output depends on
                (TF never runs it);
  TFLite        a metadata entry `model_card` of the flatbuffer, its buffer the JSON bytes (the
                interpreter ignores metadata it does not know).

What is embedded is the export's metadata less its export time and file digests (`embeddable`):
the same checkpoint still exports to the same bytes, and a file cannot hold its own digest. A
metadata.json beside the model is what loaders use; the card inside is compared with it
(`card.resolve_export_metadata`).
"""

import json

import numpy as np
import tensorflow as tf

from model import card as card_lib
from tf_extended import safe_io

CARD_NAME = 'model_card'
# TFLite models hold a few metadata entries (the converter writes 2): a longer list is not ours.
_MAX_TFLITE_METADATA = 64


def embeddable(meta):
    """`meta` (an export's metadata dict) less `export.time` and FILE_DIGESTS (new dicts)."""
    meta = {k: v for k, v in meta.items() if k != card_lib.FILE_DIGESTS}
    if isinstance(meta.get('export'), dict):
        meta['export'] = {k: v for k, v in meta['export'].items() if k != 'time'}
    return meta


def _encoded(meta):
    return json.dumps(embeddable(meta), sort_keys=True).encode()


def add_to_graph_def(graph_def, meta):
    """Appends the Const node CARD_NAME holding `meta` (`embeddable`) to `graph_def`."""
    node = graph_def.node.add(name=CARD_NAME, op='Const')
    node.attr['dtype'].type = tf.string.as_datatype_enum
    node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(_encoded(meta)))


def from_graph_def(graph_def):
    """The metadata dict embedded in `graph_def`, None where it holds no node CARD_NAME.
    Raises ValueError (see `safe_io.parse_card_json`; 'not a string constant') where it is
    unreadable."""
    node = next((n for n in graph_def.node if n.name == CARD_NAME), None)
    if node is None:
        return None
    tensor = node.attr['value'].tensor
    if (
        node.op != 'Const'
        or tensor.dtype != tf.string.as_datatype_enum
        or tensor.tensor_shape.dim
        or len(tensor.string_val) != 1
    ):
        raise ValueError('not a string constant')
    return safe_io.parse_card_json(tensor.string_val[0])


def add_to_tflite(content, meta):
    """The TFLite flatbuffer `content` (bytes) with the metadata entry CARD_NAME holding `meta`
    (`embeddable`) added; bytes."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.python import util as tflite_util

    model = tflite_util._convert_model_from_bytearray_to_object(content)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(_encoded(meta), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = CARD_NAME, len(model.buffers) - 1
    model.metadata = (model.metadata or []) + [entry]
    return bytes(tflite_util._convert_model_from_object_to_bytearray(model))


def from_tflite(content):
    """The metadata dict embedded in the TFLite flatbuffer `content`, None where it has no
    metadata entry CARD_NAME. Raises ValueError (see `safe_io.parse_card_json`; 'unreadable
    (...)' for offsets that lead out of the file; 'one of 2 metadata entries ...') where it is
    unreadable or not one."""
    data, problem = _tflite_card_bytes(content)
    if problem:
        raise ValueError(problem)
    return None if data is None else safe_io.parse_card_json(data)


def _tflite_card_bytes(content):
    """(the bytes of the metadata entry CARD_NAME or None where there is none, None) of the TFLite
    flatbuffer `content`, or (None, what is wrong)."""
    from tensorflow.lite.python import schema_py_generated as schema

    try:
        model = schema.Model.GetRootAs(content, 0)
        count = model.MetadataLength()
        if count > _MAX_TFLITE_METADATA:
            return None, f'one of {count} metadata entries, more than a model has'
        entries = [model.Metadata(i) for i in range(count)]
        cards = [e for e in entries if e.Name() == CARD_NAME.encode()]
        if not cards:
            return None, None
        if len(cards) > 1:  # which one would the model's be?
            return None, f'one of {len(cards)} metadata entries {CARD_NAME}, where a model has one'
        (entry,) = cards
        index, buffers = entry.Buffer(), model.BuffersLength()
        if index >= buffers:
            return None, f'in buffer {index} of the {buffers} it has'
        data = model.Buffers(index).DataAsNumpy()  # 0 (an int) for an empty vector
        return (data.tobytes() if isinstance(data, np.ndarray) else b''), None
    except Exception as err:  # noqa: BLE001 - a malformed flatbuffer fails in any way
        return None, f'unreadable ({type(err).__name__}: {err})'
