"""Evaluation of an exported model (OpenVINO IR, frozen graph, SavedModel, TFLite) on a split.

    detector = inference.detection.open_exported_model('export/model_openvino.xml')
    settings = EvalSettings(card=detector.card, dataset_name='custom', dataset_split_name='test',
                            dataset_dir='tfrecords')
    result = evaluate_exported(settings, detector, 'export/model_openvino.xml', 'eval/openvino')

The detector comes from the caller (evaluation does not import inference, see ARCHITECTURE.md):
anything with `card` and `run_padded(images, image_sizes) -> {'detection_boxes', ...}` (uint8
`[B, H, W, 3]` zero-padded, int32 `[B, 2]` sizes; the outputs of inference/detection.py), and
optionally `fixed_size`: (height, width) of a model exported with --fixed_size, which takes that
size only.

So a user can check that the exported model keeps the checkpoint's mAP: same metrics, same
files and the same `EvalResult` as `evaluate.evaluate_checkpoint` (results.json, results.txt,
devkit results files, COCO JSON, PR curves, TensorBoard scalars), with `checkpoint` naming the
model file and `global_step` the exported checkpoint's step (metadata.json).

The model gets what a user gives it: the decoded uint8 images at their own size (zero-padded into
a batch with their sizes, `input.make_raw_eval_dataset`); it runs the evaluation preprocessing
(warp resize: only `eval_resize='WARP_RESIZE'`), the net and NMS itself, with the detection
settings it was exported with; a TF model runs a batch of too many padded pixels in parts
(`inference.detection.padded_parts`). A model exported with --fixed_size gets each image warped
to its size first (TF bilinear, rounded to uint8: `geometry.warp_resize_uint8`, as its int8
calibration images were), as a device feeding it would; the log says so and results.json's
`exported_model.resized_to` records the size. Its mAP may differ slightly from the checkpoint's,
whose preprocessing resizes without rounding. Three stages overlap (`input.prefetch`): decoding
in a tf.data session, the model, and the metrics in the calling thread.
"""

import contextlib
import dataclasses
import os

import numpy as np
import tensorflow as tf

from evaluation import evaluate
from evaluation import input as eval_input
from model import checkpoints

v1 = tf.compat.v1


def _detection_batches(batches, detector):
    """Adds the detector's outputs to every input batch: `boxes` (relative to the original image,
    clipped to it, as `input.map_to_image` does), `scores`, `labels`, `num_detections`.

    A failing model stops the decoding thread of `batches` before its error leaves here (the
    error's traceback would otherwise keep that thread, and its session, alive)."""
    with contextlib.closing(batches):
        for out in batches:
            images, sizes = out.pop(eval_input.RAW_IMAGES), out.pop(eval_input.RAW_SIZES)
            dets = detector.run_padded(images, sizes)
            out.update(
                boxes=np.clip(dets['detection_boxes'], 0.0, 1.0),
                scores=dets['detection_scores'],
                labels=dets['detection_classes'],
                num_detections=dets['num_detections'],
            )
            yield out


def log_name(model_path, description):
    """What the log calls an evaluated export: `model_path (kind[, precision][, int8
    convolutions][, matrix units])` from `description` (see `evaluate_exported`); the precision
    asked for too where OpenVINO ran another (a CPU without bf16 instructions)."""
    if not description:
        return model_path
    parts = [description['kind']]
    ran, asked = description.get('precision'), description.get('requested_precision')
    if ran:
        parts.append(ran if asked in (None, ran) else f'{ran} ({asked} asked)')
    if description.get('int8'):  # an openvino_int8 IR
        parts.append('int8 convolutions')
    if description.get('matrix_units'):
        parts.append(description['matrix_units'])
    return f'{model_path} ({", ".join(parts)})'


def evaluate_exported(
    settings, detector, model_path, results_dir, summary_dir=None, log=None, description=None
):
    """Evaluates an exported model and writes the outputs of `evaluate.evaluate_checkpoint`.

    Args:
      settings: EvalSettings; the model's own card (its class names, the detection settings it
        was exported with) replaces `settings.card`; batch size, dataset, metrics and threads
        are used.
      detector: the open model (see the module docstring); model_path: its file (for the
        metadata beside it and the records).
      description: a JSON-ready dict describing the run of the model (kind, precision, ...),
        recorded as results.json's 'exported_model'.
    Returns:
      EvalResult (`checkpoint`: the model path, `global_step`: the exported checkpoint's step).
    """
    log = log or (lambda line: print(line, flush=True))
    if settings.eval_resize != 'WARP_RESIZE':
        raise ValueError(
            f'an exported model warp-resizes its images itself; eval_resize '
            f'{settings.eval_resize!r} needs the checkpoint (--checkpoint_path).'
        )
    card = detector.card
    dataset, class_names = evaluate.open_dataset(settings, card)
    evaluate.warn_select_threshold(card, exported=True)
    step = detector.export_step
    described = dict(description or {}, path=os.path.abspath(model_path))
    fixed_size = getattr(detector, 'fixed_size', None)
    if fixed_size is not None:
        height, width = fixed_size
        described['resized_to'] = [height, width]
        log(
            f'note: {model_path} was exported with --fixed_size and takes {height}x{width} '
            f'images only: each image is warped to {height}x{width} first (bilinear, rounded to '
            f'uint8, as a device would feed it); the mAP may differ slightly from the '
            f'checkpoint\'s, whose preprocessing resizes without rounding'
        )

    graph = tf.Graph()
    with graph.as_default():
        batches = eval_input.make_raw_eval_dataset(
            dataset,
            settings.batch_size,
            settings.max_num_batches,
            num_threads=settings.num_threads,
            resize_to=fixed_size,
        )
        batch = v1.data.make_one_shot_iterator(batches).get_next()
        fetches = {
            key: batch[key]
            for key in eval_input.GROUND_TRUTH_KEYS + (eval_input.RAW_IMAGES, eval_input.RAW_SIZES)
        }
        graph.finalize()

    @contextlib.contextmanager
    def open_batches():
        config = checkpoints.session_config(settings.num_threads, settings.gpu_memory_fraction)
        with v1.Session(graph=graph, config=config) as sess:
            # Decoding, the model and the metrics run at the same time. Both threads stop before
            # the session closes, also when the evaluation fails.
            batches = eval_input.prefetch(
                lambda: _detection_batches(
                    eval_input.prefetch(lambda: eval_input.session_batches(sess, fetches)), detector
                )
            )
            with contextlib.closing(batches):
                yield batches

    return evaluate.evaluate_batches(
        dataclasses.replace(settings, card=card),
        dataset,
        class_names,
        open_batches,
        results_dir,
        header=log_name(model_path, description),
        record={'checkpoint': os.path.abspath(model_path), 'exported_model': described},
        checkpoint=model_path,
        step=step,
        summary_dir=summary_dir,
        log=log,
    )
