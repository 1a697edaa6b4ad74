"""Shared graphs are code (#16): a frozen graph or SavedModel with ops our exports never contain
(file reads and writes, Python), or constants far larger than ours, is refused by name before it
is imported; our own exports pass. A graph failing at run time is one line naming it."""

import json
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.ops import list_ops

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


def _graph_def_with(build):
    """Our input and output names plus the ops `build(images)` makes (not needed by the
    outputs: the checks look at every node)."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        v1.placeholder_with_default(tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES)
        build(images)
        _fake_outputs()
    return graph.as_graph_def()


def _declare(graph_def, name, dims):
    """Sets the declared shape of Const `name` (its one stored value then fills all of it)."""
    (node,) = [node for node in graph_def.node if node.name == name]
    shape = node.attr['value'].tensor.tensor_shape
    shape.ClearField('dim')
    for size in dims:
        shape.dim.add(size=size)
    return graph_def


@pytest.mark.parametrize('size', [2**29, 2**36])
def test_constants_declaring_gigabytes_are_refused_before_import(tmp_path, size):
    """A 2 KB graph whose Const holds one float declared [2**29] (TF allocated 2 GB for it) or
    [2**36] (TF failed with a long traceback)."""
    graph_def = _declare(_graph_def_with(lambda _: tf.constant([1.0], name='big')), 'big', [size])
    path = tmp_path / 'frozen_graph.pb'
    path.write_bytes(graph_def.SerializeToString())
    assert path.stat().st_size < 2048
    (tmp_path / detection.METADATA_FILE).write_text(json.dumps(_card().to_dict()))
    with pytest.raises(graph_check.UnsafeGraphError) as err:
        detection.Detector.from_frozen_graph(str(path))
    assert re.match(
        f'{re.escape(str(path))}: refusing to load this frozen graph: its constants at their '
        rf"declared shapes take [\d,]+ bytes \(largest: node 'big', {4 * size:,} bytes\), more "
        r'than the limit of 1,073,741,824 ',
        str(err.value),
    )
    assert '\n' not in str(err.value) and 'trust' in str(err.value)


def _while_body_fill(_):
    """A StatelessWhile whose body fills a [2**29] float32 tensor (2 GB) from constants."""
    return tf.while_loop(
        lambda i, x: i < 1,
        lambda i, x: (i + 1, x + tf.reduce_sum(tf.fill([2**29], 1.0))),
        [tf.constant(0), tf.constant(0.0)],
    )


@pytest.mark.parametrize(
    'build,why',
    [
        (lambda _: tf.fill([2**29], 1.0, name='bomb'), "computed from constants take 2,147,48"),
        (lambda _: tf.range(2**30, name='bomb'), 'computed from constants take 4,294,96'),
        (lambda _: tf.tile([1.0], [2**29], name='bomb'), 'computed from constants take 2,147,48'),
        (
            lambda _: list_ops.tensor_list_reserve([], 2**30, tf.float32, name='bomb'),
            'computed from constants take 34,359,7',
        ),
        (
            lambda images: tf.zeros(tf.stack([tf.shape(images)[0], 2**29]), name='bomb'),
            r'makes a tensor of shape \(None, 536870912\) of at least 2,147,483,648 bytes per '
            'image',
        ),
        (
            lambda images: v1.image.resize_bilinear(
                tf.cast(images, tf.float32), [65536, 65536], name='bomb'
            ),
            'makes a tensor of shape .* of at least 51,539,607,552 bytes per image',
        ),
    ],
    ids=['fill', 'range', 'tile', 'tensor_list', 'fill_per_image', 'resize'],
)
def test_tensors_computed_from_constants_are_bounded(build, why):
    """Fill, Range, Tile, TensorListReserve of constants (TF materialises them when the graph
    runs), and tensors whose constant dims alone exceed the limit per image."""
    with pytest.raises(graph_check.UnsafeGraphError) as err:
        graph_check.check_frozen_graph(_graph_def_with(build), 'bomb.pb')
    message = str(err.value)
    assert message.startswith('bomb.pb: refusing to load this frozen graph: ')
    assert "'bomb'" in message and '\n' not in message
    assert re.search(why, message), message


def test_tensors_computed_in_functions_and_graphs_tf_cannot_import():
    with pytest.raises(graph_check.UnsafeGraphError, match=r"node 'while_body_\w+/Fill', 2,147"):
        graph_check.check_frozen_graph(_graph_def_with(_while_body_fill), 'loop.pb')
    mismatched = _declare(
        _graph_def_with(lambda _: tf.add(tf.constant([1.0, 2.0], name='a'), [1.0, 2.0])), 'a', [3]
    )
    with pytest.raises(
        ValueError,
        match=r'^bad.pb: TensorFlow cannot import this frozen graph \(Dimensions must be equal, '
        r'but are 3 and 2 .*\); export it with export_ssd_network.py.$',
    ):
        graph_check.check_frozen_graph(mismatched, 'bad.pb')


def test_saved_model_constants_and_variables_are_bounded(tmp_path):
    fills = str(tmp_path / 'fills')
    _tiny_saved_model(fills, evil=lambda: tf.fill([2**29], 1.0, name='bomb'))
    with pytest.raises(graph_check.UnsafeGraphError, match=r"fills: .*\(largest: node 'bomb', 2,"):
        detection.Detector.from_saved_model(fills)
    variable = str(tmp_path / 'variable')
    _tiny_saved_model(variable)
    pb = os.path.join(variable, 'saved_model.pb')
    saved_model = saved_model_pb2.SavedModel.FromString(open(pb, 'rb').read())
    for node in saved_model.meta_graphs[0].graph_def.node:
        if node.op == 'VarHandleOp':
            node.attr['shape'].shape.dim.add(size=2**30)  # a scalar declared [2**30]
    with open(pb, 'wb') as f:
        f.write(saved_model.SerializeToString())
    with pytest.raises(
        graph_check.UnsafeGraphError,
        match=r'variable: refusing to load this SavedModel: its constants and variables at their '
        r"declared shapes take 4,294,9\d\d,\d+ bytes \(largest: node 'w', 4,294,967,296 bytes\)",
    ):
        graph_check.check_saved_model(variable)


def test_a_model_failing_at_run_time_is_one_line_naming_it(tmp_path):
    """A graph that passes every check but whose GatherV2 index is out of range."""

    def build(images):
        batch = tf.shape(images)[0]
        bad = tf.gather(tf.constant([1.0]), 10)
        for name, dims, dtype in (
            ('detection_boxes', [1, 4], tf.float32),
            ('detection_scores', [1], tf.float32),
            ('detection_classes', [1], tf.int32),
            ('num_detections', [], tf.int32),
            ('raw_localisations', [1, 4], tf.float32),
            ('raw_scores', [1, 3], tf.float32),
        ):
            zeros = tf.zeros(tf.stack([batch] + dims), dtype)
            tf.identity(zeros + tf.cast(bad, dtype), name=name)

    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        v1.placeholder_with_default(tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES)
        build(images)
    path = tmp_path / 'frozen_graph.pb'
    path.write_bytes(graph.as_graph_def().SerializeToString())
    (tmp_path / detection.METADATA_FILE).write_text(json.dumps(_card().to_dict()))
    with detection.Detector.from_frozen_graph(str(path)) as detector:
        with pytest.raises(detection.ModelRunError) as err:
            detector.detect([np.zeros((8, 8, 3), np.uint8)])
    assert str(err.value) == (
        f"{path}: TensorFlow failed running the model on a batch of shape [1, 8, 8, 3] "
        f"(InvalidArgumentError in node 'GatherV2': indices = 10 is not in [0, 1)); if it fails "
        f'on every batch, export it again with export_ssd_network.py.'
    )


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
