"""The synthetic shapes dataset: determinism, exact boxes (checked on the pixels), counts, VOC layout."""

import os

import cv2
import numpy as np
import pytest

from datasets import pascalvoc
from datasets import synthetic
from tests import data_fixtures as fx

# A pixel belongs to an object when every channel is within this of the object's fill colour:
# jitter is already in the returned colour, noise is N(0, 5) (6 sigma) and the background is desaturated
# (channel spread <= 30 before noise, against >= 150 for every class colour).
TOL = 30


def _match(image, color):
    return (np.abs(image.astype(int) - np.array(color)) <= TOL).all(axis=2)


def test_boxes_are_tight_around_the_visible_pixels():
    for index in range(25):
        image, objects = synthetic.render_image(seed=11, index=index)
        h, w = image.shape[:2]
        for o in objects:
            x0, y0, x1, y1 = (
                o['xmin'] - 1,
                o['ymin'] - 1,
                o['xmax'] - 1,
                o['ymax'] - 1,
            )  # 0-based inclusive
            assert 0 <= x0 <= x1 < w and 0 <= y0 <= y1 < h
            m = _match(image, o['color'])
            inside = m[y0 : y1 + 1, x0 : x1 + 1]
            # The shape's colour reaches all four edges of its box...
            assert (
                inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()
            ), (index, o)
            # ...and does not continue in the one-pixel ring outside it (same-class objects never touch).
            ring = np.zeros((h, w), bool)
            ring[max(y0 - 1, 0) : y1 + 2, max(x0 - 1, 0) : x1 + 2] = True
            ring[y0 : y1 + 1, x0 : x1 + 1] = False
            assert not (m & ring).any(), (index, o)
            # The returned visible mask agrees with the box and with the pixels.
            ys, xs = np.nonzero(o['mask'])
            assert (xs.min(), ys.min(), xs.max(), ys.max()) == (x0, y0, x1, y1)
            assert _match(image, o['color'])[o['mask']].mean() > 0.999


def test_counts_sizes_flags_within_spec():
    per_class, sizes, n_objects, difficult, truncated = set(), [], [], 0, 0
    for index in range(60):
        image, objects = synthetic.render_image(seed=0, index=index)
        h, w = image.shape[:2]
        assert (
            synthetic.MIN_SIDE <= h <= synthetic.MAX_SIDE
            and synthetic.MIN_SIDE <= w <= synthetic.MAX_SIDE
        )
        n_objects.append(len(objects))
        for o in objects:
            per_class.add(o['name'])
            side = max(o['xmax'] - o['xmin'] + 1, o['ymax'] - o['ymin'] + 1)
            sizes.append(side / min(h, w))
            difficult += o['difficult']
            truncated += o['truncated']
            if side < synthetic.TINY_SIDE:
                assert o['difficult'] == 1
    assert min(n_objects) >= 1 and max(n_objects) <= 8 and len(set(n_objects)) >= 6
    assert per_class == set(synthetic.CLASSES)
    assert min(sizes) < 0.06 and max(sizes) > 0.7  # from tiny to almost the whole image
    total = sum(n_objects)
    assert 0.03 * total < difficult < 0.35 * total and 0.03 * total < truncated < 0.5 * total


def test_generate_deterministic_voc_layout(tmp_path):
    a, b, c = str(tmp_path / 'a'), str(tmp_path / 'b'), str(tmp_path / 'c')
    summary = synthetic.generate(a, 8, seed=3)
    synthetic.main(['--output_dir', b, '--num_images', '8', '--seed', '3'])
    synthetic.generate(c, 8, seed=4)

    def files(root):
        out = {}
        for dirpath, _, names in os.walk(root):
            for n in names:
                with open(os.path.join(dirpath, n), 'rb') as f:
                    out[os.path.relpath(os.path.join(dirpath, n), root)] = f.read()
        return out

    fa, fb, fc = files(a), files(b), files(c)
    assert fa == fb
    assert fa.keys() == fc.keys() and fa['JPEGImages/000001.jpg'] != fc['JPEGImages/000001.jpg']
    assert sorted(k for k in fa if k.startswith('ImageSets')) == [
        f'ImageSets/Main/{s}.txt' for s in ('test', 'train', 'trainval', 'val')
    ]
    split = {
        s: fa[f'ImageSets/Main/{s}.txt'].decode().split()
        for s in ('train', 'val', 'trainval', 'test')
    }
    assert sorted(split['train'] + split['val']) == split['trainval']
    assert sorted(split['trainval'] + split['test']) == [f'{i:06d}' for i in range(1, 9)]
    assert summary['splits'] == {k: len(v) for k, v in split.items()}
    names = fa['labels.txt'].decode().split()
    assert tuple(names) == synthetic.CLASSES
    # The XML parses with the converter's VOC loader to the rendered boxes, and the JPEG is close
    # to the render.
    loader = pascalvoc.VocLoader(names)
    for index in range(8):
        image, objects = synthetic.render_image(3, index)
        record, report = loader(
            pascalvoc.VocSource(
                os.path.join(a, 'Annotations', f'{index + 1:06d}.xml'),
                os.path.join(a, 'JPEGImages'),
                f'{index + 1:06d}',
            )
        )
        assert report == []
        h, w = image.shape[:2]
        np.testing.assert_allclose(
            [o.box for o in record.objects],
            [fx.voc_rel((o['xmin'], o['ymin'], o['xmax'], o['ymax']), w, h) for o in objects],
        )
        assert [o.difficult for o in record.objects] == [o['difficult'] for o in objects]
        assert [o.truncated for o in record.objects] == [o['truncated'] for o in objects]
        decoded = cv2.imdecode(np.frombuffer(record.image.data, np.uint8), cv2.IMREAD_COLOR)[
            :, :, ::-1
        ]
        assert (
            np.abs(decoded.astype(int) - image.astype(int)).mean() < 4
        )  # JPEG q95 smooths some noise
    with pytest.raises(ValueError, match='not empty'):
        synthetic.generate(a, 2)


@pytest.mark.parametrize('flag', ['--help', '--helpfull'])
def test_help_and_helpfull_list_the_flags(flag, capsys):
    """`python -m datasets.synthetic --helpfull`, as every script takes it (README), exits 0 with
    the flags; it stopped with 'the following arguments are required: --output_dir' (exit 2)."""
    with pytest.raises(SystemExit) as stop:
        synthetic.main([flag])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert all(f in shown for f in ('--output_dir', '--num_images', '--seed')), shown
