"""Fixtures of the export and detection tests: a small MobileNet-SSD checkpoint whose random
weights give spread-out scores, a synthetic TFRecord split, test images."""

import hashlib
import json
import os
import shutil

import numpy as np
import tensorflow as tf
import tf_slim as slim

from datasets import synthetic
from inference import detection
from model import card as card_lib
from tests import data_fixtures
from tests import numpy_reference as ref
from tests import shared_cache

v1 = tf.compat.v1

NUM_CLASSES = len(synthetic.CLASSES) + 1

# The outputs of an exported frozen graph, by tensor name: the raw outputs (all a TFLite export
# has) first, then the detections.
FROZEN_GRAPH_OUTPUTS = (
    'raw_scores',
    'raw_localisations',
    'detection_boxes',
    'detection_scores',
    'detection_classes',
    'num_detections',
)


def small_spec(compute_dtype='float32', **settings):
    """ssd_300_mobilenet at depth multiplier 0.25 with the synthetic dataset's classes."""
    settings.setdefault('select_threshold', 0.05)
    settings.setdefault('top_k', 50)
    settings.setdefault('keep_top_k', 40)
    card = card_lib.from_registry(
        'ssd_300_mobilenet', class_names=synthetic.CLASSES, depth_multiplier=0.25
    )
    return card.with_detection(**settings).replace(compute_dtype=compute_dtype)


def random_images(seed, sizes):
    """uint8 RGB images of the given (height, width) sizes: smooth content plus noise."""
    rng = np.random.RandomState(seed)
    images = []
    for i, (h, w) in enumerate(sizes):
        smooth = data_fixtures.smooth_image(h, w, seed=seed * 100 + i).astype(np.int32)
        images.append(np.clip(smooth + rng.randint(-40, 41, (h, w, 3)), 0, 255).astype(np.uint8))
    return images


def write_checkpoint(spec, directory, seed=0):
    """Random-init checkpoint with non-trivial outputs, `<directory>/model.ckpt`; returns its
    prefix. In a pytest run it is built once per net, normalisation and seed (the detection
    settings do not matter) and copied (tests/shared_cache.py).

    Glorot-initialised convs shrink the activations ~5x per MobileNet layer, so the heads would
    see zeros and every anchor would get the same scores. Batch norm statistics are therefore set
    from one batch (training-mode forward pass with decay 0: data-dependent initialisation), and
    the class-head biases get random values so that the classes differ per anchor shape.
    """
    if shared_cache.ROOT is None:
        return _write_checkpoint(spec, directory, seed)
    key = repr((spec.model_name, spec.params, spec.mean_rgb, spec.scale, spec.compute_dtype, seed))
    cached = shared_cache.folder(
        'checkpoint_' + hashlib.sha256(key.encode()).hexdigest()[:16],
        lambda path: _write_checkpoint(spec, path, seed),
    )
    return shared_cache.copy_checkpoint(cached, 'model.ckpt', directory)


def seeded_export():
    """`shared_export` of `small_spec()` at step 1600 to the formats of any input size but int8
    (frozen graph, OpenVINO IR, SavedModel, TFLite float): the one tests/test_openvino.py,
    tests/test_fixed_size.py and tests/test_export_metadata_checks.py read."""
    return shared_export(
        small_spec(), ['frozen_graph', 'openvino', 'saved_model', 'tflite_float'], step=1600
    )


def step_checkpoint(prefix, step):
    """A copy of the checkpoint at `prefix` beside it, named `model.ckpt-<step>`: its step for
    the export (the name's, as the random checkpoints hold no global_step); returns its prefix."""
    folder = os.path.dirname(prefix)
    base = os.path.basename(prefix)
    for name in os.listdir(folder):
        if name.startswith(base + '.'):
            target = f'model.ckpt-{step}{name[len(base) :]}'
            shutil.copy(os.path.join(folder, name), os.path.join(folder, target))
    return os.path.join(folder, f'model.ckpt-{step}')


def shared_export(spec, formats, step=None, **options):
    """The export of `spec`'s `write_checkpoint` (named `model.ckpt-<step>` where `step` is
    given, see step_checkpoint) to `formats` with `options` (`export.export`'s keyword arguments,
    e.g. batch_size, fixed_size; JSON values), built once per pytest run and read by every module
    that asks for the same (tests/shared_cache.py; the folder is read-only): (the checkpoint's
    prefix, {format: path}, the export folder)."""
    from inference import export

    formats = sorted(formats)
    key = json.dumps([spec.to_dict(), formats, step, options], sort_keys=True)
    name = 'model.ckpt' if step is None else f'model.ckpt-{step}'

    def build(path):
        prefix = write_checkpoint(spec, os.path.join(path, 'ckpt'))
        if step is not None:
            prefix = step_checkpoint(prefix, step)
        export.export(
            spec, prefix, os.path.join(path, 'export'), formats, log=lambda _: None, **options
        )

    folder = shared_cache.folder('export_' + hashlib.sha256(key.encode()).hexdigest()[:16], build)
    out = os.path.join(folder, 'export')
    written = {fmt: os.path.join(out, export.FILES[fmt]) for fmt in formats}
    return os.path.join(folder, 'ckpt', name), written, out


def _write_checkpoint(spec, directory, seed):
    with tf.Graph().as_default():
        v1.set_random_seed(seed)
        build_spread_out_pass(spec, seed)
        with v1.Session() as sess:
            init_spread_out_weights(sess, np.random.RandomState(seed))
            return v1.train.Saver().save(sess, os.path.join(directory, 'model.ckpt'))


def build_spread_out_pass(card, seed):
    """Builds, in the default graph, `card`'s net in the forward pass that
    `init_spread_out_weights` initialises from: training mode, batch norm decay 0, no weight
    decay, on four `random_images(seed)` of the net's input size."""
    net = card.net()
    net.params = net.params._replace(batch_norm_decay=0.0)
    images = tf.constant(np.stack(random_images(seed, [card.input_shape] * 4)))
    with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
        net.net(detection.preprocess_images(images, card), is_training=True)


def init_spread_out_weights(sess, rng):
    """In `sess`, whose graph holds `build_spread_out_pass`'s forward pass: initialises the
    variables, sets the batch norm statistics from that pass's batch (variances at least 0.05)
    and gives the class-head biases random values from `rng`."""
    sess.run(v1.global_variables_initializer())
    sess.run(v1.get_collection(v1.GraphKeys.UPDATE_OPS))
    assignments = []  # run at once: a run per new op took seconds
    for var in v1.global_variables():
        if var.op.name.endswith('moving_variance'):
            # Near-dead channels would otherwise be scaled up by ~1/sqrt(epsilon) and amplify
            # float rounding through the net.
            assignments.append(var.assign(tf.maximum(var, 0.05)))
        if 'mbox_conf/biases' in var.op.name:
            assignments.append(var.assign(rng.randn(*var.shape.as_list()).astype(np.float32)))
    sess.run(assignments)


def write_synthetic_split(directory, num_images, seed=0, split='test'):
    """`num_images` synthetic images -> their `split` part (a quarter for test) as TFRecords
    `<directory>/records/<split>_*.tfrecord` (the `custom` dataset, split name = `split`)."""
    raw = os.path.join(directory, 'raw')
    synthetic.generate(raw, num_images, seed=seed)
    records = os.path.join(directory, 'records')
    data_fixtures.convert_voc(
        [raw], records, output_name=split, split=split, class_names=synthetic.CLASSES
    )
    return records


def write_users_own_models(folder):
    """In `folder` (a pathlib.Path), model files of the names an export writes that a user made
    elsewhere (no metadata.json of an export): a SavedModel, a frozen graph, a TFLite model."""
    (folder / 'saved_model' / 'variables').mkdir(parents=True)
    (folder / 'saved_model' / 'saved_model.pb').write_bytes(b'my own model')
    (folder / 'saved_model' / 'variables' / 'variables.index').write_bytes(b'my weights')
    (folder / 'frozen_graph.pb').write_bytes(b'my frozen graph')
    (folder / 'model_float.tflite').write_bytes(b'my tflite model')


def assert_close_to_float32(got, want, anchors, rtol, best=5):
    """Reduced-precision outputs `got` against the float32 graph's `want` (both
    `detection.OUTPUTS` of the same images; `anchors` the export's): every raw output within
    `rtol` of its scale, and each of the `best` detections of every image is an anchor's float32
    decoding (numpy) with that anchor's float32 class score, within `rtol`. (Not the float32
    detections themselves: random weights give near-ties, so NMS may keep a neighbour in one
    precision and not the other.)"""
    for key in detection.RAW_OUTPUTS:
        assert np.abs(got[key] - want[key]).max() <= rtol * np.abs(want[key]).max(), key
    for b in range(len(want['raw_scores'])):
        boxes = ref.decode(want['raw_localisations'][b].astype(np.float64), anchors)
        for k in range(best):
            scores = want['raw_scores'][b][:, got['detection_classes'][b, k]]
            same = (np.abs(boxes - got['detection_boxes'][b, k]).max(axis=1) <= rtol) & (
                np.abs(scores - got['detection_scores'][b, k]) <= rtol
            )
            assert same.any(), (b, k)


def run_frozen_graph(path, image, names=FROZEN_GRAPH_OUTPUTS):
    """{name: output} of the frozen graph `path` (a GraphDef file) on one uint8 image, fed to
    `images:0` as a batch of one."""
    graph_def = v1.GraphDef()
    with open(path, 'rb') as f:
        graph_def.ParseFromString(f.read())
    with tf.Graph().as_default() as graph:
        tensors = v1.import_graph_def(graph_def, return_elements=[n + ':0' for n in names], name='')
        with v1.Session(graph=graph) as sess:
            return dict(zip(names, sess.run(tensors, {'images:0': image[None]})))


def remove_embedded_card(path):
    """Rewrites the frozen graph (.pb) or TFLite model `path` without the card inside it (as an
    export before those cards wrote it), with protobuf and the TFLite schema's object API (not
    inference/embedded_card.py); returns the bytes written. The card's buffer is the TFLite
    model's last: no other index moves."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    with open(path, 'rb') as f:
        content = f.read()
    if str(path).endswith('.pb'):
        graph_def = v1.GraphDef()
        graph_def.ParseFromString(content)
        del graph_def.node[[n.name for n in graph_def.node].index('model_card')]
        content = graph_def.SerializeToString(deterministic=True)
    else:
        model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
        (card,) = [m for m in model.metadata if m.name == b'model_card']
        assert card.buffer == len(model.buffers) - 1
        model.metadata.remove(card)
        del model.buffers[-1]
        builder = flatbuffers.Builder(1024)
        builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
        content = bytes(builder.Output())
    with open(path, 'wb') as f:
        f.write(content)
    return content
