"""Evaluation input: records -> eval preprocessing -> padded batches, with the original ground truth.

Every batch is a dict:
  image: float32 `[B, H, W, 3]` (or `[B, 3, H, W]` in NCHW), the network input.
  bbox_img: float32 `[B, 4]`, the original image's box in the network-input frame
    (`[ymin, xmin, ymax, xmax]`, relative); `map_to_image` uses it to bring detections back.
  shape: int32 `[B, 3]`, the ORIGINAL image (height, width, channels).
  gt_bboxes: float32 `[B, G, 4]`, ground truth relative to the ORIGINAL image (not the
    preprocessed one: metrics are computed in original pixels).
  gt_labels: int64 `[B, G]`, 0 for padding rows.
  gt_difficult: int64 `[B, G]`, 0/1.
  gt_crowd: int64 `[B, G]`, 0/1, COCO crowd regions (0 for records without the flag).
  num_gt: int32 `[B]`, real rows of the four gt tensors (G is the batch's maximum).
  filename: string `[B]` ('' for records without one); image_id: int64 `[B]` (-1 unless COCO).
  coco_annotations: string `[B]`, the image's original COCO annotations as JSON ('' for records
    without them; see datasets/example_format.py).
The last batch may be smaller than `batch_size` (no example is dropped).
"""

import queue
import threading

import tensorflow as tf

from preprocessing import geometry

# The largest count tf.data takes (int64): more than any split holds, so "all".
_INT64_MAX = 2**63 - 1

# Resize modes that give every image the net's input size (the anchors are fixed to it).
BATCHABLE_RESIZE_MODES = ('WARP_RESIZE', 'PAD_AND_RESIZE', 'CENTRAL_CROP')
# What the metrics read of every batch besides the detections (`evaluate.evaluate_batches`).
GROUND_TRUTH_KEYS = (
    'shape',
    'gt_bboxes',
    'gt_labels',
    'gt_difficult',
    'gt_crowd',
    'num_gt',
    'filename',
    'image_id',
    'coco_annotations',
)


def _ground_truth(example):
    """The `GROUND_TRUTH_KEYS` entries of a batch dict (see the module docstring) of one decoded
    example: the original image's, so the same with or without preprocessing."""
    return {
        'shape': example['shape'],
        'gt_bboxes': tf.cast(example['bboxes'], tf.float32),
        'gt_labels': example['labels'],
        'gt_difficult': example['difficult'],
        'gt_crowd': example['iscrowd'],
        'num_gt': tf.size(example['labels'], out_type=tf.int32),
        'filename': example['filename'],
        'image_id': example['image_id'],
        'coco_annotations': example['coco_annotations'],
    }


def make_eval_dataset(
    dataset,
    preprocessing,
    out_shape,
    batch_size,
    resize='WARP_RESIZE',
    max_num_batches=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    data_format='NHWC',
    num_threads=None,
    skip=0,
):
    """Builds the batched evaluation input (see the module docstring for the batch dict).

    Args:
      dataset: a `datasets.dataset_factory.DetectionDataset`.
      preprocessing: an `SSDPreprocessing` (`preprocessing_factory.get_preprocessing(name)`).
      out_shape: (height, width) of the network input.
      batch_size: images per batch (> 0).
      resize: one of `BATCHABLE_RESIZE_MODES`.
      max_num_batches: evaluate only the first so many batches (None or 0: the whole split).
      num_parallel_calls: parallelism of decoding and preprocessing.
      num_threads: size of a private tf.data thread pool (None: the shared one), so that an
        evaluation beside training does not take every core.
      skip: records to leave out at the start, undecoded (an int or an int64 scalar tensor; a
        multiple of batch_size keeps the batches those of the whole split): the eval input
        cache holds them (`evaluate.CheckpointEvaluator`). max_num_batches counts them.
    Returns:
      tf.data.Dataset of batch dicts, in record order.
    """
    if resize not in BATCHABLE_RESIZE_MODES:
        raise ValueError(
            f'eval_resize must be one of {BATCHABLE_RESIZE_MODES}, got {resize!r}: the '
            f"nets' anchors are fixed to their input size, so every image must be "
            f'resized to {tuple(out_shape)}.'
        )
    _check_counts(batch_size, max_num_batches)

    def prepare(example):
        image, _, _, bbox_img = preprocessing(
            example['image'],
            example['labels'],
            example['bboxes'],
            out_shape,
            is_training=False,
            data_format=data_format,
            resize=resize,
        )
        return {
            'image': image,
            'bbox_img': bbox_img,
            **_ground_truth(example),
        }

    return _padded_batches(
        dataset, prepare, batch_size, max_num_batches, num_parallel_calls, num_threads, skip
    )


def _padded_batches(
    dataset, prepare, batch_size, max_num_batches, num_parallel_calls, num_threads, skip=0
):
    """The split's examples in record order, `prepare`d and padded into batches of `batch_size`
    (the arguments of `make_eval_dataset`)."""
    examples = dataset.make_dataset(shuffle=False, num_parallel_calls=num_parallel_calls, skip=skip)
    if max_num_batches:
        # Counted in examples: the same batches as taking whole batches, with `skip` left out.
        # At most int64's maximum (more than any split: all of it), which --max_num_batches
        # times --batch_size may pass.
        count = min(max_num_batches * batch_size, _INT64_MAX)
        examples = examples.take(tf.maximum(tf.constant(count, tf.int64) - skip, 0))
    batches = examples.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    batches = batches.padded_batch(batch_size, drop_remainder=False)
    batches = batches.prefetch(2)
    options = tf.data.Options()
    # No autotuning: its thread sleeps up to a minute between rounds, and the eval watcher's
    # next evaluation, re-initialising the iterator in its session, waited for it to wake (41.9 s
    # after a 100 s wait for a checkpoint). AUTOTUNE parallelism is then the thread pool's size.
    options.autotune.enabled = False
    if num_threads:
        options.threading.private_threadpool_size = int(num_threads)
    return batches.with_options(options)


def _check_counts(batch_size, max_num_batches):
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
    if max_num_batches is not None and max_num_batches < 0:
        # A negative count took no image at all (an evaluation of nothing).
        raise ValueError(f'max_num_batches must be >= 0 (0 or None: all), got {max_num_batches}.')


def map_to_image(bbox_img, boxes):
    """Detections relative to the network input -> relative to the original image, clipped to it.

    Args:
      bbox_img: float32 `[B, 4]`, the image's box in the network-input frame.
      boxes: float32 `[B, K, 4]` `[ymin, xmin, ymax, xmax]` relative to the network input.
    Returns:
      float32 `[B, K, 4]` relative to the original image, clipped to `[0, 1]` (Caffe clips output
      boxes to the image before scaling them to pixels; a box in the padding of PAD_AND_RESIZE
      would otherwise reach outside the image).
    """
    # `tfe_bboxes.bboxes_resize` per image, broadcast over the batch (no map_fn loop): the same
    # arithmetic, so the same float32 values.
    origin = tf.stack([bbox_img[:, 0], bbox_img[:, 1]] * 2, axis=-1)[:, None]  # [B, 1, 4]
    size = tf.stack(
        [bbox_img[:, 2] - bbox_img[:, 0], bbox_img[:, 3] - bbox_img[:, 1]] * 2, axis=-1
    )[:, None]
    return tf.clip_by_value(tf.math.divide_no_nan(boxes - origin, size), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Exported models: the images as they are (the model preprocesses them).

RAW_IMAGES = 'images'
RAW_SIZES = 'image_sizes'


def make_raw_eval_dataset(
    dataset,
    batch_size,
    max_num_batches=None,
    num_parallel_calls=tf.data.AUTOTUNE,
    num_threads=None,
    resize_to=None,
):
    """The evaluation input of an exported model: decoded images, not preprocessed.

    Every batch is the dict of `make_eval_dataset` without `image` and `bbox_img`, plus
    `images` uint8 `[B, H, W, 3]` (each image at the top left, zero padding to the batch's
    largest height and width) and `image_sizes` int32 `[B, 2]` (height, width of each): the
    inputs of the exported graphs (`inference.detection`), whose detections are relative to the
    whole original image (they warp-resize it). With `resize_to` (height, width), the input
    size of a model exported with --fixed_size, every image is warped to it first
    (`geometry.warp_resize_uint8`): its detections stay relative to the whole image, and the
    ground truth is the original image's.
    """
    _check_counts(batch_size, max_num_batches)

    def prepare(example):
        image, size = example['image'], example['shape'][:2]
        if resize_to is not None:
            image = geometry.warp_resize_uint8(image, resize_to)
            size = tf.constant(resize_to, size.dtype)
        return {RAW_IMAGES: image, RAW_SIZES: size, **_ground_truth(example)}

    return _padded_batches(
        dataset, prepare, batch_size, max_num_batches, num_parallel_calls, num_threads
    )


# ---------------------------------------------------------------------------------------------
# Running it: stages in threads, so that the net never waits for Python.


class _Failed:
    def __init__(self, error):
        self.error = error


_DONE = object()


def prefetch(make_iterator, depth=2):
    """Iterates `make_iterator()` in a background thread, up to `depth` items ahead.

    The items come in order; an exception of the iterator is raised here, by the consumer. Use it
    for stages that release the GIL (a `Session.run`, an OpenVINO inference): the consumer's
    Python work (metrics, results files) then overlaps them instead of adding to them. Leaving
    the loop early (break, exception) stops the thread after its current item.
    """
    items = queue.Queue(maxsize=max(int(depth), 1))
    stop = threading.Event()

    def put(item):
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in make_iterator():
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, raised there.
            put(_Failed(err))

    thread = threading.Thread(target=work, name='eval-prefetch', daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def session_batches(sess, fetches, feed_dict=None):
    """`sess.run(fetches)` until the input is exhausted (OutOfRangeError), one result a time."""
    while True:
        try:
            yield sess.run(fetches, feed_dict)
        except tf.errors.OutOfRangeError:
            return
