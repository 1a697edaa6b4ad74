"""The export metadata inside frozen graphs and TFLite models (inference/embedded_card.py), read
as untrusted content, and how a loader picks between it and a metadata.json beside the model
(`card.resolve_export_metadata`). The exported models themselves: tests/test_export_models.py
`test_model_files_carry_their_card_and_load_alone`."""

import json

import numpy as np
import pytest
import tensorflow as tf

from inference import embedded_card
from model import card as card_lib
from tf_extended import safe_io

v1 = tf.compat.v1

META = {
    'model_name': 'ssd_300_mobilenet',
    'card_id': 'c1',
    'num_classes': 3,
    'export': {'time': '2026-12-07T10:00:00Z', 'checkpoint': {'path': '/r/model.ckpt-5'}},
    card_lib.FILE_DIGESTS: {'frozen_graph.pb': {'size': 1, 'sha256': '0'}},
}
# What a model file holds: no export time, no digests.
EMBEDDED = {
    'model_name': 'ssd_300_mobilenet',
    'card_id': 'c1',
    'num_classes': 3,
    'export': {'checkpoint': {'path': '/r/model.ckpt-5'}},
}


def _string_const(graph_def, name, value):
    node = graph_def.node.add(name=name, op='Const')
    node.attr['dtype'].type = tf.string.as_datatype_enum
    node.attr['value'].tensor.CopyFrom(tf.make_tensor_proto(value))


def test_graph_def_card():
    graph_def = v1.GraphDef()
    assert embedded_card.from_graph_def(graph_def) is None
    embedded_card.add_to_graph_def(graph_def, META)
    assert embedded_card.from_graph_def(graph_def) == EMBEDDED
    assert META['export']['time'] and card_lib.FILE_DIGESTS in META  # not changed
    for value, why in (
        (b'{"cut": ', 'not JSON'),
        (b'\xff\xfe\x00', 'not JSON'),
        (b'[1, 2]', 'not a JSON object'),
        (b'[' * 100000, 'not JSON'),  # nested beyond the parser's recursion limit
        ([b'{}', b'{}'], 'not a string constant'),
        (np.float32(1), 'not a string constant'),
    ):
        graph_def = v1.GraphDef()
        if isinstance(value, bytes):
            _string_const(graph_def, 'model_card', value)
        else:
            graph_def.node.add(name='model_card', op='Const').attr['value'].tensor.CopyFrom(
                tf.make_tensor_proto(value)
            )
            graph_def.node[0].attr['dtype'].type = graph_def.node[0].attr['value'].tensor.dtype
        with pytest.raises(ValueError, match=why):
            embedded_card.from_graph_def(graph_def)
    graph_def = v1.GraphDef()
    graph_def.node.add(name='model_card', op='Placeholder')
    with pytest.raises(ValueError, match='not a string constant'):
        embedded_card.from_graph_def(graph_def)
    with pytest.raises(ValueError, match='more than 16777216 bytes'):
        safe_io.parse_card_json(b' ' * (card_lib.MAX_CARD_BYTES + 1))


@pytest.fixture(scope='module')
def tflite_model():
    """A TFLite model computing x + 1 (float32 [2])."""
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [2], name='x')
        y = tf.identity(x + 1.0, name='y')
        with v1.Session() as sess:
            return v1.lite.TFLiteConverter.from_session(sess, [x], [y]).convert()


def _run(content):
    interpreter = tf.lite.Interpreter(model_content=content)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]['index'], np.float32([1, 5]))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]['index'])


def _edited(content, edit):
    """`content` with `edit(model)` applied to its object form (the TFLite schema's)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    edit(model, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
    return bytes(builder.Output())


def test_tflite_card(tflite_model):
    assert embedded_card.from_tflite(tflite_model) is None  # the converter's entries only
    with_card = embedded_card.add_to_tflite(tflite_model, META)
    assert embedded_card.from_tflite(with_card) == EMBEDDED
    np.testing.assert_array_equal(_run(with_card), [2, 6])  # the interpreter ignores it

    def point_out_of_the_buffers(model, schema):
        model.metadata[-1].buffer = 1000

    def many_entries(model, schema):
        entry = schema.MetadataT()
        entry.name, entry.buffer = b'x', 0
        model.metadata = [entry] * 65

    def empty_buffer(model, schema):
        model.buffers[model.metadata[-1].buffer].data = None

    def second_card(model, schema):  # another card after ours (the first one was read)
        entry = schema.MetadataT()
        entry.name, entry.buffer = b'model_card', model.metadata[-1].buffer
        model.metadata.append(entry)

    for edit, why in (
        (point_out_of_the_buffers, 'in buffer 1000 of the'),
        (many_entries, 'one of 65 metadata entries'),
        (empty_buffer, 'not JSON'),
        (second_card, 'one of 2 metadata entries model_card, where a model has one'),
    ):
        with pytest.raises(ValueError, match=why):
            embedded_card.from_tflite(_edited(with_card, edit))
    with pytest.raises(ValueError, match='unreadable'):
        embedded_card.from_tflite(b'\xff' * 64)


def _write_metadata(folder, meta):
    (folder / 'metadata.json').write_text(json.dumps(meta))


def test_metadata_json_beside_the_model_else_its_card(tmp_path):
    model = tmp_path / 'frozen_graph.pb'
    model.write_bytes(b'graph')

    def resolve(card=None, error=None):
        def embedded():
            if error:
                raise ValueError(error)
            return card

        return card_lib.resolve_export_metadata(str(model), embedded, 'frozen graph')

    with pytest.raises(FileNotFoundError) as info:
        resolve()
    assert str(info.value) == (
        f'{model}: no metadata.json beside it and no model card in the frozen graph (an export '
        f'older than the cards inside models); copy the metadata.json export_ssd_network.py '
        f'wrote with it next to it, or export the model again.'
    )
    with pytest.raises(card_lib.CardError) as info:
        resolve(error='not JSON (cut)')
    assert str(info.value) == f'{model}: the model card in the frozen graph is not JSON (cut).'
    assert resolve(EMBEDDED) == (EMBEDDED, str(model), None)

    # A metadata.json of an earlier export (no digests): the card inside is what is compared;
    # the export time only where the card has one (a frozen graph's has none).
    older = {k: v for k, v in META.items() if k != card_lib.FILE_DIGESTS}
    _write_metadata(tmp_path, older)
    meta_path = str(tmp_path / 'metadata.json')
    assert resolve(EMBEDDED) == (older, meta_path, None)
    timed = dict(EMBEDDED, export=dict(EMBEDDED['export'], time='2026-12-08T10:00:00Z'))
    other = dict(EMBEDDED, export={'checkpoint': {'path': '/r/model.ckpt-9'}})
    for card, differ in ((timed, 'export time'), (other, 'exported checkpoint')):
        with pytest.raises(card_lib.ModelMismatchError, match=f'differ in {differ}\\)'):
            resolve(card)
    # An unreadable card beside a readable metadata.json: that file, not checked.
    meta, path, note = resolve(error='not JSON')
    assert (meta, path) == (older, meta_path) and 'is not checked that it describes' in note
    meta, path, note = resolve(None)
    assert (meta, path) == (older, meta_path) and 'is not checked that it describes' in note
