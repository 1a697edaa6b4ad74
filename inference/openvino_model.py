"""OpenVINO: the export (our TF graph converted to an OpenVINO IR, NMS appended) and its runtime.

The IR (`model_openvino.xml` + `.bin`) has the frozen graph's outputs and semantics:
  input    `images` uint8 `[B, H, W, 3]` RGB, B, H and W free; the images of one call share one
           size (as TFLite's); `OpenVINODetector` runs a list of images of any sizes by grouping
           them by size. With --fixed_size `[B, h, w, 3]`, the net's input size (B free), and no
           resize in the IR: images of other sizes are refused (`detection.check_fixed_size`);
  outputs  `detection_boxes` float32 `[B, K, 4]` relative `[ymin, xmin, ymax, xmax]`,
           `detection_scores` float32 `[B, K]`, `detection_classes` int32 `[B, K]` (0 in padding
           rows), `num_detections` int32 `[B]`, `raw_localisations` `[B, N, 4]`, `raw_scores`
           `[B, N, C]` (see inference/detection.py); K = the card's `keep_top_k`.

How it is built (`convert`):
  1. A TF graph (`build_tf_graph`): the evaluation preprocessing of the batch (`preprocess_batch`:
     TF's bilinear warp resize as gathers and lerps, normalisation: `preprocess_for_eval`'s
     values for a batch of one size), the net in float32 and the box decoding, frozen with the
     checkpoint and converted by `openvino.convert_model`.
  2. Appended with OpenVINO ops (`_append_nms`): per image and class the `top_k` best anchors
     (TopK), NonMaxSuppression-9 over every (image, class) pair as one batch of its own
     candidates (IoU > `nms_threshold` suppressed, score > `select_threshold`), the kept scores
     scattered into a dense `[B, (C-1) * k]` map (-1 elsewhere), TopK of `keep_top_k` of it per
     image, and the boxes / classes of the winners: Caffe DetectionOutput as
     `post_processing.detected_bboxes`, fixed-size outputs. TF's CombinedNonMaxSuppression has
     no conversion rule; TF's stable TopKV2 converts to a stable TopK that OpenVINO's CPU plugin
     runs 20-40x slower than an unstable one (measured: 480 ms for VGG's 20 classes x 8732
     anchors), so the candidates are taken here. Ties between exactly equal scores may be
     ordered differently from TF (either order is Caffe's semantics).
The model card travels in the IR's runtime info (`model_card`, JSON) and as `metadata.json`
beside it.

Precision is chosen when the model is loaded (`OpenVINODetector(precision=...)`): 'fp32', or
'bf16' (OpenVINO's INFERENCE_PRECISION_HINT; the CPU plugin computes the net in bfloat16 where
the CPU has bf16 instructions, AVX-512 BF16 or AMX; on other CPUs float32 is compiled, as
`openvino_runtime.compile_config` asks, and `OpenVINODetector.precision` / `.matrix_units` say
what ran).

`openvino` is imported only here and in inference/openvino_runtime.py (the TensorFlow-free part:
compile settings, reading an untrusted IR), and only when a function needs it: TF-only users
never load it.
"""

import collections
from concurrent import futures
import json
import os
import queue

import numpy as np
import tensorflow as tf
import tf_slim as slim

from inference import detection
from inference import openvino_runtime
from model import card as card_lib
from nets import post_processing
from nets import ssd_common
from preprocessing import geometry
from tf_extended import atomic_io
from tf_extended import signals

v1 = tf.compat.v1

FILE = 'model_openvino.xml'
BIN_FILE = 'model_openvino.bin'
INT8_FILE = 'model_openvino_int8.xml'
INT8_BIN_FILE = 'model_openvino_int8.bin'
INT8_SCHEME = (
    'NNCF post-training quantisation (nncf.quantize, mixed preset, fast bias correction) of the '
    'convolutions: int8 weights per channel, int8 activations; uint8 image input, resizing, '
    'decoding and NMS in float32'
)
DECODED_BOXES = 'decoded_boxes'
# With one request (the latency hint), a batch shape met STATIC_AFTER times gets a model compiled
# for that shape: OpenVINO's CPU plugin skips its per-call shape inference and allocation then
# (MobileNet-SSD300, a 480x640 image: 7.1 instead of 7.7 ms per call; 0.1 s to compile). The
# first STATIC_SHAPES shapes that recur get one (each holds its own copy of the weights), and keep
# it: evicting would recompile on every call for images cycling through more sizes; other shapes
# run on the model of every shape.
STATIC_AFTER = 2
STATIC_SHAPES = 3
INPUT_NOTE = (
    'images uint8 [B, H, W, 3] RGB, the images of one call of one size; the model '
    'warp-resizes them itself'
)
# The note of an IR exported with --fixed_size.
FIXED_INPUT_NOTE = (
    'images uint8 [B, {height}, {width}, 3] RGB (--fixed_size: the net\'s input size only, B '
    'free); the model holds no resize: warp other images to {height}x{width} (bilinear) first'
)


def openvino_version():
    """The installed openvino package's version (package metadata: no import), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version('openvino')
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata(formats=('openvino',), fixed_card=None):
    """The 'openvino' section of an export's metadata.json (`formats`: the export's;
    `fixed_card`: the card of an export with --fixed_size, else None)."""
    files = {'openvino': [FILE, BIN_FILE], 'openvino_int8': [INT8_FILE, INT8_BIN_FILE]}
    return {
        'files': [name for fmt in files if fmt in formats for name in files[fmt]],
        'openvino_version': openvino_version(),
        'inputs': INPUT_NOTE
        if fixed_card is None
        else FIXED_INPUT_NOTE.format(
            height=fixed_card.input_shape[0], width=fixed_card.input_shape[1]
        ),
        'precisions': 'chosen when loaded: fp32, or bf16 (INFERENCE_PRECISION_HINT) on CPUs '
        'with AVX-512 BF16 or AMX; the int8 IR: int8 convolutions, the rest as loaded',
        'post_processing': 'decoding converted from TF; per-class top_k (TopK), '
        'NonMaxSuppression-9 per (image, class), keep_top_k (TopK) in '
        'OpenVINO ops',
    }


# ---------------------------------------------------------------------------------------------
# The TF part.


def preprocess_batch(images, card):
    """uint8 `[B, H, W, 3]` (one size) -> the net's float32 input: `preprocess_for_eval`'s
    values (WARP_RESIZE, bilinear) for the whole batch. The resize is TF's, built from gathers
    (`geometry.resize_bilinear_by_gathers`: faster in OpenVINO than its Interpolate), and left
    out where the images' static size is the net's (--fixed_size: an identity resize, whose
    values are the image's). The normalisation is `geometry.normalize`'s arithmetic on 3-wide
    channels, which OpenVINO folds into the first convolution (`normalize`'s row-wise form,
    TF's fast one, cost 1.8 ms per MobileNet-SSD300 call there). A BiasAdd, not a Sub: with a
    Sub, values came out 1 ulp off the eval pipeline's (TF's graph optimiser regroups a Sub with
    the lerps' Adds)."""
    pipeline = card.preprocessing()
    if tuple(images.shape[1:3]) == tuple(card.input_shape):
        resized = tf.cast(images, tf.float32)
    else:
        resized = geometry.resize_bilinear_by_gathers(images, card.input_shape)
    negated = np.array([-m for m in pipeline.mean_rgb], np.float32)
    return tf.nn.bias_add(resized, negated) * pipeline.scale


def build_tf_graph(card, fixed_size=False):
    """The TF part of the OpenVINO model in the default graph (float32 net, any batch and size;
    with `fixed_size` any batch of the net's input size, nothing resized).

    Returns:
      GraphEndpoints: input `images`; outputs `decoded_boxes` float32 `[B, N, 4]` (the anchors'
      decoded boxes, clipped to the image with `card.detection.clip`), `raw_localisations`,
      `raw_scores`.
    """
    height, width = card.input_shape if fixed_size else (None, None)
    images = v1.placeholder(tf.uint8, [None, height, width, 3], name=detection.INPUT)
    net = card.net()
    with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
        predictions, localisations = net.predict(preprocess_batch(images, card), 'float32')
    scores = ssd_common.flatten_layers(predictions)
    codes = ssd_common.flatten_layers(localisations)
    boxes = post_processing.decode_boxes(
        codes, net.anchors(), card.detection.clip, net.params.prior_scaling
    )
    tensors = {DECODED_BOXES: boxes, 'raw_localisations': codes, 'raw_scores': scores}
    outputs = {name: tf.identity(t, name=name) for name, t in tensors.items()}
    return detection.GraphEndpoints({detection.INPUT: images}, outputs)


def frozen_tf_graph(card, checkpoint_path, fixed_size=False):
    """GraphDef of `build_tf_graph` with the checkpoint's values as constants."""
    graph = tf.Graph()
    with graph.as_default():
        endpoints = build_tf_graph(card, fixed_size)
        with v1.Session(graph=graph) as sess:
            detection.restore_variables(sess, checkpoint_path)
            return detection.freeze(sess, endpoints.outputs)


# ---------------------------------------------------------------------------------------------
# The OpenVINO part.


def _name(output):
    """The TF name of a converted model's input or output (its node's, without ':0'; the tensor
    also carries the names of the ops it aliases)."""
    return output.get_node().get_friendly_name().split(':')[0]


def _append_nms(ov, model, card):
    """`model` (the converted TF graph) with the candidates, NMS and keep_top_k appended: a new
    `ov.Model` with the outputs of the module docstring."""
    ops = ov.opset13

    def i64(values):
        return ops.constant(np.array(values, np.int64))

    def f32(value):
        return ops.constant(np.float32(value))

    # The producers of the converted model's Result nodes (which are dropped).
    outputs = {_name(o): o.get_node().input_value(0) for o in model.outputs}
    scores, boxes = outputs['raw_scores'], outputs[DECODED_BOXES]  # [B, N, C], [B, N, 4]
    num_anchors = int(scores.get_partial_shape()[1].get_length())
    num_fg = card.num_classes - 1
    k = post_processing.candidates_per_class(card.detection.top_k, num_anchors)
    total = post_processing.output_size(card.detection.keep_top_k, k, num_fg)
    batch = ops.gather(ops.shape_of(scores, 'i64'), i64([0]), i64(0))  # [1]

    def gather_rows(data, rows, index):
        """data [B, rows, 4], index int32 [B, J] -> [B, J, 4], by a plain Gather of the flattened
        data: the CPU plugin's batch_dims Gather crashes on a static batch (openvino 2026.4)."""
        first = ops.multiply(
            ops.range(
                ops.constant(np.int32(0)),
                ops.convert(ops.squeeze(batch, i64(0)), 'i32'),
                ops.constant(np.int32(1)),
                'i32',
            ),
            ops.constant(np.int32(rows)),
        )
        return ops.gather(
            ops.reshape(data, i64([-1, 4]), False),
            ops.add(index, ops.unsqueeze(first, i64(1))),
            ops.constant(np.int32(0)),
        )

    # Per image and foreground class, its k best anchors (`post_processing.class_candidates`).
    class_scores = ops.reshape(
        ops.transpose(
            ops.slice(scores, i64([1]), i64([num_fg + 1]), i64([1]), i64([2])), i64([0, 2, 1])
        ),
        i64([-1, num_anchors]),
        False,
    )  # [B*(C-1), N]
    candidates = ops.topk(
        class_scores, i64(k), axis=1, mode='max', sort='value', index_element_type='i32'
    )
    candidate_scores = candidates.output(0)  # [B*(C-1), k]
    candidate_boxes = ops.reshape(
        gather_rows(
            boxes,
            num_anchors,
            ops.reshape(candidates.output(1), ops.concat([batch, i64([-1])], 0), False),
        ),
        i64([-1, k, 4]),
        False,
    )  # [B*(C-1), k, 4]
    # Every (image, class) pair is one NMS "batch" of its own k candidates.
    nms = ops.non_max_suppression(
        candidate_boxes,
        ops.unsqueeze(candidate_scores, i64(1)),
        i64(k),
        f32(card.detection.nms_threshold),
        f32(card.detection.select_threshold),
        f32(0.0),
        box_encoding='corner',
        sort_result_descending=False,
        output_type='i64',
    )
    valid = nms.output(2)
    selected = ops.slice(nms.output(0), i64([0]), valid, i64([1]))  # [M, 3]
    kept_scores = ops.slice(nms.output(1), i64([0]), valid, i64([1]))  # [M, 3]
    dense = ops.broadcast(f32(-1.0), ops.shape_of(candidate_scores, 'i64'))
    dense = ops.scatter_nd_update(
        dense, ops.gather(selected, i64([0, 2]), i64(1)), ops.gather(kept_scores, i64(2), i64(1))
    )
    flat_scores = ops.reshape(dense, ops.concat([batch, i64([num_fg * k])], 0), False)
    flat_boxes = ops.reshape(candidate_boxes, ops.concat([batch, i64([num_fg * k, 4])], 0), False)
    if total > num_fg * k:  # keep_top_k beyond every candidate: padding rows.
        extra = total - num_fg * k
        flat_scores = ops.pad(flat_scores, i64([0, 0]), i64([0, extra]), 'constant', f32(-1.0))
        flat_boxes = ops.pad(flat_boxes, i64([0, 0, 0]), i64([0, extra, 0]), 'constant', f32(0.0))
    top = ops.topk(
        flat_scores, i64(total), axis=1, mode='max', sort='value', index_element_type='i32'
    )
    top_scores, order = top.output(0), top.output(1)
    is_valid = ops.greater_equal(top_scores, f32(0.0))
    det_scores = ops.select(is_valid, top_scores, f32(0.0))
    det_boxes = ops.select(
        ops.unsqueeze(is_valid, i64(2)),
        gather_rows(flat_boxes, max(total, num_fg * k), order),
        f32(0.0),
    )
    classes = ops.add(ops.divide(order, ops.constant(np.int32(k))), ops.constant(np.int32(1)))
    det_classes = ops.select(is_valid, classes, ops.constant(np.int32(0)))
    num = ops.reduce_sum(ops.convert(is_valid, 'i32'), i64(1), False)
    results = []
    for name, output in (
        ('detection_boxes', det_boxes.output(0)),
        ('detection_scores', det_scores.output(0)),
        ('detection_classes', det_classes.output(0)),
        ('num_detections', num.output(0)),
        ('raw_localisations', outputs['raw_localisations']),
        ('raw_scores', scores),
    ):
        output.get_tensor().set_names({name})
        result = ops.result(output)
        result.set_friendly_name(name)
        results.append(result)
    return ov.Model(results, model.get_parameters(), 'ssd_detection')


def convert(card, checkpoint_path, fixed_size=False):
    """The `ov.Model` of a checkpoint (see the module docstring; `fixed_size`: its input the
    net's input size only, `[?, h, w, 3]`, as the other formats' with --fixed_size)."""
    ov = openvino_runtime.load()
    # The frozen graph holds only what its outputs need (`detection.freeze`).
    converted = ov.convert_model(frozen_tf_graph(card, checkpoint_path, fixed_size))
    for parameter in converted.get_parameters():
        name = _name(parameter.output(0))
        parameter.set_friendly_name(name)
        parameter.output(0).get_tensor().set_names({name})
    return _append_nms(ov, converted, card)


def save(model, path, meta):
    """Writes `path` (.xml) and its .bin, `meta` (the metadata JSON) in its runtime info; the
    IR is written in a temporary folder beside `path` (atomic_io's names: a killed export's is
    removed by the next) and each file renamed into place, the .bin first."""
    ov = openvino_runtime.load()
    model.set_rt_info(json.dumps(meta, sort_keys=True), openvino_runtime.CARD_RT_INFO)
    stem = os.path.splitext(path)[0]
    with atomic_io.temp_dir(path) as temp_dir:
        temp = os.path.join(temp_dir, os.path.basename(stem))
        ov.save_model(model, temp + '.xml', compress_to_fp16=False)
        for ext in ('.bin', '.xml'):
            atomic_io.fsync_file(temp + ext)
            atomic_io.replace(temp + ext, stem + ext)


def quantize(model, calibration_images):
    """The int8 `ov.Model` of `model` (see INT8_SCHEME), calibrated on `calibration_images`
    (uint8 RGB `[H, W, 3]`, any sizes, each run as a batch of one)."""
    import nncf  # Lazy: only int8 exports need it.

    dataset = nncf.Dataset(list(calibration_images), lambda image: {detection.INPUT: image[None]})
    with signals.kept_signal_stack():  # NNCF compiles models too (`openvino_runtime.compile_model`)
        return nncf.quantize(
            model,
            dataset,
            preset=nncf.QuantizationPreset.MIXED,
            subset_size=len(calibration_images),
        )


def write(card, checkpoint_path, paths, meta, calibration_images=None, fixed_size=False):
    """Converts the checkpoint once and writes the IRs asked for (see `save`).

    paths: {'openvino': .xml path, 'openvino_int8': .xml path}, either or both; the int8 IR
    needs `calibration_images` (see `quantize`; of the net's input size with `fixed_size`).
    Returns `paths`."""
    model = convert(card, checkpoint_path, fixed_size)
    if 'openvino' in paths:
        save(model, paths['openvino'], meta)
    if 'openvino_int8' in paths:
        save(quantize(model, calibration_images), paths['openvino_int8'], meta)
    return paths


# ---------------------------------------------------------------------------------------------
# The runtime.


def load_metadata(path, model=None):
    """The metadata dict of an IR: `metadata.json` beside it, else the IR's runtime info (see
    `_metadata`)."""
    return _metadata(path, model)[0]


def _metadata(path, model=None):
    """(metadata dict, its metadata.json or `path` where it is the IR's own card, note or None)
    of the IR `path` (`model`: its `ov.Model`, if read): `card.resolve_export_metadata` of its
    .xml and .bin and the card in its runtime info."""
    weights = os.path.splitext(path)[0] + '.bin'
    files = [f for f in (path, weights) if os.path.lexists(f)]
    return card_lib.resolve_export_metadata(
        path,
        lambda: None if model is None else openvino_runtime.rt_info_metadata(model),
        'IR',
        files=files or None,
    )


class OpenVINODetector:
    """An OpenVINO IR of `export_ssd_network.py --formats=openvino` on the CPU plugin.

    Same interface as `detection.Detector`: `card`, `card_source`, `note`, `fixed_size`,
    `run(images, outputs)`, `run_padded`, `detect(images)`, `close`, a context manager. The model
    takes images of one size per call: a list of images of any sizes is run in groups of one size
    (one infer request each, in parallel with `num_requests` > 1), and the outputs are put back in
    order.
    An IR exported with --fixed_size takes its size only (`fixed_size`; others: ValueError).

    Args:
      path: the `.xml` file (its `.bin` and `metadata.json` beside it; a metadata.json that
        does not describe it is refused, `_metadata`).
      precision: 'fp32' or 'bf16' (see the module docstring); `self.precision` is what
        OpenVINO compiled ('fp32' or 'bf16'), `self.matrix_units` the CPU's units.
      num_threads: CPU threads (None: OpenVINO's choice, all cores).
      num_requests: 1 (default): one request, the latency hint; more: that many requests and
        streams (the throughput hint), the size groups of a call run concurrently; 0: the
        throughput hint with OpenVINO's number of streams and requests for this CPU (use it
        for evaluation: measured 2x the images/s of one request on 2 cores, batches of 8
        images of different sizes). With one request, the batch shapes that recur (a video,
        a camera) run on models compiled for them (see STATIC_AFTER; `static_shapes` lists
        them), with the same outputs.
    """

    def __init__(self, path, precision='fp32', num_threads=None, num_requests=1):
        config = openvino_runtime.compile_config(precision, num_threads, num_requests)
        ov = openvino_runtime.load()
        self.core = ov.Core()
        model = openvino_runtime.read_ir(self.core, path)
        meta, self.card_source, self.note = _metadata(path, model)
        names = {n for o in model.outputs for n in o.get_names()}
        missing = sorted(set(detection.DETECTION_OUTPUTS) - names)
        if missing:
            raise ValueError(
                f'{path}: no output(s) {missing} (outputs: {sorted(names)}); export '
                f'it with export_ssd_network.py --formats=openvino.'
            )
        scores = next((o for o in model.outputs if 'raw_scores' in o.get_names()), None)
        score_dims = (
            None if scores is None else openvino_runtime.static_dims(scores.get_partial_shape())
        )
        # OpenVINO computes in the precision chosen here, whatever the exported card says.
        self.card = card_lib.from_dict(meta, self.card_source).replace(compute_dtype='float32')
        if score_dims is not None:  # a metadata.json beside it, or the IR's own card
            card_lib.check_model_outputs(meta, self.card_source, path, score_dims, self.card)
        # (height, width) of an IR exported with --fixed_size (its input's static size), else None.
        self.fixed_size = detection.fixed_input_size(
            openvino_runtime.static_dims(model.input(0).get_partial_shape())
        )
        # Of metadata.json beside the IR, or of the card in its runtime info.
        self.export_step = card_lib.export_step(meta, self.card_source)
        self.path = path
        self.requested_precision = precision
        self.model, self.config = model, config
        try:
            self.compiled = openvino_runtime.compile_model(self.core, model, config)
        except RuntimeError as err:
            raise ValueError(
                f'{path}: OpenVINO cannot compile it ({openvino_runtime.reason(err)}); export it with '
                f'export_ssd_network.py --formats=openvino.'
            ) from None
        self.precision = openvino_runtime.compiled_precision(self.compiled)
        # An openvino_int8 IR: its convolutions run in int8 whatever `precision` says.
        self.int8 = any(op.get_type_name() == 'FakeQuantize' for op in model.get_ops())
        self.matrix_units = openvino_runtime.cpu_matrix_units()['summary']
        if num_requests == 0:
            num_requests = int(self.compiled.get_property('OPTIMAL_NUMBER_OF_INFER_REQUESTS'))
        self.num_requests = num_requests
        self.requests = [self.compiled.create_infer_request() for _ in range(num_requests)]
        # OpenVINO's first numpy view of a tensor initialises its bindings' numpy statics; two
        # requests making it at once from the pool's threads deadlocked (one holding the GIL
        # and waiting for the static's guard, the other initialising it and waiting for the
        # GIL; openvino 2026.4, about 1 run in 12), so it is made here, in one thread.
        ov.Tensor(np.zeros(1, np.uint8)).data
        self._free = queue.SimpleQueue()
        for request in self.requests:
            self._free.put(request)
        self._pool = (
            futures.ThreadPoolExecutor(num_requests, 'openvino') if num_requests > 1 else None
        )
        self._shape_counts = collections.Counter()
        self._static = {}  # batch shape -> the request of the model compiled for it

    @property
    def static_shapes(self):
        """The batch shapes that have a model compiled for them, in the order compiled."""
        return list(self._static)

    def _static_request(self, shape):
        """The request of `shape`'s own compiled model, compiled when `shape` comes the
        STATIC_AFTER-th time while fewer than STATIC_SHAPES are compiled; None otherwise (and
        with several requests: the throughput hint keeps one model for every shape)."""
        if self.num_requests > 1:
            return None
        request = self._static.get(shape)
        if request is not None or len(self._static) >= STATIC_SHAPES:
            return request
        if len(self._shape_counts) > 1000:  # a stream of ever new sizes: forget the old ones
            self._shape_counts.clear()
        self._shape_counts[shape] += 1
        if self._shape_counts[shape] < STATIC_AFTER:
            return None
        model = self.model.clone()
        model.reshape({detection.INPUT: list(shape)})
        request = openvino_runtime.compile_model(
            self.core, model, self.config
        ).create_infer_request()
        self._static[shape] = request
        return request

    def run(self, images, outputs=detection.DETECTION_OUTPUTS):
        """Batched outputs (numpy, the frozen graph's) for a list of uint8 RGB images
        `[H_i, W_i, 3]` of any sizes (anything else: ValueError, `detection.check_images`)."""
        detection.check_images(images, self.path)
        return self._run(images, outputs)

    def _run(self, images, outputs):
        """`run` of checked images (checked once per call, by `run` or `run_padded`)."""
        detection.check_fixed_size([im.shape[:2] for im in images], self.fixed_size, self.path)
        groups = {}
        for i, image in enumerate(images):
            groups.setdefault(image.shape, []).append(i)
        batches = [
            np.stack([images[i] for i in indices]) if len(indices) > 1 else images[indices[0]][None]
            for indices in groups.values()
        ]
        results = self._infer(batches, outputs)
        if len(results) == 1:  # one size: the images are in order already
            return results[0]
        merged = {}
        for name in outputs:
            first = results[0][name]
            merged[name] = np.empty((len(images),) + first.shape[1:], first.dtype)
            for indices, result in zip(groups.values(), results):
                merged[name][indices] = result[name]
        return merged

    def run_padded(self, batch, sizes, outputs=detection.DETECTION_OUTPUTS):
        """Outputs for a zero-padded uint8 batch `[B, H, W, 3]` and its int32 sizes `[B, 2]`
        (the interface of `detection.Detector.run_padded`)."""
        detection.check_images(batch, self.path, padded=True)
        detection.check_padded_sizes(batch, sizes, self.path)
        return self._run([image[:h, :w] for image, (h, w) in zip(batch, sizes)], outputs)

    def _infer(self, batches, outputs):
        """The outputs of each batch, in order: with several requests, the batches run in
        `num_requests` threads, each taking the next batch and a free request (a blocking
        `infer`, which releases the GIL).

        No Python callback is handed to OpenVINO: its stream threads would need the GIL to run
        or release one, and closing the model while one was pending deadlocked (a stream thread
        waiting for the GIL, the closing thread holding it while joining that thread;
        openvino 2026.4, AsyncInferQueue)."""

        def run(batch):
            request = self._free.get()
            try:
                # Holding the free request serialises the calls of other threads too.
                target = self._static_request(batch.shape) or request
                # A synchronous call: OpenVINO can read the batch in place instead of copying it.
                target.infer({detection.INPUT: batch}, share_inputs=True)
                result = {k: target.get_tensor(k).data.copy() for k in outputs}
            finally:
                self._free.put(request)
            detection.check_outputs(result, len(batch), self.path, self.card.num_classes)
            return result

        try:
            if self._pool is None or len(batches) == 1:
                return [run(batch) for batch in batches]
            return list(self._pool.map(run, batches))
        except RuntimeError as err:  # OpenVINO's errors (compiling a shape, inferring)
            shapes = [list(batch.shape) for batch in batches]
            raise detection.ModelRunError(
                f'{self.path}: OpenVINO failed running the model on batches of shapes {shapes} '
                f'({openvino_runtime.reason(err)}).'
            ) from None

    def detect(self, images):
        return detection.split_detections(self.run(images))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
        self.requests, self.compiled, self._pool = [], None, None
        self._static.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
