"""The training input pipeline: records -> augmentation -> SSD targets -> batches.

    batches = train_dataset(dataset, preprocess, net, batch_size=32, seed=0)

Shards are interleaved and shuffled (`DetectionDataset.make_dataset`), every example is augmented
and encoded against the anchors (`net.bboxes_encode`) in one parallel map, so each example has
fixed-size targets and examples with different object counts batch together; only the
augmented ground-truth boxes, kept for the image summaries, are padded.

COCO crowd regions (the records' `iscrowd`) follow the augmentation beside their boxes and, with
`ignore_crowd` (the default), make the anchors that belong to them ignored by the loss (class -1,
see `SSDNet.bboxes_encode`); without it they are ordinary objects, as before.
"""

import tensorflow as tf

from preprocessing import seeds as seeds_lib


def train_dataset(
    dataset,
    preprocess,
    net,
    batch_size,
    match_threshold=0.5,
    data_format='NHWC',
    seed=None,
    num_readers=4,
    num_parallel_calls=tf.data.AUTOTUNE,
    shuffle_buffer_size=1024,
    preprocessing_options=None,
    repeat=True,
    ignore_crowd=True,
):
    """Batches of augmented images and their SSD training targets.

    Args:
      dataset: a `datasets.dataset_factory.DetectionDataset`.
      preprocess: `preprocessing_factory.get_preprocessing(name)`.
      net: an `SSDNet` (its `params.img_shape`, anchors and `bboxes_encode` are used).
      batch_size: examples per batch (the last, incomplete batch is dropped).
      match_threshold: IoU for an anchor to match a ground-truth box.
      seed: int for a reproducible order and augmentation (example i of the repeated stream
        gets `example_seed(seed, i)`), or None.
      preprocessing_options: extra keyword arguments of the training preprocessing.
      ignore_crowd: anchors belonging to crowd regions are neither positives nor negatives
        (False: crowd regions are ordinary objects).
    Returns:
      tf.data.Dataset of dicts: image float32 `[B, H, W, 3]` (`[B, 3, H, W]` for NCHW);
      gclasses int64 `[B, N]` (-1: ignored); glocalisations float32 `[B, N, 4]`; gscores float32 `[B, N]`
      (N anchors); labels int64 `[B, M]` and bboxes float32 `[B, M, 4]` relative
      `[ymin, xmin, ymax, xmax]`, zero-padded to the batch's most objects M.
    """
    out_shape = tuple(net.params.img_shape)
    anchors = net.anchors()
    options = dict(preprocessing_options or {})
    examples = dataset.make_dataset(
        shuffle=True,
        num_readers=num_readers,
        seed=seed,
        repeat=repeat,
        num_parallel_calls=num_parallel_calls,
    )

    # The pipelines are written with tf.cond / tf.where already; autograph would only re-parse
    # them (seconds of start-up per process).
    @tf.autograph.experimental.do_not_convert
    def prepare(index, example):
        example_seed = None if seed is None else seeds_lib.example_seed(seed, index)
        # The crowd flags go through the augmentation as its aligned `difficult` (a last output).
        aligned = {'difficult': example['iscrowd']} if ignore_crowd else {}
        image, labels, bboxes, *crowd = preprocess(
            example['image'],
            example['labels'],
            example['bboxes'],
            out_shape,
            is_training=True,
            data_format=data_format,
            seed=example_seed,
            **aligned,
            **options,
        )
        crowd = crowd[0] if crowd else None
        gclasses, glocalisations, gscores = net.bboxes_encode(
            labels, bboxes, anchors, match_threshold, crowd=crowd
        )
        return {
            'image': image,
            'gclasses': gclasses,
            'glocalisations': glocalisations,
            'gscores': gscores,
            'labels': tf.cast(labels, tf.int64),
            'bboxes': bboxes,
        }

    deterministic = seed is not None
    batches = examples.enumerate().map(
        prepare, num_parallel_calls=num_parallel_calls, deterministic=deterministic
    )
    batches = batches.padded_batch(batch_size, drop_remainder=True)
    return batches.prefetch(tf.data.AUTOTUNE)
