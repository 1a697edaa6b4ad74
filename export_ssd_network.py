"""Exports an SSD checkpoint for inference: frozen graph, SavedModel, TFLite float32 and int8.

    python export_ssd_network.py --checkpoint_path=train/ --model_name=ssd_300_vgg \
        --dataset_name=pascalvoc_2007 --dataset_split_name=test --dataset_dir=tfrecords \
        --output_dir=export/ssd300
    # only the TF formats, no dataset needed (class names from a labels file), bfloat16 arithmetic:
    python export_ssd_network.py --checkpoint_path=model.ckpt --model_name=ssd_300_mobilenet \
        --num_classes=7 --labels_file=labels.txt --formats=frozen_graph,saved_model \
        --compute_dtype=bfloat16 --output_dir=out

Every export takes uint8 RGB images of any size (`--fixed_size`: of the net's input size) and
holds the evaluation preprocessing, the net and NMS; see inference/export.py for the files and
inference/detection.py for the tensors. The dataset split (--dataset_*) gives the class names
and, for tflite_int8, the calibration images (the first --num_calibration_images).
"""
import sys

from absl import app
from absl import flags

from datasets import dataset_factory
from inference import export
from inference import detection
from tf_extended import logs
from nets import ssd_common

FLAGS = flags.FLAGS
flags.DEFINE_string('checkpoint_path', None, 'Checkpoint prefix, one of its files, or a directory '
                                             '(its latest).')
flags.DEFINE_string('model_name', 'ssd_300_vgg', 'Net registry name.')
flags.DEFINE_integer('num_classes', None, 'Classes including background (default: the dataset\'s, '
                                          'else the model config\'s, else the model\'s).')
flags.DEFINE_string('model_config', None, 'JSON written by caffe_to_tensorflow.py beside a '
                                          'converted checkpoint (SSD params, thresholds, input '
                                          'normalisation).')
flags.DEFINE_float('depth_multiplier', None, 'MobileNet width multiplier (default: the model\'s).')
flags.DEFINE_string('labels_file', None, 'Class names, one per line (id 1 first).')
flags.DEFINE_string('dataset_name', None, 'Dataset registry name: class names and int8 calibration.')
flags.DEFINE_string('dataset_split_name', 'test', 'Split giving the calibration images.')
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_integer('num_calibration_images', 100, 'Images for int8 calibration.', lower_bound=1)
flags.DEFINE_string('output_dir', None, 'Folder receiving the exports and metadata.json.')
flags.DEFINE_list('formats', list(export.FORMATS), f'Any of {", ".join(export.FORMATS)}.')
flags.DEFINE_integer('batch_size', None, 'Static batch size of the frozen graph and SavedModel '
                                         '(default: any).', lower_bound=1)
flags.DEFINE_boolean('fixed_size', False, 'Input images must have the net\'s input size (no '
                                          'resize needed on device).')
flags.DEFINE_integer('tflite_batch_size', 1, 'Batch size of the TFLite models (static).',
                     lower_bound=1)
flags.DEFINE_enum('compute_dtype', 'float32', list(ssd_common.COMPUTE_DTYPES),
                  'Arithmetic of the frozen graph and SavedModel: bfloat16 for CPUs with AVX-512 '
                  'BF16 or AMX, float16 for GPUs (the TFLite models stay float32 / int8).')
flags.DEFINE_float('select_threshold', None, 'Minimum class score of a detection (default: the '
                                             'model config\'s, else 0.01).')
flags.DEFINE_float('nms_threshold', None, 'NMS IoU threshold (default 0.45).')
flags.DEFINE_integer('top_k', None, 'Candidates per class before NMS (default 400).')
flags.DEFINE_integer('keep_top_k', None, 'Detections per image after NMS (default 200).')
flags.mark_flags_as_required(['checkpoint_path', 'output_dir'])


def main(_):
    logs.absl_only()
    dataset = None
    if FLAGS.dataset_name:
        dataset = dataset_factory.get_dataset(FLAGS.dataset_name, FLAGS.dataset_split_name,
                                              FLAGS.dataset_dir)
    num_classes = FLAGS.num_classes or (dataset.num_classes if dataset else None)
    try:
        spec = detection.model_spec(
            FLAGS.model_name, num_classes, FLAGS.model_config,
            depth_multiplier=FLAGS.depth_multiplier, compute_dtype=FLAGS.compute_dtype,
            select_threshold=FLAGS.select_threshold,
            nms_threshold=FLAGS.nms_threshold, top_k=FLAGS.top_k, keep_top_k=FLAGS.keep_top_k)
        spec = detection.with_class_names(spec, FLAGS.labels_file, dataset)
        calibration = None
        if 'tflite_int8' in FLAGS.formats:
            if dataset is None:
                raise ValueError('tflite_int8 needs calibration images: pass --dataset_name, '
                                 '--dataset_split_name and --dataset_dir.')
            calibration = export.representative_images(
                dataset, FLAGS.num_calibration_images, spec if FLAGS.fixed_size else None)
        export.export(spec, FLAGS.checkpoint_path, FLAGS.output_dir, FLAGS.formats,
                      FLAGS.batch_size, FLAGS.fixed_size, FLAGS.tflite_batch_size, calibration,
                      f'{FLAGS.dataset_name}/{FLAGS.dataset_split_name}' if dataset else None)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f'export_ssd_network.py: error: {err}')


if __name__ == '__main__':
    app.run(main)
