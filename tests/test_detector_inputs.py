"""The detectors' Python API refuses images other than uint8 RGB `[H, W, 3]` in one line naming
the model (`detection.check_images`): float images (normalised or 0-255 floats), gray or RGBA
arrays and other integers gave garbage detections (OpenVINO converted floats silently) or a deep
TF traceback, and an empty list an IndexError or `max() arg is an empty sequence`.

The models are tiny hand-made graphs of the exports' interface (no net: an export takes seconds)
whose one detection's score is the image's mean / 255, so valid images still give known outputs.
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from inference import detection
from inference import openvino_model
from model import card as card_lib

v1 = tf.compat.v1

BOX = [0.1, 0.2, 0.6, 0.7]
EXPECTED = detection.IMAGES_EXPECTED


def _tf_outputs(images, sizes=None):
    """Our detection outputs of `images`: one detection per image, box BOX, class 1, score the
    image's mean / 255 (of its `sizes` in a zero-padded batch; ops the frozen graph check
    allows)."""
    sizes = tf.shape(images)[None, 1:3] if sizes is None else sizes
    pixels = tf.cast(sizes[:, 0] * sizes[:, 1] * 3, tf.float32)
    mean = tf.reduce_sum(tf.cast(images, tf.float32), [1, 2, 3]) / pixels / 255.0
    scores = tf.expand_dims(mean, 1)
    outputs = {
        'detection_boxes': tf.expand_dims(scores, 2) * 0.0 + tf.constant([[BOX]]),
        'detection_scores': scores,
        'detection_classes': tf.cast(scores * 0.0 + 1.0, tf.int32),
        'num_detections': tf.cast(mean * 0.0 + 1.0, tf.int32),
    }
    return [tf.identity(value, name=name) for name, value in outputs.items()]


def _frozen_graph(path):
    graph = tf.Graph()
    with graph.as_default():
        images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
        shape = tf.shape(images)
        full = tf.tile(shape[None, 1:3], [shape[0], 1])
        _tf_outputs(images, v1.placeholder_with_default(full, [None, 2], name=detection.SIZES))
        for name, last in (('raw_localisations', 4), ('raw_scores', 3)):
            tf.identity(tf.zeros([1, 1, last]), name=name)
    path.write_bytes(graph.as_graph_def().SerializeToString())


def _tflite_model(path):
    graph = tf.Graph()
    with graph.as_default(), v1.Session() as sess:
        images = v1.placeholder(tf.uint8, [1, None, None, 3], name=detection.INPUT)
        converter = v1.lite.TFLiteConverter.from_session(sess, [images], _tf_outputs(images))
        path.write_bytes(converter.convert())


def _openvino_ir(path):
    import openvino as ov
    from openvino import opset13 as ops

    images = ops.parameter([-1, -1, -1, 3], np.uint8, name=detection.INPUT)
    mean = ops.multiply(
        ops.reduce_mean(ops.convert(images, np.float32), [1, 2, 3]), np.float32(1 / 255)
    )
    scores = ops.unsqueeze(mean, 1)
    zeros = ops.multiply(scores, np.float32(0))
    outputs = {
        'detection_boxes': ops.add(ops.unsqueeze(zeros, 2), np.float32([[BOX]])),
        'detection_scores': scores,
        'detection_classes': ops.convert(ops.add(zeros, np.float32(1)), np.int32),
        'num_detections': ops.convert(
            ops.add(ops.multiply(mean, np.float32(0)), np.float32(1)), np.int32
        ),
    }
    for name, node in outputs.items():
        node.output(0).get_tensor().set_names({name})
    ov.save_model(
        ov.Model(list(outputs.values()), [images], 'tiny'), str(path), compress_to_fp16=False
    )


@pytest.fixture(scope='module')
def detectors(tmp_path_factory):
    """{kind: detector} of the tiny models, which share one folder's metadata.json."""
    folder = tmp_path_factory.mktemp('tiny_models')
    card = card_lib.from_registry('ssd_300_mobilenet', class_names=['cat', 'dog'])
    (folder / detection.METADATA_FILE).write_text(json.dumps(card.to_dict()))
    paths = {
        'frozen_graph': folder / 'frozen_graph.pb',
        'openvino': folder / 'model_openvino.xml',
        'tflite': folder / 'model.tflite',
    }
    _frozen_graph(paths['frozen_graph'])
    _openvino_ir(paths['openvino'])
    _tflite_model(paths['tflite'])
    opened = {
        'frozen_graph': detection.Detector.from_frozen_graph(str(paths['frozen_graph'])),
        'openvino': openvino_model.OpenVINODetector(str(paths['openvino'])),
        'tflite': detection.TFLiteDetector(str(paths['tflite'])),
    }
    yield opened
    opened['frozen_graph'].close()
    opened['openvino'].close()


def _path(detector):
    return getattr(detector, 'source', None) or detector.path


def _image(height=6, width=8, seed=0):
    image = np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)
    image[0, 0, 0] = 255
    return image


IMAGE = _image()
RUN_CASES = {
    'normalised_float32': (
        [IMAGE / np.float32(255)],
        'image 0 is float32 of shape [6, 8, 3], which looks normalised (max 1); pass the decoded '
        'uint8 image: ',
    ),
    '0_255_float32': (
        [IMAGE, IMAGE.astype(np.float32)],
        'image 1 is float32 of shape [6, 8, 3], not normalised (max 255); convert it with '
        'np.clip(image, 0, 255).astype(np.uint8): ',
    ),
    'gray': (
        [IMAGE[..., 0]],
        'image 0 is uint8 of shape [6, 8], gray; convert it to RGB, e.g. '
        'cv2.cvtColor(image, cv2.COLOR_GRAY2RGB): ',
    ),
    'rgba': (
        [np.dstack([IMAGE, IMAGE[..., :1]])],
        'image 0 is uint8 of shape [6, 8, 4], 4 channels; drop the alpha channel, e.g. '
        "cv2.cvtColor(image, cv2.COLOR_RGBA2RGB) (COLOR_BGRA2RGB for OpenCV's BGRA): ",
    ),
    'int64': (
        [IMAGE.astype(np.int64)],
        'image 0 is int64 of shape [6, 8, 3]; convert it to uint8 (image.astype(np.uint8) if its '
        'values are 0-255): ',
    ),
    'empty_list': ([], 'no images (an empty list); pass at least one: '),
    'no_pixels': (
        [IMAGE[:0]],
        'image 0 is uint8 of shape [0, 8, 3], no pixels; pass images of one pixel or more: ',
    ),
    'one_array': (IMAGE, 'got uint8 of shape [6, 8, 3], not a list of images ([image]); '),
}


@pytest.mark.parametrize('kind', ['frozen_graph', 'openvino', 'tflite'])
@pytest.mark.parametrize('case', list(RUN_CASES))
def test_run_refuses_other_images_naming_the_model(detectors, kind, case):
    images, problem = RUN_CASES[case]
    detector = detectors[kind]
    with pytest.raises(ValueError) as err:
        detector.run(images)
    assert str(err.value) == f'{_path(detector)}: {problem}{EXPECTED}.'


PADDED_CASES = {
    'float32_batch': (
        (IMAGE / np.float32(255))[None],
        'the batch is float32 of shape [1, 6, 8, 3], which looks normalised (max 1); pass the '
        'decoded uint8 image: ',
    ),
    'one_image': (IMAGE, 'got uint8 of shape [6, 8, 3], not a zero-padded batch [B, H, W, 3]; '),
    'empty_batch': (IMAGE[None][:0], 'no images (an empty batch); pass at least one: '),
}


@pytest.mark.parametrize('kind', ['frozen_graph', 'openvino'])
@pytest.mark.parametrize('case', list(PADDED_CASES))
def test_run_padded_refuses_other_batches_naming_the_model(detectors, kind, case):
    batch, problem = PADDED_CASES[case]
    detector = detectors[kind]
    with pytest.raises(ValueError) as err:
        detector.run_padded(batch, np.int32([[6, 8]] * len(batch)))
    assert str(err.value) == f'{_path(detector)}: {problem}{EXPECTED}.'


def test_uint8_images_give_the_same_detections(detectors):
    images = [IMAGE, _image(9, 5, seed=1)]
    want = [float(np.mean(image, dtype=np.float64) / 255) for image in images]
    got = {
        kind: detector.detect(images) for kind, detector in detectors.items() if kind != 'tflite'
    }
    got['tflite'] = [detectors['tflite'].detect([image])[0] for image in images]
    padded = detectors['openvino'].run_padded(*detection.pad_batch(images))
    got['openvino_padded'] = detection.split_detections(padded)
    for kind, dets in got.items():
        for one, score in zip(dets, want):
            np.testing.assert_allclose(one['scores'], [score], rtol=1e-5, err_msg=kind)
            np.testing.assert_allclose(one['boxes'], [BOX], err_msg=kind)
            np.testing.assert_array_equal(one['classes'], [1], err_msg=kind)


def test_tflite_refuses_images_of_two_sizes_before_stacking_them(detectors):
    tflite = detectors['tflite']
    with pytest.raises(ValueError, match=rf'{tflite.path}: this TFLite model takes .* of one size'):
        tflite.run([_image(6, 8), _image(7, 8)])


@pytest.mark.parametrize('kind', ['frozen_graph', 'openvino'])
@pytest.mark.parametrize(
    'sizes', [[[6, 8]], [[7, 8], [6, 8]], [[6, 9], [6, 8]], [[0, 8], [6, 8]], [[6.0, 8.0]] * 2]
)
def test_run_padded_refuses_sizes_that_are_not_the_images(detectors, kind, sizes):
    # A batch of two 6x8 images: sizes of another count, beyond the batch, empty or not integers.
    detector = detectors[kind]
    with pytest.raises(ValueError, match=rf'{_path(detector)}: image sizes .* within the batch'):
        detector.run_padded(np.stack([IMAGE, IMAGE]), np.asarray(sizes))
