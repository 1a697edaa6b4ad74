"""Small evaluation fixtures for tests and benchmarks: a synthetic VOC folder converted to records,
and random-weight checkpoints of a net.
"""

import os

import numpy as np
import tensorflow as tf

from datasets import convert
from datasets import labels
from datasets import pascalvoc
from datasets import synthetic
from evaluation import evaluate
from model import card as card_lib
from tests import inference_fixtures

v1 = tf.compat.v1


def make_synthetic_records(root, num_images=12, seed=0, split='test', spaced_ids=0):
    """Writes the synthetic shapes dataset in VOC layout to `<root>/voc` and converts `split` to
    `<root>/records/<split>_*.tfrecord` (dataset name 'custom', split name `split`).
    `spaced_ids`: that many of the split's first images are renamed `<id> (copy 1%)`, ids with
    spaces (as LabelImg keeps file names) and a '%' (the results files' escape character).

    Returns (voc_dir, records_dir, class_names).
    """
    voc_dir, records_dir = os.path.join(root, 'voc'), os.path.join(root, 'records')
    synthetic.generate(voc_dir, num_images, seed)
    if spaced_ids:
        _rename_ids(voc_dir, split, spaced_ids)
    class_names = labels.read_labels_file(os.path.join(voc_dir, 'labels.txt'))
    sources = pascalvoc.list_examples([voc_dir], split)
    convert.convert(
        sources,
        pascalvoc.VocLoader(class_names),
        class_names,
        records_dir,
        split,
        shuffle=True,
        seed=seed,
        num_workers=1,
        show_progress=False,
        samples_per_file=5,
    )
    return voc_dir, records_dir, class_names


def _rename_ids(voc_dir, split, count):
    """Renames the first `count` ids of `split` to `<id> (copy 1%)`: annotation, image and every
    split list."""
    main = os.path.join(voc_dir, 'ImageSets', 'Main')
    with open(os.path.join(main, f'{split}.txt')) as f:
        renamed = {i: f'{i} (copy 1%)' for i in f.read().split()[:count]}
    for old, new in renamed.items():
        for folder, ext in (('Annotations', '.xml'), ('JPEGImages', '.jpg')):
            os.rename(
                os.path.join(voc_dir, folder, old + ext), os.path.join(voc_dir, folder, new + ext)
            )
    for name in os.listdir(main):
        with open(os.path.join(main, name)) as f:
            ids = f.read().split()
        with open(os.path.join(main, name), 'w') as f:
            f.write(''.join(f'{renamed.get(i, i)}\n' for i in ids))


def write_random_checkpoint(
    prefix,
    model_name,
    num_classes,
    step,
    seed=0,
    moving_average_decay=None,
    spread_out=True,
    **params,
):
    """Builds the net (`params`: from_registry's, e.g. depth_multiplier) with random weights of
    `inference_fixtures.write_checkpoint`'s kind, whose scores are spread out and depend on the
    `seed`, and saves it as `<prefix>-<step>` with a `global_step` variable. `spread_out=False`:
    a plain random initialisation instead, whose scores are near-uniform (every anchor about
    1/num_classes, zero box codes: the same detections whatever the seed; the benchmarks' worst
    case for NMS). With a decay, also saves moving averages (`<var>/ExponentialMovingAverage`)
    of the trainable variables, each weight times a random factor in [0.9, 1.1]: they detect
    otherwise than the weights. Returns the checkpoint prefix written."""
    card = card_lib.from_registry(model_name, num_classes, **params)
    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(seed)
        inference_fixtures.build_spread_out_pass(card, seed)
        global_step = v1.train.get_or_create_global_step()
        saved = {v.op.name: v for v in v1.global_variables()}
        averages = []
        if moving_average_decay:
            # Variables saved under the averages' names: ExponentialMovingAverage.apply would
            # also build their update ops (seconds).
            ema = v1.train.ExponentialMovingAverage(moving_average_decay)
            for v in v1.trainable_variables():
                saved[ema.average_name(v)] = v1.Variable(tf.zeros(v.shape), name='average')
                averages.append(
                    saved[ema.average_name(v)].assign(v * tf.random.uniform(v.shape, 0.9, 1.1))
                )
        with v1.Session(graph=graph) as sess:
            if spread_out:
                inference_fixtures.init_spread_out_weights(sess, np.random.RandomState(seed))
            else:
                sess.run(v1.global_variables_initializer())
            sess.run(averages)
            sess.run(v1.assign(global_step, step))
            return v1.train.Saver(saved).save(
                sess, prefix, global_step=step, write_meta_graph=False
            )


def small_card(model_name, class_names, depth_multiplier=None, **detection):
    """The model card of a net for `class_names` (labels 1..), with detection settings."""
    card = card_lib.from_registry(
        model_name, class_names=class_names, depth_multiplier=depth_multiplier
    )
    return card.with_detection(**detection)


def custom_split_settings(card, records_dir, **overrides):
    """EvalSettings of `card` on the test split of the 'custom' dataset in `records_dir`: batches
    of 2, one reader thread, the VOC07 metric, no PR curves, unless `overrides` (more
    EvalSettings fields) say otherwise."""
    settings = dict(batch_size=2, num_threads=1, metrics=('voc07',), pr_curves=False)
    settings.update(overrides)
    return evaluate.EvalSettings(
        card=card,
        dataset_name='custom',
        dataset_split_name='test',
        dataset_dir=records_dir,
        **settings,
    )
