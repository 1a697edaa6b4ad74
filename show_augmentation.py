r"""Writes a PNG grid of augmented (or evaluation-preprocessed) samples of a converted dataset,
with their boxes and class names: what the net is trained on, before training.

  python show_augmentation.py --dataset_dir=tfrecords --dataset_name=pascalvoc_2007 \
      --dataset_split_name=trainval --model_name=ssd_300_vgg --num_samples=16 --output=grid.png [--seed=3]
  python show_augmentation.py ... --eval --resize=PAD_AND_RESIZE   # the evaluation input

Boxes are drawn in the class's colour with its name; difficult objects get a "*" and a thin box.
"""

import argparse
import os

# First: quiets TensorFlow's start-up lines before anything loads TF (see the module).
from tf_extended import logs
from datasets import dataset_factory
from nets import nets_factory
from preprocessing import preprocessing_factory
from preprocessing import show
from preprocessing.ssd_preprocessing import RESIZE_MODES


def _default_image_size(model_name):
    try:
        return tuple(nets_factory.get_network(model_name).default_params.img_shape)
    except ValueError:
        raise ValueError(f'{model_name!r} is not a network name: give --image_size.') from None


def main(argv=None):
    parser = argparse.ArgumentParser(
        # argparse's own errors as the script's others: `show_augmentation: error:`, no `.py`.
        prog=os.path.splitext(os.path.basename(__file__))[0],
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        '--helpfull', action='help', help='The same as --help (as the other scripts).'
    )
    parser.add_argument('--dataset_dir', required=True, help='Folder of the converted TFRecords.')
    parser.add_argument('--dataset_name', required=True, help='Registry name, e.g. pascalvoc_2007.')
    parser.add_argument(
        '--dataset_split_name',
        '--split',
        dest='split',
        required=True,
        help='Split name, e.g. trainval or test (as in train/eval; --split: the same).',
    )
    parser.add_argument('--model_name', default='ssd_300_vgg', help='Selects the preprocessing.')
    parser.add_argument(
        '--num_samples',
        type=int,
        default=16,
        help=f'Examples drawn (at most {show.MAX_GRID_PIXELS} pixels in all).',
    )
    parser.add_argument(
        '--output',
        required=True,
        help='PNG file to write (replaces only a grid this script wrote).',
    )
    parser.add_argument('--seed', type=int, default=None, help='Reproducible augmentation.')
    parser.add_argument(
        '--image_size',
        type=int,
        nargs=2,
        metavar=('HEIGHT', 'WIDTH'),
        help=f"Output size, each side 1 to {show.MAX_SIDE}; default: the model's input size.",
    )
    parser.add_argument('--eval', action='store_true', help='Evaluation preprocessing instead.')
    parser.add_argument(
        '--resize',
        default='WARP_RESIZE',
        choices=RESIZE_MODES,
        help='Evaluation resize mode (with --eval).',
    )
    args = parser.parse_args(argv)

    try:
        out_shape = (
            tuple(args.image_size) if args.image_size else _default_image_size(args.model_name)
        )
        show.check_grid_size(args.num_samples, out_shape)
        show.check_png_output(args.output)
        dataset = dataset_factory.get_dataset(args.dataset_name, args.split, args.dataset_dir)
        pipeline = preprocessing_factory.get_preprocessing(args.model_name)
        options = {'resize': args.resize} if args.eval else {}
        grid = show.render_grid(
            lambda: dataset.make_dataset(shuffle=False),
            pipeline,
            dataset.labels_to_names,
            args.num_samples,
            out_shape,
            is_training=not args.eval,
            seed=args.seed,
            **options,
        )
        show.write_png(args.output, grid)
    except (ValueError, OSError) as e:
        # Named here: main(argv) is also called in-process, where sys.argv[0] is the caller's.
        logs.exit_error(e, os.path.splitext(os.path.basename(__file__))[0])
    print(f'Wrote {args.output} ({grid.shape[1]}x{grid.shape[0]}).')


if __name__ == '__main__':
    logs.run_plain(main, lambda: 'nothing was written')
