"""Class names of converted models: Caffe SSD's own label map (--labelmap_file, in the format of
the published data/VOC0712/labelmap_voc.prototxt and data/coco/labelmap_coco.prototxt), a plain
labels file (--labels_file) for both converters, the defaults with their note, the card's
provenance, and one-line errors naming the file, the item and what to do."""

import json
import os

import pytest

from converters import caffe_convert
from converters import caffe_ssd
from converters import pytorch_convert
from converters import pytorch_ssd
from datasets import labels as labels_lib
from model import card as card_lib
from tests import caffe_fixtures
from tests import pytorch_fixtures as fx
from tests.conftest import run_script

BACKGROUND = ('none_of_the_above', 0, 'background')
# The COCO label map's items: `name` is the COCO category id as text, display_name the class.
COCO_ITEMS = [BACKGROUND] + [
    (str(category_id), label, name)
    for label, (category_id, name) in enumerate(
        (
            (i, n)
            for i, n in enumerate(pytorch_ssd.TORCHVISION_COCO_CATEGORIES)
            if n not in ('__background__', 'N/A')
        ),
        start=1,
    )
]
VOC_ITEMS = [BACKGROUND] + [(n, i, n) for i, n in enumerate(labels_lib.VOC_CLASSES, start=1)]
# A user's own 21-class dataset (what the VOC default would silently misname).
OWN_NAMES = tuple(f'part_{i:02d}' for i in range(1, 21))
OWN_ITEMS = [BACKGROUND] + [(n, i, n) for i, n in enumerate(OWN_NAMES, start=1)]


def _labelmap_text(items):
    """A label map laid out as the published files are (`name`, `label`, `display_name`)."""
    blocks = []
    for name, label, display_name in items:
        lines = ['item {']
        if name is not None:
            lines.append(f'  name: "{name}"')
        if label is not None:
            lines.append(f'  label: {label}')
        if display_name is not None:
            lines.append(f'  display_name: "{display_name}"')
        blocks.append('\n'.join(lines + ['}']))
    return '\n'.join(blocks) + '\n'


def _write(directory, name, text):
    path = os.path.join(str(directory), name)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
    return path


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """MobileNet-SSD caffemodels (+ deploy) of 21 and 81 classes, no head calibration."""
    directory = tmp_path_factory.mktemp('caffe_labels')
    out = {}
    for classes in (21, 81):
        net = caffe_fixtures.mobilenet_ssd('merged', num_classes=classes, seed=classes)
        out[classes] = caffe_fixtures.write_net(net, str(directory), f'mobilenet_{classes}')
    return out


def _convert(models, classes, tmp_path, lines=None, **kwargs):
    proto, model = models[classes]
    return caffe_convert.convert(
        model,
        str(tmp_path / 'converted.ckpt'),
        'ssd_300_mobilenet',
        prototxt_path=proto,
        log=(lines.append if lines is not None else lambda line: None),
        **kwargs,
    )


def test_published_coco_label_map_names_the_classes(models, tmp_path):
    labelmap = _write(tmp_path, 'labelmap_coco.prototxt', _labelmap_text(COCO_ITEMS))
    assert len(COCO_ITEMS) == 81 and COCO_ITEMS[12] == ('13', 12, 'stop sign')
    lines = []
    result = _convert(models, 81, tmp_path, lines, labelmap_file=labelmap)
    card = card_lib.load(result.config_path)
    assert card.class_names == tuple(display for _, _, display in COCO_ITEMS[1:])
    assert card.class_names[:3] == ('person', 'bicycle', 'car')
    assert card.provenance['class_names'] == {
        'from': 'labelmap_file',
        'path': os.path.abspath(labelmap),
    }
    # Its names are the COCO category ids: detections' category_id, what pycocotools scores.
    assert card.category_ids == tuple(int(name) for name, _, _ in COCO_ITEMS[1:])
    assert card.category_ids[:3] == (1, 2, 3) and card.category_ids[-1] == 90
    assert card.category_ids[11] == 13  # stop sign, after COCO's gap at 12
    assert (
        f'class names: the 80 of the label map {labelmap} (display_name, else name, of labels '
        f'1..80): person, bicycle, car, motorcycle, airplane and 75 more; category ids '
        "(detections' category_id): its names, 1, 2, 3, 4, 5 and 75 more"
    ) in lines
    assert not any(line.startswith('NOTE: class names') for line in lines)


@pytest.mark.parametrize(
    'items, ids',
    [
        ([BACKGROUND, ('18', 1, 'dog'), ('1', 2, 'person')], (18, 1)),
        ([BACKGROUND, (' 7 ', 1, 'cat'), ('0', 2, 'dog')], (7, 0)),
        # Names that are the classes (VOC's), or digits that name themselves: no ids.
        ([BACKGROUND, ('cat', 1, 'cat'), ('dog', 2, 'dog')], None),
        ([BACKGROUND, ('1', 1, '1'), ('2', 2, '2')], None),
        ([BACKGROUND, ('1', 1, None), ('2', 2, None)], None),
        # Not every class has an id, an id twice, not decimal, beyond int32: no ids.
        ([BACKGROUND, ('1', 1, 'cat'), ('dog', 2, 'dog')], None),
        ([BACKGROUND, ('5', 1, 'cat'), ('5', 2, 'dog')], None),
        ([BACKGROUND, ('0x10', 1, 'cat'), ('2', 2, 'dog')], None),
        ([BACKGROUND, ('07', 1, 'cat'), ('2', 2, 'dog')], None),
        ([BACKGROUND, ('-3', 1, 'cat'), ('2', 2, 'dog')], None),
        ([BACKGROUND, ('2147483648', 1, 'cat'), ('2', 2, 'dog')], None),
        ([BACKGROUND, ('2147483647', 1, 'cat'), ('2', 2, 'dog')], (2147483647, 2)),
    ],
)
def test_label_map_names_are_category_ids_only_when_all_are(tmp_path, items, ids):
    path = _write(tmp_path, 'lm.prototxt', _labelmap_text(items))
    read = caffe_convert.read_labelmap(path)
    assert caffe_convert.labelmap_category_ids(read, 3) == ids
    *_, line, got = caffe_convert.resolve_class_names(path, None, read, 3, 'the conf heads')
    assert got == ids
    assert ('category ids' in line) == (ids is not None)


def test_own_21_class_label_map_replaces_the_voc_default(models, tmp_path):
    labelmap = _write(tmp_path, 'labelmap_own.prototxt', _labelmap_text(OWN_ITEMS))
    card = card_lib.load(_convert(models, 21, tmp_path, labelmap_file=labelmap).config_path)
    assert card.class_names == OWN_NAMES
    assert card.category_ids is None


def test_default_placeholders_with_a_note():
    names, source, line = caffe_convert.default_class_names(81)
    assert names == card_lib.default_class_names(81)
    assert source == {'from': 'default', 'note': 'placeholders class_1..class_80'}
    assert line.startswith('NOTE: class names: placeholders class_1..class_80 (no ')
    assert "name them with --labelmap_file=<the model's labelmap.prototxt>" in line


def test_script_prints_the_note_and_writes_the_labelmap_names(models, tmp_path):
    """Without a label map or labels file the card keeps the VOC names, with a note (printed and
    in the card); a label map names the classes; one of another class count is refused."""
    proto, model = models[21]
    args = ['--model_name=ssd_300_mobilenet', '--caffemodel_path=' + model]
    proc = run_script(
        'caffe_to_tensorflow.py',
        *args,
        '--prototxt_path=' + proto,
        '--output_path=' + str(tmp_path / 'voc.ckpt'),
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        'NOTE: class names: the 20 Pascal VOC classes, assumed for a 21-class model (no '
        '--labelmap_file or --labels_file); a model trained on other classes needs '
        "--labelmap_file=<the model's labelmap.prototxt> or --labels_file=<one class name per "
        'line>'
    ) in proc.stdout.splitlines()
    card = card_lib.load(str(tmp_path / 'voc.ckpt.model.json'))
    assert card.class_names == labels_lib.VOC_CLASSES
    assert card.provenance['class_names'] == {
        'from': 'default',
        'note': 'the 20 Pascal VOC classes, assumed for a 21-class model',
    }
    labelmap = _write(tmp_path, 'labelmap_voc.prototxt', _labelmap_text(VOC_ITEMS))
    proc = run_script(
        'caffe_to_tensorflow.py',
        *args,
        '--labelmap_file=' + labelmap,
        '--output_path=' + str(tmp_path / 'labelled.ckpt'),
    )
    assert proc.returncode == 0, proc.stderr
    assert f'class names: the 20 of the label map {labelmap}' in proc.stdout
    card = card_lib.load(str(tmp_path / 'labelled.ckpt.model.json'))
    assert card.class_names == labels_lib.VOC_CLASSES and card.category_ids is None
    assert card.provenance['class_names']['path'] == os.path.abspath(labelmap)
    # A label map of another class count: one line naming the file, nothing written.
    coco = _write(tmp_path, 'labelmap_coco.prototxt', _labelmap_text(COCO_ITEMS))
    proc = run_script(
        'caffe_to_tensorflow.py',
        *args,
        '--labelmap_file=' + coco,
        '--output_path=' + str(tmp_path / 'wrong.ckpt'),
    )
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1] == (
        f'caffe_to_tensorflow: error: {coco}: the label map has labels 0..80 (81 classes with the '
        'background), but the model has 21 classes with the background (inferred from its conf '
        'heads), labels 0..20; pass the label map the model was trained with'
    )
    assert 'Traceback' not in proc.stderr
    assert not list(tmp_path.glob('wrong.ckpt*'))


def test_display_name_falls_back_to_name(tmp_path):
    items = [BACKGROUND, ('cat', 1, None), ('dog', 2, 'Dog')]
    path = _write(tmp_path, 'lm.prototxt', _labelmap_text(items))
    read = caffe_convert.read_labelmap(path)
    assert caffe_convert.labelmap_class_names(read, path, 3, 'x') == ('cat', 'Dog')
    # Items in any order; labels decide.
    path = _write(tmp_path, 'shuffled.prototxt', _labelmap_text(items[::-1]))
    read = caffe_convert.read_labelmap(path)
    assert caffe_convert.labelmap_class_names(read, path, 3, 'x') == ('cat', 'Dog')


FOUR = [BACKGROUND, ('cat', 1, 'cat'), ('dog', 2, 'dog'), ('cow', 3, 'cow')]


@pytest.mark.parametrize(
    'items,message',
    [
        (
            [BACKGROUND, ('cat', 1, 'cat'), ('cow', 3, 'cow')],
            '{path}: no item has label 2; the model has 4 classes with the background (inferred '
            'from its conf heads), labels 0..3: add an item for every label',
        ),
        (
            FOUR[1:],
            '{path}: no item has label 0 (label 0 is the background: add item {{ name: '
            '"none_of_the_above" label: 0 display_name: "background" }}); the model has 4',
        ),
        (
            FOUR + [('horse', 4, 'horse')],
            '{path}: the label map has labels 0..4 (5 classes with the background), but the '
            'model has 4 classes with the background (inferred from its conf heads), labels '
            '0..3; pass the label map the model was trained with',
        ),
        (
            FOUR[:3] + [('cow', 4, 'cow')],
            '{path}: item 4 (line 16, label 4): label 4 is beyond the model\'s classes: the '
            'model has 4 classes',
        ),
        (
            FOUR[:3] + [('cow', 7, 'cow')],
            '{path}: item 4 (line 16, label 7): label 7 is beyond the model\'s classes: the '
            'model has 4 classes',
        ),
    ],
)
def test_labels_must_be_0_to_k_minus_1(tmp_path, items, message):
    path = _write(tmp_path, 'lm.prototxt', _labelmap_text(items))
    read = caffe_convert.read_labelmap(path)
    with pytest.raises(caffe_convert.LabelMapError) as info:
        caffe_convert.labelmap_class_names(read, path, 4, 'inferred from its conf heads')
    assert str(info.value).startswith(message.format(path=path))
    assert '\n' not in str(info.value)


FIX = '--labelmap_file takes a Caffe LabelMap'


@pytest.mark.parametrize(
    'text,message',
    [
        (
            _labelmap_text(FOUR[:2] + [('cat2', 1, 'cat2')]),
            '{path}: item 3 (line 11): label 1 again (item 2 has it); each label once',
        ),
        (
            _labelmap_text(FOUR[:2] + [('kitty', 2, 'cat')]),
            "{path}: item 3 (line 11, label 2): class name 'cat' again (item 2, label 1 has it); "
            'class names must be unique',
        ),
        (
            _labelmap_text([BACKGROUND, ('cat', None, 'cat')]),
            '{path}: item 2 (line 6) has no label; give each item its label: N',
        ),
        (
            _labelmap_text([BACKGROUND, (None, 1, None)]),
            '{path}: item 2 (line 6): label 1 has neither display_name nor name',
        ),
        (
            _labelmap_text([BACKGROUND, ('cat', '"one"', 'cat')]),
            "{path}: item 2 (line 6): label (line 8) is 'one', expected an integer in [0, ",
        ),
        (
            _labelmap_text([BACKGROUND, ('cat', -1, 'cat')]),
            '{path}: item 2 (line 6): label (line 8) is -1, expected an integer in [0, ',
        ),
        (
            _labelmap_text([BACKGROUND]) + 'item {\n  label: 1\n  display_name: cat\n  id: 3\n}\n',
            "{path}: item 2 (line 6): unknown field 'id' (line 9); an item has name, label and "
            'display_name',
        ),
        (
            _labelmap_text([BACKGROUND]) + 'item {\n  label: 1\n  name: "a"\n  name: "b"\n}\n',
            '{path}: item 2 (line 6): name given 2 times (lines 8, 9); give it once',
        ),
        (
            _labelmap_text([BACKGROUND]) + 'item {\n  label: 1\n  display_name: "a\\tb"\n}\n',
            "{path}: item 2 (line 6, label 1): class name 'a\\tb' holds the control character "
            'U+0009',
        ),
        (
            _labelmap_text([BACKGROUND]) + 'item {\n  label: 1\n  display_name: "  "\n}\n',
            "{path}: item 2 (line 6, label 1): class name '' is empty",
        ),
        (
            _labelmap_text([BACKGROUND]) + 'item {\n  label: 1\n  name: "cat"\n',
            '--labelmap_file: {path}: 1 unclosed "{{" at end of file; fix the label map',
        ),
        (
            'name: "MobileNet-SSD"\nlayer {\n  name: "data"\n}\n',
            "{path}, line 1: field 'name' is not an item {{ ... }} block (is this a label map? a "
            'deploy prototxt goes to --prototxt_path)',
        ),
        ('# nothing\n', '{path}: the label map has no item {{ ... }} blocks; fix the label map'),
        # A labels file (one name per line) given as the label map: said so.
        (
            'cat\ndog\n',
            '{path}: not a label map; it looks like a labels file (one class name per line): '
            'pass it as --labels_file',
        ),
        (
            'cat\ndog\nbird\n',
            "--labelmap_file: {path}, line 3: field 'bird' has no value; it looks like a labels "
            'file (one class name per line): pass it as --labels_file',
        ),
    ],
)
def test_malformed_label_maps_are_one_line_errors(tmp_path, text, message):
    path = _write(tmp_path, 'lm.prototxt', text)
    with pytest.raises(caffe_convert.LabelMapError) as info:
        caffe_convert.read_labelmap(path)
    assert str(info.value).startswith(message.format(path=path)), str(info.value)
    assert '\n' not in str(info.value)
    if 'unclosed' in message or 'no item' in message or 'unknown field' in message:
        assert FIX in str(info.value)


def test_hostile_label_map_files(tmp_path):
    binary = tmp_path / 'lm.bin'
    binary.write_bytes(b'item {\n  name: "\xff"\n}\n')
    with pytest.raises(caffe_convert.LabelMapError, match='not UTF-8 text .line 2'):
        caffe_convert.read_labelmap(str(binary))
    with pytest.raises(caffe_convert.LabelMapError, match='is a directory, not a regular file'):
        caffe_convert.read_labelmap(str(tmp_path))
    fifo = str(tmp_path / 'fifo')
    os.mkfifo(fifo)
    with pytest.raises(caffe_convert.LabelMapError, match='FIFO'):
        caffe_convert.read_labelmap(fifo)
    big = tmp_path / 'big.prototxt'
    with open(big, 'wb') as f:
        f.truncate(caffe_convert.MAX_LABELMAP_BYTES + 1)
    with pytest.raises(caffe_convert.LabelMapError, match='more than the limit of 4194304'):
        caffe_convert.read_labelmap(str(big))
    with pytest.raises(caffe_convert.LabelMapError, match='cannot read .*missing.prototxt: No'):
        caffe_convert.read_labelmap(str(tmp_path / 'missing.prototxt'))


def test_file_errors_come_before_the_weights_are_read(tmp_path):
    """Both flags, a backbone, a broken label map: refused without reading the caffemodel
    (which here does not exist)."""
    labelmap = _write(tmp_path, 'lm.prototxt', 'item {\n')
    labels = _write(tmp_path, 'labels.txt', 'cat\ndog\n')
    missing = str(tmp_path / 'none.caffemodel')
    out = str(tmp_path / 'x.ckpt')

    def convert(model_name='ssd_300_mobilenet', **kwargs):
        with pytest.raises(caffe_convert.caffe_ssd.ConversionError) as info:
            caffe_convert.convert(missing, out, model_name, log=lambda line: None, **kwargs)
        return str(info.value)

    assert convert(labelmap_file=labelmap, labels_file=labels).startswith(
        f'--labelmap_file={labelmap} and --labels_file={labels}: pass one of them'
    )
    assert convert('vgg_16_fc_reduced', labels_file=labels) == (
        '--labels_file: a backbone has no classes to name; convert it without the flag'
    )
    assert convert(labelmap_file=labelmap).startswith(f'--labelmap_file: {labelmap}: 1 unclosed')
    dup = _write(tmp_path, 'dup.txt', 'cat\ncat\n')
    assert convert(labels_file=dup).startswith(
        f"--labels_file: {dup}, line 2: class name 'cat' is listed twice"
    )


def test_caffe_labels_file(models, tmp_path):
    labels = _write(tmp_path, 'labels.txt', '\n'.join(OWN_NAMES) + '\n')
    lines = []
    card = card_lib.load(_convert(models, 21, tmp_path, lines, labels_file=labels).config_path)
    assert card.class_names == OWN_NAMES
    assert card.provenance['class_names'] == {'from': 'labels_file', 'path': labels}
    assert any(
        line.startswith(f'class names: the 20 of the labels file {labels}: part_01')
        for line in lines
    )
    short = _write(tmp_path, 'short.txt', 'cat\ndog\n')
    with pytest.raises(caffe_convert.caffe_ssd.ConversionError) as info:
        _convert(models, 21, tmp_path, labels_file=short, num_classes=21)
    assert str(info.value).startswith(
        f'{short}: 2 class names, but the model has 20 classes besides the background '
        '(--num_classes); give one name per class in label order, background excluded'
    )


# ---------------------------------------------------------------------------------------------
# PyTorch


def _conversion(num_classes, names):
    return pytorch_ssd.Conversion(
        values={},
        mapped=[],
        skipped=[],
        unmapped=[],
        missing=[],
        num_classes=num_classes,
        class_names=names,
    )


def test_pytorch_defaults_say_where_the_names_come_from():
    layout = pytorch_ssd.get_layout('ssd_pytorch_ssd300')
    names, source, line = pytorch_convert.resolve_class_names(
        layout, _conversion(21, pytorch_ssd.SSD_PYTORCH_VOC_CLASSES), 'source'
    )
    assert names == pytorch_ssd.SSD_PYTORCH_VOC_CLASSES
    assert source == {
        'from': 'default',
        'note': "the ssd_pytorch_ssd300 layout's own (source order)",
    }
    assert line.startswith(
        "class names: the ssd_pytorch_ssd300 layout's own (source order): aeroplane, bicycle"
    )
    assert line.endswith(
        'a model trained on other classes needs --labels_file=<one class name per line>'
    )
    names, source, line = pytorch_convert.resolve_class_names(
        layout, _conversion(5, card_lib.default_class_names(5)), 'source'
    )
    assert source['note'] == (
        'placeholders class_1..class_4 (the ssd_pytorch_ssd300 layout has no class list for 5 '
        'classes)'
    )
    assert line.startswith('NOTE: class names: placeholders class_1..class_4')


def test_pytorch_labels_file_count_must_fit():
    layout = pytorch_ssd.get_layout('torchvision_ssd300')
    names = tuple(f'c{i}' for i in range(80))
    conversion = _conversion(91, tuple(f'n{i}' for i in range(90)))
    with pytest.raises(pytorch_ssd.ConversionError) as info:
        pytorch_convert.resolve_class_names(layout, conversion, 'source', 'l.txt', names)
    assert str(info.value) == (
        'l.txt: 80 class names, but the converted torchvision_ssd300 model has 90 classes '
        'besides the background (--class_order=source) (80 names are for '
        '--class_order=contiguous, the 80 used COCO ids); give one name per class in label '
        'order, background excluded'
    )
    got, source, _ = pytorch_convert.resolve_class_names(
        layout, _conversion(81, tuple(f'n{i}' for i in range(80))), 'contiguous', 'l.txt', names
    )
    assert got == names and source == {'from': 'labels_file', 'path': os.path.abspath('l.txt')}


@pytest.fixture(scope='module')
def ssd_pytorch_pth(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('pth') / 'ssd300.pth')
    fx.write_pth(fx.ssd_pytorch_ssd300(fx.SEED), path)
    return path


def test_pytorch_labels_file_replaces_the_layout_names(ssd_pytorch_pth, tmp_path):
    labels = _write(tmp_path, 'labels.txt', '\n'.join(OWN_NAMES) + '\n')
    lines = []
    result = pytorch_convert.convert(
        ssd_pytorch_pth, str(tmp_path / 'p.ckpt'), labels_file=labels, log=lines.append
    )
    card = card_lib.load(result.config_path)
    assert card.class_names == OWN_NAMES
    assert card.provenance['class_names'] == {'from': 'labels_file', 'path': labels}
    with open(result.config_path, encoding='utf-8') as f:
        assert json.load(f)['class_names'] == list(OWN_NAMES)
    assert (
        f'class names: the 20 of the labels file {labels}: part_01, part_02, part_03, part_04, '
        'part_05 and 15 more'
    ) in lines
    short = _write(tmp_path, 'short.txt', 'cat\n')
    with pytest.raises(pytorch_ssd.ConversionError, match='short.txt: 1 class names, but the '):
        pytorch_convert.convert(
            ssd_pytorch_pth, str(tmp_path / 'q.ckpt'), labels_file=short, log=lambda *_: None
        )
    assert not list(tmp_path.glob('q.ckpt*'))
    bad = _write(tmp_path, 'bad.txt', 'a\tb\n')
    proc = run_script(
        'pytorch_to_tensorflow.py',
        '--pth_path=' + ssd_pytorch_pth,
        '--labels_file=' + bad,
        '--output_path=' + str(tmp_path / 'r.ckpt'),
    )
    assert proc.returncode != 0
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f"pytorch_to_tensorflow: error: --labels_file: {bad}, line 1: class name 'a\\tb' holds "
            'the control character U+0009'
        )
    )


def test_pytorch_labels_file_is_refused_for_a_vgg_base(tmp_path):
    path = str(tmp_path / 'features.pth')
    fx.write_pth(fx.torchvision_vgg_features(fx.SEED), path)
    labels = _write(tmp_path, 'labels.txt', 'cat\n')
    with pytest.raises(pytorch_ssd.ConversionError) as info:
        pytorch_convert.convert(
            path, str(tmp_path / 'b.ckpt'), labels_file=labels, log=lambda *_: None
        )
    assert str(info.value) == (
        f'--labels_file: {path} is a VGG base (layout torchvision_vgg16_features), which has no '
        'classes to name; convert it without the flag'
    )


def test_a_labels_file_listing_the_background_first_is_named_as_such():
    """A background entry first, one name too many (other tools' labels files list it): the error
    gave only the count."""
    with pytest.raises(caffe_ssd.ConversionError) as info:
        caffe_convert.resolve_class_names(
            None, 'labels.txt', ('background', 'cat', 'dog'), 3, 'the conf heads'
        )
    assert (
        "labels.txt: 3 class names, but the model has 2 classes besides the background (the conf "
        "heads) (its first line, 'background', is a background entry: leave it out, label 1 is "
        'the first line); give one name per class'
    ) in str(info.value)
    assert labels_lib.background_line_note(('cat', 'dog', 'bird'), 2) == ''
    assert labels_lib.background_line_note(('__background__', 'cat'), 2) == ''
