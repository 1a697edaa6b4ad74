r"""Scores detection files offline and prints per-class AP and mAP.

VOC devkit results files (`comp4_det_<split>_<class>.txt`: `image_id score xmin ymin xmax ymax`,
1-based pixels) against a VOC folder (Annotations/*.xml, ImageSets/Main/<split>.txt):
  python score_detections.py --results_dir=eval --voc_dir=VOC2007 --split=test [--labels_file=...]
Classes: --labels_file, else --model_card's, else <voc_dir>/labels.txt when present, else the 20
VOC classes. A class without a results file counts as a class without detections (one warning
says how many had none); --strict makes it an error, as in the devkit. A folder without a results
file for any class is an error.

COCO results JSON against an annotation file (per-class AP@[.5:.95] and AP@.5, pycocotools'
12 numbers):
  python score_detections.py --coco_results=eval/coco_detections.json \
      --coco_annotations=instances_val2017.json
"""

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags

from evaluation import outputs as eval_outputs
from evaluation import scoring
from model import cli

FLAGS = flags.FLAGS
flags.DEFINE_string('results_dir', None, 'VOC: folder holding the results files.')
flags.DEFINE_string('voc_dir', None, 'VOC: the dataset folder (Annotations/, ImageSets/Main/).')
flags.DEFINE_string('split', 'test', 'VOC: the image set.')
flags.DEFINE_string(
    'labels_file',
    None,
    'VOC: class names, one per line (label = line number), or a label_map.pbtxt (id order).',
)
flags.DEFINE_string(
    'model_card',
    None,
    'VOC: the class names of a model card (the model.json of a '
    'train dir, export or converted checkpoint, or that folder) when --labels_file is not given.',
)
flags.DEFINE_string('competition', 'comp4', 'VOC: results file prefix (comp3 or comp4).')
flags.DEFINE_float('iou_threshold', 0.5, 'VOC: IoU of a true positive.')
cli.register_bound('iou_threshold', lambda v: 0 < v <= 1, 'lie in (0, 1] (an IoU, e.g. 0.5)')
flags.DEFINE_boolean(
    'strict',
    False,
    'VOC: a class without a results file is an error (the devkit\'s '
    'rule). Default: it counts as a class without detections, with one warning '
    'saying how many classes had none.',
)
cli.define_iou_rule('iou_threshold', 'VOC: ')
cli.define_remove_difficult('VOC: ')
flags.DEFINE_string('coco_results', None, 'COCO: results JSON.')
flags.DEFINE_string('coco_annotations', None, 'COCO: annotation JSON (instances_*.json).')


def main(_):
    voc = FLAGS.results_dir or FLAGS.voc_dir
    coco = FLAGS.coco_results or FLAGS.coco_annotations
    # Usage errors are one line, as the other scripts': absl's UsageError prints the flags' help
    # before it.
    try:
        if bool(voc) == bool(coco):
            raise ValueError(
                'give either --results_dir and --voc_dir (VOC) or --coco_results and '
                '--coco_annotations (COCO).'
            )
        if voc:
            if not (FLAGS.results_dir and FLAGS.voc_dir):
                raise ValueError('VOC scoring needs both --results_dir and --voc_dir.')
            result = scoring.score_voc_results(
                FLAGS.results_dir,
                FLAGS.voc_dir,
                FLAGS.split,
                scoring.class_names_from(FLAGS.labels_file, FLAGS.voc_dir, FLAGS.model_card),
                FLAGS.competition,
                FLAGS.iou_threshold,
                FLAGS.iou_rule,
                strict=FLAGS.strict,
                remove_difficult=FLAGS.remove_difficult,
            )
            print(result.format_table())
        else:
            if not (FLAGS.coco_results and FLAGS.coco_annotations):
                raise ValueError('COCO scoring needs both --coco_results and --coco_annotations.')
            result, names = scoring.score_coco_results(FLAGS.coco_results, FLAGS.coco_annotations)
            print(eval_outputs.format_coco_table(result, names))
    except (ValueError, OSError) as err:
        logs.exit_error(err)


def _interrupted():
    return 'nothing was written; run the same command again'


if __name__ == '__main__':
    logs.run(main, _interrupted)
