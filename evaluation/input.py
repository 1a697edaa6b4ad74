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
import tensorflow as tf

from tf_extended import bboxes as tfe_bboxes

# Resize modes that give every image the net's input size (the anchors are fixed to it).
BATCHABLE_RESIZE_MODES = ('WARP_RESIZE', 'PAD_AND_RESIZE', 'CENTRAL_CROP')


def make_eval_dataset(dataset, preprocessing, out_shape, batch_size, resize='WARP_RESIZE',
                      max_num_batches=None, num_parallel_calls=tf.data.AUTOTUNE,
                      data_format='NHWC', num_threads=None):
    """Builds the batched evaluation input (see the module docstring for the batch dict).

    Args:
      dataset: a `datasets.dataset_factory.DetectionDataset`.
      preprocessing: an `SSDPreprocessing` (`preprocessing_factory.get_preprocessing(name)`).
      out_shape: (height, width) of the network input.
      batch_size: images per batch (> 0).
      resize: one of `BATCHABLE_RESIZE_MODES`.
      max_num_batches: evaluate only the first so many batches (None: the whole split).
      num_parallel_calls: parallelism of decoding and preprocessing.
      num_threads: size of a private tf.data thread pool (None: the shared one), so that an
        evaluation beside training does not take every core.
    Returns:
      tf.data.Dataset of batch dicts, in record order.
    """
    if resize not in BATCHABLE_RESIZE_MODES:
        raise ValueError(f'eval_resize must be one of {BATCHABLE_RESIZE_MODES}, got {resize!r}: the '
                         f"nets' anchors are fixed to their input size, so every image must be "
                         f'resized to {tuple(out_shape)}.')
    if batch_size < 1:
        raise ValueError(f'batch_size must be >= 1, got {batch_size}.')

    def prepare(example):
        image, _, _, bbox_img = preprocessing(
            example['image'], example['labels'], example['bboxes'], out_shape, is_training=False,
            data_format=data_format, resize=resize)
        return {
            'image': image,
            'bbox_img': bbox_img,
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

    examples = dataset.make_dataset(shuffle=False, num_parallel_calls=num_parallel_calls)
    batches = examples.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    batches = batches.padded_batch(batch_size, drop_remainder=False)
    if max_num_batches:
        batches = batches.take(max_num_batches)
    batches = batches.prefetch(2)
    if num_threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = int(num_threads)
        batches = batches.with_options(options)
    return batches


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
    mapped = tf.map_fn(lambda args: tfe_bboxes.bboxes_resize(args[0], args[1]), (bbox_img, boxes),
                       fn_output_signature=tf.float32)
    return tf.clip_by_value(mapped, 0., 1.)
