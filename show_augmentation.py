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
        raise ValueError(
            f'--model_name={model_name} names a preprocessing, not a network, so it has no '
            f'input size: give --image_size (networks: {", ".join(nets_factory.networks_map)}).'
        ) from None


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
        choices=RESIZE_MODES,
        help='Evaluation resize mode (with --eval; default WARP_RESIZE, as eval\'s).',
    )
    args = parser.parse_args(argv)
    if args.resize is not None and not args.eval:
        parser.error('--resize is the evaluation input\'s resize mode: pass --eval with it.')

    try:
        pipeline = preprocessing_factory.get_preprocessing(args.model_name)
        out_shape = (
            tuple(args.image_size) if args.image_size else _default_image_size(args.model_name)
        )
        show.check_grid_size(args.num_samples, out_shape)
        show.check_png_output(args.output)
        dataset = dataset_factory.get_dataset(args.dataset_name, args.split, args.dataset_dir)
        if dataset.num_samples < args.num_samples:
            print(
                f'note: the {args.split} split has {dataset.num_samples} example(s): the grid '
                f'shows them all, not --num_samples={args.num_samples}.'
            )
        options = {'resize': args.resize or 'WARP_RESIZE'} if args.eval else {}
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
