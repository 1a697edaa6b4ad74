"""Shared graphs are code (#16): a frozen graph or SavedModel with ops our exports never contain
(file reads and writes, Python), or constants far larger than ours, is refused by name before it
is imported; our own exports pass. A graph failing at run time is one line naming it."""

import json
import os
import re

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.ops import list_ops

from evaluation import exported as eval_exported
from inference import detection
from inference import export
from inference import graph_check
from tests import eval_fixtures
from tests.conftest import run_script

v1 = tf.compat.v1
MODEL, DEPTH, NAMES = 'ssd_300_mobilenet', 0.25, ['cat', 'dog']


def _card():
    return eval_fixtures.small_card(MODEL, NAMES, DEPTH)


def _fake_outputs(**changes):
    """Nodes with our output names, dtypes and ranks (what from_frozen_graph looks for);
    `changes`: {name: (dtype, shape)} of outputs of other ones (shape None: of unknown rank)."""
    shapes = {
        'detection_boxes': [1, 1, 4],
        'detection_scores': [1, 1],
        'detection_classes': [1, 1],
        'num_detections': [1],
        'raw_localisations': [1, 1, 4],
        'raw_scores': [1, 1, 3],
    }
    outputs = {}
    for name, shape in shapes.items():
        dtype, shape = changes.get(name, (detection.INTERFACE[name][0], shape))
        value = tf.zeros(shape or [1], dtype)
        if shape is None:
            value = tf.reshape(value, v1.placeholder_with_default([1], None))
        outputs[name] = tf.identity(value, name=name)
    return outputs


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


def _write_frozen_graph(folder, graph_def):
    """Writes `graph_def` as frozen_graph.pb with a metadata.json beside it; returns its path."""
    path = folder / 'frozen_graph.pb'
    path.write_bytes(graph_def.SerializeToString())
    (folder / detection.METADATA_FILE).write_text(json.dumps(_card().to_dict()))
    return path


def test_crafted_frozen_graph_is_refused_naming_its_ops(tmp_path):
    target = str(tmp_path / 'written_by_the_graph')
    path = _write_frozen_graph(tmp_path, _crafted_graph_def(target))
    with pytest.raises(graph_check.UnsafeGraphError) as err:
        detection.Detector.from_frozen_graph(str(path))
    message = str(err.value)
    for op in ('ReadFile', 'WriteFile', 'PyFunc'):
        assert op in message
    assert str(path) in message and 'trust' in message
    assert not os.path.exists(target)


def _tiny_saved_model(
    export_dir, evil=None, main_op=False, signature_name=detection.PADDED_SIGNATURE, **changes
):
    """A SavedModel with our signature names (its one signature: `signature_name`): a variable,
    our outputs (`changes`: as `_fake_outputs`), and `evil` (a callable building ops the outputs
    depend on) or a main op run at load time. Its metadata.json is an empty object: the loader
    reads it before loading, and what the tests check is refused before the card is used."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        sizes = v1.placeholder_with_default(
            tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES
        )
        weight = v1.get_variable('w', [], initializer=v1.zeros_initializer())
        deps = [evil()] if evil else []
        with tf.control_dependencies(deps):
            outputs = _fake_outputs(**changes)
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
                signature_def_map={signature_name: signature},
                main_op=tf.no_op() if main_op else None,
            )
            builder.save()
    os.makedirs(os.path.join(export_dir, 'assets.extra'))
    with open(os.path.join(export_dir, 'assets.extra', 'metadata.json'), 'w') as f:
        f.write('{}')


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


def test_image_decoding_is_reachable_from_the_encoded_signatures_only(tmp_path):
    """Our SavedModels decode the image files' bytes fed to `serving_encoded` (and parse the
    tf.Examples fed to `serving_tf_example`); a signature our loaders run decoding an image
    stored in the graph (any size: a few bytes of PNG can declare gigapixels) is refused, and
    only `serving_tf_example` may parse."""
    png = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes()

    def decode():
        return tf.io.decode_image(png, channels=3, expand_animations=False)

    padded = str(tmp_path / 'padded')
    _tiny_saved_model(padded, evil=decode)
    with pytest.raises(
        graph_check.UnsafeGraphError, match="signature 'serving_padded'.*DecodeImage"
    ):
        detection.Detector.from_saved_model(padded)
    for signature in (detection.ENCODED_SIGNATURE, detection.TF_EXAMPLE_SIGNATURE):
        allowed = str(tmp_path / signature)
        _tiny_saved_model(allowed, evil=decode, signature_name=signature)
        graph_check.check_saved_model(allowed)

    def parse():
        example = tf.train.Example().SerializeToString()
        return tf.io.parse_single_example(example, {'x': tf.io.FixedLenFeature([], tf.string, '')})

    for signature, allowed in (
        (detection.ENCODED_SIGNATURE, False),
        (detection.TF_EXAMPLE_SIGNATURE, True),
    ):
        parses = str(tmp_path / f'parses_{signature}')
        _tiny_saved_model(parses, evil=lambda: parse()['x'], signature_name=signature)
        if allowed:
            graph_check.check_saved_model(parses)
        else:
            with pytest.raises(graph_check.UnsafeGraphError, match='ParseExampleV2'):
                graph_check.check_saved_model(parses)


def _decode_and_assert():
    png = cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    image = tf.io.decode_image(png, channels=3, expand_animations=False, name='evil')
    return tf.debugging.Assert(tf.reduce_sum(tf.cast(image, tf.int32)) <= 0, [image])


def _parse():
    example = tf.train.Example().SerializeToString()
    return tf.io.parse_single_example(example, {'x': tf.io.FixedLenFeature([], tf.string, '')})[
        'x'
    ].op


@pytest.mark.parametrize(
    'build, op', [(_decode_and_assert, 'DecodeImage'), (_parse, 'ParseExampleV2')]
)
def test_a_restore_op_that_decodes_is_refused(tmp_path, build, op):
    """The loader runs the restore op before anything is fed: one depending on an Assert or on
    the decoding of an image stored in the graph (656 KB of PNG decode to 675 MB) is refused,
    though `serving_encoded` may decode; one parsing a tf.Example too, though
    `serving_tf_example` may parse."""
    export_dir = str(tmp_path / 'model')
    _tiny_saved_model(export_dir)
    path = os.path.join(export_dir, 'saved_model.pb')
    with open(path, 'rb') as f:
        saved_model = saved_model_pb2.SavedModel.FromString(f.read())
    meta_graph = saved_model.meta_graphs[0]
    evil = tf.Graph()
    with evil.as_default():
        check = build()
    meta_graph.graph_def.node.extend(evil.as_graph_def().node)
    meta_graph.graph_def.library.function.extend(evil.as_graph_def().library.function)
    restore = meta_graph.saver_def.restore_op_name.split(':')[0]
    next(n for n in meta_graph.graph_def.node if n.name == restore).input.append('^' + check.name)
    with open(path, 'wb') as f:
        f.write(saved_model.SerializeToString())
    with pytest.raises(
        graph_check.UnsafeGraphError, match=f'restore op writes files or decodes images.*{op}'
    ):
        detection.Detector.from_saved_model(export_dir)


def _graph_def_with(build, **changes):
    """Our input and output names (`changes`: as `_fake_outputs`) plus the ops `build(images)`
    makes (not needed by the outputs: the checks look at every node)."""
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        v1.placeholder_with_default(tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES)
        build(images)
        _fake_outputs(**changes)
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
    path = _write_frozen_graph(tmp_path, graph_def)
    assert path.stat().st_size < 2048
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
        graph_check.check_frozen_graph(_graph_def_with(build), 'bomb.pb', detection.INTERFACE)
    message = str(err.value)
    assert message.startswith('bomb.pb: refusing to load this frozen graph: ')
    assert "'bomb'" in message and '\n' not in message
    assert re.search(why, message), message


def test_tensors_computed_in_functions_and_graphs_tf_cannot_import():
    with pytest.raises(graph_check.UnsafeGraphError, match=r"node 'while_body_\w+/Fill', 2,147"):
        graph_check.check_frozen_graph(
            _graph_def_with(_while_body_fill), 'loop.pb', detection.INTERFACE
        )
    mismatched = _declare(
        _graph_def_with(lambda _: tf.add(tf.constant([1.0, 2.0], name='a'), [1.0, 2.0])), 'a', [3]
    )
    with pytest.raises(
        ValueError,
        match=r'^bad.pb: TensorFlow cannot import this frozen graph \(Dimensions must be equal, '
        r'but are 3 and 2 .*\); export it with export_ssd_network.py.$',
    ):
        graph_check.check_frozen_graph(mismatched, 'bad.pb', detection.INTERFACE)


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
    path = _write_frozen_graph(tmp_path, graph.as_graph_def())
    with detection.Detector.from_frozen_graph(str(path)) as detector:
        with pytest.raises(detection.ModelRunError) as err:
            detector.detect([np.zeros((8, 8, 3), np.uint8)])
    assert str(err.value) == (
        f"{path}: TensorFlow failed running the model on a batch of shape [1, 8, 8, 3] "
        f"(InvalidArgumentError in node 'GatherV2': indices = 10 is not in [0, 1)); if it fails "
        f'on every batch, export it again with export_ssd_network.py.'
    )


@pytest.mark.parametrize(
    'changes,found',
    [
        (
            {'num_detections': (tf.string, [1])},
            "'num_detections' is string of shape (1,), not int32",
        ),
        (
            {'detection_boxes': (tf.int32, [1, 1, 4])},
            "'detection_boxes' is int32 of shape (1, 1, 4), not float32",
        ),
        (
            {'raw_scores': (tf.float32, [1, 3])},
            "'raw_scores' is float32 of shape (1, 3), not float32",
        ),
        (
            {'detection_classes': (tf.int32, None)},
            "'detection_classes' is int32 of shape <unknown>, not int32",
        ),
    ],
    ids=['string_count', 'int_boxes', 'rank_2_scores', 'unknown_rank'],
)
def test_outputs_of_other_dtypes_or_ranks_are_refused_when_loaded(tmp_path, changes, found):
    """Outputs of our names but other dtypes or ranks (a string num_detections ended detect in
    a TypeError traceback slicing the boxes by it): one line naming the file and the output."""
    (name,) = changes
    path = _write_frozen_graph(tmp_path, _graph_def_with(lambda _: None, **changes))
    with pytest.raises(ValueError) as err:
        detection.Detector.from_frozen_graph(str(path))
    rank = detection.INTERFACE[name][1]
    assert str(err.value) == (
        f"{path}: the frozen graph's tensor {found} of rank {rank}; export it with "
        f'export_ssd_network.py.'
    )


def test_outputs_that_do_not_fit_the_batch_fail_it(tmp_path):
    """A model whose outputs have our dtypes and ranks but not the batch's rows: one
    ModelRunError naming the file (detect fails that batch and goes on), not wrong detections."""
    path = _write_frozen_graph(tmp_path, _graph_def_with(lambda _: None))
    image = np.zeros((8, 8, 3), np.uint8)
    with detection.Detector.from_frozen_graph(str(path)) as detector:
        (one,) = detector.detect([image])  # its outputs are zeros for 1 image: no detections
        assert one['boxes'].shape == (0, 4)
        with pytest.raises(detection.ModelRunError) as err:
            detector.detect([image, image])
    assert str(err.value) == (
        f"{path}: the model's output 'detection_boxes' for 2 image(s) is float32 of shape "
        f'[1, 1, 4], not float32 of rank 3 with 2 rows of 4 coordinates; export the model again '
        f'with export_ssd_network.py.'
    )


@pytest.mark.parametrize(
    'changes,message',
    [
        ({'num_detections': np.int32([3, 0])}, 'num_detections [3, 0] are not within 0..2'),
        ({'num_detections': np.int32([-1, 0])}, 'num_detections [-1, 0] are not within 0..2'),
        # Outputs of different row counts: num_detections within the fewest.
        (
            {'detection_scores': np.zeros((2, 3), np.float32), 'num_detections': np.int32([3, 0])},
            'num_detections [3, 0] are not within 0..2',
        ),
        (
            {'detection_classes': np.zeros((2, 2), np.float32)},
            "output 'detection_classes' for 2 image(s) is float32 of shape [2, 2], not int32 of "
            'rank 2 with 2 rows',
        ),
        (
            {'detection_boxes': np.zeros((2, 2, 3), np.float32)},
            "output 'detection_boxes' for 2 image(s) is float32 of shape [2, 2, 3], not float32 "
            'of rank 3 with 2 rows of 4 coordinates',
        ),
        # Labels of the card's 2 classes only, in the rows below num_detections (the padding
        # rows, here image 2's, may hold anything).
        *(
            (
                {'detection_classes': np.int32([[1, bad], [0, 0]])},
                f'detection_classes [{bad}] are not within 1..2 (the classes of its model card, '
                'the background 0 left out); export the model again with export_ssd_network.py.',
            )
            for bad in (3, 99, 0, -3)
        ),
    ],
)
def test_check_outputs(changes, message):
    outputs = {
        'detection_boxes': np.zeros((2, 2, 4), np.float32),
        'detection_scores': np.zeros((2, 2), np.float32),
        'detection_classes': np.int32([[1, 2], [99, -3]]),
        'num_detections': np.int32([2, 0]),
    }
    detection.check_outputs(outputs, 2, 'm.xml', num_classes=3)  # a fitting batch passes
    with pytest.raises(detection.ModelRunError) as err:
        detection.check_outputs({**outputs, **changes}, 2, 'm.xml', num_classes=3)
    assert str(err.value).startswith(f"m.xml: the model's {message}")


def _labelled_graph_def(label):
    """Our interface, giving each image one detection of class `label` scoring 0.9."""

    def build(images):
        batch = tf.shape(images)[0]
        for name, value in (
            ('detection_boxes', np.float32([[0.1, 0.1, 0.5, 0.5]])),
            ('detection_scores', np.float32([0.9])),
            ('detection_classes', np.int32([label])),
            ('raw_localisations', np.zeros((1, 4), np.float32)),
            ('raw_scores', np.zeros((1, 3), np.float32)),
        ):
            value = tf.constant(value)
            ones = tf.ones([value.shape.rank], tf.int32)
            tf.identity(tf.tile(value[None], tf.concat([[batch], ones], 0)), name=name)
        # Counted, not a tiled scalar: OpenVINO 2026.4's TF reader folds a scalar constant's
        # `[None]` (StridedSlice adding an axis) into uninitialised memory (our graphs have none).
        tf.reduce_sum(tf.ones(tf.stack([batch, 1]), tf.int32), axis=1, name='num_detections')

    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        v1.placeholder_with_default(tf.zeros([1, 2], tf.int32), [None, 2], name=detection.SIZES)
        build(images)
    return graph.as_graph_def()


def _labelled_model(folder, kind, label):
    """`_labelled_graph_def(label)` as a frozen graph, a TFLite model or an OpenVINO IR, with a
    metadata.json beside it; returns its path."""
    frozen = _write_frozen_graph(folder, _labelled_graph_def(label))
    if kind == 'frozen_graph':
        return frozen
    if kind == 'tflite':
        graph = tf.Graph()
        with graph.as_default():
            tf.import_graph_def(_labelled_graph_def(label), name='')
            with v1.Session(graph=graph) as sess:
                get = graph.get_tensor_by_name
                converter = v1.lite.TFLiteConverter.from_session(
                    sess,
                    [get(f'{detection.INPUT}:0')],
                    [get(f'{name}:0') for name in detection.DETECTION_OUTPUTS + ('raw_scores',)],
                )
                path = folder / 'model.tflite'
                path.write_bytes(converter.convert())
        return path
    import openvino as ov

    model = ov.convert_model(str(frozen), input=[-1, -1, -1, 3])
    for port in model.inputs + model.outputs:  # TF's 'images:0' as our IRs name it: 'images'
        names = {n.split(':')[0] for n in port.get_names() if not n.startswith('Tile')}
        port.get_tensor().set_names(names)
    path = folder / 'model.xml'
    ov.save_model(model, str(path), compress_to_fp16=False)  # as export writes IRs
    return path


@pytest.mark.parametrize('kind', ['frozen_graph', 'tflite', 'openvino'])
@pytest.mark.parametrize('label', [3, 99, -3])
def test_detection_classes_outside_the_cards_are_refused_naming_the_model(tmp_path, label, kind):
    """A frozen graph giving class 99 ended detect in an IndexError traceback drawing its label,
    class -3 was written as the name of label 3 (Python's negative indexing), and an
    evaluation's refusal named VOCEvaluator.add_batch, not the model. TFLite models and OpenVINO
    IRs are checked as frozen graphs are."""
    path = _labelled_model(tmp_path, kind, label)
    with detection.open_exported_model(str(path)) as detector:
        with pytest.raises(detection.ModelRunError) as err:
            detector.detect([np.zeros((8, 8, 3), np.uint8)])
    assert str(err.value) == (
        f"{path}: the model's detection_classes [{label}] are not within 1..2 (the classes of its "
        'model card, the background 0 left out); export the model again with '
        'export_ssd_network.py.'
    )


def test_evaluating_a_model_of_unknown_classes_names_the_model(tmp_path):
    """eval --exported_model: the refusal named VOCEvaluator.add_batch(image_id='000002') and
    its det_labels, not the model."""
    _, records_dir, class_names = eval_fixtures.make_synthetic_records(str(tmp_path), 2)
    card = eval_fixtures.small_card(MODEL, class_names, DEPTH)
    path = tmp_path / 'frozen_graph.pb'
    path.write_bytes(_labelled_graph_def(99).SerializeToString())
    (tmp_path / detection.METADATA_FILE).write_text(json.dumps(card.to_dict()))
    settings = eval_fixtures.custom_split_settings(card, records_dir)
    with detection.open_exported_model(str(path)) as detector:
        with pytest.raises(detection.ModelRunError) as err:
            eval_exported.evaluate_exported(
                settings, detector, str(path), str(tmp_path / 'eval'), log=lambda _: None
            )
    assert str(err.value) == (
        f"{path}: the model's detection_classes [99] are not within 1..{len(class_names)} (the "
        'classes of its model card, the background 0 left out); export the model again with '
        'export_ssd_network.py.'
    )


def test_detect_with_a_model_of_unknown_classes_is_one_line_and_writes_nothing(tmp_path):
    """detect_ssd_network.py: one line naming the model (the IndexError traceback left
    .detections_pending.jsonl in --output_dir)."""
    path = _write_frozen_graph(tmp_path, _labelled_graph_def(99))
    image = tmp_path / 'a.png'
    image.write_bytes(cv2.imencode('.png', np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    out = tmp_path / 'out'
    proc = run_script(
        'detect_ssd_network.py',
        f'--exported_model={path}',
        f'--input={image}',
        f'--output_dir={out}',
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.splitlines()[-1] == (
        f'detect_ssd_network: error: no image processed (1 failed), nothing written to {out}: '
        f"{image}: {path}: the model's detection_classes [99] are not within 1..2 (the classes "
        'of its model card, the background 0 left out); export the model again with '
        'export_ssd_network.py.'
    )
    assert not out.exists()


def test_missing_or_mistyped_inputs_and_saved_model_outputs_are_refused(tmp_path):
    graph_def = _graph_def_with(lambda _: None)
    (images,) = [node for node in graph_def.node if node.name == detection.INPUT]
    images.attr['dtype'].type = tf.float32.as_datatype_enum
    with pytest.raises(
        ValueError,
        match=r"^mistyped.pb: the frozen graph's tensor 'images' is float32 of shape \(None, None, "
        r'None, 3\), not uint8 of rank 4; export',
    ):
        graph_check.check_frozen_graph(graph_def, 'mistyped.pb', detection.INTERFACE)
    graph_def = _graph_def_with(lambda _: None)
    (count,) = [i for i, node in enumerate(graph_def.node) if node.name == 'num_detections']
    del graph_def.node[count]
    with pytest.raises(
        ValueError,
        match=r"^missing.pb: the frozen graph has no \['num_detections'\] node\(s\); export",
    ):
        graph_check.check_frozen_graph(graph_def, 'missing.pb', detection.INTERFACE)
    export_dir = str(tmp_path / 'saved_model')
    _tiny_saved_model(export_dir, detection_classes=(tf.float32, [1, 1]))
    with pytest.raises(
        ValueError,
        match=f"^{export_dir}: the SavedModel's tensor 'detection_classes' is float32 of shape "
        r'\(1, 1\), not int32 of rank 2; export',
    ):
        detection.Detector.from_saved_model(export_dir)


@pytest.mark.parametrize('name', ['nowhere:0', 'detection_boxes:7'])
def test_saved_model_signature_naming_no_tensor_is_refused(tmp_path, name):
    """A signature naming a tensor the graph lacks ended in a KeyError traceback."""
    from tensorflow.core.protobuf import saved_model_pb2

    export_dir = tmp_path / 'saved_model'
    _tiny_saved_model(str(export_dir))
    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((export_dir / 'saved_model.pb').read_bytes())
    signature = saved.meta_graphs[0].signature_def[detection.PADDED_SIGNATURE]
    signature.outputs['detection_boxes'].name = name
    (export_dir / 'saved_model.pb').write_bytes(saved.SerializeToString())
    with pytest.raises(ValueError) as err:
        detection.Detector.from_saved_model(str(export_dir))
    message = str(err.value)
    assert message.startswith(f"{export_dir}: the 'serving_padded' signature names a tensor ")
    assert message.endswith('; export it with export_ssd_network.py.') and '\n' not in message


def test_the_checked_frozen_graph_is_the_one_run(tmp_path, monkeypatch):
    """The graph is imported once, by the size check (importing it again took 0.05-0.3 s)."""
    imports = []
    import_graph_def = v1.import_graph_def

    def counted(*args, **kwargs):
        imports.append(args)
        return import_graph_def(*args, **kwargs)

    monkeypatch.setattr(v1, 'import_graph_def', counted)
    path = _write_frozen_graph(tmp_path, _graph_def_with(lambda _: None))
    with detection.Detector.from_frozen_graph(str(path)) as detector:
        assert len(imports) == 1
        assert detector.outputs['num_detections'].graph is detector.graph


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
    out = tmp_path / 'out'
    export.export(card, prefix, str(out), ['frozen_graph', 'saved_model'], log=lambda _: None)
    with open(out / export.FILES['frozen_graph'], 'rb') as f:
        graph_def = tf.compat.v1.GraphDef.FromString(f.read())
    graph = graph_check.check_frozen_graph(graph_def, 'frozen', detection.INTERFACE)
    assert {op.name for op in graph.get_operations()} >= set(detection.INTERFACE)
    graph_check.check_saved_model(
        str(out / 'saved_model'), signature_names=[detection.PADDED_SIGNATURE]
    )
    graph_check.check_saved_model(str(out / 'saved_model'))


@pytest.mark.parametrize('name', ['variables.index', 'variables.data-00000-of-00001'])
def test_a_saved_model_variables_file_that_is_a_fifo_is_refused_unread(
    tmp_path, name, fifo_release
):
    # TF's SavedModel loader opened it and waited for a writer forever.
    export_dir = tmp_path / 'model'
    _tiny_saved_model(str(export_dir))
    fifo = export_dir / 'variables' / name
    fifo.unlink()
    os.mkfifo(fifo)
    fifo_release(str(fifo))
    with pytest.raises(ValueError) as err:
        detection.Detector.from_saved_model(str(export_dir))
    assert str(err.value) == (
        f'{fifo} is a FIFO (named pipe), not a regular file; a SavedModel is read from regular '
        'files only: export the model again.'
    )
    assert not fifo_release.fired()
