"""The sample grid: drawing on an in-memory dataset, and the command on a converted VOC folder."""

import os
import zlib

import cv2
import pytest
import numpy as np
import tensorflow as tf

import show_augmentation
from preprocessing import preprocessing_factory, show
from tests.test_preprocessing_helpers import BACKGROUND, COLORS, colored_boxes_image
from tests.conftest import run_script

BOXES = np.array([[0.25, 0.2, 0.75, 0.6], [0.1, 0.7, 0.4, 0.95]], np.float32)


def _examples(count):
    image, boxes = colored_boxes_image(120, 160, BOXES)

    def generate():
        for _ in range(count):
            yield {
                'image': image,
                'labels': np.array([3, 7], np.int64),
                'bboxes': boxes,
                'difficult': np.array([0, 1], np.int64),
            }

    signature = {
        'image': tf.TensorSpec([None, None, 3], tf.uint8),
        'labels': tf.TensorSpec([None], tf.int64),
        'bboxes': tf.TensorSpec([None, 4], tf.float32),
        'difficult': tf.TensorSpec([None], tf.int64),
    }
    return lambda: tf.data.Dataset.from_generator(generate, output_signature=signature), boxes


def test_grid_layout_boxes_and_png(tmp_path):
    examples, boxes = _examples(5)
    pipeline = preprocessing_factory.get_preprocessing('ssd_300_vgg')
    grid = show.render_grid(
        examples, pipeline, {3: 'cat', 7: 'dog'}, 5, (150, 200), is_training=False
    )
    # 5 tiles -> 3 columns, 2 rows of 150x200 with 4-pixel gaps.
    assert grid.shape == (2 * 154 + 4, 3 * 204 + 4, 3)
    np.testing.assert_array_equal(grid[-154:, -204:], 255)  # the sixth, empty, cell
    tile = grid[4:154, 4:204]
    # The de-normalised, warp-resized image is back: object colour inside, grey background.
    np.testing.assert_array_equal(tile[75, 80], COLORS[0])
    np.testing.assert_array_equal(tile[140, 10], BACKGROUND)
    # The thick (not difficult) box of class 3 runs along the object's top edge.
    y0, x0, _, x1 = np.round(boxes[0] * [150, 200, 150, 200]).astype(int)
    edge = tile[y0, x0 + 30 : x1 - 30]
    np.testing.assert_array_equal(edge, np.broadcast_to(show._class_color(3), edge.shape))
    path = tmp_path / 'sub' / 'grid.png'
    show.write_png(str(path), grid)
    np.testing.assert_array_equal(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), grid)
    assert os.listdir(path.parent) == ['grid.png']
    # A valid PNG (every chunk's CRC) with the tool's mark as its second chunk.
    data, chunks, at = path.read_bytes(), [], 8
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], 'big')
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + size]
        assert int.from_bytes(data[at + 8 + size : at + 12 + size], 'big') == zlib.crc32(
            kind + body
        )
        chunks.append((kind, body))
        at += 12 + size
    assert chunks[1] == (b'tEXt', b'Software\x00show_augmentation.py')
    assert [k for k, _ in chunks][:: len(chunks) - 1] == [b'IHDR', b'IEND']


def test_training_grid_is_reproducible_with_a_seed():
    examples, _ = _examples(4)
    pipeline = preprocessing_factory.get_preprocessing('ssd_300_mobilenet')
    grids = [
        show.render_grid(examples, pipeline, {}, 4, (100, 100), seed=seed) for seed in (1, 1, 2)
    ]
    np.testing.assert_array_equal(grids[0], grids[1])
    assert not np.array_equal(grids[0], grids[2])


def _write_voc(root):
    """Two-image VOC folder: JPEGImages, Annotations, ImageSets/Main/train.txt."""
    for sub in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(os.path.join(root, sub))
    ids = ['000001', '000002']
    for i, name in enumerate(ids):
        image, _ = colored_boxes_image(100 + 20 * i, 150, BOXES)
        cv2.imwrite(
            os.path.join(root, 'JPEGImages', name + '.jpg'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        )
        xml = (
            f'<annotation><filename>{name}.jpg</filename><size><width>150</width>'
            f'<height>{100 + 20 * i}</height><depth>3</depth></size>'
            '<object><name>dog</name><difficult>0</difficult><truncated>0</truncated>'
            '<bndbox><xmin>31</xmin><ymin>26</ymin><xmax>90</xmax><ymax>75</ymax></bndbox>'
            '</object></annotation>'
        )
        with open(os.path.join(root, 'Annotations', name + '.xml'), 'w') as f:
            f.write(xml)
    with open(os.path.join(root, 'ImageSets/Main/train.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')


def test_show_command_on_a_converted_voc_dataset(tmp_path, capsys):
    voc, records, output = tmp_path / 'voc', tmp_path / 'records', tmp_path / 'grid.png'
    _write_voc(str(voc))
    converted = run_script(
        'tf_convert_data.py',
        '--dataset_name=pascalvoc',
        f'--dataset_dir={voc}',
        '--split=train',
        f'--output_dir={records}',
        '--output_name=voc_2007_train',
        '--num_workers=1',
    )
    assert converted.returncode == 0, converted.stderr[-3000:]

    def show(path, *extra):
        show_augmentation.main(
            [
                *extra,
                '--dataset_dir',
                str(records),
                '--dataset_name',
                'pascalvoc_2007',
                '--dataset_split_name',
                'train',
                '--model_name',
                'ssd_300_vgg',
                '--num_samples',
                '4',
                '--output',
                str(path),
                '--seed',
                '3',
            ]
        )

    show(output)
    grid = cv2.imread(str(output))
    # Only 2 examples exist: 2 tiles of 300x300 side by side, said.
    assert grid.shape == (308, 612, 3)
    assert capsys.readouterr().out == (
        'note: the train split has 2 example(s): the grid shows them all, not --num_samples=4.\n'
        f'Wrote {output} (612x308).\n'
    )
    show(output)  # an earlier grid is replaced
    # A wrong --output naming a file of the data (it replaced the shard with a PNG, exit 0).
    (shard,) = records.glob('voc_2007_train_*.tfrecord')
    before = shard.read_bytes()
    with pytest.raises(SystemExit) as err:
        show(shard)
    assert str(err.value) == (
        f'show_augmentation: error: {shard} exists and is not a grid show_augmentation.py '
        f'wrote; refusing to replace it: choose another --output (a new file, or an earlier grid; '
        f'grids written before this check carry no mark: delete such a grid first).'
    )
    assert shard.read_bytes() == before
    # The user's own picture (a PNG, and a link to the earlier grid) is not replaced either.
    photo, link = tmp_path / 'family.png', tmp_path / 'link.png'
    cv2.imwrite(str(photo), np.full((20, 30, 3), 7, np.uint8))
    link.symlink_to(output)
    for path in (photo, link):
        before = path.read_bytes()
        with pytest.raises(SystemExit) as err:
            show(path)
        assert 'exists and is not a grid show_augmentation.py wrote' in str(err.value)
        assert path.read_bytes() == before
    # A file on the way: it said "[Errno 17] File exists".
    with pytest.raises(SystemExit) as err:
        show(output / 'x.png')
    assert str(err.value) == (
        f'show_augmentation: error: --output={output}/x.png: {output} is a file, not a folder.'
    )
    # --resize without --eval did nothing (the training augmentation has no resize mode).
    with pytest.raises(SystemExit):
        show(tmp_path / 'r.png', '--resize', 'NONE')
    assert "--resize is the evaluation input's resize mode: pass --eval with it." in (
        capsys.readouterr().err
    )
    # Another extension: it wrote PNG bytes into aug.jpg.
    with pytest.raises(SystemExit) as err:
        show(tmp_path / 'aug.jpg')
    assert str(err.value) == (
        f'show_augmentation: error: --output={tmp_path}/aug.jpg: the grid is written as PNG; name '
        'it .png.'
    )


@pytest.mark.parametrize(
    'extra,message',
    [
        (
            ['--image_size', '40000', '40000'],
            '--image_size=40000 40000: each side must be 1 to 4096 pixels.',
        ),
        (['--image_size', '0', '300'], '--image_size=0 300: each side must be 1 to 4096 pixels.'),
        (
            ['--num_samples', '0'],
            '--num_samples=0 of 300x300: give 1 to 1111 samples at that size (at most 100000000 '
            'pixels in all).',
        ),
        (
            ['--num_samples', '30', '--image_size', '4096', '4096'],
            '--num_samples=30 of 4096x4096: give 1 to 5 samples at that size (at most 100000000 '
            'pixels in all).',
        ),
        # It said "give --image_size", then with one "Unknown preprocessing 'nonet'".
        (
            ['--model_name', 'nonet'],
            "unknown preprocessing 'nonet'; known: ['ssd_300_mobilenet', 'ssd_300_vgg', "
            "'ssd_512_vgg', 'ssd_mobilenet', 'ssd_vgg'].",
        ),
        (
            ['--model_name', 'ssd_vgg'],
            '--model_name=ssd_vgg names a preprocessing, not a network, so it has no input size: '
            'give --image_size (networks: ssd_300_vgg, ssd_512_vgg, ssd_300_mobilenet).',
        ),
    ],
)
def test_grid_sizes_that_exhaust_memory_are_refused(tmp_path, extra, message):
    """--image_size 40000 40000 allocated 19 GB per sample (an abort or a TF OOM traceback);
    0 gave a 13-line autograph traceback. Refused before the dataset is read."""
    with pytest.raises(SystemExit) as err:
        show_augmentation.main(
            ['--dataset_dir', str(tmp_path / 'none'), '--dataset_name', 'pascalvoc_2007']
            + ['--split', 'train', '--output', str(tmp_path / 'g.png'), *extra]
        )
    assert str(err.value) == f'show_augmentation: error: {message}'
    assert os.listdir(tmp_path) == []


def test_grid_of_images_of_different_sizes():
    """--eval --resize=NONE keeps each image's size: the grid failed with numpy's 'could not
    broadcast input array from shape (211,304,3) into shape (187,285,3)'."""
    a = np.full((3, 5, 3), 10, np.uint8)
    b = np.full((4, 2, 3), 20, np.uint8)
    grid = show.make_grid([a, b], gap=1)
    want = np.full((1 + 4 + 1, 1 + 2 * (5 + 1), 3), 255, np.uint8)
    want[1:4, 1:6] = 10
    want[1:5, 7:9] = 20
    np.testing.assert_array_equal(grid, want)
