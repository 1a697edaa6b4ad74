"""Small VOC/COCO fixtures written by the data tests into tmp dirs, and helpers to convert and read back."""

import json
import os
import struct
import xml.etree.ElementTree as ET
import zlib

import cv2
import numpy as np
import tensorflow as tf

from datasets import coco
from datasets import convert
from datasets import dataset_factory
from datasets import labels
from datasets import pascalvoc


def smooth_image(height, width, seed=0):
    """uint8 [H, W, 3] RGB with smooth content (JPEG round trips stay within a few levels)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3)).astype(np.float32)
    return np.clip(
        cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR), 0, 255
    ).astype(np.uint8)


def write_image(path, rgb, ext='.jpg'):
    """Writes an RGB (or 2-D gray / 4-channel RGBA) array encoded as `ext` to path (path may
    have another extension)."""
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif rgb.ndim == 3 and rgb.shape[2] == 4:
        arr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA)
    else:
        arr = rgb
    ok, buf = cv2.imencode(ext, arr, [cv2.IMWRITE_JPEG_QUALITY, 98] if ext == '.jpg' else [])
    assert ok
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(buf.tobytes())


def voc_object(name, box, difficult='0', truncated='0', parts=()):
    """Object spec for write_voc_xml. box: (xmin, ymin, xmax, ymax) or None (no bndbox);
    difficult/truncated: text of the element, '' for an empty element, None to leave it out;
    parts: list of (part name, box)."""
    return {
        'name': name,
        'box': box,
        'difficult': difficult,
        'truncated': truncated,
        'parts': parts,
    }


def write_voc_xml(path, filename, size, objects):
    """Writes a VOC annotation. size: (width, height) written into <size>, or None for no <size>."""
    root = ET.Element('annotation')
    ET.SubElement(root, 'folder').text = 'VOC'
    ET.SubElement(root, 'filename').text = filename
    if size is not None:
        s = ET.SubElement(root, 'size')
        ET.SubElement(s, 'width').text = str(size[0])
        ET.SubElement(s, 'height').text = str(size[1])
        ET.SubElement(s, 'depth').text = '3'
    for o in objects:
        obj = ET.SubElement(root, 'object')
        ET.SubElement(obj, 'name').text = o['name']
        for tag in ('truncated', 'difficult'):
            if o[tag] is not None:
                ET.SubElement(obj, tag).text = o[tag] or None
        if o['box'] is not None:
            _bndbox(obj, o['box'])
        for part_name, part_box in o['parts']:
            part = ET.SubElement(obj, 'part')
            ET.SubElement(part, 'name').text = part_name
            _bndbox(part, part_box)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    ET.ElementTree(root).write(path)


def _bndbox(parent, box):
    b = ET.SubElement(parent, 'bndbox')
    for tag, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), box):
        ET.SubElement(b, tag).text = str(v)


def add_voc_example(root, image_id, image, objects, ext='.jpg', size='auto', filename='auto'):
    """Writes JPEGImages/<id><ext> (image: array or raw bytes) and Annotations/<id>.xml."""
    img_path = os.path.join(root, 'JPEGImages', image_id + ext)
    if isinstance(image, bytes):
        os.makedirs(os.path.dirname(img_path), exist_ok=True)
        with open(img_path, 'wb') as f:
            f.write(image)
    else:
        write_image(img_path, image, ext)
    if size == 'auto':
        size = (image.shape[1], image.shape[0])
    write_voc_xml(
        os.path.join(root, 'Annotations', image_id + '.xml'),
        image_id + ext if filename == 'auto' else filename,
        size,
        objects,
    )


def write_split(root, split, ids):
    path = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(i + '\n' for i in ids))


def convert_voc(
    dirs,
    output_dir,
    output_name='data',
    split=None,
    class_names=labels.VOC_CLASSES,
    skip_unknown_classes=False,
    **kwargs,
):
    """Runs the VOC conversion in-process (1 worker unless given). Returns the metadata dict."""
    kwargs.setdefault('num_workers', 1)
    kwargs.setdefault('show_progress', False)
    kwargs.setdefault('shuffle', False)
    sources = pascalvoc.list_examples(list(dirs), split)
    loader = pascalvoc.VocLoader(class_names, skip_unknown_classes)
    return convert.convert(sources, loader, class_names, output_dir, output_name, **kwargs)


def coco_annotation(ann_id, image_id, category_id, bbox, area=None, iscrowd=0, **fields):
    """An entry of a COCO instances file's 'annotations': `bbox` [x, y, width, height] in pixels,
    `area` its width * height unless given, and `fields` (e.g. segmentation) as they are."""
    if area is None:
        area = bbox[2] * bbox[3]
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=category_id,
        bbox=bbox,
        area=area,
        iscrowd=iscrowd,
        **fields,
    )


def write_coco(root, images, categories, annotations):
    """Writes root/images/<file_name> for (file_name, id, array, json_size) and root/instances.json."""
    img_dir = os.path.join(root, 'images')
    entries = []
    for file_name, image_id, array, json_size in images:
        write_image(os.path.join(img_dir, file_name), array)
        entries.append(
            {'id': image_id, 'file_name': file_name, 'width': json_size[0], 'height': json_size[1]}
        )
    ann_path = os.path.join(root, 'instances.json')
    with open(ann_path, 'w') as f:
        json.dump({'images': entries, 'categories': categories, 'annotations': annotations}, f)
    return ann_path, img_dir


def convert_coco(
    ann_path, img_dir, output_dir, output_name='coco', skip_unknown_classes=False, **kwargs
):
    kwargs.setdefault('num_workers', 1)
    kwargs.setdefault('show_progress', False)
    kwargs.setdefault('shuffle', False)
    sources, names, extra, _ = coco.read_annotations(ann_path, img_dir)
    loader = coco.CocoLoader([c['coco_category_id'] for c in extra], names, skip_unknown_classes)
    return convert.convert(
        sources, loader, names, output_dir, output_name, class_extra=extra, **kwargs
    )


def read_examples(output_dir, output_name='data', name='custom', **kwargs):
    """Reads every example eagerly (file order, no shuffle) as a list of dicts of numpy values."""
    ds = dataset_factory.get_dataset(name, output_name, output_dir, **kwargs)
    return [{k: v.numpy() for k, v in ex.items()} for ex in ds.make_dataset(num_readers=1)]


def raw_features(path):
    """Every record of a TFRecord file as {key: list of values} (independent of our parser)."""
    out = []
    for rec in tf.data.TFRecordDataset(path):
        ex = tf.train.Example.FromString(rec.numpy())
        feats = {}
        for k, f in ex.features.feature.items():
            kind = f.WhichOneof('kind')
            feats[k] = list(getattr(f, kind).value)
        out.append(feats)
    return out


def voc_rel(box, width, height):
    """Hand-computed reference of the documented VOC rule: [(ymin-1)/H, (xmin-1)/W, ymax/H, xmax/W]."""
    xmin, ymin, xmax, ymax = box
    return [(ymin - 1) / height, (xmin - 1) / width, ymax / height, xmax / width]


def jpeg_claiming(width, height):
    """A 16x16 grey JPEG whose frame header is patched to claim width x height pixels."""
    data = bytearray(cv2.imencode('.jpg', np.full((16, 16, 3), 128, np.uint8))[1].tobytes())
    sof = data.find(b'\xff\xc0')
    data[sof + 5 : sof + 9] = struct.pack('>HH', height, width)
    return bytes(data)


def jpeg_with_empty_scans(count):
    """A 16x16 grey progressive JPEG with `count` scans of no data added before its end: a
    luminance AC refinement scan's header, repeated (libjpeg warns and decodes each)."""
    data = cv2.imencode(
        '.jpg', np.full((16, 16, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]
    )[1].tobytes()
    scan = b'\xff\xda' + struct.pack('>HBBBBBB', 8, 1, 1, 0x00, 1, 63, 0x10)
    return data[:-2] + scan * count + data[-2:]


def png_claiming(width, height):
    """A 4x4 black PNG whose IHDR (CRC fixed) claims width x height pixels."""
    data = bytearray(cv2.imencode('.png', np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack('>II', width, height)
    data[29:33] = struct.pack('>I', zlib.crc32(bytes(data[12:29])))
    return bytes(data)
