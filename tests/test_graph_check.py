"""Shared graphs are code (#16): a frozen graph or SavedModel with ops our exports never contain
(file reads and writes, Python) is refused by name before it is imported; our own exports pass."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from inference import detection
from inference import export
from inference import graph_check
from tests import eval_fixtures

v1 = tf.compat.v1
MODEL, DEPTH, NAMES = 'ssd_300_mobilenet', 0.25, ['cat', 'dog']


def _card():
    return eval_fixtures.small_card(MODEL, NAMES, DEPTH)


def _fake_outputs():
    """Nodes with our output names (what from_frozen_graph looks for)."""
    shapes = {
        'detection_boxes': [1, 1, 4],
        'detection_scores': [1, 1],
        'detection_classes': [1, 1],
        'num_detections': [1],
        'raw_localisations': [1, 1, 4],
        'raw_scores': [1, 1, 3],
    }
    return {name: tf.identity(tf.zeros(shape), name=name) for name, shape in shapes.items()}


def _crafted_graph_def(target):
    """Our input and output names, plus a ReadFile -> WriteFile of `target` and a PyFunc that
    run before the outputs."""
    graph = tf.Graph()
    with graph.as_default():
        v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        v1.placeholder_with_default(tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES)
        secret = tf.io.read_file(__file__)
        write = tf.io.write_file(target, secret)
        python = v1.py_func(lambda: np.float32(0), [], tf.float32)
        with tf.control_dependencies([write, python]):
            _fake_outputs()
    return graph.as_graph_def()


def test_crafted_frozen_graph_is_refused_naming_its_ops(tmp_path):
    target = str(tmp_path / 'written_by_the_graph')
    path = tmp_path / 'frozen_graph.pb'
    path.write_bytes(_crafted_graph_def(target).SerializeToString())
    export_dir = tmp_path
    (export_dir / detection.METADATA_FILE).write_text(json.dumps(_card().to_dict()))
    with pytest.raises(graph_check.UnsafeGraphError) as err:
        detection.Detector.from_frozen_graph(str(path))
    message = str(err.value)
    for op in ('ReadFile', 'WriteFile', 'PyFunc'):
        assert op in message
    assert str(path) in message and 'trust' in message
    assert not os.path.exists(target)


def _tiny_saved_model(export_dir, evil=None, main_op=False):
    """A SavedModel with our signature names: a variable, our outputs, and `evil` (a callable
    building ops the outputs depend on) or a main op run at load time."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        sizes = v1.placeholder_with_default(
            tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES
        )
        weight = v1.get_variable('w', [], initializer=v1.zeros_initializer())
        deps = [evil()] if evil else []
        with tf.control_dependencies(deps):
            outputs = _fake_outputs()
            outputs['detection_scores'] = outputs['detection_scores'] + weight
        info = v1.saved_model.utils.build_tensor_info
        signature = v1.saved_model.signature_def_utils.build_signature_def(
            inputs={'images': info(images), 'image_sizes': info(sizes)},
            outputs={k: info(t) for k, t in outputs.items()},
            method_name=v1.saved_model.signature_constants.PREDICT_METHOD_NAME,
        )
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(export_dir)
            builder.add_meta_graph_and_variables(
                sess,
                [v1.saved_model.tag_constants.SERVING],
                signature_def_map={detection.PADDED_SIGNATURE: signature},
                main_op=tf.no_op() if main_op else None,
            )
            builder.save()


def test_crafted_saved_models_are_refused_before_loading(tmp_path):
    target = str(tmp_path / 'written_by_the_model')
    writes = str(tmp_path / 'writes')
    _tiny_saved_model(writes, evil=lambda: tf.io.write_file(target, 'x'))
    with pytest.raises(graph_check.UnsafeGraphError, match='WriteFile'):
        detection.Detector.from_saved_model(writes)
    assert not os.path.exists(target)
    runs_at_load = str(tmp_path / 'main_op')
    _tiny_saved_model(runs_at_load, main_op=True)
    with pytest.raises(graph_check.UnsafeGraphError, match='when loaded'):
        graph_check.check_saved_model(runs_at_load)
    plain = str(tmp_path / 'plain')
    _tiny_saved_model(plain)
    graph_check.check_saved_model(plain)  # variables, saver, our ops: fine


@pytest.mark.parametrize(
    'model,dtype,fixed_size,batch_size,params',
    [
        ('ssd_300_mobilenet', 'float32', False, None, {'depth_multiplier': DEPTH}),
        ('ssd_300_mobilenet', 'bfloat16', True, 2, {'depth_multiplier': DEPTH}),
        ('ssd_300_mobilenet', 'float16', False, 2, {'depth_multiplier': DEPTH}),
        ('ssd_300_vgg', 'bfloat16', False, None, {}),
        ('ssd_512_vgg', 'float32', True, None, {}),
    ],
)
def test_our_export_graphs_use_only_allowed_ops(model, dtype, fixed_size, batch_size, params):
    """Every net, compute dtype, fixed and any size (`python -m inference.graph_check` builds all
    36 combinations; these cover every op type that appears)."""
    frozen, whole = graph_check.export_op_types(model, dtype, fixed_size, batch_size, **params)
    assert frozen <= graph_check.FROZEN_GRAPH_OPS, sorted(frozen - graph_check.FROZEN_GRAPH_OPS)
    assert whole <= graph_check.SAVED_MODEL_OPS, sorted(whole - graph_check.SAVED_MODEL_OPS)


def test_our_written_exports_pass_the_check(tmp_path):
    card = _card()
    prefix = eval_fixtures.write_random_checkpoint(
        str(tmp_path / 'ckpt' / 'model.ckpt'), MODEL, len(NAMES) + 1, 7, depth_multiplier=DEPTH
    )
    graph_check.check_frozen_graph(export.frozen_graph_def(card, prefix), 'frozen')
    out = tmp_path / 'out'
    out.mkdir()
    export.write_saved_model(
        str(out / 'saved_model'), card, prefix, export.metadata(card, ['saved_model'])
    )
    graph_check.check_saved_model(
        str(out / 'saved_model'), signature_names=[detection.PADDED_SIGNATURE]
    )
    graph_check.check_saved_model(str(out / 'saved_model'))
