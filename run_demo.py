"""The main job on the built-in synthetic dataset (no download): `bash scripts/demo.sh`.

Stages, each reusing what an earlier run left in `--work_dir` unless `--fresh`:
  1. generate the synthetic VOC-layout dataset (datasets/synthetic.py);
  2. convert its train and test splits to TFRecords (tf_convert_data.py);
  3. run the SSD core end to end on it: the training input pipeline (augmentation and target
     encoding), the loss, and detection on the test split, with ssd_300_mobilenet.
Later stages (training, evaluation, export, detection PNGs) join as their scripts land.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))


def log(message):
    print('[demo %s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def run(args):
    """Runs a project script as a user would, failing loudly with its output."""
    subprocess.run([sys.executable] + args, cwd=ROOT, check=True)


def generate(args, dataset_dir):
    if os.path.isfile(os.path.join(dataset_dir, 'labels.txt')):
        log('dataset: reusing %s' % dataset_dir)
        return
    log('dataset: generating %d synthetic images in %s' % (args.num_images, dataset_dir))
    run(['-m', 'datasets.synthetic', '--output_dir', dataset_dir,
         '--num_images', str(args.num_images), '--seed', str(args.seed)])


def convert(dataset_dir, records_dir):
    for split in ('train', 'test'):
        if os.path.isfile(os.path.join(records_dir, split + '_metadata.json')):
            log('tfrecords: reusing %s/%s_*.tfrecord' % (records_dir, split))
            continue
        log('tfrecords: converting the %s split' % split)
        run(['tf_convert_data.py', '--dataset_name=pascalvoc', '--dataset_dir=' + dataset_dir,
             '--labels_file=' + os.path.join(dataset_dir, 'labels.txt'), '--split=' + split,
             '--output_dir=' + records_dir, '--output_name=' + split])


def smoke(records_dir, batch_size):
    """Input pipeline -> targets -> net -> loss and detections, in one graph."""
    import numpy as np
    import tensorflow as tf
    import tf_slim as slim

    from datasets import dataset_factory
    from nets import nets_factory
    from preprocessing import preprocessing_factory

    v1 = tf.compat.v1
    model = 'ssd_300_mobilenet'
    train = dataset_factory.get_dataset('custom', 'train', records_dir)
    test = dataset_factory.get_dataset('custom', 'test', records_dir)
    net = nets_factory.get_network(model)(
        nets_factory.get_network(model).default_params._replace(num_classes=train.num_classes))
    pipeline = preprocessing_factory.get_preprocessing(model)
    shape = net.params.img_shape

    def training_example(example):
        image, labels, bboxes = pipeline(example['image'], example['labels'], example['bboxes'],
                                         shape, is_training=True, seed=0)
        return (image,) + tuple(net.bboxes_encode(labels, bboxes))

    def eval_example(example):
        image, _, _, _ = pipeline(example['image'], example['labels'], example['bboxes'], shape,
                                  is_training=False)
        return image

    with tf.Graph().as_default():
        batch = v1.data.make_one_shot_iterator(
            train.make_dataset().map(training_example).batch(batch_size)).get_next()
        images, gclasses, glocalisations, gscores = batch
        with slim.arg_scope(net.arg_scope()):
            _, localisations, logits, _ = net.net(images, is_training=True)
        loss = net.losses(logits, localisations, gclasses, glocalisations, gscores)
        test_images = v1.data.make_one_shot_iterator(
            test.make_dataset().map(eval_example).batch(batch_size)).get_next()
        with slim.arg_scope(net.arg_scope()):
            predictions, localisations, _, _ = net.net(test_images, is_training=False, reuse=True)
        detections = net.detected_bboxes(predictions, localisations, select_threshold=0.01)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            loss_value, positives = sess.run([loss, tf.reduce_sum(tf.cast(gclasses > 0, tf.int32))])
            num_detections = sess.run(detections['num_detections'])
    log('core: %d training images -> %d matched anchors, loss %.3f (random weights)'
        % (batch_size, positives, loss_value))
    log('core: %d test images -> %s detections per image (random weights)'
        % (len(num_detections), num_detections.tolist()))
    if not np.isfinite(loss_value) or positives == 0:
        raise SystemExit('demo: the SSD core produced no positives or a non-finite loss')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work_dir', default=os.path.join(ROOT, 'work_dir'))
    parser.add_argument('--num_images', type=int, default=200)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--batch_size', type=int, default=4)
    parser.add_argument('--fresh', action='store_true', help='delete --work_dir and start over')
    args = parser.parse_args()
    if args.fresh and os.path.isdir(args.work_dir):
        log('fresh: removing %s' % args.work_dir)
        shutil.rmtree(args.work_dir)
    dataset_dir = os.path.join(args.work_dir, 'synthetic')
    records_dir = os.path.join(args.work_dir, 'tfrecords')
    start = time.time()
    generate(args, dataset_dir)
    convert(dataset_dir, records_dir)
    smoke(records_dir, args.batch_size)
    log('done in %.0f s. Dataset: %s, TFRecords: %s' % (time.time() - start, dataset_dir,
                                                      records_dir))


if __name__ == '__main__':
    main()
