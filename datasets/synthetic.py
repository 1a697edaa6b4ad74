"""A built-in synthetic detection dataset in Pascal VOC layout: coloured shapes on clutter.

    python -m datasets.synthetic --output_dir /tmp/shapes --num_images 1000 --seed 0

writes Annotations/<id>.xml (VOC XML), JPEGImages/<id>.jpg, ImageSets/Main/{train,val,trainval,
test}.txt and labels.txt (the class names, for `tf_convert_data.py --labels_file`). The splits:
about 60 % of the images in train, 15 % in val, 25 % in test; trainval = train + val. The output
depends only on (num_images, seed), and image i only on (seed, i).

Content, chosen so that a small SSD can learn it in minutes but not trivially:
- 6 classes, each one shape in one saturated colour (jittered ±15 per channel): `CLASSES`,
  `CLASS_COLORS` (RGB);
- images of 160–320 px per side, with a desaturated gradient background, low-frequency blotches
  and desaturated line/curve clutter (no filled shapes, no saturated colours, so nothing
  class-like), plus Gaussian pixel noise (σ = 5) over everything;
- 1–8 objects per image, diameters from 8 px to 0.9 × the short side, aspect 0.7–1.4, rotated;
  later objects occlude earlier ones (each keeps ≥ 30 % of its in-image pixels), objects of the
  same class never touch, objects may be cut by the border (≥ 60 % inside; `truncated` = 1);
- `difficult` = 1 for tiny objects (box side < 16 px) or heavily occluded ones (< 50 % visible);
- boxes are exact: the tight 1-based inclusive pixel box of the visible pixels of the object.
Images are JPEG quality 95 with 4:4:4 chroma so colours stay exact up to compression noise.
"""

import argparse
import math
import os
import sys
from xml.sax.saxutils import escape

import cv2
import numpy as np

from tf_extended import atomic_io

CLASSES = ('circle', 'square', 'triangle', 'star', 'cross', 'hexagon')
CLASS_COLORS = {  # RGB; every pair differs by >= 120 in some channel
    'circle': (220, 40, 40),
    'square': (40, 180, 60),
    'triangle': (50, 80, 230),
    'star': (235, 200, 30),
    'cross': (200, 50, 210),
    'hexagon': (30, 200, 210),
}
COLOR_JITTER = 15
NOISE_SIGMA = 5.0
MIN_SIDE, MAX_SIDE = 160, 320
MAX_OBJECTS = 8
TINY_SIDE = 16  # boxes with both sides below this are difficult
MIN_VISIBLE = 0.3  # an occluded object keeps at least this fraction of its in-image pixels
DIFFICULT_VISIBLE = 0.5
MIN_INSIDE = 0.6  # at least this fraction of a shape lies inside the image


def _polygon(name):
    """Unit-radius outline (K×2, x right, y down) of a non-circle shape."""
    if name == 'square':
        k, radii = 4, [1.0]
    elif name == 'triangle':
        k, radii = 3, [1.0]
    elif name == 'hexagon':
        k, radii = 6, [1.0]
    elif name == 'star':
        k, radii = 10, [1.0, 0.45]
    else:  # cross: a plus sign with arms 0.34 wide
        w = 0.34
        return np.array(
            [
                (w, -1),
                (w, -w),
                (1, -w),
                (1, w),
                (w, w),
                (w, 1),
                (-w, 1),
                (-w, w),
                (-1, w),
                (-1, -w),
                (-w, -w),
                (-w, -1),
            ],
            np.float64,
        )
    angles = -np.pi / 2 + 2 * np.pi * np.arange(k) / k
    r = np.array([radii[i % len(radii)] for i in range(k)])
    return np.stack([r * np.cos(angles), r * np.sin(angles)], axis=1)


def _shape_mask(name, cx, cy, diameter, aspect, angle, height, width, pad):
    """Mask (uint8 0/1) of the shape on a canvas padded by `pad` on every side."""
    mask = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    rx, ry = diameter / 2 * math.sqrt(aspect), diameter / 2 / math.sqrt(aspect)
    shift = 4
    if name == 'circle':
        center = (int(round((cx + pad) * 16)), int(round((cy + pad) * 16)))
        axes = (int(round(rx * 16)), int(round(ry * 16)))
        cv2.ellipse(mask, center, axes, math.degrees(angle), 0, 360, 1, -1, cv2.LINE_8, shift)
    else:
        pts = _polygon(name) * [rx, ry]
        c, s = math.cos(angle), math.sin(angle)
        pts = pts @ np.array([[c, s], [-s, c]]) + [cx + pad, cy + pad]
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift)
    return mask


def _background(rng, height, width):
    """Desaturated gradient + blotches + line/curve clutter, float32 RGB."""

    def gray_color():
        g = rng.uniform(40, 215)
        return np.clip(g + rng.uniform(-15, 15, 3), 0, 255)

    a, b = gray_color(), gray_color()
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = np.cos(theta) * xx / width + np.sin(theta) * yy / height
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = a * (1 - t[..., None]) + b * t[..., None]
    blotch = cv2.resize(
        rng.uniform(-20, 20, (6, 6)).astype(np.float32),
        (width, height),
        interpolation=cv2.INTER_CUBIC,
    )
    image = (image + blotch[..., None]).astype(np.float32)
    for _ in range(rng.integers(5, 26)):
        color = tuple(float(v) for v in gray_color())
        thickness = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, p0, p1, color, thickness, cv2.LINE_AA)
        else:  # a smooth random-walk curve
            n = int(rng.integers(5, 15))
            steps = np.cumsum(rng.normal(0, 12, (n, 2)), axis=0)
            pts = steps + [rng.uniform(0, width), rng.uniform(0, height)]
            cv2.polylines(
                image, [np.round(pts).astype(np.int32)], False, color, thickness, cv2.LINE_AA
            )
    return image


def _bbox(mask):
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (
        int(cols[0]),
        int(rows[0]),
        int(cols[-1]),
        int(rows[-1]),
    )  # 0-based inclusive x0, y0, x1, y1


def render_image(seed, index):
    """Renders image `index` of the dataset with `seed`.

    Returns:
      (image, objects): image uint8 [H, W, 3] RGB; objects: list of dicts with name, label (1..6),
      xmin, ymin, xmax, ymax (1-based inclusive pixels, tight around the visible pixels),
      difficult, truncated (0/1), color (the RGB fill before noise) and mask (bool [H, W],
      the visible pixels).
    """
    rng = np.random.default_rng([seed, index])
    height, width = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, 2))
    image = _background(rng, height, width)
    placed = []  # dicts: name, inside (mask in image), visible, color, full_area
    wanted = int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(wanted):
        for _attempt in range(30):
            name = CLASSES[int(rng.integers(len(CLASSES)))]
            if rng.random() < 0.1:
                diameter = rng.uniform(8, TINY_SIDE)
            else:
                diameter = math.exp(rng.uniform(math.log(20), math.log(0.9 * min(height, width))))
            aspect = rng.uniform(0.7, 1.4)
            angle = rng.uniform(0, 2 * np.pi)
            cx = rng.uniform(-0.25 * diameter, width + 0.25 * diameter)
            cy = rng.uniform(-0.25 * diameter, height + 0.25 * diameter)
            pad = int(diameter) + 2
            full = _shape_mask(name, cx, cy, diameter, aspect, angle, height, width, pad)
            inside = full[pad : pad + height, pad : pad + width].astype(bool)
            full_area, inside_area = int(full.sum()), int(inside.sum())
            if inside_area < 20 or inside_area < MIN_INSIDE * full_area:
                continue
            x0, y0, x1, y1 = _bbox(inside)
            if any(
                p['name'] == name
                and not (
                    x1 + 2 < p['box'][0]
                    or p['box'][2] + 2 < x0
                    or y1 + 2 < p['box'][1]
                    or p['box'][3] + 2 < y0
                )
                for p in placed
            ):
                continue
            if any((p['visible'] & ~inside).sum() < MIN_VISIBLE * p['inside_area'] for p in placed):
                continue
            for p in placed:
                p['visible'] &= ~inside
            color = np.clip(
                np.array(CLASS_COLORS[name]) + rng.integers(-COLOR_JITTER, COLOR_JITTER + 1, 3),
                0,
                255,
            )
            image[inside] = color
            placed.append(
                {
                    'name': name,
                    'box': (x0, y0, x1, y1),
                    'visible': inside.copy(),
                    'inside_area': inside_area,
                    'truncated': int(inside_area < full_area),
                    'color': tuple(int(v) for v in color),
                }
            )
            break
    image = image + rng.normal(0, NOISE_SIGMA, image.shape)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    objects = []
    for p in placed:
        x0, y0, x1, y1 = _bbox(p['visible'])
        visible_frac = p['visible'].sum() / p['inside_area']
        tiny = max(x1 - x0 + 1, y1 - y0 + 1) < TINY_SIDE
        objects.append(
            {
                'name': p['name'],
                'label': CLASSES.index(p['name']) + 1,
                'xmin': x0 + 1,
                'ymin': y0 + 1,
                'xmax': x1 + 1,
                'ymax': y1 + 1,
                'difficult': int(tiny or visible_frac < DIFFICULT_VISIBLE),
                'truncated': p['truncated'],
                'color': p['color'],
                'mask': p['visible'],
            }
        )
    return image, objects


def annotation_xml(image_id, width, height, objects):
    """VOC annotation XML text for one image (objects as returned by render_image)."""
    parts = [
        '<annotation>',
        '\t<folder>synthetic</folder>',
        f'\t<filename>{escape(image_id)}.jpg</filename>',
        '\t<source><database>SSD synthetic shapes</database></source>',
        f'\t<size><width>{width}</width><height>{height}</height><depth>3</depth></size>',
        '\t<segmented>0</segmented>',
    ]
    for o in objects:
        parts += [
            '\t<object>',
            f'\t\t<name>{o["name"]}</name>',
            '\t\t<pose>Unspecified</pose>',
            f'\t\t<truncated>{o["truncated"]}</truncated>',
            f'\t\t<difficult>{o["difficult"]}</difficult>',
            '\t\t<bndbox>',
            f'\t\t\t<xmin>{o["xmin"]}</xmin>',
            f'\t\t\t<ymin>{o["ymin"]}</ymin>',
            f'\t\t\t<xmax>{o["xmax"]}</xmax>',
            f'\t\t\t<ymax>{o["ymax"]}</ymax>',
            '\t\t</bndbox>',
            '\t</object>',
        ]
    parts.append('</annotation>')
    return '\n'.join(parts) + '\n'


def _split_ids(ids, seed):
    """test 25 %, val 20 % of the rest, train the remainder; each sorted."""
    order = list(np.random.default_rng([seed, 1 << 30]).permutation(len(ids)))
    n_test = max(1, len(ids) // 4) if len(ids) > 1 else 0
    rest = order[n_test:]
    n_val = max(1, len(rest) // 5) if len(rest) > 1 else 0

    def pick(indices):
        return sorted(ids[i] for i in indices)

    return {
        'test': pick(order[:n_test]),
        'val': pick(rest[:n_val]),
        'train': pick(rest[n_val:]),
        'trainval': pick(rest),
    }


def generate(output_dir, num_images, seed=0):
    """Writes the dataset to output_dir (which must not exist or be empty), atomically.

    Returns:
      dict: num_images, num_objects, num_difficult, splits (name -> count).
    Raises:
      ValueError: num_images < 1 or output_dir is a non-empty folder.
    """
    if num_images < 1:
        raise ValueError(f'num_images must be >= 1, got {num_images}.')
    output_dir = os.path.abspath(output_dir)
    if os.path.isdir(output_dir) and os.listdir(output_dir):
        raise ValueError(
            f'{output_dir} exists and is not empty; remove it or choose another --output_dir.'
        )
    # A fresh folder beside it, removed on a failure (a fixed `<output_dir>.tmp-<pid>` was
    # removed whatever it held).
    with atomic_io.temp_dir(output_dir) as temp:
        for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
            os.makedirs(os.path.join(temp, sub))
        ids = [f'{i + 1:06d}' for i in range(num_images)]
        num_objects = num_difficult = 0
        params = [
            cv2.IMWRITE_JPEG_QUALITY,
            95,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
        ]
        for i, image_id in enumerate(ids):
            image, objects = render_image(seed, i)
            ok, buf = cv2.imencode('.jpg', cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
            if not ok:
                raise RuntimeError(f'OpenCV could not encode synthetic image {image_id} as JPEG.')
            with open(os.path.join(temp, 'JPEGImages', image_id + '.jpg'), 'wb') as f:
                f.write(buf.tobytes())
            with open(
                os.path.join(temp, 'Annotations', image_id + '.xml'), 'w', encoding='utf-8'
            ) as f:
                f.write(annotation_xml(image_id, image.shape[1], image.shape[0], objects))
            num_objects += len(objects)
            num_difficult += sum(o['difficult'] for o in objects)
        splits = _split_ids(ids, seed)
        for split, members in splits.items():
            with open(os.path.join(temp, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
                f.write(''.join(m + '\n' for m in members))
        with open(os.path.join(temp, 'labels.txt'), 'w') as f:
            f.write(''.join(c + '\n' for c in CLASSES))
        if os.path.isdir(output_dir):
            os.rmdir(output_dir)
        os.replace(temp, output_dir)
    return {
        'num_images': num_images,
        'num_objects': num_objects,
        'num_difficult': num_difficult,
        'splits': {k: len(v) for k, v in splits.items()},
    }


DEFAULT_NUM_IMAGES = 1000

_DESCRIPTION = f"""\
{__doc__.split(chr(10))[0]}

Writes, into --output_dir, a Pascal VOC folder: Annotations/<id>.xml, JPEGImages/<id>.jpg,
ImageSets/Main/{{train,val,test,trainval}}.txt (about 60 % of the images in train, 15 % in val,
25 % in test; trainval = train + val) and labels.txt (the {len(CLASSES)} class names, one per
line). Convert it to records with:
  python tf_convert_data.py --dataset_name=pascalvoc --dataset_dir=OUTPUT_DIR \\
      --labels_file=OUTPUT_DIR/labels.txt --split=train --output_dir=RECORDS --output_name=train
"""


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='python -m datasets.synthetic',
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        '--helpfull', action='help', help='The same as --help (as the other scripts).'
    )
    parser.add_argument(
        '--output_dir',
        required=True,
        help='folder to write the dataset to; must not exist or be empty (required)',
    )
    parser.add_argument(
        '--num_images',
        type=int,
        default=DEFAULT_NUM_IMAGES,
        help='number of images, all splits together (default: %(default)s)',
    )
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='random seed; the same (num_images, seed) writes the same files (default: '
        '%(default)s)',
    )
    args = parser.parse_args(argv)
    try:
        summary = generate(args.output_dir, args.num_images, args.seed)
    except ValueError as e:
        sys.exit(f'datasets.synthetic: error: {e}')
    print(
        f'Wrote {summary["num_images"]} images, {summary["num_objects"]} objects '
        f'({summary["num_difficult"]} difficult) to {args.output_dir}; splits {summary["splits"]}.'
    )


if __name__ == '__main__':
    main()
