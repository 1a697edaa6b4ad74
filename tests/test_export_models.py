"""Exports (frozen graph, SavedModel, TFLite float32/int8) against the checkpoint graph.

The model is ssd_300_mobilenet at depth 0.25 with random weights (see
`inference_fixtures.write_checkpoint`). int8 accuracy: a random model detects nothing real, so
the int8 model is scored against the float model's own confident detections (score >= 0.3) as
ground truth, with the VOC07 devkit metric on the synthetic test split: the float model scores
1.0 by construction; the int8 model must reach INT8_MIN_MAP. Measured 0.76 for this model; a
briefly trained model is in the benchmark report.
"""

import base64
import dataclasses
import hashlib
import json
import os
import re
import shutil

import cv2

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2

from datasets import dataset_factory
from datasets import image_io
from inference import export
from inference import detection
from model import card as card_lib
from tests import inference_fixtures as fx
from tests import data_fixtures as dfx
from tests.conftest import readme_python_block, run_python
from tests import numpy_reference as ref
from tf_extended import voc_metrics

v1 = tf.compat.v1

INT8_MIN_MAP = 0.6
GT_SCORE = 0.3
TOL = 1e-4
BF16_RTOL = 0.05


# The TensorFlow formats; tests/test_openvino.py exports and checks the OpenVINO ones.
TF_FORMATS = [f for f in export.FORMATS if not f.startswith('openvino')]


# The module's export, a process of its own: test_the_same_checkpoint_exports_to_the_same_bytes
# compares its bytes with another process's export, which builds no other graph before it either
# (TF numbers graph functions on within a process: the calibration images are read beforehand).
EXPORT_CODE = """
import json, sys
import numpy as np
from inference import export
from tests import inference_fixtures as fx
prefix, out, calibration, formats = sys.argv[1:]
with np.load(calibration) as images:
    images = [images[name] for name in images.files]
written = export.export(
    fx.small_spec(select_threshold=0.05, top_k=50, keep_top_k=40),
    prefix,
    out,
    formats.split(','),
    calibration_images=images,
    calibration_source='custom/test',
    log=lambda _: None,
)
print(json.dumps(written))
"""


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('export')
    spec = fx.small_spec(select_threshold=0.05, top_k=50, keep_top_k=40)
    prefix = fx.write_checkpoint(spec, str(root / 'ckpt'))
    dataset = dataset_factory.get_dataset(
        'custom', 'test', fx.write_synthetic_split(str(root), 100)
    )
    calibration = str(root / 'calibration.npz')
    np.savez(calibration, *export.representative_images(dataset, 10))
    out = str(root / 'out')
    proc = run_python(EXPORT_CODE, prefix, out, calibration, ','.join(TF_FORMATS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = fx.random_images(7, [(240, 320), (300, 300), (181, 97)])
    with detection.Detector.from_checkpoint(spec, prefix) as detector:
        reference = detector.run(images, detection.OUTPUTS)
    return dict(
        spec=spec,
        prefix=prefix,
        dataset=dataset,
        out=out,
        written=json.loads(proc.stdout.splitlines()[-1]),
        images=images,
        reference=reference,
    )


def assert_same_detections(got, want, b_got=0, b_want=0):
    n = want['num_detections'][b_want]
    assert n > 0
    assert got['num_detections'][b_got] == n
    np.testing.assert_array_equal(
        got['detection_classes'][b_got], want['detection_classes'][b_want]
    )
    np.testing.assert_allclose(
        got['detection_scores'][b_got], want['detection_scores'][b_want], atol=TOL
    )
    np.testing.assert_allclose(
        got['detection_boxes'][b_got], want['detection_boxes'][b_want], atol=TOL
    )


def _digests(*path):
    with open(os.path.join(*path, 'metadata.json')) as f:
        return json.load(f)[card_lib.FILE_DIGESTS]


def _read_tflite(path):
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, 'rb') as f:
        return schema.ModelT.InitFromPackedBuf(bytearray(f.read()), 0)


def _embedded_cards(written):
    """{format: the JSON inside its model file}, read with protobuf and the TFLite schema's
    object API (not inference/embedded_card.py's readers)."""
    graph_def = v1.GraphDef()
    with open(written['frozen_graph'], 'rb') as f:
        graph_def.ParseFromString(f.read())
    (node,) = [n for n in graph_def.node if n.name == 'model_card']
    cards = {'frozen_graph': json.loads(node.attr['value'].tensor.string_val[0])}
    for fmt in ('tflite_float', 'tflite_int8'):
        if fmt in written:
            model = _read_tflite(written[fmt])
            (entry,) = [m for m in model.metadata if m.name == b'model_card']
            cards[fmt] = json.loads(bytes(model.buffers[entry.buffer].data))
    return cards


def _model_bytes_without_card(written, folder):
    """{format: sha256 of its model file less its embedded card} of a frozen graph and a float
    TFLite model (copied to `folder` and rewritten there)."""
    hashes = {}
    for fmt in ('frozen_graph', 'tflite_float'):
        copy = shutil.copy(written[fmt], folder / f'{len(os.listdir(folder))}_{export.FILES[fmt]}')
        hashes[fmt] = hashlib.sha256(fx.remove_embedded_card(copy)).digest()
    return hashes


def test_the_same_checkpoint_exports_to_the_same_bytes(exported, exported_while_training, tmp_path):
    """A deploy pipeline compares digests: the frozen graph's node attributes (protobuf maps) were
    serialised in an order that changed from run to run, so each export of one checkpoint had
    another digest. Two exports of one checkpoint, each a process of its own (as two commands
    are; within one process TF numbers the graph functions on), write the same bytes: the
    module's and the one of `exported_while_training` (the same weights, staged from a copy),
    whose model files differ only in the cards inside them (the exported checkpoint's path and
    step, the other formats written; `test_model_files_carry_their_card_and_load_alone`)."""
    first, second = exported['out'], exported_while_training['out']
    assert sorted(_digests(second)) == ['frozen_graph.pb', 'model_float.tflite']
    written = {
        fmt: os.path.join(second, export.FILES[fmt]) for fmt in ('frozen_graph', 'tflite_float')
    }
    assert _model_bytes_without_card(exported['written'], tmp_path) == _model_bytes_without_card(
        written, tmp_path
    )
    cards = [_embedded_cards(exported['written'])['frozen_graph'], _embedded_cards(written)]
    for card in (cards[0], *cards[1].values()):
        del card['export']['checkpoint'], card['files']  # the copy is named x-1: step 1
        card.pop('int8', None)  # the module's export has int8 formats
    assert cards[1] == dict.fromkeys(('frozen_graph', 'tflite_float'), cards[0])
    assert _digests(first, 'saved_model', 'assets.extra') == _digests(
        second, 'saved_model', 'assets.extra'
    )


def test_detections_spread(exported):
    # Guards the fixture: identical scores everywhere would make the comparisons vacuous.
    scores = exported['reference']['detection_scores'][0]
    assert np.ptp(scores[: exported['reference']['num_detections'][0]]) > 0.05


@pytest.mark.parametrize('fmt', ['frozen_graph', 'saved_model'])
def test_tf_exports_equal_checkpoint_graph(exported, fmt):
    load = {
        'frozen_graph': detection.Detector.from_frozen_graph,
        'saved_model': detection.Detector.from_saved_model,
    }[fmt]
    with load(exported['written'][fmt]) as detector:
        assert detector.card == exported['spec']
        got = detector.run(exported['images'], detection.OUTPUTS)
    for b in range(len(exported['images'])):
        assert_same_detections(got, exported['reference'], b, b)
    for key in detection.RAW_OUTPUTS:
        np.testing.assert_allclose(got[key], exported['reference'][key], atol=TOL)


def _record_fed_shapes(detector, monkeypatch):
    """The list the shapes of the image batches `detector` feeds its session are appended to."""
    fed, run = [], detector.sess.run
    monkeypatch.setattr(
        detector.sess,
        'run',
        lambda f, feed: fed.append(feed[detector.inputs[detection.INPUT]].shape) or run(f, feed),
    )
    return fed


def test_batches_of_too_many_padded_pixels_run_in_parts(exported, monkeypatch):
    """An exported model's evaluation feeds batches padded to their largest height and width;
    beyond MAX_BATCH_PIXELS they run in parts cropped to their own images, same detections."""
    monkeypatch.setattr(detection, 'MAX_BATCH_PIXELS', 2 * 300 * 320)
    images = exported['images']  # 240 x 320, 300 x 300, 181 x 97
    with detection.Detector.from_frozen_graph(exported['written']['frozen_graph']) as detector:
        fed = _record_fed_shapes(detector, monkeypatch)
        got = detector.run_padded(*detection.pad_batch(images), detection.OUTPUTS)
    assert fed == [(2, 300, 320, 3), (1, 181, 97, 3)]
    for b in range(len(images)):
        assert_same_detections(got, exported['reference'], b, b)
    for key in detection.RAW_OUTPUTS:
        np.testing.assert_allclose(got[key], exported['reference'][key], atol=TOL)


@pytest.fixture(scope='module')
def saved_model_tf2(exported):
    """The module's SavedModel loaded as a TF2 user loads it (`tf.saved_model.load`)."""
    return tf.saved_model.load(exported['written']['saved_model'])


def test_saved_model_default_signature_in_tf2(exported, saved_model_tf2):
    """Users load the SavedModel with tf.saved_model.load and call its signature eagerly."""
    image = exported['images'][1]
    signature = saved_model_tf2.signatures['serving_default']
    got = {k: v.numpy() for k, v in signature(images=tf.constant(image[None])).items()}
    assert sorted(got) == sorted(detection.OUTPUTS)
    assert_same_detections(got, exported['reference'], 0, 1)


def test_saved_model_encoded_signature_decodes_image_files(exported, saved_model_tf2, tmp_path):
    """A TF Serving user sends image files' bytes (the TF Object Detection API's
    `encoded_image_string_tensor`; REST: {"b64": ...}): `serving_encoded` decodes them in the
    graph, files of different sizes and formats in one batch. A lossless PNG detects as its
    pixels do; a JPEG, a grey PNG, a 16-bit PNG and a CMYK JPEG as detect's own reading of the
    files (`detection.load_image_rgb`) through the checkpoint graph; the README's snippet
    detects the JPEG as detect does."""
    rgb = exported['images']  # 240 x 320, 300 x 300, 181 x 97
    grey = cv2.cvtColor(rgb[2], cv2.COLOR_RGB2GRAY)
    low_byte = np.random.RandomState(0).randint(0, 256, rgb[0].shape).astype(np.uint16)
    files = []
    for name, pixels in (
        ('a.png', rgb[0][..., ::-1]),
        ('b.jpg', rgb[1][..., ::-1]),
        ('c.png', grey),
        ('d.png', rgb[0][..., ::-1].astype(np.uint16) << 8 | low_byte),
    ):
        files.append(str(tmp_path / name))
        assert cv2.imwrite(files[-1], pixels)
    files.append(str(tmp_path / 'e.jpg'))
    Image.fromarray(rgb[1]).convert('CMYK').save(files[-1], quality=95)
    read = [detection.load_image_rgb(f) for f in files]
    np.testing.assert_array_equal(read[0], rgb[0])
    assert not np.array_equal(read[1], rgb[1])  # the JPEG's own pixels
    with detection.Detector.from_checkpoint(exported['spec'], exported['prefix']) as detector:
        want = detector.run(read, detection.OUTPUTS)
    model = saved_model_tf2
    signature = model.signatures[detection.ENCODED_SIGNATURE]
    with open(os.path.join(exported['out'], detection.METADATA_FILE)) as f:
        tensors = json.load(f)['tensors']  # what the metadata tells a user: the model's own
    assert sorted(tensors['signatures']) == sorted(model.signatures)
    assert tensors['encoded_inputs'] == list(signature.structured_input_signature[1])
    data = []
    for f in files:
        with open(f, 'rb') as fh:
            data.append(fh.read())
    batch = {k: v.numpy() for k, v in signature(encoded_images=tf.constant(data)).items()}
    assert sorted(batch) == sorted(detection.OUTPUTS)
    for key in detection.RAW_OUTPUTS:  # the net saw the same pixels
        np.testing.assert_allclose(batch[key], want[key], atol=TOL)
    np.testing.assert_array_equal(batch['num_detections'], want['num_detections'])
    # Detections one file per call, as the checkpoint graph ran each size: in a batch of three
    # the scores of the random net change in the 7th digit, which reorders its near-ties.
    for b in range(len(files)):
        got = {
            k: v.numpy() for k, v in signature(encoded_images=tf.constant(data[b : b + 1])).items()
        }
        assert_same_detections(got, want, 0, b)
        if b == 0:  # the PNG holds the pixels the module's reference ran on
            assert_same_detections(got, exported['reference'], 0, 0)
    os.makedirs(tmp_path / 'export')
    os.symlink(exported['written']['saved_model'], tmp_path / 'export' / 'saved_model')
    shutil.copy(files[1], tmp_path / 'photo.jpg')
    names = {}
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        exec(readme_python_block('### Image files in: TF Serving'), names)
    finally:
        os.chdir(cwd)
    assert_same_detections({k: v.numpy() for k, v in names['out'].items()}, want, 0, 1)
    body = json.loads(names['body'])
    assert base64.b64decode(body['instances'][0]['b64']) == data[1]


def test_encoded_signature_refuses_huge_or_other_files_before_decoding(exported, saved_model_tf2):
    """A PNG or JPEG of a few hundred bytes declaring 30000x6000 pixels (decoded: 540 MB, then
    float32 copies) or sides whose product overflows int64 fails the call from its header, as a
    BMP, an empty string or the first bytes of a PNG do (those once failed with the bytes in TF's
    message: a UnicodeDecodeError in Python), each named by its place in the batch."""
    signature = saved_model_tf2.signatures[detection.ENCODED_SIGNATURE]
    bmp = cv2.imencode('.bmp', exported['images'][2])[1].tobytes()
    png = cv2.imencode('.png', exported['images'][2])[1].tobytes()
    other = 'is neither a JPEG nor a PNG file'
    refusals = (
        (
            dfx.png_claiming(30000, 6000),
            'encoded_images[1] declares 6000x30000 (height x width) pixels, more than the '
            '100000000 it decodes',
        ),
        (  # 64 bits: their product, (2**32 - 1)**2, is negative in int64
            dfx.png_claiming(2**32 - 1, 2**32 - 1),
            'encoded_images[1] declares 4294967295x4294967295 (height x width) pixels',
        ),
        (
            dfx.jpeg_claiming(12000, 9000),
            'encoded_images[1] declares 9000x12000 (height x width) pixels',
        ),
        (
            dfx.jpeg_with_empty_scans(image_io.MAX_JPEG_SCANS),
            f'encoded_images[1] is a JPEG file of more than {image_io.MAX_JPEG_SCANS} scans '
            '(each is decoded over the whole image: that many take minutes); re-save the image',
        ),
        (bmp, f'encoded_images[1] ({len(bmp)} bytes) {other}'),
        (b'', f'encoded_images[1] (0 bytes) {other}'),
        (png[:10], f'encoded_images[1] (10 bytes) {other}'),
        (png[:20], f'encoded_images[1] (20 bytes) {other}'),
    )
    for data, message in refusals:
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            signature(encoded_images=tf.constant([png, data]))


def test_encoded_signature_names_a_damaged_file(exported, saved_model_tf2, tmp_path):
    """A file whose first bytes pass but which the decoders refuse, a JPEG cut after its frame
    header (its size unreadable), a JPEG cut in its image data, a PNG with one IDAT byte changed
    (its CRC fails), failed in TensorFlow's decoder with a message naming no file ("Invalid JPEG
    data, size 177"); now each is named by its place in the batch, with what is wrong. detect
    refuses the same files."""
    signature = saved_model_tf2.signatures[detection.ENCODED_SIGNATURE]
    jpeg = cv2.imencode('.jpg', exported['images'][0])[1].tobytes()
    png = cv2.imencode('.png', exported['images'][2])[1].tobytes()
    sof = jpeg.find(b'\xff\xc0')
    after_sof = sof + 2 + int.from_bytes(jpeg[sof + 2 : sof + 4], 'big')
    idat = png.find(b'IDAT') + 10
    changed_idat = png[:idat] + bytes([png[idat] ^ 0xFF]) + png[idat + 1 :]
    unreadable = (
        'is a JPEG file whose header cannot be read (damaged, or cut before its image data)'
    )
    undecodable = 'file whose image data cannot be decoded (damaged or cut short)'
    for data, message in (
        (jpeg[:after_sof], f'({after_sof} bytes) {unreadable}'),
        (jpeg[: len(jpeg) // 2], f'({len(jpeg) // 2} bytes) is a JPEG {undecodable}'),
        (changed_idat, f'({len(png)} bytes) is a PNG {undecodable}'),
    ):
        expected = f'serving_encoded: encoded_images[1] {message}; send the whole, undamaged file'
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(expected)):
            signature(encoded_images=tf.constant([png, data]))
        (tmp_path / 'damaged.jpg').write_bytes(data)
        with pytest.raises(ValueError, match='damaged.jpg: not a decodable image'):
            detection.load_image_rgb(str(tmp_path / 'damaged.jpg'))


def test_tf_example_signature_detects_the_records_images(exported, saved_model_tf2, tmp_path):
    """A TF Serving user holding tf.Examples (the TF Object Detection API's `tf_example` input;
    our converter's records) sends them serialized: `serving_tf_example` parses each one's
    `image/encoded` and detects as `serving_encoded` does on those bytes, and as the checkpoint
    graph does on detect's reading of them (OpenCV). Bytes that are no tf.Example, an example
    without an image or with two, and an image that is no JPEG or PNG are named by their place."""
    records = [r.numpy() for r in tf.data.TFRecordDataset(exported['dataset'].files).take(3)]
    files = [
        tf.train.Example.FromString(r).features.feature['image/encoded'].bytes_list.value[0]
        for r in records
    ]
    signatures = saved_model_tf2.signatures
    with open(os.path.join(exported['out'], detection.METADATA_FILE)) as f:
        tensors = json.load(f)['tensors']
    signature = signatures[detection.TF_EXAMPLE_SIGNATURE]
    assert tensors['tf_example_inputs'] == list(signature.structured_input_signature[1])
    got = {k: v.numpy() for k, v in signature(tf_examples=tf.constant(records)).items()}
    want = {
        k: v.numpy()
        for k, v in signatures[detection.ENCODED_SIGNATURE](
            encoded_images=tf.constant(files)
        ).items()
    }
    for key in detection.OUTPUTS:
        np.testing.assert_array_equal(got[key], want[key])
    read = []
    for b, data in enumerate(files):
        path = tmp_path / f'{b}.img'
        path.write_bytes(data)
        read.append(detection.load_image_rgb(str(path)))
    with detection.Detector.from_checkpoint(exported['spec'], exported['prefix']) as detector:
        reference = detector.run(read, detection.OUTPUTS)
    for key in detection.RAW_OUTPUTS:
        np.testing.assert_allclose(got[key], reference[key], atol=TOL)

    def example(*images):
        feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=images))
        features = tf.train.Features(feature={'image/encoded': feature})
        return tf.train.Example(features=features).SerializeToString()

    not_one = (
        'is not a serialized tf.Example holding one image/encoded (the bytes of an image file); '
        'send the records tf_convert_data.py writes, or the image files to serving_encoded'
    )
    garbage = b'\xff\xfe not a protocol buffer'
    two = example(files[0], files[1])
    for data, message in (
        (garbage, f'tf_examples[1] ({len(garbage)} bytes) {not_one}'),
        (example(), f'tf_examples[1] ({len(example())} bytes) {not_one}'),
        (two, f'tf_examples[1] ({len(two)} bytes) {not_one}'),
        (
            example(b'GIF89a'),
            'tf_examples[1] image/encoded (6 bytes) is neither a JPEG nor a PNG file',
        ),
    ):
        with pytest.raises(
            tf.errors.InvalidArgumentError, match=re.escape(f'serving_tf_example: {message}')
        ):
            signature(tf_examples=tf.constant([records[0], data]))


def test_an_empty_batch_is_refused_naming_the_input(exported, saved_model_tf2):
    """A batch of 0 images (0 files) failed deep in the net with a convolution's shape error
    ("input depth must be evenly divisible by filter depth: 3 vs 8"); every signature and the
    frozen graph now refuse it naming the input, as the detectors refuse an empty list."""
    signatures = saved_model_tf2.signatures
    no_images = tf.zeros([0, 240, 320, 3], tf.uint8)
    images = 'images holds no image (a batch of 0); send at least one'
    files = 'serving_encoded: encoded_images holds no file (a batch of 0); send at least one'
    for name, feed, expected in (
        ('serving_default', dict(images=no_images), images),
        (
            detection.PADDED_SIGNATURE,
            dict(images=no_images, image_sizes=tf.zeros([0, 2], tf.int32)),
            images,
        ),
        (detection.ENCODED_SIGNATURE, dict(encoded_images=tf.zeros([0], tf.string)), files),
        (
            detection.TF_EXAMPLE_SIGNATURE,
            dict(tf_examples=tf.zeros([0], tf.string)),
            'serving_tf_example: tf_examples holds no example (a batch of 0); send at least one',
        ),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(expected)):
            signatures[name](**feed)
    graph_def = v1.GraphDef()
    with open(exported['written']['frozen_graph'], 'rb') as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph, v1.Session(graph=graph) as sess:
        v1.import_graph_def(graph_def, name='')
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(images)):
            sess.run('num_detections:0', {'images:0': no_images.numpy()})


def test_encoded_signature_decodes_one_image_at_a_time(exported):
    """The pixel bound is one image's: map_fn's loop decoded 10 of a batch's files at once on a
    many-core machine (ten 3000x3000 PNGs: 1.26 GB instead of 0.14 GB)."""
    with open(os.path.join(exported['written']['saved_model'], 'saved_model.pb'), 'rb') as f:
        graph_def = saved_model_pb2.SavedModel.FromString(f.read()).meta_graphs[0].graph_def
    loops = [
        node.attr['parallel_iterations'].i
        for node in graph_def.node
        if node.op in ('While', 'StatelessWhile')
        and node.name.startswith(detection.ENCODED_SCOPE + '/')
    ]
    assert loops == [1]


def test_tflite_float_equals_checkpoint_graph(exported):
    detector = detection.TFLiteDetector(exported['written']['tflite_float'])
    ops = {op['op_name'] for op in detector.interpreter._get_ops_details()}
    assert 'NON_MAX_SUPPRESSION_V5' in ops and 'RESIZE_BILINEAR' in ops
    assert not any(op.startswith('Flex') or op == 'CUSTOM' for op in ops), ops
    for b, image in enumerate(exported['images']):  # Sizes change between calls.
        got = detector.run([image], detection.OUTPUTS)
        assert_same_detections(got, exported['reference'], 0, b)
        for key in detection.RAW_OUTPUTS:
            np.testing.assert_allclose(got[key][0], exported['reference'][key][b], atol=TOL)


def test_metadata_and_raw_outputs_with_anchors(exported):
    out = exported['out']
    with open(os.path.join(out, detection.METADATA_FILE)) as f:
        meta = json.load(f)
    assert meta['model_name'] == 'ssd_300_mobilenet'
    assert (meta['input']['height'], meta['input']['width']) == (300, 300)
    assert meta['normalisation']['mean_rgb'] == [127.5] * 3
    assert meta['normalisation']['scale'] == pytest.approx(0.007843)
    assert meta['class_names'] == list(fx.synthetic.CLASSES)
    assert meta['detection'] == {
        'select_threshold': 0.05,
        'nms_threshold': 0.45,
        'top_k': 50,
        'keep_top_k': 40,
        'clip': False,
    }
    assert meta['anchors']['size_preset'] == 'mobilenet_ssd'
    assert meta['ssd_params']['depth_multiplier'] == 0.25
    assert sorted(meta['files']) == sorted(TF_FORMATS)
    assert meta['int8']['images'] == 10
    anchors = np.load(os.path.join(out, detection.ANCHORS_FILE))
    assert anchors.shape == (1917, 4) == (meta['anchors']['count'], 4)
    saved = np.load(
        os.path.join(exported['written']['saved_model'], 'assets.extra', detection.ANCHORS_FILE)
    )
    np.testing.assert_array_equal(saved, anchors)
    # Own post-processing from the raw outputs: the best (anchor, class) pair, decoded with numpy,
    # is the first detection (NMS never drops the top box).
    raw = exported['reference']
    for b in range(len(exported['images'])):
        scores = raw['raw_scores'][b][:, 1:]
        anchor, cls = np.unravel_index(np.argmax(scores), scores.shape)
        box = ref.decode(
            raw['raw_localisations'][b][anchor : anchor + 1].astype(np.float64),
            anchors[anchor : anchor + 1],
        )[0]
        np.testing.assert_allclose(raw['detection_boxes'][b, 0], box, atol=1e-5)
        assert raw['detection_classes'][b, 0] == cls + 1
        np.testing.assert_allclose(raw['detection_scores'][b, 0], scores[anchor, cls], atol=1e-6)


def test_model_files_carry_their_card_and_load_alone(exported, tmp_path):
    """A frozen graph or TFLite model copied without its metadata.json was refused; each now
    holds the export's metadata (less the export time, which would make each export's bytes
    differ, and the digests of the files), and loads alone with the same card and outputs."""
    with open(os.path.join(exported['out'], detection.METADATA_FILE)) as f:
        meta = json.load(f)
    del meta['export']['time'], meta[card_lib.FILE_DIGESTS]
    assert _embedded_cards(exported['written']) == dict.fromkeys(
        ('frozen_graph', 'tflite_float', 'tflite_int8'), meta
    )
    for fmt, name in (('frozen_graph', 'frozen_graph.pb'), ('tflite_int8', 'mine.tflite')):
        alone = str(tmp_path / name)
        shutil.copy(exported['written'][fmt], alone)
        with detection.open_exported_model(exported['written'][fmt]) as beside:
            want = beside.run(exported['images'][:1], detection.OUTPUTS)
            assert beside.card_source == os.path.join(exported['out'], detection.METADATA_FILE)
        with detection.open_exported_model(alone) as detector:
            assert (detector.card, detector.card_source) == (beside.card, alone)
            assert (detector.export_step, detector.note) == (beside.export_step, None)
            got = detector.run(exported['images'][:1], detection.OUTPUTS)
        for key in detection.OUTPUTS:
            np.testing.assert_array_equal(got[key], want[key])
    # A card inside the model that its outputs contradict: the file is named once, as edited.
    graph_def = v1.GraphDef()
    with open(exported['written']['frozen_graph'], 'rb') as f:
        graph_def.ParseFromString(f.read())
    (node,) = [n for n in graph_def.node if n.name == 'model_card']
    node.attr['value'].tensor.string_val[0] = json.dumps(
        dict(meta, anchors=dict(meta['anchors'], count=1000))
    ).encode()
    edited = tmp_path / 'edited.pb'
    edited.write_bytes(graph_def.SerializeToString())
    with pytest.raises(card_lib.ModelMismatchError) as info:
        detection.open_exported_model(str(edited))
    assert str(info.value) == (
        f'{edited}: the model card inside it (ssd_300_mobilenet, input 300x300, 6 classes) has '
        '1000 anchors and 7 classes, where the model scores 1917 anchors in 7 classes (the '
        'background included): the file was edited or damaged; export the model again with '
        'export_ssd_network.py.'
    )
    # The classes compared are those the card is read with (its ssd_params), not its num_classes
    # field, which may be left as it was or left out: 20 names ran the 6-class model.
    names = [f'c{i}' for i in range(20)]
    params = dict(meta['ssd_params'], num_classes=21)
    kept = dict(meta, class_names=names, ssd_params=params)
    for card, described in ((kept, '6 classes'), ({**kept, 'num_classes': None}, None)):
        node.attr['value'].tensor.string_val[0] = json.dumps(card).encode()
        edited.write_bytes(graph_def.SerializeToString())
        with pytest.raises(card_lib.ModelMismatchError) as info:
            detection.open_exported_model(str(edited))
        described = f', {described}' if described else ''
        assert str(info.value).startswith(
            f'{edited}: the model card inside it (ssd_300_mobilenet, input 300x300{described}) '
            'has 1917 anchors and 21 classes, where the model scores 1917 anchors in 7 classes'
        )


def _split_examples(dataset):
    with tf.Graph().as_default():
        example = v1.data.make_one_shot_iterator(dataset.make_dataset()).get_next()
        with v1.Session() as sess:
            return [sess.run(example) for _ in range(dataset.num_samples)]


def test_int8_map_close_to_float(exported):
    float_model = detection.TFLiteDetector(exported['written']['tflite_float'])
    int8_model = detection.TFLiteDetector(exported['written']['tflite_int8'])
    details = int8_model.interpreter.get_tensor_details()
    assert any(d['dtype'] == np.int8 for d in details)
    assert os.path.getsize(exported['written']['tflite_int8']) < 0.5 * os.path.getsize(
        exported['written']['tflite_float']
    )
    names = {i + 1: n for i, n in enumerate(fx.synthetic.CLASSES)}
    evaluators = {'float': voc_metrics.VOCEvaluator(names), 'int8': voc_metrics.VOCEvaluator(names)}
    examples = _split_examples(exported['dataset'])
    assert len(examples) == 25
    for i, example in enumerate(examples):
        image = example['image']
        truth = float_model.detect([image])[0]
        gt = truth['scores'] >= GT_SCORE
        for name, model in (('float', float_model), ('int8', int8_model)):
            det = model.detect([image])[0]
            evaluators[name].add_image(
                i,
                truth['boxes'][gt],
                truth['classes'][gt],
                np.zeros(gt.sum(), bool),
                det['boxes'],
                det['scores'],
                det['classes'],
                image_shape=image.shape,
            )
    result = {name: ev.compute().map_voc07 for name, ev in evaluators.items()}
    assert result['float'] == pytest.approx(1.0)
    assert result['int8'] >= INT8_MIN_MAP, result


def test_fixed_size_export(exported, monkeypatch):
    # tests/test_fixed_size.py's export of the module's weights (the same checkpoint): made once
    # for both.
    _, written, _ = fx.shared_export(
        exported['spec'], ['frozen_graph', 'saved_model'], batch_size=2, fixed_size=True
    )
    with detection.Detector.from_frozen_graph(written['frozen_graph']) as detector:
        assert detector.inputs[detection.INPUT].shape.as_list() == [2, 300, 300, 3]
        image = exported['images'][1]  # 300 x 300: the same input as the any-size graph's.
        got = detector.run([image, image])
        # A static batch size: a batch beyond MAX_BATCH_PIXELS is fed whole, not in parts of
        # fewer images (a plain ValueError from sess.run: "Cannot feed value of shape (1, 300,
        # 300, 3)").
        monkeypatch.setattr(detection, 'MAX_BATCH_PIXELS', 300 * 300)
        assert len(detection.padded_parts(np.array([[300, 300], [300, 300]]))) == 2
        fed = _record_fed_shapes(detector, monkeypatch)
        parted = detector.run([image, image])
    assert_same_detections(got, exported['reference'], 1, 1)
    assert fed == [(2, 300, 300, 3)]
    for b in range(2):
        assert_same_detections(parted, exported['reference'], b, 1)
    for key in got:
        np.testing.assert_array_equal(parted[key], got[key])


def test_saved_model_of_a_static_batch_and_size_refuses_other_shapes_in_tf2(exported):
    """TF Serving and a TF2 signature call do not check a SavedModel's input shapes (a v1
    session does): the `--batch_size=2 --fixed_size` SavedModel once ran the first 2 images of
    3 and returned 2 rows. Each of its signatures now fails other batches, and
    `serving_default` other image sizes, naming its input; 2 images run as the frozen graph."""
    _, written, _ = fx.shared_export(
        exported['spec'], ['frozen_graph', 'saved_model'], batch_size=2, fixed_size=True
    )
    signatures = tf.saved_model.load(written['saved_model']).signatures
    image = exported['images'][1]  # 300 x 300
    png = cv2.imencode('.png', image[..., ::-1])[1].tobytes()
    calls = {
        'serving_default': lambda n: {'images': tf.constant(np.stack([image] * n))},
        detection.PADDED_SIGNATURE: lambda n: {
            'images': tf.constant(np.stack([image] * 2)),
            'image_sizes': tf.constant([[300, 300]] * n),
        },
        detection.ENCODED_SIGNATURE: lambda n: {'encoded_images': tf.constant([png] * n)},
    }
    for name, feed in calls.items():
        got = {k: v.numpy() for k, v in signatures[name](**feed(2)).items()}
        for b in range(2):
            assert_same_detections(got, exported['reference'], b, 1)
        for n in (1, 3):
            with pytest.raises(tf.errors.InvalidArgumentError, match='is not compatible with'):
                signatures[name](**feed(n))
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=re.escape('images [2,240,320,3] is not compatible with expected shape [2,300,300,3]'),
    ):
        signatures['serving_default'](images=tf.zeros([2, 240, 320, 3], tf.uint8))


def test_int8_needs_calibration_images(exported, tmp_path):
    with pytest.raises(ValueError, match='calibration'):
        export.export(exported['spec'], exported['prefix'], str(tmp_path), formats=['tflite_int8'])


@pytest.fixture(scope='module')
def bfloat16_frozen(exported, tmp_path_factory):
    spec = dataclasses.replace(exported['spec'], compute_dtype='bfloat16')
    out = str(tmp_path_factory.mktemp('bf16'))
    return spec, export.export(
        spec, exported['prefix'], out, formats=['frozen_graph'], log=lambda _: None
    )['frozen_graph']


def test_bfloat16_frozen_graph_computes_in_bfloat16(bfloat16_frozen):
    spec, path = bfloat16_frozen
    graph_def = v1.GraphDef()
    with open(path, 'rb') as f:
        graph_def.ParseFromString(f.read())
    conv_types = {
        n.attr['T'].type
        for n in graph_def.node
        if n.op in ('Conv2D', 'DepthwiseConv2dNative', '_FusedConv2D')
    }
    assert conv_types == {tf.bfloat16.as_datatype_enum}
    with detection.Detector.from_frozen_graph(path) as detector:
        assert detector.card == spec and detector.card.compute_dtype == 'bfloat16'


def test_bfloat16_frozen_graph_close_to_float32(exported, bfloat16_frozen):
    """bf16 keeps 8 mantissa bits: raw outputs within a few percent of the float32 graph's, and
    each of the 5 best bf16 detections is an anchor's float32 decoding (numpy) with that anchor's
    float32 class score, within that tolerance. (Not the float32 detections themselves: random
    weights give near-ties, so NMS may keep a neighbour in one precision and not the other.)"""
    with detection.Detector.from_frozen_graph(bfloat16_frozen[1]) as detector:
        got = detector.run(exported['images'], detection.OUTPUTS)
    for key in detection.RAW_OUTPUTS:
        assert got[key].dtype == np.float32
    anchors = np.load(os.path.join(exported['out'], detection.ANCHORS_FILE))
    fx.assert_close_to_float32(got, exported['reference'], anchors, BF16_RTOL)


def test_compute_dtype_checked():
    with pytest.raises(ValueError, match='compute_dtype'):
        fx.small_spec(compute_dtype='int8')
    with (
        tf.Graph().as_default(),
        pytest.raises(ValueError, match='TFLite graph computes in float32'),
    ):
        detection.build_detection_graph(
            fx.small_spec(compute_dtype='bfloat16'), batch_size=1, tflite=True
        )


def _with_other_class_biases(prefix, path):
    """A checkpoint at `path` of the weights at `prefix` but for other class-head biases (as a
    later training step writes one): exported, it detects otherwise."""
    reader = tf.train.load_checkpoint(prefix)
    rng = np.random.RandomState(1)
    with tf.Graph().as_default():
        for name in reader.get_variable_to_shape_map():
            value = reader.get_tensor(name)
            if 'mbox_conf/biases' in name:
                value = value + rng.randn(*value.shape).astype(value.dtype)
            v1.Variable(value, name=name)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver().save(sess, path, write_state=False)


# A training's folder exported while the training runs on: once the export names the
# checkpoint it resolved, x-2 is written and x-1 deleted (max_to_keep).
EXPORT_WHILE_TRAINING_CODE = """
import os, shutil, sys
from inference import export
from tests import inference_fixtures as fx
run_dir, later, out = sys.argv[1:]


def log(line):
    if line.startswith('exporting '):
        for name in os.listdir(os.path.dirname(later)):
            shutil.copy(os.path.join(os.path.dirname(later), name), run_dir)
        for name in os.listdir(run_dir):
            if name.startswith('x-1.'):
                os.remove(os.path.join(run_dir, name))


formats = ['frozen_graph', 'saved_model', 'tflite_float']
export.export(fx.small_spec(), run_dir, out, formats, log=log)
"""


@pytest.fixture(scope='module')
def exported_while_training(exported, tmp_path_factory):
    """{run_dir, later, out} of EXPORT_WHILE_TRAINING_CODE's export of the module's checkpoint,
    copied as x-1, in a process of its own (the second export
    test_the_same_checkpoint_exports_to_the_same_bytes compares)."""
    root = tmp_path_factory.mktemp('while_training')
    run_dir = root / 'train'
    run_dir.mkdir()
    folder, base = os.path.split(exported['prefix'])
    for name in os.listdir(folder):
        if name.startswith(base + '.'):
            shutil.copy(os.path.join(folder, name), run_dir / ('x-1' + name[len(base) :]))
    later = _with_other_class_biases(exported['prefix'], str(root / 'later' / 'x-2'))
    out = root / 'out'
    proc = run_python(EXPORT_WHILE_TRAINING_CODE, str(run_dir), later, str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(run_dir=run_dir, later=later, out=out)


def test_every_format_comes_from_the_checkpoint_resolved_first(exported, exported_while_training):
    """A directory's latest checkpoint is resolved once and staged: what a still-running
    training does during the export (here: as soon as the export names its checkpoint), writing
    a newer checkpoint and deleting the exported one (max_to_keep), changes no format."""
    run_dir, out = exported_while_training['run_dir'], exported_while_training['out']
    formats = ['frozen_graph', 'saved_model', 'tflite_float']
    assert not any(name.startswith('x-1.') for name in os.listdir(run_dir))
    assert 'x-2.index' in os.listdir(run_dir)
    assert sorted(os.listdir(out)) == export.written_names(formats)  # no staging
    with open(out / detection.METADATA_FILE) as f:
        assert json.load(f)['export']['checkpoint']['path'] == str(run_dir / 'x-1')
    # Guards the test: x-2 holds other weights.
    x1 = tf.train.load_checkpoint(exported['prefix'])
    x2 = tf.train.load_checkpoint(exported_while_training['later'])
    differences = [
        np.abs(x1.get_tensor(n) - x2.get_tensor(n)).max() for n in x1.get_variable_to_shape_map()
    ]
    assert max(differences) > 0.1
    for load in (
        lambda: detection.Detector.from_frozen_graph(str(out / 'frozen_graph.pb')),
        lambda: detection.Detector.from_saved_model(str(out / 'saved_model')),
    ):
        with load() as detector:
            got = detector.run(exported['images'], detection.OUTPUTS)
        for b in range(len(exported['images'])):
            assert_same_detections(got, exported['reference'], b, b)
    tflite = detection.TFLiteDetector(str(out / 'model_float.tflite'))
    for b, image in enumerate(exported['images']):
        assert_same_detections(tflite.run([image], detection.OUTPUTS), exported['reference'], 0, b)


def _tree(folder):
    """{relative path: bytes} of every file under `folder` (links and folders by name)."""
    tree = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(root, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, 'rb') as f:
                    tree[os.path.relpath(path, folder)] = f.read()
            else:
                tree[os.path.relpath(path, folder)] = 'link' if os.path.islink(path) else 'dir'
    return tree


@pytest.fixture
def small_checkpoint(tmp_path):
    spec = fx.small_spec()
    return spec, fx.write_checkpoint(spec, str(tmp_path / 'train'))


def test_overwrite_never_replaces_or_removes_files_no_export_wrote(small_checkpoint, tmp_path):
    """The audit's folder: no metadata.json, a SavedModel, a frozen graph and a TFLite model the
    user made elsewhere. --overwrite replaced the SavedModel whole and removed the other two as
    'an earlier export's'. Now a name the export writes is refused before any work, and a model
    file of another format that no export's metadata.json lists stays."""
    spec, prefix = small_checkpoint
    home = tmp_path / 'home'
    fx.write_users_own_models(home)
    before = _tree(home)
    logged = []
    for formats, name in ((['saved_model'], 'saved_model'), (['frozen_graph'], 'frozen_graph.pb')):
        with pytest.raises(export.ForeignFileError) as err:
            export.export(spec, prefix, str(home), formats, log=logged.append, overwrite=True)
        assert str(err.value).startswith(f'{home / name} is not from an earlier export (')
        assert 'choose another --output_dir, or move it out of' in str(err.value)
        assert '\n' not in str(err.value) and not logged and _tree(home) == before
    # Without --overwrite the same file is named (--overwrite would not help).
    with pytest.raises(export.ForeignFileError, match='frozen_graph.pb is not from an earlier'):
        export.export(spec, prefix, str(home), ['frozen_graph'])
    (home / 'frozen_graph.pb').unlink()
    shutil.rmtree(home / 'saved_model')
    export.export(spec, prefix, str(home), ['frozen_graph'], log=logged.append, overwrite=True)
    assert (home / 'model_float.tflite').read_bytes() == b'my tflite model'
    assert not [line for line in logged if line.startswith('removed')], logged
    assert sorted(os.listdir(home)) == sorted(
        export.written_names(['frozen_graph']) + ['model_float.tflite']
    )


def test_overwrite_refuses_a_metadata_json_or_saved_model_no_export_wrote(
    small_checkpoint, tmp_path
):
    """A metadata.json that is not an export's (its 'files' would have listed the user's model
    files as ours), and a saved_model/ whose assets.extra/ holds no export's metadata."""
    spec, prefix = small_checkpoint
    home = tmp_path / 'home'
    home.mkdir()
    (home / 'metadata.json').write_text(
        json.dumps({'files': {'tflite_float': 'model_float.tflite'}})
    )
    (home / 'model_float.tflite').write_bytes(b'mine')
    before = _tree(home)
    with pytest.raises(export.ForeignFileError, match=r'metadata.json is not from an earlier'):
        export.export(spec, prefix, str(home), ['frozen_graph'], overwrite=True)
    assert _tree(home) == before
    (home / 'metadata.json').unlink()
    (home / 'saved_model' / 'assets.extra').mkdir(parents=True)
    (home / 'saved_model' / 'assets.extra' / 'metadata.json').write_text('{"mine": 1}')
    before = _tree(home)
    with pytest.raises(export.ForeignFileError, match=r'saved_model is not from an earlier'):
        export.export(spec, prefix, str(home), ['saved_model'], overwrite=True)
    assert _tree(home) == before


def test_overwrite_replaces_an_earlier_exports_files_and_keeps_the_users(exported, tmp_path):
    """An earlier export's SavedModel is replaced, its frozen graph and TFLite models (listed in
    its metadata.json) removed and logged as such; an OpenVINO IR it did not list stays."""
    out = tmp_path / 'out'
    shutil.copytree(exported['out'], out)
    (out / 'model_openvino.xml').write_bytes(b'mine')
    (out / 'saved_model' / 'saved_model.pb').write_bytes(b'stale')
    logged = []
    spec, prefix = exported['spec'], exported['prefix']
    export.export(spec, prefix, str(out), ['saved_model'], log=logged.append, overwrite=True)
    assert (out / 'saved_model' / 'saved_model.pb').read_bytes() != b'stale'
    assert (out / 'model_openvino.xml').read_bytes() == b'mine'
    assert sorted(os.listdir(out)) == sorted(
        export.written_names(['saved_model']) + ['model_openvino.xml']
    )
    removed = [line for line in logged if line.startswith('removed')]
    assert removed == [
        f'removed {out / name}: an earlier export\'s {fmt} (its metadata.json listed it), not '
        'described by the new metadata.json'
        for fmt, name in (
            ('frozen_graph', 'frozen_graph.pb'),
            ('tflite_float', 'model_float.tflite'),
            ('tflite_int8', 'model_int8.tflite'),
        )
    ]


def test_an_interrupted_export_is_run_again_with_overwrite(small_checkpoint, tmp_path, monkeypatch):
    """Killed after its frozen graph, before its metadata.json: the files it wrote are its own
    for the next export with --overwrite (what the interrupted script says to run); one that
    failed before writing anything leaves the folder as empty as it found it."""
    spec, prefix = small_checkpoint
    out = tmp_path / 'out'

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, 'tflite_model', killed)
    with pytest.raises(KeyboardInterrupt):
        export.export(spec, prefix, str(out), ['frozen_graph', 'tflite_float'], log=lambda _: None)
    assert sorted(os.listdir(out)) == [export.PENDING_FILE, 'frozen_graph.pb']
    monkeypatch.undo()
    logged = []
    export.export(spec, prefix, str(out), ['saved_model'], log=logged.append, overwrite=True)
    assert sorted(os.listdir(out)) == export.written_names(['saved_model'])
    assert f'removed {out / "frozen_graph.pb"}: an earlier export\'s frozen_graph (the ' in (
        '\n'.join(logged)
    )

    monkeypatch.setattr(export, '_restored', killed)
    with pytest.raises(KeyboardInterrupt):
        export.export(spec, prefix, str(tmp_path / 'new'), ['frozen_graph'], log=lambda _: None)
    assert os.listdir(tmp_path / 'new') == []
    # What an export checks first: the folder takes a new export without --overwrite.
    assert export.check_output_dir(str(tmp_path / 'new'), ['frozen_graph']) == {}


def test_an_output_dir_that_is_a_file_is_refused_before_any_work(tmp_path):
    path = tmp_path / 'notes.txt'
    path.write_text('mine')
    with pytest.raises(ValueError) as err:
        export.export(None, 'unused', str(path), ['frozen_graph'])
    assert str(err.value) == f'--output_dir {path} is not a folder; choose a new or empty folder.'
    assert path.read_text() == 'mine'


def test_the_folder_lock_file_is_not_content_of_the_output_dir(tmp_path):
    """export_ssd_network.py holds the folder's lock (tf_extended/folder_lock) while it checks
    the folder: its lock file alone is an empty folder, and a refusal does not list it."""
    from tf_extended import folder_lock

    out = tmp_path / 'out'
    with folder_lock.acquire(str(out), '--output_dir', 'export'):
        assert export.check_output_dir(str(out), ['frozen_graph']) == {}
        (out / 'notes.txt').write_text('mine')
        with pytest.raises(export.OutputNotEmptyError, match=r'is not empty \(notes.txt\);'):
            export.check_output_dir(str(out), ['frozen_graph'])
        assert sorted(os.listdir(out)) == sorted([folder_lock.LOCK_NAME, 'notes.txt'])
