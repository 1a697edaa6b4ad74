r"""Converts a Caffe SSD model (.caffemodel, optionally its deploy.prototxt) to a TF checkpoint
of our nets, without Caffe. Layers are mapped by Caffe layer name; the mapping table is printed
and unmapped Caffe layers, missing TF variables and shape mismatches fail the run unless
--allow_partial. Writes <output_path> (checkpoint) and <output_path>.model.json (the model card:
anchors, DetectionOutput thresholds, input preprocessing, class names from --labelmap_file or
--labels_file), then re-loads it and runs a forward pass.

  python caffe_to_tensorflow.py --model_name=ssd_300_vgg \
      --caffemodel_path=VGG_VOC0712_SSD_300x300_iter_120000.caffemodel \
      --prototxt_path=deploy.prototxt --output_path=checkpoints/ssd_300_vgg_voc0712.ckpt
  python caffe_to_tensorflow.py --model_name=ssd_300_mobilenet \
      --caffemodel_path=MobileNetSSD_deploy.caffemodel --prototxt_path=MobileNetSSD_deploy.prototxt \
      --output_path=checkpoints/ssd_300_mobilenet_voc.ckpt
  python caffe_to_tensorflow.py --model_name=ssd_512_vgg \
      --caffemodel_path=VGG_coco_SSD_512x512_iter_360000.caffemodel \
      --prototxt_path=deploy.prototxt --labelmap_file=labelmap_coco.prototxt \
      --output_path=checkpoints/ssd_512_vgg_coco.ckpt
  python caffe_to_tensorflow.py --model_name=vgg_16_fc_reduced --backbone_scope=ssd_512_vgg \
      --caffemodel_path=VGG_ILSVRC_16_layers_fc_reduced.caffemodel \
      --output_path=checkpoints/vgg_16_fc_reduced_512.ckpt
"""

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags
import os

from converters import caffe_convert
from converters import caffe_pb
from converters import caffe_ssd
from converters import checkpoint_io
from converters import prototxt

FLAGS = flags.FLAGS
flags.DEFINE_string('caffemodel_path', None, 'The binary .caffemodel weights.')
flags.DEFINE_string(
    'prototxt_path',
    None,
    'The deploy .prototxt: anchors, DetectionOutput '
    'thresholds, BatchNorm eps and input mean/scale are taken from it.',
)
flags.DEFINE_enum('model_name', None, list(caffe_ssd.MODEL_NAMES), 'The Caffe model kind.')
flags.DEFINE_integer(
    'num_classes',
    None,
    'Classes including background; default: inferred from the conf head shapes.',
    lower_bound=2,
)
flags.DEFINE_string(
    'output_path',
    None,
    'Checkpoint prefix to write (a file name stem, not a folder), e.g. '
    'checkpoints/ssd_300_vgg_voc0712.ckpt.',
)
flags.DEFINE_boolean(
    'allow_partial',
    False,
    'Write the matching part even when Caffe layers '
    'are unmapped, TF variables missing or shapes differ.',
)
flags.DEFINE_enum(
    'backbone_scope',
    'ssd_300_vgg',
    list(caffe_ssd.VGG_BACKBONE_SCOPES),
    'vgg_16_fc_reduced only: the net whose backbone variables to write.',
)
flags.DEFINE_list(
    'caffe_mean_bgr',
    None,
    'The Caffe model\'s input mean, B,G,R '
    '(default: from the prototxt, else 104,117,123 for VGG, 127.5 for MobileNet).',
)
flags.DEFINE_float(
    'caffe_scale',
    None,
    'The Caffe model\'s input scale after the mean '
    '(default: from the prototxt, else 1 for VGG, 0.007843 for MobileNet).',
)
flags.DEFINE_string(
    'labelmap_file',
    None,
    'The model\'s Caffe LabelMap (the labelmap.prototxt it was trained with, e.g. '
    'data/coco/labelmap_coco.prototxt: item { name: "..." label: N display_name: "..." }, label 0 '
    'the background): the class names are the display_name (else name) of labels 1..K-1; its '
    'labels must be exactly 0..K-1 for a model of K classes with the background. Default: the 20 '
    'VOC classes for a 21-class model, class_1.. otherwise.',
)
flags.DEFINE_string(
    'labels_file',
    None,
    'Instead of --labelmap_file: class names one per line, label 1 first, background excluded '
    '(K-1 of them).',
)
flags.mark_flags_as_required(['caffemodel_path', 'model_name', 'output_path'])


# The input flags and what each takes, for a path that does not exist.
INPUT_FILES = {
    'caffemodel_path': 'the binary .caffemodel weights',
    'prototxt_path': 'the text deploy .prototxt',
    'labelmap_file': "the model's Caffe labelmap.prototxt",
    'labels_file': 'a text file of class names, one per line',
}


def main(_):
    try:  # the flags' values first, then the files they name
        caffe_convert.check_normalisation(FLAGS.caffe_mean_bgr, FLAGS.caffe_scale)
    except caffe_ssd.ConversionError as err:
        logs.exit_error(err)
    for flag, expected in INPUT_FILES.items():
        path = FLAGS[flag].value
        if path and not os.path.exists(path):
            logs.exit_error(f'--{flag}: {path} does not exist; pass {expected}.')
    if FLAGS['backbone_scope'].present and FLAGS.model_name != 'vgg_16_fc_reduced':
        logs.exit_error(
            f'--backbone_scope names the net whose backbone a vgg_16_fc_reduced conversion '
            f'writes; --model_name={FLAGS.model_name} converts a whole model (leave it out).'
        )
    checkpoint_io.run_script(
        (caffe_pb.CaffeModelError, prototxt.PrototxtError, caffe_ssd.ConversionError),
        caffe_convert.convert,
        FLAGS.caffemodel_path,
        FLAGS.output_path,
        FLAGS.model_name,
        prototxt_path=FLAGS.prototxt_path,
        num_classes=FLAGS.num_classes,
        allow_partial=FLAGS.allow_partial,
        backbone_scope=FLAGS.backbone_scope,
        caffe_mean_bgr=FLAGS.caffe_mean_bgr,  # checked there: 1 or 3 numbers
        caffe_scale=FLAGS.caffe_scale,
        labelmap_file=FLAGS.labelmap_file,
        labels_file=FLAGS.labels_file,
    )


def _interrupted():
    return checkpoint_io.interrupted_message(FLAGS.output_path)


if __name__ == '__main__':
    logs.run(main, _interrupted)
