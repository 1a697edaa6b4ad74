"""Exports with --fixed_size: every format (frozen graph, SavedModel, TFLite, OpenVINO IR) takes
the net's input size only, the IR without a resize and with the other formats' detections;
detect refuses an image of another size in the same line for every format, one image at a time;
eval warps the images of the split to that size first.

The model is the export tests' MobileNet-SSD (depth 0.25, 300x300) with seeded weights whose
scores are spread out (`inference_fixtures.write_checkpoint`).
"""

import json
import os
import sys

import numpy as np
import pytest
import tensorflow as tf

from datasets import dataset_factory
from evaluation import evaluate
from evaluation import exported as eval_exported
from evaluation import input as eval_input
from inference import detection
from inference import export
from inference import openvino_model
from inference import parity
from tests import data_fixtures
from tests import inference_fixtures as fx
from tests.conftest import ROOT, run_script

v1 = tf.compat.v1

TOL = 1e-4
FIXED_FORMATS = ['frozen_graph', 'saved_model', 'tflite_float', 'openvino']
# detect's flag of each format.
FLAGS = {
    'frozen_graph': 'frozen_graph',
    'saved_model': 'saved_model_dir',
    'tflite_float': 'tflite_model',
    'openvino': 'openvino_model',
}
OTHER_SIZE = (296, 262)


def wrong_size_message(model):
    got = '%dx%d' % OTHER_SIZE
    return (
        f'{model} was exported with --fixed_size: it takes 300x300 (height x width) images only; '
        f'got {got}. Resize them to 300x300 first, or export the model without --fixed_size '
        f'to detect on images of any size.'
    )


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """`fixed`: every format but int8 with --fixed_size; `static`: the frozen graph with
    --fixed_size and a static batch of 2; `any`: {format: path} of the exports of any size
    (`inference_fixtures.seeded_export`); `images`: three 300x300 images."""
    root = tmp_path_factory.mktemp('fixed_size')
    spec = fx.small_spec(select_threshold=0.05, top_k=50, keep_top_k=40)
    # The export tests/test_openvino.py and tests/test_export_metadata_checks.py read too.
    prefix, any_size, _ = fx.seeded_export()
    fixed = export.export(
        spec, prefix, str(root / 'fixed'), FIXED_FORMATS, fixed_size=True, log=lambda _: None
    )
    # The same as tests/test_export_models.py's fixed-size export: made once for both.
    _, static, _ = fx.shared_export(
        spec, ['frozen_graph', 'saved_model'], batch_size=2, fixed_size=True
    )
    return dict(
        root=root,
        spec=spec,
        prefix=prefix,
        fixed=fixed,
        static=static['frozen_graph'],
        any=any_size,
        images=fx.random_images(7, [(300, 300)] * 3),
    )


def assert_same_detections(got, want, b_got, b_want):
    n = want['num_detections'][b_want]
    assert n > 0
    assert got['num_detections'][b_got] == n
    matched, _, _, _ = parity.match_detections(got, want, b_got, b_want, TOL)
    assert matched == n, (matched, n)


def test_the_ir_takes_the_net_input_size_without_a_resize(exports):
    import openvino as ov

    fixed = ov.Core().read_model(exports['fixed']['openvino'])
    [parameter] = fixed.get_parameters()
    assert str(parameter.get_partial_shape()) == '[?,300,300,3]'

    # The image goes straight to its cast to float32, where the any-size IR reads its shape and
    # gathers the rows and columns of its resize (`preprocess_batch`).
    def consumers(model):
        [parameter] = model.get_parameters()
        return {t.get_node().get_type_name() for t in parameter.output(0).get_target_inputs()}

    def count(model, kind):
        return sum(op.get_type_name() == kind for op in model.get_ops())

    any_size = ov.Core().read_model(exports['any']['openvino'])
    assert str(any_size.get_parameters()[0].get_partial_shape()) == '[?,?,?,3]'
    assert 'ShapeOf' in consumers(any_size)
    assert consumers(fixed) == {'Convert'}
    assert count(fixed, 'Gather') + 4 <= count(any_size, 'Gather')  # the resize's 4 gathers
    assert count(fixed, 'Interpolate') == 0
    with open(exports['root'] / 'fixed' / detection.METADATA_FILE) as f:
        meta = json.load(f)
    assert meta['input']['any_size'] is False
    assert 'warp them to it (bilinear) before feeding them' in meta['input']['note']
    assert meta['openvino']['inputs'].startswith('images uint8 [B, 300, 300, 3] RGB (--fixed_size')


def test_the_fixed_size_ir_gives_the_other_formats_detections(exports):
    """The export's parity: on images of the net's size, the fixed-size IR's detections are the
    fixed-size frozen graph's and the any-size IR's, every one matched within TOL."""
    images = exports['images']
    with detection.Detector.from_frozen_graph(exports['fixed']['frozen_graph']) as frozen:
        want = frozen.run(images, detection.OUTPUTS)
    with openvino_model.OpenVINODetector(exports['fixed']['openvino']) as fixed:
        assert fixed.fixed_size == (300, 300)
        got = fixed.run(images, detection.OUTPUTS)
    with openvino_model.OpenVINODetector(exports['any']['openvino']) as any_size:
        assert any_size.fixed_size is None
        any_got = any_size.run(images, detection.OUTPUTS)
    for b in range(len(images)):
        assert_same_detections(got, want, b, b)
        assert_same_detections(got, any_got, b, b)
    for key in detection.RAW_OUTPUTS:
        np.testing.assert_allclose(got[key], want[key], atol=TOL)
        np.testing.assert_allclose(got[key], any_got[key], atol=TOL)


def test_the_fixed_size_tflite_model_holds_no_resize(exports):
    """Its graph resized each image to its own size (an identity RESIZE_BILINEAR on the device,
    though --fixed_size promises none); left out, it still gives the fixed-size frozen graph's
    detections."""

    def ops(path):
        detector = detection.TFLiteDetector(path)
        return detector, {op['op_name'] for op in detector.interpreter._get_ops_details()}

    _, any_ops = ops(exports['any']['tflite_float'])
    assert 'RESIZE_BILINEAR' in any_ops
    detector, fixed_ops = ops(exports['fixed']['tflite_float'])
    assert 'RESIZE_BILINEAR' not in fixed_ops and 'CONV_2D' in fixed_ops
    images = exports['images']
    with detection.Detector.from_frozen_graph(exports['fixed']['frozen_graph']) as frozen:
        want = frozen.run(images, detection.OUTPUTS)
    for b, image in enumerate(images):
        got = detector.run([image], detection.OUTPUTS)
        assert_same_detections(got, want, 0, b)
        for key in detection.RAW_OUTPUTS:
            np.testing.assert_allclose(got[key][0], want[key][b], atol=TOL)


@pytest.mark.parametrize('fmt', FIXED_FORMATS)
def test_every_format_refuses_another_size_in_the_same_line(exports, fmt):
    path = exports['fixed'][fmt]
    square = exports['images'][0]
    other = fx.random_images(3, [OTHER_SIZE])[0]
    with detection.open_exported_model(path) as detector:
        assert detector.fixed_size == (300, 300)
        assert detector.run([square])['num_detections'][0] > 0
        with pytest.raises(detection.WrongSizeError) as err:
            detector.run([square, other])
        assert str(err.value) == wrong_size_message(path)
        batch, sizes = detection.pad_batch([square, other])
        with pytest.raises(detection.WrongSizeError) as err:
            detector.run_padded(batch, sizes)
        assert str(err.value) == wrong_size_message(path)


def test_the_ir_benchmark_refuses_another_image_shape(exports):
    """benchmarks/bench_openvino_ir.py (OpenVINO's "Requested output shape [1,1083,4] is
    incompatible" when it compiled the IR for its default 480x640 images)."""
    import openvino as ov

    sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
    import bench_openvino_ir

    path = exports['fixed']['openvino']
    with pytest.raises(ValueError) as err:
        bench_openvino_ir._read_export(ov.Core(), path, [480, 640, 3])
    assert str(err.value) == (
        f'{path} was exported with --fixed_size: it takes 300x300 (height x width) images only, '
        f'not --image_shape=480,640,3; pass --image_shape=300,300,3.'
    )
    bench_openvino_ir._read_export(ov.Core(), path, [300, 300, 3])
    bench_openvino_ir._read_export(ov.Core(), exports['any']['openvino'], [480, 640, 3])


@pytest.mark.parametrize('fmt', ['frozen_graph', 'tflite_float', 'openvino', 'checkpoint'])
def test_any_size_exports_have_no_fixed_size(exports, fmt):
    if fmt == 'checkpoint':
        opened = detection.Detector.from_checkpoint(exports['spec'], exports['prefix'])
    else:
        opened = detection.open_exported_model(exports['any'][fmt])
    with opened as detector:
        assert detector.fixed_size is None
        detector.run([fx.random_images(3, [OTHER_SIZE])[0]])


def test_fixed_input_size():
    assert detection.fixed_input_size([None, 300, 500, 3]) == (300, 500)
    assert detection.fixed_input_size([1, 300, 300, 3]) == (300, 300)
    assert detection.fixed_input_size([1, -1, -1, 3]) is None
    assert detection.fixed_input_size([None, None, 300, 3]) is None
    assert detection.fixed_input_size(None) is None
    detection.check_fixed_size([(1, 2)], None, 'm.pb')  # any size: nothing checked
    many = [(h, 10) for h in range(7)]
    with pytest.raises(
        detection.WrongSizeError, match=r'got 0x10, 1x10, 2x10, 3x10, 4x10 and 2 more\. '
    ):
        detection.check_fixed_size(many, (300, 300), 'm.pb')


def test_a_static_batch_runs_any_number_of_images(exports, monkeypatch):
    """A frozen graph with a static batch of 2 runs 3 images in parts of 2, the last filled up
    with a copy (its outputs dropped): the detections of the graph of any batch."""
    images = exports['images']
    with detection.Detector.from_frozen_graph(exports['fixed']['frozen_graph']) as frozen:
        want = frozen.run(images, detection.OUTPUTS)
    with detection.Detector.from_frozen_graph(exports['static']) as static:
        fed, run = [], static.sess.run
        monkeypatch.setattr(
            static.sess,
            'run',
            lambda f, feed: fed.append(feed[static.inputs[detection.INPUT]].shape) or run(f, feed),
        )
        got = static.run(images, detection.OUTPUTS)
        one = static.run(images[2:], detection.OUTPUTS)
    assert fed == [(2, 300, 300, 3)] * 3
    for key in detection.OUTPUTS:
        assert got[key].shape[0] == 3 and one[key].shape[0] == 1
        np.testing.assert_allclose(got[key], want[key], atol=TOL)
        np.testing.assert_allclose(one[key], want[key][2:], atol=TOL)


@pytest.fixture(scope='module')
def folder(exports):
    """An image of the net's size and one of another, as detect reads them."""
    folder = exports['root'] / 'images'
    square, other = fx.random_images(11, [(300, 300), OTHER_SIZE])
    data_fixtures.write_image(str(folder / 'a_other.png'), other, '.png')
    data_fixtures.write_image(str(folder / 'b_square.png'), square, '.png')
    return folder


@pytest.mark.parametrize('fmt', FIXED_FORMATS)
def test_detect_fails_only_the_images_of_another_size(exports, folder, fmt):
    """Both images in one batch: the other size fails in one line naming the size the model
    takes (TF said "Cannot feed value of shape (1, 296, 262, 3) for Tensor images:0"), the
    square one is detected on (it failed with the batch)."""
    model = exports['fixed'][fmt]
    out = exports['root'] / f'detect_{fmt}'
    proc = run_script(
        'detect_ssd_network.py',
        f'--{FLAGS[fmt]}={model}',
        f'--input={folder}',
        f'--output_dir={out}',
        '--select_threshold=0.05',
    )
    assert proc.returncode == 0 and 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    with open(out / 'detections.json') as f:
        result = json.load(f)
    assert result['num_processed'] == 1
    assert [entry['file'] for entry in result['images']] == [f'{folder}/b_square.png']
    assert result['images'][0]['detections']
    error = f'{folder}/a_other.png: {wrong_size_message(model)}'
    assert result['failures'] == [{'file': f'{folder}/a_other.png', 'error': error}]
    assert f'skipped {error}\n' in proc.stdout


@pytest.fixture(scope='module')
def records(exports):
    """The TFRecords of a test split of 4 synthetic images (dataset 'custom')."""
    return fx.write_synthetic_split(str(exports['root'] / 'split'), 16)


def test_the_raw_eval_input_warps_images_to_a_fixed_size(records):
    dataset = dataset_factory.get_dataset('custom', 'test', records)
    batches = {}
    for resize_to in (None, (300, 300)):
        with tf.Graph().as_default():
            data = eval_input.make_raw_eval_dataset(dataset, 2, resize_to=resize_to)
            batch = v1.data.make_one_shot_iterator(data).get_next()
            with v1.Session() as sess:
                batches[resize_to] = sess.run(batch)
    plain, warped = batches[None], batches[(300, 300)]
    assert warped['images'].shape == (2, 300, 300, 3) and warped['images'].dtype == np.uint8
    np.testing.assert_array_equal(warped['image_sizes'], [[300, 300]] * 2)
    for key in eval_input.GROUND_TRUTH_KEYS:  # the original image's
        np.testing.assert_array_equal(warped[key], plain[key])
    for b, (height, width) in enumerate(plain['image_sizes']):
        assert (height, width) != (300, 300)
        with tf.Graph().as_default(), v1.Session() as sess:
            image = plain['images'][b, :height, :width]
            want = sess.run(tf.image.resize(tf.constant(image, tf.float32), (300, 300)))
        assert np.abs(warped['images'][b] - want).max() <= 0.5 + 1e-3


def test_eval_warps_the_images_for_a_fixed_size_model(exports, records, tmp_path):
    """Every format evaluates (TF said "Cannot feed value of shape (3, 288, 252, 3)"), on the
    images warped to 300x300 (recorded, noted), as the any-size model evaluates them warped so:
    the same mAP."""
    settings = evaluate.EvalSettings(
        card=exports['spec'],
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=records,
        batch_size=3,
        pr_curves=False,
    )
    results = {}
    for name, path in [(fmt, exports['fixed'][fmt]) for fmt in FIXED_FORMATS] + [
        ('static', exports['static'])
    ]:
        lines = []
        with detection.open_exported_model(path) as detector:
            results[name] = eval_exported.evaluate_exported(
                settings, detector, path, str(tmp_path / name), log=lines.append
            )
        assert (
            f'note: {path} was exported with --fixed_size and takes 300x300 images only: each '
            f'image is warped to 300x300 first (bilinear, rounded to uint8, as a device would '
            f'feed it)'
        ) in '\n'.join(lines)
        assert results[name].summary['exported_model']['resized_to'] == [300, 300]

    class Warped:
        """The any-size frozen graph fed what the fixed-size models get."""

        def __init__(self, detector):
            self.card, self.export_step, self.detector = detector.card, None, detector
            self.fixed_size = (300, 300)

        def run_padded(self, images, sizes):
            return self.detector.run_padded(images, sizes)

    with detection.Detector.from_frozen_graph(exports['any']['frozen_graph']) as detector:
        want = eval_exported.evaluate_exported(
            settings, Warped(detector), 'any.pb', str(tmp_path / 'any'), log=lambda _: None
        )

    # Seeded weights detect nothing real (mAP near 0): per class, as many detections and true
    # positives too.
    def counts(summary):
        return [(row['num_detections'], row['num_tp']) for row in summary['classes']]

    assert want.num_images == 4 and sum(n for n, _ in counts(want.summary)) > 0
    for name, got in results.items():
        assert got.num_images == want.num_images, name
        assert counts(got.summary) == counts(want.summary), name
        assert got.metrics['voc07'] == pytest.approx(want.metrics['voc07'], abs=1e-6), name
    # The script: a static batch of 2 in batches of 3.
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={exports["static"]}',
        f'--eval_dir={tmp_path / "script"}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--dataset_dir={records}',
        '--batch_size=3',
        '--pr_curves=false',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f'note: {exports["static"]} was exported with --fixed_size' in proc.stdout
    with open(tmp_path / 'script' / 'results.json') as f:
        summary = json.load(f)
    assert summary['exported_model']['resized_to'] == [300, 300]
    assert counts(summary) == counts(want.summary)
