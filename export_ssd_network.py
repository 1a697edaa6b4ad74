r"""Exports an SSD checkpoint for inference: frozen graph, SavedModel, TFLite float32 and int8,
OpenVINO IR (fp32 or bf16 chosen when it is loaded) and its int8 quantisation (NNCF).

    python export_ssd_network.py --checkpoint_path=train/ --dataset_name=pascalvoc_2007 \
        --dataset_split_name=train --dataset_dir=tfrecords --output_dir=export/ssd300
    # only the TF formats, no dataset needed, bfloat16 arithmetic:
    python export_ssd_network.py --checkpoint_path=train/ --formats=frozen_graph,saved_model \
        --compute_dtype=bfloat16 --output_dir=out
    # a checkpoint without a model card (the older TF port's): the model from flags
    python export_ssd_network.py --checkpoint_path=model.ckpt --model_name=ssd_300_vgg \
        --num_classes=21 --labels_file=labels.txt --formats=frozen_graph --output_dir=out

Every export takes uint8 RGB images of any size (`--fixed_size`: of the net's input size) and
holds the evaluation preprocessing, the net and NMS; see inference/export.py for the files and
inference/detection.py for the tensors. The model comes from the checkpoint's card (see
model/card.py), which metadata.json carries on. The dataset split (--dataset_*) gives the
calibration images of tflite_int8 and openvino_int8 (the first --num_calibration_images), and
the class names of a checkpoint without a card.
"""

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from absl import flags

from datasets import dataset_factory
from inference import detection
from inference import export
from model import card as card_lib
from model import checkpoints
from model import cli
from tf_extended import folder_lock
from tf_extended import signals

FLAGS = flags.FLAGS
flags.DEFINE_string(
    'checkpoint_path', None, 'Checkpoint prefix, one of its files, or a directory (its latest).'
)
flags.DEFINE_string(
    'dataset_name', None, 'Dataset registry name: class names and int8 calibration.'
)
flags.DEFINE_string(
    'dataset_split_name',
    'train',
    'Split giving the int8 calibration images: training images (calibrating on the split you '
    'evaluate on fits the quantisation to it).',
)
flags.DEFINE_string('dataset_dir', None, 'Folder of the converted TFRecords.')
flags.DEFINE_integer(
    'num_calibration_images',
    100,
    f'Images for int8 calibration, at most {cli.MAX_CALIBRATION_IMAGES} (they are held in memory '
    f'together; a few hundred calibrate well).',
    lower_bound=1,
    upper_bound=cli.MAX_CALIBRATION_IMAGES,
)
flags.DEFINE_string(
    'output_dir',
    None,
    'Folder receiving the exports and metadata.json; it must be new or empty unless --overwrite.',
)
flags.DEFINE_boolean(
    'overwrite',
    False,
    'Write into a non-empty --output_dir: replace the files an earlier export wrote there '
    '(its metadata.json lists them) and remove its model files of other formats, which the new '
    'metadata.json would not describe, and its saved_model/ where that holds only what an export '
    'writes (else it is kept and logged). A file this export would replace that no export wrote '
    'stops it before any work; other files are left alone.',
)
flags.DEFINE_list('formats', list(export.FORMATS), f'Any of {", ".join(export.FORMATS)}.')
flags.DEFINE_integer(
    'batch_size',
    None,
    f'Static batch size of the frozen graph and SavedModel (default: any), at most '
    f'{cli.MAX_BATCH_SIZE}: the graph is built for that many images per call, which must fit in '
    f'memory together.',
    lower_bound=1,
    upper_bound=cli.MAX_BATCH_SIZE,
)
flags.DEFINE_boolean(
    'fixed_size',
    False,
    'Every model, the OpenVINO IR included, takes images of the net\'s input size only (no '
    'resize op on the device): detect refuses other sizes, eval warps its images to it.',
)
flags.DEFINE_integer(
    'tflite_batch_size',
    1,
    f'Batch size of the TFLite models (static), at most {cli.MAX_BATCH_SIZE}: the converter '
    f'builds (and int8 calibrates on) batches of that many images, which must fit in memory '
    f'together.',
    lower_bound=1,
    upper_bound=cli.MAX_BATCH_SIZE,
)
cli.define_model_flags()
cli.define_moving_average_flag()
flags.mark_flags_as_required(['checkpoint_path', 'output_dir'])


def main(_):
    logs.absl_only()
    logs.drop_tensorflow_messages(*export.TF_CHATTER)
    lock = folder_lock.FolderLock(FLAGS.output_dir)
    try:
        # The flags that need no file, before --output_dir is locked (created) or anything read
        # or logged.
        export.check_formats(FLAGS.formats)
        if FLAGS['tflite_batch_size'].present and not any(
            fmt.startswith('tflite') for fmt in FLAGS.formats
        ):
            raise ValueError(
                f'--tflite_batch_size sets the batch of the TFLite models; --formats='
                f'{",".join(FLAGS.formats)} has none (add tflite_float or tflite_int8, or leave '
                f'it out).'
            )
        cli.check_model_flags(cli.ModelFlags.from_flags())
        if FLAGS.dataset_name:
            dataset_factory.check_dataset_name(FLAGS.dataset_name)
        # Before the folder is read: two exports into it would replace each other's files.
        with signals.held():  # a Ctrl-C or SIGTERM as it is taken: released below
            lock = folder_lock.acquire(FLAGS.output_dir, '--output_dir', 'export')
        export.check_output_dir(FLAGS.output_dir, FLAGS.formats, FLAGS.overwrite)  # before work
        int8 = [fmt for fmt in export.INT8_FORMATS if fmt in FLAGS.formats]
        missing = [f'--{name}' for name in ('dataset_name', 'dataset_dir') if not FLAGS[name].value]
        if int8 and missing:  # before the card is read and described
            others = [fmt for fmt in FLAGS.formats if fmt not in int8]
            leave_out = f', or leave them out: --formats={",".join(others)}' if others else ''
            raise ValueError(
                f'{" and ".join(int8)} {"need" if len(int8) > 1 else "needs"} calibration '
                f'images: pass {" and ".join(missing)} (the records of a split of training '
                f'images, --dataset_split_name={FLAGS.dataset_split_name}){leave_out}.'
            )
        dataset = None
        if FLAGS.dataset_name:
            dataset = dataset_factory.get_dataset(
                FLAGS.dataset_name, FLAGS.dataset_split_name, FLAGS.dataset_dir
            )
        values = cli.ModelFlags.from_flags()
        card = cli.resolve_card(values, FLAGS.checkpoint_path, dataset)
        detection.check_checkpoint_fits(
            card,
            FLAGS.checkpoint_path,
            values.model_card or card_lib.find_for_checkpoint(FLAGS.checkpoint_path),
        )
        calibration = None
        if int8:
            if 'test' in FLAGS.dataset_split_name.lower():
                print(
                    f'note: calibrating {" and ".join(int8)} on split '
                    f'{FLAGS.dataset_split_name}, which int8 models are usually evaluated on: '
                    f'calibrate on training images (--dataset_split_name=train) to keep it unseen',
                    flush=True,
                )
            calibration = export.representative_images(
                dataset, FLAGS.num_calibration_images, card if FLAGS.fixed_size else None
            )
            if len(calibration) < FLAGS.num_calibration_images:
                print(
                    f'calibrating {" and ".join(int8)} on {len(calibration)} images: all the '
                    f'split has (--num_calibration_images={FLAGS.num_calibration_images})',
                    flush=True,
                )
        export.export(
            card,
            FLAGS.checkpoint_path,
            FLAGS.output_dir,
            FLAGS.formats,
            FLAGS.batch_size,
            FLAGS.fixed_size,
            FLAGS.tflite_batch_size,
            calibration,
            f'{FLAGS.dataset_name}/{FLAGS.dataset_split_name}' if dataset else None,
            overwrite=FLAGS.overwrite,
            moving_average_decay=FLAGS.moving_average_decay,
        )
    except (ValueError, OSError, checkpoints.CheckpointUnavailable) as err:
        logs.exit_error(err)
    finally:
        lock.release()


def _interrupted():
    return (
        f'each file already in {FLAGS.output_dir} is complete (written atomically), '
        f'metadata.json comes last; run the same command with --overwrite to export again'
    )


if __name__ == '__main__':
    logs.run(main, _interrupted)
