"""The main job on the built-in synthetic dataset (no download): `bash scripts/demo.sh`.

generate the dataset -> convert it to TFRecords -> train ssd_300_mobilenet -> evaluate (VOC07 and
VOC12 mAP, per-class table) -> export (frozen graph + float TFLite) -> detect on a few test images
(annotated PNGs) -> summary. Every stage runs the project's own script as a user would, and reuses
what an earlier run left in `--work_dir` (saying so) unless `--fresh`.

The net is ssd_300_mobilenet at depth multiplier 0.5: a quarter of the multiply-adds of the full
width, so that training fits in minutes on a 2-core CPU; the shapes are easy enough for it.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
MODEL = 'ssd_300_mobilenet'
# absl-formatted log lines: level, date, time, thread, file:line] message.
ABSL_LINE = re.compile(r'^([IWEF])\d{4} [\d:.]+\s+\d+ ([\w.]+):\d+\] (.*)$')
# TensorFlow start-up and session chatter that says nothing about the job.
NOISE = re.compile(r'^(WARNING: All log messages|INFO:tensorflow:|WARNING:tensorflow:|To enable the '
                   r'following instructions|.*(UserWarning|warnings\.warn)|Instructions for updating:|'
                   r'This API was designed for TensorFlow v1|\s*$)')
# Errors that are not: the CUDA probes on every machine without a GPU, and grappler's note that a
# frozen graph has no variable initialisers.
HARMLESS_ERRORS = ('cuda_platform.cc', 'cuda_executor.cc', 'cuda_diagnostics.cc',
                   'grappler_item_builder.cc')
QUIET_SOURCES = ('port.cc', 'cudart_stub.cc', 'cpu_feature_guard.cc',
                 'mlir_graph_optimization_pass.cc', 'basic_session_run_hooks.py',
                 'saver.py', 'monitored_session.py', 'session_manager.py', 'builder_impl.py',
                 'tf_tfl_flatbuffer_helpers.cc', 'flatbuffer_export.cc', 'device_compiler.h',
                 'functional_saver.py', 'fingerprinting_utils.py', 'signature_serialization.py',
                 'writer.cc', 'loader.cc', 'reader.cc', 'asm_compiler.cc', 'lite.py',
                 'convert.py', 'graph_util_impl.py', 'deprecation.py')


def log(message):
    print('[demo %s] %s' % (time.strftime('%H:%M:%S'), message), flush=True)


def shown(line):
    """The part of a script's output line worth showing, or None."""
    match = ABSL_LINE.match(line)
    if match:
        level, source, message = match.groups()
        if source in HARMLESS_ERRORS or (source in QUIET_SOURCES and level in 'IW'):
            return None
        return message
    return None if NOISE.match(line) else line


def run(args):
    """Runs a project script, showing its progress without TensorFlow's chatter; fails loudly
    with the full output when the script fails."""
    process = subprocess.Popen([sys.executable] + args, cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    everything = []
    for raw in process.stdout:
        for line in raw.rstrip('\n').split('\r'):
            everything.append(line)
            text = shown(line)
            if text is not None:
                print('    ' + text, flush=True)
    if process.wait() != 0:
        sys.stderr.write('\n'.join(everything[-60:]) + '\n')
        raise SystemExit('demo: %s failed (exit %d); its output is above.'
                         % (args[0], process.returncode))


def latest_step(train_dir):
    steps = [int(m.group(1)) for path in glob.glob(os.path.join(train_dir, 'model.ckpt-*.index'))
             for m in [re.search(r'-(\d+)\.index$', path)] if m]
    return max(steps, default=None)


def generate(args, dataset_dir):
    if os.path.isfile(os.path.join(dataset_dir, 'labels.txt')):
        log('1/6 dataset: reusing %s' % dataset_dir)
        return
    log('1/6 dataset: generating %d synthetic images in %s' % (args.num_images, dataset_dir))
    run(['-m', 'datasets.synthetic', '--output_dir', dataset_dir,
         '--num_images', str(args.num_images), '--seed', str(args.seed)])


def convert(dataset_dir, records_dir):
    for split in ('train', 'test'):
        if os.path.isfile(os.path.join(records_dir, split + '_metadata.json')):
            log('2/6 tfrecords: reusing %s/%s_*.tfrecord' % (records_dir, split))
            continue
        log('2/6 tfrecords: converting the %s split' % split)
        run(['tf_convert_data.py', '--dataset_name=pascalvoc', '--dataset_dir=' + dataset_dir,
             '--labels_file=' + os.path.join(dataset_dir, 'labels.txt'), '--split=' + split,
             '--output_dir=' + records_dir, '--output_name=' + split])


def dataset_flags(records_dir, split):
    return ['--dataset_name=custom', '--dataset_split_name=' + split,
            '--dataset_dir=' + records_dir, '--model_name=' + MODEL]


def train(args, records_dir, train_dir):
    if latest_step(train_dir) == args.steps:
        log('3/6 train: reusing the step-%d checkpoint in %s' % (args.steps, train_dir))
        return
    log('3/6 train: %s (depth %.2f), %d steps of batch %d%s' % (
        MODEL, args.depth_multiplier, args.steps, args.batch_size,
        ', resuming at step %d' % latest_step(train_dir) if latest_step(train_dir) else ''))
    run(['train_ssd_network.py', '--train_dir=' + train_dir] + dataset_flags(records_dir, 'train') +
        ['--depth_multiplier=%g' % args.depth_multiplier, '--batch_size=%d' % args.batch_size,
         '--max_number_of_steps=%d' % args.steps, '--optimizer=adam',
         '--learning_rate=%g' % args.learning_rate, '--learning_rate_decay_type=cosine',
         '--warmup_steps=%d' % min(100, args.steps // 10), '--end_learning_rate=1e-5',
         '--weight_decay=1e-4', '--batch_norm_decay=0.99', '--seed=%d' % args.seed,
         '--save_interval_steps=%d' % max(100, args.steps // 4),
         '--log_every_n_steps=%d' % max(1, args.steps // 20)])


def evaluate(args, records_dir, train_dir, eval_dir):
    results = os.path.join(eval_dir, 'results.json')
    if os.path.isfile(results) and json.load(open(results))['global_step'] == args.steps:
        log('4/6 evaluate: reusing %s' % results)
        with open(os.path.join(eval_dir, 'results.txt')) as f:
            print(f.read(), flush=True)
    else:
        log('4/6 evaluate: the test split, VOC07 and VOC12 rules')
        run(['eval_ssd_network.py', '--checkpoint_path=' + train_dir, '--eval_dir=' + eval_dir,
             '--depth_multiplier=%g' % args.depth_multiplier, '--metrics=voc07,voc12'] +
            dataset_flags(records_dir, 'test'))
    return json.load(open(results))['metrics']


def export(args, records_dir, train_dir, export_dir):
    if os.path.isfile(os.path.join(export_dir, 'metadata.json')):
        log('5/6 export: reusing %s' % export_dir)
        return
    log('5/6 export: frozen graph and float TFLite')
    run(['export_ssd_network.py', '--checkpoint_path=' + train_dir, '--output_dir=' + export_dir,
         '--depth_multiplier=%g' % args.depth_multiplier,
         '--formats=frozen_graph,tflite_float'] + dataset_flags(records_dir, 'test'))


def detect(dataset_dir, export_dir, detect_dir, count):
    """Detection with the exported frozen graph on the first test images, saved as PNG."""
    import cv2
    with open(os.path.join(dataset_dir, 'ImageSets', 'Main', 'test.txt')) as f:
        ids = f.read().split()[:count]
    inputs = os.path.join(detect_dir, 'inputs')
    os.makedirs(inputs, exist_ok=True)
    for image_id in ids:
        image = cv2.imread(os.path.join(dataset_dir, 'JPEGImages', image_id + '.jpg'))
        cv2.imwrite(os.path.join(inputs, image_id + '.png'), image)
    log('6/6 detect: %d test images with the exported frozen graph' % len(ids))
    run(['detect_ssd_network.py', '--frozen_graph=' + os.path.join(export_dir, 'frozen_graph.pb'),
         '--input=' + inputs, '--output_dir=' + detect_dir, '--select_threshold=0.5'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work_dir', default=os.path.join(ROOT, 'work_dir'))
    parser.add_argument('--num_images', type=int, default=1200,
                        help='synthetic images (75%% train, 25%% test)')
    parser.add_argument('--steps', type=int, default=1600, help='training steps')
    parser.add_argument('--batch_size', type=int, default=16)
    parser.add_argument('--learning_rate', type=float, default=0.004)
    parser.add_argument('--depth_multiplier', type=float, default=0.5)
    parser.add_argument('--num_detect_images', type=int, default=4)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--fresh', action='store_true', help='delete --work_dir and start over')
    args = parser.parse_args()
    if args.fresh and os.path.isdir(args.work_dir):
        log('fresh: removing %s' % args.work_dir)
        shutil.rmtree(args.work_dir)
    paths = {name: os.path.join(args.work_dir, name)
             for name in ('synthetic', 'tfrecords', 'train', 'eval', 'export', 'detections')}
    start = time.time()
    generate(args, paths['synthetic'])
    convert(paths['synthetic'], paths['tfrecords'])
    train(args, paths['tfrecords'], paths['train'])
    metrics = evaluate(args, paths['tfrecords'], paths['train'], paths['eval'])
    export(args, paths['tfrecords'], paths['train'], paths['export'])
    detect(paths['synthetic'], paths['export'], paths['detections'], args.num_detect_images)
    log('done in %.0f s: VOC07 mAP %.3f, VOC12 mAP %.3f' % (time.time() - start, metrics['voc07'],
                                                           metrics['voc12']))
    for name, path in paths.items():
        print('    %-11s %s' % (name, path))


if __name__ == '__main__':
    main()
