"""OpenVINO: the export (our TF graph converted to an OpenVINO IR, NMS appended) and its runtime.

The IR (`model_openvino.xml` + `.bin`) has the frozen graph's interface and semantics:
  inputs   `images` uint8 `[B, H, W, 3]` RGB (B, H, W free) and `image_sizes` int32 `[B, 2]`
           (height, width of each image's valid top-left part; `[[H, W]] * B` for a batch of
           one size; `detection.pad_batch` makes both from a list of images);
  outputs  `detection_boxes` float32 `[B, K, 4]` relative `[ymin, xmin, ymax, xmax]`,
           `detection_scores` float32 `[B, K]`, `detection_classes` int32 `[B, K]` (0 in padding
           rows), `num_detections` int32 `[B]`, `raw_localisations` `[B, N, 4]`, `raw_scores`
           `[B, N, C]` (see inference/detection.py); K = the card's `keep_top_k`.

How it is built (`convert`):
  1. A TF graph (`build_candidates_graph`): the evaluation preprocessing of every image of the
     padded batch at once (`preprocess_padded`: normalisation, then TF's bilinear warp resize of
     each image's valid part written with gathers, so no per-image loop; equal to
     `tf.image.resize` to float rounding), the net in float32, box decoding and the per-class
     `top_k` candidates (`post_processing.class_candidates`), frozen with the checkpoint and
     converted by `openvino.convert_model` (every op has a conversion rule; TF's
     CombinedNonMaxSuppression has none).
  2. Appended with OpenVINO ops (`_append_nms`): NonMaxSuppression-9 over every (image, class)
     pair as one batch (its own `top_k` candidate boxes, IoU > `nms_threshold` suppressed, score
     > `select_threshold`), the kept scores scattered into a dense `[B, (C-1) * k]` map (-1
     elsewhere), TopK (stable) of `keep_top_k` of it per image, and the boxes / classes of the
     winners: Caffe DetectionOutput as `post_processing.detected_bboxes`, fixed-size outputs.
The model card travels in the IR's runtime info (`model_card`, JSON) and as `metadata.json`
beside it.

Precision is chosen when the model is loaded (`OpenVINODetector(precision=...)`): 'fp32', or
'bf16' (OpenVINO's INFERENCE_PRECISION_HINT; the CPU plugin computes the net in bfloat16 where
the CPU has bf16 instructions, AVX-512 BF16 or AMX; on other CPUs OpenVINO keeps float32, and
`OpenVINODetector.precision` / `.matrix_units` say what ran).

`openvino` is imported only here and only when a function needs it: TF-only users never load it.
"""

import json
import os

import numpy as np
import tensorflow as tf
import tf_slim as slim

from inference import detection
from model import card as card_lib
from nets import post_processing
from nets import ssd_common
from preprocessing import geometry

v1 = tf.compat.v1

FILE = 'model_openvino.xml'
BIN_FILE = 'model_openvino.bin'
CANDIDATE_SCORES = 'candidate_scores'
CANDIDATE_BOXES = 'candidate_boxes'
CARD_RT_INFO = 'model_card'
# --precision values -> OpenVINO's INFERENCE_PRECISION_HINT.
PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16'}
INPUT_SIZE_NOTE = (
    'images uint8 [B, H, W, 3] RGB zero-padded at the bottom/right + image_sizes '
    'int32 [B, 2] (height, width of each); the model warp-resizes each image itself'
)


def openvino_version():
    """The installed openvino package's version (package metadata: no import), or None."""
    import importlib.metadata

    try:
        return importlib.metadata.version('openvino')
    except importlib.metadata.PackageNotFoundError:
        return None


def metadata():
    """The 'openvino' section of an export's metadata.json."""
    return {
        'files': [FILE, BIN_FILE],
        'openvino_version': openvino_version(),
        'inputs': INPUT_SIZE_NOTE,
        'precisions': 'chosen when loaded: fp32, or bf16 (INFERENCE_PRECISION_HINT) on CPUs '
        'with AVX-512 BF16 or AMX',
        'post_processing': 'decode and per-class top_k converted from TF; NMS as OpenVINO '
        'NonMaxSuppression-9 per (image, class), then keep_top_k by TopK',
    }


def _openvino():
    try:
        import openvino
    except ImportError as err:
        raise ImportError(
            'The OpenVINO export and runtime need the openvino package (pinned in '
            'requirements.txt): pip install -r requirements.txt'
        ) from err
    return openvino


# ---------------------------------------------------------------------------------------------
# The TF part.


def resize_bilinear_padded(images, sizes, out_shape):
    """TF's bilinear resize (`tf.image.resize`, half-pixel centres, no antialiasing) of the valid
    top-left part of every image of a padded batch, with gathers (no per-image loop).

    Args:
      images: float32 `[B, H, W, C]`; sizes: int32 `[B, 2]` (height, width) of each valid part.
      out_shape: (height, width) of the output.
    Returns:
      float32 `[B, out_h, out_w, C]`. TF's kernel, term for term: source coordinate
      `(i + 0.5) * (in / out) - 0.5`, lower = max(floor, 0), upper = min(ceil, in - 1), lerp =
      coordinate - floor; top = tl + (tr - tl) * x_lerp, bottom likewise, then
      top + (bottom - top) * y_lerp.
    """

    def axis_weights(in_size, out_size):
        scale = tf.cast(in_size, tf.float32)[:, None] / float(out_size)  # [B, 1]
        coord = (tf.range(out_size, dtype=tf.float32)[None] + 0.5) * scale - 0.5  # [B, out]
        floor = tf.floor(coord)
        lower = tf.maximum(tf.cast(floor, tf.int32), 0)
        upper = tf.minimum(tf.cast(tf.math.ceil(coord), tf.int32), in_size[:, None] - 1)
        return lower, upper, coord - floor

    top, bottom, y_lerp = axis_weights(sizes[:, 0], out_shape[0])
    left, right, x_lerp = axis_weights(sizes[:, 1], out_shape[1])
    # One gather per corner from the flattened batch: OpenVINO's TF frontend crashes converting a
    # convolution fed by batch_dims gathers (openvino 2026.4), not by plain ones.
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    flat = tf.reshape(images, [-1, shape[3]])
    base = tf.range(shape[0])[:, None, None] * (height * width)

    def corner(rows, cols):
        index = base + rows[:, :, None] * width + cols[:, None, :]  # [B, out_h, out_w]
        return tf.gather(flat, index)  # [B, out_h, out_w, C]

    x_lerp = x_lerp[:, None, :, None]
    top_left, top_right = corner(top, left), corner(top, right)
    bottom_left, bottom_right = corner(bottom, left), corner(bottom, right)
    top_values = top_left + (top_right - top_left) * x_lerp
    bottom_values = bottom_left + (bottom_right - bottom_left) * x_lerp
    return top_values + (bottom_values - top_values) * y_lerp[:, :, None, None]


def preprocess_padded(images, sizes, card):
    """uint8 `[B, H, W, 3]` padded batch + int32 `[B, 2]` sizes -> the net's float32 input: the
    evaluation preprocessing (`preprocess_for_eval`, WARP_RESIZE, bilinear) of every image:
    normalise, warp-resize the valid part, clip."""
    pipeline = card.preprocessing()
    image = geometry.normalize(images, pipeline.mean_rgb, pipeline.scale)
    image = resize_bilinear_padded(image, sizes, card.input_shape)
    return geometry.clip_normalized(image, pipeline.mean_rgb, pipeline.scale)


def build_candidates_graph(card):
    """The TF part of the OpenVINO model in the default graph (float32 net, any batch and size).

    Returns:
      GraphEndpoints: inputs `images`, `image_sizes`; outputs `candidate_scores` float32
      `[B, C-1, k]` (per class, the `top_k` best anchors' scores, decreasing),
      `candidate_boxes` float32 `[B, C-1, k, 4]` (their decoded boxes), `raw_localisations`,
      `raw_scores`.
    """
    images = v1.placeholder(tf.uint8, [None, None, None, 3], name=detection.INPUT)
    sizes = v1.placeholder(tf.int32, [None, 2], name=detection.SIZES)
    net = card.net()
    with slim.arg_scope(net.arg_scope(weight_decay=0.0)):
        predictions, localisations = net.predict(preprocess_padded(images, sizes, card), 'float32')
    scores = ssd_common.flatten_layers(predictions)
    codes = ssd_common.flatten_layers(localisations)
    boxes = post_processing.decode_boxes(
        codes, net.anchors(), card.detection.clip, net.params.prior_scaling
    )
    candidate_scores, candidate_boxes = post_processing.class_candidates(
        scores, boxes, card.detection.top_k
    )
    tensors = {
        CANDIDATE_SCORES: candidate_scores,
        CANDIDATE_BOXES: candidate_boxes,
        'raw_localisations': codes,
        'raw_scores': scores,
    }
    outputs = {name: tf.identity(t, name=name) for name, t in tensors.items()}
    return detection.GraphEndpoints({detection.INPUT: images, detection.SIZES: sizes}, outputs)


def frozen_candidates_graph(card, checkpoint_path):
    """GraphDef of `build_candidates_graph` with the checkpoint's values as constants."""
    graph = tf.Graph()
    with graph.as_default():
        endpoints = build_candidates_graph(card)
        with v1.Session(graph=graph) as sess:
            detection.restore_variables(sess, checkpoint_path)
            return v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), list(endpoints.outputs)
            )


# ---------------------------------------------------------------------------------------------
# The OpenVINO part.


def _name(output):
    """The TF name of a converted model's input or output (its node's, without ':0'; the tensor
    also carries the names of the ops it aliases)."""
    return output.get_node().get_friendly_name().split(':')[0]


def _append_nms(ov, model, card):
    """`model` (the converted candidates graph) with NMS and keep_top_k appended: a new
    `ov.Model` with the outputs of the module docstring."""
    ops = ov.opset13
    # The producers of the converted model's Result nodes (which are dropped).
    outputs = {_name(o): o.get_node().input_value(0) for o in model.outputs}
    scores, boxes = outputs[CANDIDATE_SCORES], outputs[CANDIDATE_BOXES]
    num_fg = card.num_classes - 1
    k = int(scores.get_partial_shape()[2].get_length())
    total = post_processing.output_size(card.detection.keep_top_k, k, num_fg)

    def i64(values):
        return ops.constant(np.array(values, np.int64))

    batch = ops.gather(ops.shape_of(scores, 'i64'), i64([0]), i64(0))  # [1]
    # Every (image, class) pair is one NMS "batch" of its own k candidates.
    nms = ops.non_max_suppression(
        ops.reshape(boxes, i64([-1, k, 4]), False),
        ops.reshape(scores, i64([-1, 1, k]), False),
        i64(k),
        ops.constant(np.float32(card.detection.nms_threshold)),
        ops.constant(np.float32(card.detection.select_threshold)),
        ops.constant(np.float32(0.0)),
        box_encoding='corner',
        sort_result_descending=False,
        output_type='i64',
    )
    valid = nms.output(2)
    selected = ops.slice(nms.output(0), i64([0]), valid, i64([1]))  # [M, 3]
    kept_scores = ops.slice(nms.output(1), i64([0]), valid, i64([1]))  # [M, 3]
    dense = ops.broadcast(
        ops.constant(np.float32(-1.0)),
        ops.concat([ops.multiply(batch, i64([num_fg])), i64([k])], 0),
    )
    dense = ops.scatter_nd_update(
        dense, ops.gather(selected, i64([0, 2]), i64(1)), ops.gather(kept_scores, i64(2), i64(1))
    )
    flat_scores = ops.reshape(dense, ops.concat([batch, i64([num_fg * k])], 0), False)
    flat_boxes = ops.reshape(boxes, ops.concat([batch, i64([num_fg * k, 4])], 0), False)
    if total > num_fg * k:  # keep_top_k beyond every candidate: padding rows.
        extra = total - num_fg * k
        flat_scores = ops.pad(
            flat_scores, i64([0, 0]), i64([0, extra]), 'constant', ops.constant(np.float32(-1.0))
        )
        flat_boxes = ops.pad(
            flat_boxes,
            i64([0, 0, 0]),
            i64([0, extra, 0]),
            'constant',
            ops.constant(np.float32(0.0)),
        )
    top = ops.topk(
        flat_scores,
        i64(total),
        axis=1,
        mode='max',
        sort='value',
        index_element_type='i32',
        stable=True,
    )
    top_scores, order = top.output(0), top.output(1)
    is_valid = ops.greater_equal(top_scores, ops.constant(np.float32(0.0)))

    def zero(dtype):
        return ops.constant(np.array(0, dtype))

    det_scores = ops.select(is_valid, top_scores, zero(np.float32))
    det_boxes = ops.select(
        ops.unsqueeze(is_valid, i64(2)),
        ops.gather(flat_boxes, order, ops.constant(np.int32(1)), batch_dims=1),
        zero(np.float32),
    )
    classes = ops.add(ops.divide(order, ops.constant(np.int32(k))), ops.constant(np.int32(1)))
    det_classes = ops.select(is_valid, classes, zero(np.int32))
    num = ops.reduce_sum(ops.convert(is_valid, 'i32'), i64(1), False)
    results = []
    for name, node in (
        ('detection_boxes', det_boxes),
        ('detection_scores', det_scores),
        ('detection_classes', det_classes),
        ('num_detections', num),
        ('raw_localisations', outputs['raw_localisations']),
        ('raw_scores', outputs['raw_scores']),
    ):
        output = (
            node.output(0) if hasattr(node, 'output') and not isinstance(node, ov.Output) else node
        )
        output.get_tensor().set_names({name})
        result = ops.result(output)
        result.set_friendly_name(name)
        results.append(result)
    return ov.Model(results, model.get_parameters(), 'ssd_detection')


def convert(card, checkpoint_path):
    """The `ov.Model` of a checkpoint (see the module docstring); the card in its rt_info."""
    ov = _openvino()
    graph_def = frozen_candidates_graph(card, checkpoint_path)
    # The frozen graph holds only what its four outputs need (convert_variables_to_constants).
    converted = ov.convert_model(graph_def)
    for parameter in converted.get_parameters():
        name = _name(parameter.output(0))
        parameter.set_friendly_name(name)
        parameter.output(0).get_tensor().set_names({name})
    model = _append_nms(ov, converted, card)
    return model


def save(model, path, meta):
    """Writes `path` (.xml) and its .bin, `meta` (the metadata JSON) in its runtime info; the
    IR is written under temporary names and renamed into place."""
    ov = _openvino()
    model.set_rt_info(json.dumps(meta, sort_keys=True), CARD_RT_INFO)
    stem = os.path.splitext(path)[0]
    temp = f'{stem}.tmp{os.getpid()}'
    ov.save_model(model, temp + '.xml', compress_to_fp16=False)
    os.replace(temp + '.bin', stem + '.bin')
    os.replace(temp + '.xml', stem + '.xml')


def write(card, checkpoint_path, path, meta):
    """Converts the checkpoint and writes the IR to `path` (see `save`); returns `path`."""
    save(convert(card, checkpoint_path), path, meta)
    return path


# ---------------------------------------------------------------------------------------------
# The runtime.


def cpu_matrix_units():
    """The CPU's bf16 / int8 matrix and vector units as OpenVINO and /proc/cpuinfo see them:
    {'openvino_capabilities': [...], 'cpu_flags': [...], 'summary': str}."""
    flags = set()
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            line = next((line for line in f if line.startswith('flags')), '')
        flags = set(line.split(':', 1)[-1].split())
    except OSError:
        pass
    wanted = (
        'amx_bf16',
        'amx_int8',
        'amx_tile',
        'avx512_bf16',
        'avx512_vnni',
        'avx512f',
        'avx_vnni',
        'avx2',
    )
    found = [f for f in wanted if f in flags]
    try:
        capabilities = list(_openvino().Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))
    except Exception:  # noqa: BLE001 - no openvino or no CPU plugin: report what cpuinfo says.
        capabilities = []
    if 'amx_bf16' in flags:
        summary = 'AMX (bf16 matrix units)'
    elif 'avx512_bf16' in flags:
        summary = 'AVX-512 BF16 (no AMX)'
    elif 'avx512f' in flags:
        summary = 'AVX-512, no bf16 instructions'
    else:
        summary = (
            'AVX2 only: no AVX-512, no bf16 instructions, no AMX' if 'avx2' in flags else 'no AVX2'
        )
    return {'openvino_capabilities': capabilities, 'cpu_flags': found, 'summary': summary}


def load_metadata(path, model=None):
    """The metadata dict of an IR: `metadata.json` beside it, else the IR's runtime info."""
    beside = os.path.join(os.path.dirname(os.path.abspath(path)), detection.METADATA_FILE)
    if os.path.isfile(beside):
        with open(beside, encoding='utf-8') as f:
            return json.load(f)
    if model is not None and model.has_rt_info(CARD_RT_INFO):
        return json.loads(model.get_rt_info(CARD_RT_INFO).astype(str))
    raise FileNotFoundError(
        f'{path}: no {detection.METADATA_FILE} beside it and no model card in '
        f'the IR; export it with export_ssd_network.py --formats=openvino.'
    )


class OpenVINODetector:
    """An OpenVINO IR of `export_ssd_network.py --formats=openvino` on the CPU plugin.

    Same interface as `detection.Detector`: `card`, `run(images, outputs)`, `detect(images)`,
    `close`, a context manager; images of any sizes in one call (padded, `image_sizes`).

    Args:
      path: the `.xml` file (its `.bin` and `metadata.json` beside it).
      precision: 'fp32' or 'bf16' (see the module docstring); `self.precision` is what
        OpenVINO compiled ('f32' or 'bf16'), `self.matrix_units` the CPU's units.
      num_threads: CPU threads (None: OpenVINO's choice).
      num_requests: infer requests for `run_async` pipelines (1 stream per request).
    """

    def __init__(self, path, precision='fp32', num_threads=None, num_requests=1):
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {sorted(PRECISIONS)}; got {precision!r}.')
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path}: no such OpenVINO model (.xml).')
        ov = _openvino()
        self.core = ov.Core()
        model = self.core.read_model(path)
        meta = load_metadata(path, model)
        names = {n for o in model.outputs for n in o.get_names()}
        missing = sorted(set(detection.DETECTION_OUTPUTS) - names)
        if missing:
            raise ValueError(
                f'{path}: no output(s) {missing} (outputs: {sorted(names)}); export '
                f'it with export_ssd_network.py --formats=openvino.'
            )
        # OpenVINO computes in the precision chosen here, whatever the exported card says.
        self.card = card_lib.from_dict(meta, path).replace(compute_dtype='float32')
        self.path = path
        self.requested_precision = precision
        config = {
            'INFERENCE_PRECISION_HINT': PRECISIONS[precision],
            'PERFORMANCE_HINT': 'LATENCY' if num_requests == 1 else 'THROUGHPUT',
        }
        if num_threads:
            config['INFERENCE_NUM_THREADS'] = int(num_threads)
        if num_requests > 1:
            config['NUM_STREAMS'] = int(num_requests)
        self.compiled = self.core.compile_model(model, 'CPU', config)
        # What OpenVINO compiled: 'bf16' only where the CPU has bf16 instructions.
        compiled = self.compiled.get_property('INFERENCE_PRECISION_HINT')
        self.precision = {'f32': 'fp32', 'bf16': 'bf16', 'f16': 'fp16'}.get(
            compiled.to_string(), compiled.to_string()
        )
        self.matrix_units = cpu_matrix_units()['summary']
        self.request = self.compiled.create_infer_request()
        self.num_requests = num_requests

    def run(self, images, outputs=detection.DETECTION_OUTPUTS):
        """Batched outputs (numpy) for a list of uint8 RGB images `[H_i, W_i, 3]`."""
        batch, sizes = detection.pad_batch(images)
        return self.run_padded(batch, sizes, outputs)

    def run_padded(self, batch, sizes, outputs=detection.DETECTION_OUTPUTS, request=None):
        """Outputs for a padded uint8 batch `[B, H, W, 3]` and its int32 sizes `[B, 2]`."""
        request = request or self.request
        request.infer({detection.INPUT: batch, detection.SIZES: sizes.astype(np.int32)})
        return {k: request.get_tensor(k).data.copy() for k in outputs}

    def detect(self, images):
        return detection.split_detections(self.run(images))

    def close(self):
        self.request = self.compiled = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
