"""Non-square inputs (height x width), end to end.

- Nets at 300x500 and 512x384 build, with the feature maps worked out by hand (`NON_SQUARE`
  in test_anchors.py, whose anchors are checked there against a Caffe PriorBox transcription).
- A training step at 300x500 built from nets/: targets equal Caffe's matching and encoding in
  numpy against the PriorBox reference anchors, the loss equals the numpy MultiBox loss, and
  steps lower it.
- eval_ssd_network.py and export_ssd_network.py take a 300x500 MobileNet-SSD from its model
  card (beside the checkpoint), and their detections equal an independent pipeline:
  `tf.image.resize` + the published normalisation + the restored net, then numpy decoding
  against the PriorBox reference anchors and numpy Caffe DetectionOutput.

- train_ssd_network.py has no flag for the input size; it trains a 300x500 net when fine-tuning
  from a checkpoint whose model card says so (the card is carried into the new train dir), and
  its input pipeline then feeds 300x500 images with targets for the 300x500 anchors.
"""

import glob
import json
import os
import re

import cv2
import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from datasets import synthetic
from model import card as card_lib
from nets import nets_factory
from nets.ssd_common import flatten_layers
from tests import data_fixtures
from tests import inference_fixtures
from tests import numpy_reference as ref
from tests import script_server
from tests.conftest import script_env, training_graph_text
from tests.test_anchors import NON_SQUARE, PUBLISHED, prior_box_net
from tests.test_losses import numpy_loss

v1 = tf.compat.v1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = 'ssd_300_mobilenet'
IMG_SHAPE = (300, 500)
DEPTH = 0.25
STEP = 100
# MobileNet-SSD's published input normalisation: (RGB - 127.5) * 0.007843.
MEAN, SCALE = 127.5, 0.007843
# DetectionOutput settings of the model card (and of the numpy reference).
SELECT, NMS, TOP_K, KEEP_TOP_K = 0.05, 0.45, 50, 20


def reference_anchors(name, img_shape):
    """The Caffe PriorBox anchors of the published layers on the non-square feature maps (no
    step: img / fmap on each axis)."""
    layers = [
        (source, fmap, lo, hi, ratios, None)
        for (source, _, lo, hi, ratios, _), fmap in zip(
            PUBLISHED[name]['layers'], NON_SQUARE[name, img_shape]
        )
    ]
    return prior_box_net(img_shape, layers)


def non_square_params(name, img_shape, **overrides):
    params = nets_factory.get_network(name).default_params
    return params._replace(
        img_shape=img_shape, feat_shapes=NON_SQUARE[name, img_shape], anchor_steps=None, **overrides
    )


@pytest.mark.parametrize('name,img_shape', sorted(NON_SQUARE))
def test_non_square_nets_build_with_the_hand_computed_feature_maps(name, img_shape):
    cls = nets_factory.get_network(name)
    net = cls(non_square_params(name, img_shape, num_classes=5))
    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, [1, img_shape[0], img_shape[1], 3])
        with slim.arg_scope(net.arg_scope()):
            predictions, localisations, logits, _ = net.net(inputs, is_training=False)
        assert [tuple(t.shape[1:3]) for t in localisations] == list(NON_SQUARE[name, img_shape])
        assert [tuple(t.shape[1:3]) for t in logits] == list(NON_SQUARE[name, img_shape])
        assert flatten_layers(predictions).shape.as_list() == [1, len(net.anchors()), 5]
    # The square default params on this input: a clear error, not anchors that miss the heads.
    with tf.Graph().as_default():
        inputs = v1.placeholder(tf.float32, [1, img_shape[0], img_shape[1], 3])
        with slim.arg_scope(cls().arg_scope()), pytest.raises(ValueError, match='feat_shapes'):
            cls().net(inputs, is_training=False)


def test_non_square_training_step_targets_and_loss_equal_numpy():
    """MobileNet-SSD (depth 0.25) at 300x500, batch 2, 4 classes: per-image targets, the loss,
    and 5 SGD steps on the same batch."""
    cls = nets_factory.get_network(MODEL)
    net = cls(non_square_params(MODEL, IMG_SHAPE, num_classes=4, depth_multiplier=DEPTH))
    anchors = net.anchors()
    np.testing.assert_allclose(anchors, reference_anchors(MODEL, IMG_SHAPE), atol=1e-6, rtol=0)
    # A wide box, a tall one and a small one; the second image has a padding row (label 0).
    gt = np.array(
        [
            [[0.1, 0.05, 0.45, 0.6], [0.3, 0.7, 0.95, 0.8], [0.5, 0.2, 0.56, 0.24]],
            [[0.2, 0.3, 0.9, 0.5], [0.05, 0.75, 0.25, 0.98], [0.0, 0.0, 0.0, 0.0]],
        ],
        np.float32,
    )
    labels = np.array([[1, 3, 2], [2, 1, 0]], np.int64)
    rng = np.random.RandomState(0)
    images = rng.uniform(-1.0, 1.0, (2,) + IMG_SHAPE + (3,)).astype(np.float32)
    with tf.Graph().as_default():
        v1.set_random_seed(0)
        with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
            _, localisations, logits, _ = net.net(tf.constant(images), is_training=True)
        targets = [net.bboxes_encode(tf.constant(labels[b]), tf.constant(gt[b])) for b in range(2)]
        gclasses, glocs, gscores = (tf.stack(t) for t in zip(*targets))
        loss = net.losses(logits, localisations, gclasses, glocs, gscores)
        with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
            train_op = v1.train.GradientDescentOptimizer(0.05).minimize(loss)
        flat = (flatten_layers(logits), flatten_layers(localisations))
        names = [v.op.name for v in v1.trainable_variables()]
        layer_sizes = [t.shape[1:4].num_elements() for t in logits]
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            before = sess.run(v1.trainable_variables())
            values = sess.run([loss, gclasses, glocs, gscores, *flat])
            losses = [sess.run([loss, train_op])[0] for _ in range(6)]
            after = sess.run(v1.trainable_variables())
    total, got_classes, got_locs, got_scores, flat_logits, flat_locs = values
    for b in range(2):
        valid = labels[b] > 0
        matches, max_iou = ref.caffe_match(gt[b], valid, anchors, 0.5)
        matched = matches >= 0
        np.testing.assert_array_equal(got_classes[b], np.where(matched, labels[b][matches], 0))
        assert set(matches[matched]) == {g for g in range(3) if valid[g]}  # every object trains
        np.testing.assert_allclose(got_scores[b], max_iou, atol=1e-5)
        np.testing.assert_allclose(
            got_locs[b][matched],
            ref.encode(
                gt[b][matches[matched]].astype(np.float64), anchors[matched].astype(np.float64)
            ),
            rtol=1e-4,
            atol=1e-4,
        )
        assert not got_locs[b][~matched].any()
    pos, neg, loc, _ = numpy_loss(
        flat_logits.astype(np.float64),
        flat_locs.astype(np.float64),
        got_classes,
        got_locs.astype(np.float64),
        got_scores,
    )
    np.testing.assert_allclose(total, pos + neg + loc, rtol=1e-4)
    # The first loss of the loop is the same forward pass; then SGD lowers it.
    np.testing.assert_allclose(losses[0], total, rtol=1e-5)
    assert losses[-1] < 0.9 * losses[0], losses
    # Every class head (one per feature map) trained; a box head exactly when its layer holds a
    # positive anchor (the localisation loss sees positives only; plain SGD, no weight decay).
    changed = {name for name, b, a in zip(names, before, after) if np.abs(a - b).max() > 0}
    bounds = np.cumsum([0] + layer_sizes)
    for i, layer in enumerate(net.params.feat_layers):
        assert f'{MODEL}/{layer}_mbox_conf/weights' in changed, layer
        has_positive = (got_classes[:, bounds[i] : bounds[i + 1]] > 0).any()
        assert (f'{MODEL}/{layer}_mbox_loc/weights' in changed) == has_positive, layer
    assert (got_classes[:, : bounds[1]] > 0).any()  # the 19x32 layer has positives


@pytest.mark.parametrize(
    'resize,image_shape,rows,cols',
    [
        # 100x200 white image, scaled by min(300/100, 500/200) = 2.5 to 250x500: output rows
        # 25..275 show it, the rest is padding (the mean, 0 after normalisation).
        ('PAD_AND_RESIZE', (100, 200), (25, 275), (0, 500)),
        # 200x100: scaled by min(1.5, 5) = 1.5 to 300x150, columns 175..325.
        ('PAD_AND_RESIZE', (200, 100), (0, 300), (175, 325)),
        # 400x600, no scaling: the central 300x500 pixels, image rows 50.. and columns 50..
        ('CENTRAL_CROP', (400, 600), (-50, 350), (-50, 550)),
    ],
)
def test_non_square_eval_windows_against_hand_computed_pixels(resize, image_shape, rows, cols):
    """The evaluation preprocessing into a 300x500 net and the detections' way back: a white
    image shows where the hand-computed rows/columns say, and output boxes map back to image
    boxes through those numbers."""
    from evaluation import input as eval_input
    from preprocessing import preprocessing_factory

    with tf.Graph().as_default():
        pipeline = preprocessing_factory.get_preprocessing(MODEL)
        image = tf.fill(image_shape + (3,), tf.constant(255, tf.uint8))
        out, _, _, bbox_img = pipeline(
            image,
            tf.zeros([0], tf.int64),
            tf.zeros([0, 4]),
            IMG_SHAPE,
            is_training=False,
            resize=resize,
        )
        dets = np.array(
            [[[0.2, 0.1, 0.7, 0.4], [0.0, 0.0, 1.0, 1.0], [0.5, 0.45, 0.55, 0.6]]], np.float32
        )
        mapped = eval_input.map_to_image(bbox_img[None], tf.constant(dets))
        with v1.Session() as sess:
            out, mapped = sess.run([out, mapped[0]])
    assert out.shape == IMG_SHAPE + (3,)

    def region(top, bottom, left, right):
        mask = np.zeros(IMG_SHAPE, bool)
        mask[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)] = True
        return mask

    # Bilinear edges: compare 2 pixels away from the border of the shown part.
    shown = out[..., 0] > 0.5
    assert shown[region(rows[0] + 2, rows[1] - 2, cols[0] + 2, cols[1] - 2)].all()
    assert not shown[~region(rows[0] - 2, rows[1] + 2, cols[0] - 2, cols[1] + 2)].any()
    # Output pixel (r, c) shows image pixel ((r - rows[0]) / sy, (c - cols[0]) / sx).
    sy = (rows[1] - rows[0]) / image_shape[0]
    sx = (cols[1] - cols[0]) / image_shape[1]
    px = dets[0] * np.array(IMG_SHAPE * 2)
    want = np.stack(
        [
            (px[:, 0] - rows[0]) / sy / image_shape[0],
            (px[:, 1] - cols[0]) / sx / image_shape[1],
            (px[:, 2] - rows[0]) / sy / image_shape[0],
            (px[:, 3] - cols[0]) / sx / image_shape[1],
        ],
        axis=1,
    )
    np.testing.assert_allclose(mapped, np.clip(want, 0.0, 1.0), atol=1e-5)


# --------------------------------------------------------------------------------------------
# The scripts, on a random MobileNet-SSD checkpoint at 300x500.


def _run(args, timeout=300):
    result = script_server.run(args, ROOT, script_env(), timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def write_checkpoint(prefix, params, images, seed=0):
    """Random weights with batch-norm statistics from `images` (a training-mode pass with decay
    0) and random class-head biases, so that scores differ between anchors and classes."""
    net = nets_factory.get_network(MODEL)(params._replace(batch_norm_decay=0.0))
    rng = np.random.RandomState(seed)
    with tf.Graph().as_default():
        v1.set_random_seed(seed)
        with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
            net.net(tf.constant(normalise(images)), is_training=True)
        global_step = v1.train.get_or_create_global_step()
        with v1.Session() as sess:
            inference_fixtures.init_spread_out_weights(sess, rng)
            sess.run(global_step.assign(STEP))
            return v1.train.Saver().save(sess, prefix, global_step=STEP, write_meta_graph=False)


def normalise(images):
    return (np.asarray(images, np.float32) - MEAN) * SCALE


def read_records(records_dir):
    """(file name, uint8 RGB image) of every record, parsed with tf.train.Example directly and
    decoded by OpenCV (the pixels the reader decodes)."""
    out = []
    for path in sorted(glob.glob(os.path.join(records_dir, '*.tfrecord'))):
        for record in tf.data.TFRecordDataset(path):
            feature = tf.train.Example.FromString(record.numpy()).features.feature
            data = np.frombuffer(feature['image/encoded'].bytes_list.value[0], np.uint8)
            image = cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            out.append((feature['image/filename'].bytes_list.value[0].decode(), image))
    return out


class Reference:
    """The restored net at 300x500 fed by tf.image.resize (bilinear) and the published
    normalisation; numpy decoding and DetectionOutput against the PriorBox reference anchors."""

    def __init__(self, prefix, params):
        self.anchors = reference_anchors(MODEL, IMG_SHAPE)
        net = nets_factory.get_network(MODEL)(params)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.image = v1.placeholder(tf.uint8, [None, None, 3])
            resized = tf.image.resize(tf.cast(self.image, tf.float32)[None], IMG_SHAPE)
            with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
                _, localisations, logits, _ = net.net((resized - MEAN) * SCALE, is_training=False)
            self.outputs = (flatten_layers(logits)[0], flatten_layers(localisations)[0])
            self.sess = v1.Session(graph=self.graph)
            v1.train.Saver().restore(self.sess, prefix)

    def raw(self, image):
        """float64 (softmax scores [N, C], box codes [N, 4])."""
        logits, codes = (
            v.astype(np.float64) for v in self.sess.run(self.outputs, {self.image: image})
        )
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True), codes

    def detections(self, image):
        """[(score, label, relative box [ymin, xmin, ymax, xmax])], best first."""
        scores, codes = self.raw(image)
        boxes = ref.decode(codes, self.anchors)
        return ref.caffe_detection_output(scores, boxes, SELECT, NMS, TOP_K, KEEP_TOP_K)


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp('non_square')
    voc, records = str(root / 'voc'), str(root / 'records')
    synthetic.generate(voc, 16, seed=4)
    class_names = list(synthetic.CLASSES)
    data_fixtures.convert_voc(
        [voc], records, output_name='test', split='test', class_names=class_names
    )
    examples = read_records(records)
    # The net's input at 300x500 (each image warped to it), for the batch-norm statistics.
    warped = np.stack([tf.image.resize(image, IMG_SHAPE).numpy() for _, image in examples[:4]])
    params = non_square_params(
        MODEL, IMG_SHAPE, num_classes=len(class_names) + 1, depth_multiplier=DEPTH
    )
    prefix = write_checkpoint(str(root / 'train' / 'model.ckpt'), params, warped)
    # Its model card, where the scripts look for it (beside the checkpoint): the net at 300x500,
    # the DetectionOutput settings of the reference.
    card = card_lib.from_registry(
        MODEL,
        class_names=class_names,
        depth_multiplier=DEPTH,
        img_shape=IMG_SHAPE,
        feat_shapes=params.feat_shapes,
    )
    card = card.with_detection(
        select_threshold=SELECT, nms_threshold=NMS, top_k=TOP_K, keep_top_k=KEEP_TOP_K
    )
    assert card.params == params
    card_lib.write(prefix + card_lib.CHECKPOINT_CARD_SUFFIX, card)
    reference = Reference(prefix, params)
    yield dict(
        root=root,
        records=records,
        class_names=class_names,
        examples=examples,
        prefix=prefix,
        params=params,
        reference=reference,
    )
    reference.sess.close()


def run_eval(model, eval_dir, *extra):
    """eval_ssd_network.py with no model flag: the net (300x500) and the detection settings come
    from the model card. Returns (results.json, {image id: [(score, label, xmin, ymin, xmax,
    ymax)] best first}) from the devkit results files."""
    _run(
        [
            'eval_ssd_network.py',
            f'--checkpoint_path={model["prefix"]}',
            f'--eval_dir={eval_dir}',
            '--dataset_name=custom',
            '--dataset_split_name=test',
            f'--dataset_dir={model["records"]}',
            '--batch_size=2',
            '--metrics=voc07',
            '--nopr_curves',
            '--num_threads=2',
            *extra,
        ]
    )
    with open(os.path.join(eval_dir, 'results.json')) as f:
        summary = json.load(f)
    detections = {}
    for label, name in enumerate(model['class_names'], 1):
        with open(os.path.join(eval_dir, f'comp4_det_test_{name}.txt')) as f:
            for line in f:
                image_id, score, *box = line.split()
                detections.setdefault(image_id, []).append((float(score), label, *map(float, box)))
    return summary, {k: sorted(v, key=lambda d: -d[0]) for k, v in detections.items()}


def reference_pixel_detections(reference, image):
    """The reference's detections as the eval writes them: clipped to the image, devkit pixels
    (1-based: xmin = x * W + 1, xmax = x * W)."""
    height, width = image.shape[:2]
    out = []
    for score, label, box in reference.detections(image):
        ymin, xmin, ymax, xmax = np.clip(box, 0.0, 1.0)
        out.append((score, label, xmin * width + 1, ymin * height + 1, xmax * width, ymax * height))
    return out


def test_eval_script_at_300x500_equals_the_reference(model):
    summary, got = run_eval(model, str(model['root'] / 'eval'))
    assert summary['num_images'] == len(model['examples']) >= 3
    assert summary['global_step'] == STEP
    compared = 0
    for filename, image in model['examples']:
        want = reference_pixel_detections(model['reference'], image)
        mine = got.get(os.path.splitext(filename)[0], [])
        assert len(mine) == len(want) > 0, filename
        for m, w in zip(mine, want):
            assert m[1] == w[1], filename
            np.testing.assert_allclose(m[0], w[0], atol=1e-4)
            np.testing.assert_allclose(m[2:], w[2:], atol=0.05)  # pixels
        compared += len(want)
    assert compared >= 10


def test_eval_script_in_bfloat16_computes_in_bfloat16(model):
    """--compute_dtype=bfloat16 reaches the eval graph. Near-tied scores reorder under bf16, so
    each of an image's 10 best bf16 detections is compared with every anchor's float32 reference
    (score of its class, decoded box in devkit pixels): some anchor is within bf16 precision
    (8 bits of mantissa), and for most detections no anchor is within float32 precision (where a
    float32 eval, or one that ignored the flag, would have every detection)."""
    summary, got = run_eval(model, str(model['root'] / 'eval_bf16'), '--compute_dtype=bfloat16')
    assert summary['settings']['model_card']['compute_dtype'] == 'bfloat16'
    reference = model['reference']
    exact = []
    for filename, image in model['examples']:
        height, width = image.shape[:2]
        scores, codes = reference.raw(image)
        boxes = np.clip(ref.decode(codes, reference.anchors), 0.0, 1.0)
        pixels = boxes[:, [1, 0, 3, 2]] * [width, height, width, height] + [1, 1, 0, 0]
        mine = got.get(os.path.splitext(filename)[0], [])[:10]
        assert len(mine) == 10, filename
        for score, label, *box in mine:
            score_error = np.abs(scores[:, label] - score)
            box_error = np.abs(pixels - box).max(axis=1)
            assert ((score_error <= 0.02) & (box_error <= 2.0)).any(), (filename, score, box)
            exact.append(((score_error <= 2e-5) & (box_error <= 0.02)).any())
    assert np.mean(exact) < 0.5, np.mean(exact)


def test_export_script_at_300x500_equals_the_reference(model):
    out = str(model['root'] / 'export')
    _run(
        [
            'export_ssd_network.py',
            f'--checkpoint_path={model["prefix"]}',
            f'--output_dir={out}',
            '--formats=frozen_graph',
        ]
    )
    with open(os.path.join(out, 'metadata.json')) as f:
        meta = json.load(f)
    assert (meta['input']['height'], meta['input']['width']) == IMG_SHAPE
    reference = model['reference']
    np.testing.assert_allclose(
        np.load(os.path.join(out, 'anchors.npy')), reference.anchors, atol=1e-6, rtol=0
    )
    images = [image for _, image in model['examples'][:2]]
    assert images[0].shape != images[1].shape
    frozen = [
        inference_fixtures.run_frozen_graph(os.path.join(out, 'frozen_graph.pb'), image)
        for image in images
    ]
    for image, outputs in zip(images, frozen):
        scores, codes = reference.raw(image)
        np.testing.assert_allclose(outputs['raw_scores'][0], scores, atol=1e-4)
        np.testing.assert_allclose(outputs['raw_localisations'][0], codes, atol=1e-4)
        want = reference.detections(image)
        n = outputs['num_detections'][0]
        assert n == len(want) > 0
        np.testing.assert_array_equal(outputs['detection_classes'][0, :n], [d[1] for d in want])
        np.testing.assert_allclose(
            outputs['detection_scores'][0, :n], [d[0] for d in want], atol=1e-4
        )
        np.testing.assert_allclose(
            outputs['detection_boxes'][0, :n], [d[2] for d in want], atol=1e-4
        )


def test_train_script_fine_tunes_the_300x500_model(model):
    """Two steps of train_ssd_network.py from the 300x500 checkpoint (its card beside it)."""
    train_dir = model['root'] / 'fine_tuned'
    result = _run(
        [
            os.path.join(ROOT, 'train_ssd_network.py'),
            f'--train_dir={train_dir}',
            f'--checkpoint_path={model["prefix"]}',
            '--dataset_name=custom',
            '--dataset_split_name=test',
            f'--dataset_dir={model["records"]}',
            '--batch_size=2',
            '--max_number_of_steps=2',
            '--save_interval_steps=100',
            '--num_readers=1',
            '--num_preprocessing_threads=2',
            '--seed=1',
            '--log_every_n_steps=1',
            '--save_summaries_secs=3600',
        ]
    )
    card = card_lib.load(str(train_dir / card_lib.CARD_FILE))
    assert card.params == model['params']
    # The restore is logged by scope (checkpoints.describe_restore): here, every variable.
    count = len(tf.train.list_variables(model['prefix'])) - 1  # global_step is no model variable
    assert (
        f"Fine-tuning from {model['prefix']}: {count} of the model's {count} variables restored: "
        f'{MODEL}.'
    ) in result.stderr
    prefix = str(train_dir / 'model.ckpt-2')
    reader = tf.train.load_checkpoint(prefix)
    assert int(reader.get_tensor('global_step')) == 2
    # The weights moved from the fine-tuning checkpoint's.
    source = tf.train.load_checkpoint(model['prefix'])
    name = f'{MODEL}/conv11_mbox_conf/weights'
    assert np.abs(reader.get_tensor(name) - source.get_tensor(name)).max() > 0
    # The training graph's batches: 300x500 images, targets for the 300x500 anchors.
    assert 'graph.pbtxt' not in os.listdir(train_dir)
    graph = training_graph_text(train_dir)
    anchors = len(model['reference'].anchors)
    image = (
        r'dim \{\s*size: 2\s*\}\s*dim \{\s*size: 300\s*\}\s*'
        r'dim \{\s*size: 500\s*\}\s*dim \{\s*size: 3\s*\}'
    )
    targets = r'dim \{\s*size: 2\s*\}\s*dim \{\s*size: %d\s*\}\s*dim \{\s*size: 4\s*\}' % anchors
    assert re.search(image, graph) and re.search(targets, graph), result.stderr[-2000:]
    assert not re.search(r'dim \{\s*size: 300\s*\}\s*dim \{\s*size: 300\s*\}', graph)
