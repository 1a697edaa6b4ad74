r"""Converts published PyTorch SSD weights (.pth) to a TF checkpoint of our nets, without PyTorch.
The .pth is read by a restricted unpickler (no code from the file runs); its layout is recognised
from the tensor names, the mapping table is printed, and unmapped or missing tensors and shape
mismatches fail the run unless --allow_partial. Writes <output_path> (checkpoint) and its model
card <output_path>.model.json (the source's anchors, input normalisation, class names and, for
torchvision COCO, their COCO category ids, and post-processing; --labels_file replaces the class
names and drops the ids; a VGG base gets <output_path>.json instead), then re-loads it and runs a
forward pass.

  python pytorch_to_tensorflow.py --pth_path=ssd300_vgg16_coco-b556d3b4.pth \
      --output_path=checkpoints/ssd_300_vgg_torchvision_coco.ckpt
  python pytorch_to_tensorflow.py --pth_path=ssd300_mAP_77.43_v2.pth \
      --output_path=checkpoints/ssd_300_vgg_ssd_pytorch_voc0712.ckpt
  python pytorch_to_tensorflow.py --pth_path=vgg16_reducedfc.pth \
      --output_path=checkpoints/vgg16_reducedfc_300.ckpt

Layouts: %s.
"""

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags

from converters import checkpoint_io
from converters import pth_reader
from converters import pytorch_convert
from converters import pytorch_ssd

__doc__ %= ', '.join(pytorch_ssd.LAYOUTS)

FLAGS = flags.FLAGS
flags.DEFINE_string('pth_path', None, 'The PyTorch .pth file (zip or legacy format).')
flags.DEFINE_string(
    'output_path',
    None,
    'Checkpoint prefix to write (a file name stem, not a folder), e.g. '
    'checkpoints/ssd_300_vgg_torchvision_coco.ckpt.',
)
flags.DEFINE_enum(
    'layout',
    None,
    list(pytorch_ssd.LAYOUTS),
    'The file\'s layout (default: recognised from its tensor names).',
)
flags.DEFINE_integer(
    'num_classes',
    None,
    'Classes including background in the file; default: inferred from the class head.',
    lower_bound=2,
)
flags.DEFINE_enum(
    'class_order',
    'source',
    list(pytorch_ssd.CLASS_ORDERS),
    'source: the file\'s class channels (torchvision COCO: 91 category ids, unused '
    'ids included). contiguous: background + the 80 used COCO ids in id order (the '
    'labels tf_convert_data.py gives COCO); the softmax then runs over 81 classes.',
)
flags.DEFINE_enum(
    'backbone_scope',
    'ssd_300_vgg',
    list(pytorch_convert.BACKBONE_SCOPES),
    'VGG base files only: the net whose backbone variables to write.',
)
flags.DEFINE_boolean(
    'allow_partial', False, 'Write the matching part even when tensors are unmapped or missing.'
)
flags.DEFINE_string(
    'labels_file',
    None,
    'Class names one per line, label 1 first, background excluded, replacing the layout\'s own '
    '(placeholders class_1.. where it has none); one per class of the converted net, after '
    '--class_order (e.g. 80 for torchvision COCO with contiguous).',
)
flags.mark_flags_as_required(['pth_path', 'output_path'])


def main(_):
    checkpoint_io.run_script(
        (pth_reader.PthError, pytorch_ssd.ConversionError),
        pytorch_convert.convert,
        FLAGS.pth_path,
        FLAGS.output_path,
        layout=FLAGS.layout,
        num_classes=FLAGS.num_classes,
        class_order=FLAGS.class_order,
        backbone_scope=FLAGS.backbone_scope,
        allow_partial=FLAGS.allow_partial,
        labels_file=FLAGS.labels_file,
    )


def _interrupted():
    return checkpoint_io.interrupted_message(FLAGS.output_path)


if __name__ == '__main__':
    logs.run(main, _interrupted)
