"""TF Object Detection API label maps (`label_map.pbtxt`) as --labels_file: class names are the
items' `name`s in `id` order; malformed maps, ids and names are one-line errors naming the file,
the line and the item. They were read as one class name per line ('item {' listed twice, or whole
`item { ... }` lines as class names)."""

import json
import logging
import os
import re

import pytest

from datasets import dataset_factory
from datasets import labels
from model import cli
from tests import data_fixtures as fx
from tests.conftest import run_script
from tf_extended import safe_io
from training import trainer

MAP_FORMAT = (
    "a TF Object Detection API label map: item { id: N name: '...' } per class, ids 1, 2, ... "
    "(the class order), names as the annotations' <name> spells them."
)

# Every form a label map takes: items over several lines or on one, comments, both quotes,
# display_name, newer nested blocks (keypoints), enums, lists, `item: {` and separators; the
# file order (2, 1, 3) is not the id order.
LABEL_MAP = """# From the TF Object Detection API
item {
  name: "dog"  # the XML's <name>
  id: 2
  display_name: 'Dog'
  keypoints { id: 0 label: 'nose' }
  keypoints {
    id: 1
    label: "tail"
  }
  frequency: FREQUENT
  ancestor_ids: [5, 6]
}
item { id: 1 name: 'cat' display_name: "Cat" }
item: { id: 3, name: 'it\\'s a "bird"'; }
"""


def _write(tmp_path, text, name='label_map.pbtxt'):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_label_map_gives_the_names_in_id_order(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger='absl')
    path = _write(tmp_path, LABEL_MAP)
    assert labels.read_labels_file(path) == ('cat', 'dog', 'it\'s a "bird"')
    assert labels.read_class_list(path) == (('cat', 'dog', 'it\'s a "bird"'), (1, 2, 3))
    assert [r for r in caplog.records if 'label map' in r.getMessage()] == []  # ids are 1..3
    # One item per line: each whole line was read as a class name.
    path = _write(tmp_path, "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\n")
    assert labels.read_labels_file(path) == ('cat', 'dog')
    # A plain labels file is read as before, even with a class named item.
    path = _write(tmp_path, '# item {\nitem\ncat\n', 'labels.txt')
    assert labels.read_labels_file(path) == ('# item {', 'item', 'cat')
    assert labels.read_class_list(path) == (('# item {', 'item', 'cat'), None)  # no ids


def test_limits_take_their_largest_value_and_refuse_the_next(tmp_path):
    """Id 2**31 - 1 and a 256-character name are taken; a 257-character name and a leading 0
    on any id (protobuf reads `01` as octal too) are refused."""
    name = 'x' * 256
    path = _write(tmp_path, f"item {{ id: 2147483647 name: '{name}' }}\n")
    assert labels.read_class_list(path) == ((name,), (2147483647,))
    path = _write(tmp_path, f'{name}\n', 'labels.txt')
    assert labels.read_labels_file(path) == (name,)
    path = _write(tmp_path, f'{name}y\n', 'labels.txt')
    with pytest.raises(ValueError, match='has 257 characters, more than 256'):
        labels.read_labels_file(path)
    path = _write(tmp_path, "item { id: 01 name: 'cat' }\n")
    with pytest.raises(ValueError, match='id 01 .line 1. has a leading 0'):
        labels.read_labels_file(path)


def test_angle_bracket_blocks_are_read_as_braces(tmp_path):
    """Protobuf's text format delimits a message with `< >` as with `{ }` (text_format.Merge
    reads both); such maps were taken for plain labels files, one class per line."""
    text = "item < id: 2 name: 'dog' >\nitem: <\n  id: 1 name: 'cat'\n  keypoints { id: 0 } >\n"
    assert labels.read_labels_file(_write(tmp_path, text)) == ('cat', 'dog')
    # protobuf's own reader, on a message with the label map's field numbers and types.
    read = _protobuf_label_map(text)
    assert [item.name for item in sorted(read.item, key=lambda item: item.id)] == ['cat', 'dog']


def _protobuf_label_map(text):
    """`text` read by protobuf's text_format into a StringIntLabelMap built from its published
    fields (name 1, id 2, display_name 3, keypoints 4 {id 1, label 2})."""
    from google.protobuf import descriptor_pb2
    from google.protobuf import descriptor_pool
    from google.protobuf import message_factory
    from google.protobuf import text_format

    f = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name='label_map_test.proto', package='t')

    def message(name, fields):
        m = proto.message_type.add(name=name)
        for number, (field, kind, label, type_name) in enumerate(fields, 1):
            m.field.add(name=field, number=number, type=kind, label=label, type_name=type_name)

    optional, repeated = f.LABEL_OPTIONAL, f.LABEL_REPEATED
    message(
        'Keypoint', [('id', f.TYPE_INT32, optional, None), ('label', f.TYPE_STRING, optional, None)]
    )
    message(
        'Item',
        [
            ('name', f.TYPE_STRING, optional, None),
            ('id', f.TYPE_INT32, optional, None),
            ('display_name', f.TYPE_STRING, optional, None),
            ('keypoints', f.TYPE_MESSAGE, repeated, '.t.Keypoint'),
        ],
    )
    message('StringIntLabelMap', [('item', f.TYPE_MESSAGE, repeated, '.t.Item')])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName('t.StringIntLabelMap'))
    return text_format.Parse(text, cls())


def test_ids_with_gaps_are_labels_in_id_order_with_one_note(tmp_path, caplog):
    """COCO's label map skips ids (1..90 for 80 classes): the model's labels are 1..K."""
    caplog.set_level(logging.INFO, logger='absl')
    items = ((9, 'd'), (3, 'b'), (1, 'a'), (7, 'c'), (12, 'e'))
    path = _write(tmp_path, ''.join(f"item {{ id: {i} name: '{n}' }}\n" for i, n in items))
    assert labels.read_class_list(path) == (('a', 'b', 'c', 'd', 'e'), (1, 3, 7, 9, 12))
    notes = [r.getMessage() for r in caplog.records if 'label map' in r.getMessage()]
    assert notes == [
        f"{path}: the label map's ids are not 1..5; the model's labels are 1..5 in id order: "
        'id 3 -> label 2 (b), id 7 -> label 3 (c), id 9 -> label 4 (d), id 12 -> label 5 (e).'
    ]
    # A model from the flags with --labels_file: read once, noted once (it was read twice).
    caplog.clear()
    flags = cli.ModelFlags(model_name='ssd_300_mobilenet', labels_file=path)
    card = cli.resolve_card(flags, None, log=lambda line: None)
    assert card.class_names == ('a', 'b', 'c', 'd', 'e') and card.num_classes == 6
    # The map's ids are the card's category ids (detect's `category_id`), here and on a card
    # (detect and eval --labels_file); a plain labels file keeps the card's.
    assert card.category_ids == (1, 3, 7, 9, 12)
    assert len([r for r in caplog.records if 'label map' in r.getMessage()]) == 1
    named = cli.with_labels_file(card.replace(category_ids=None), path)
    assert named.class_names == card.class_names and named.category_ids == (1, 3, 7, 9, 12)
    plain = _write(tmp_path, 'v\nw\nx\ny\nz\n', 'labels.txt')
    assert cli.with_labels_file(card, plain).category_ids == (1, 3, 7, 9, 12)


@pytest.mark.parametrize(
    'text, message',
    [
        (
            "item { id: 0 name: 'background' }\nitem { id: 1 name: 'cat' }\n",
            "line 1: item 1: id 0 (line 1) is the background TF Object Detection API reserves, "
            'not a class; leave the item out (the background is implicit) or give it a class id '
            'from 1: expected',
        ),
        (
            "item { id: 1 name: 'cat' }\n\nitem {\n  id: 1\n  name: 'dog'\n}\n",
            'line 3: item 2 has id 1, as item 1 (line 1) has; ids and names must be unique: '
            'expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nitem { id: 2 name: ' cat ' }\n",
            "line 2: item 2 has name 'cat', as item 1 (line 1) has; ids and names must be unique: "
            'expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nitem { id: 2 display_name: 'Dog' }\n",
            "line 2: item 2 has no name (display_name is for display; the annotations' <name> is "
            "matched against name); expected one name: '...' per item:",
        ),
        (
            "item { id: 1 name: 'cat' name: 'kitty' }\n",
            "line 1: item 1 has 2 names; expected one name: '...' per item:",
        ),
        ("item { name: 'cat' }\n", 'line 1: item 1 has no id; expected one id: N per item:'),
        (
            'item { name: "none_of_the_above" label: 0 display_name: "background" }\n',
            "line 1: item 1 has no id (label: N is a Caffe SSD label map's; this format numbers "
            'with id); expected one id: N per item:',
        ),
        (
            "item { id: '1' name: 'cat' }\n",
            "line 1: item 1: id '1' (line 1) is not an integer; expected",
        ),
        (
            "item {\n id: -2 name: 'cat' }\n",
            'line 1: item 1: id -2 (line 2) is not in 1..2147483647; expected',
        ),
        (
            "item { id: 2147483648 name: 'cat' }\n",
            'line 1: item 1: id 2147483648 (line 1) is not in 1..2147483647; expected',
        ),
        # protobuf reads 010 as octal 8: with 9 after it the two classes were swapped silently.
        (
            "item { id: 010 name: 'cat' }\nitem { id: 9 name: 'dog' }\n",
            "line 1: item 1: id 010 (line 1) has a leading 0, which protobuf's text format (the "
            "TF Object Detection API's reader) reads as an octal number; write the id without "
            'leading zeros: expected',
        ),
        # 900k zeros: Python's int() refused the digits in an error naming no file.
        (
            "item { id: " + '0' * 900_000 + "1 name: 'cat' }\n",
            f"line 1: item 1: id {'0' * 37}... (line 1) has a leading 0, which protobuf's text "
            "format (the TF Object Detection API's reader) reads as an octal number; write the id "
            'without leading zeros: expected',
        ),
        (
            "item { id: 0x1f name: 'cat' }\n",
            'line 1: item 1: id 0x1f (line 1) is not an integer written in decimal; expected',
        ),
        # A digit of another script: int() read it, protobuf refuses it.
        (
            "item { id: \u0663 name: 'cat' }\n",
            'line 1: item 1: id \u0663 (line 1) is not an integer; expected',
        ),
        (
            'item { id: 1 name: cat }\n',
            "line 1: item 1: name cat (line 1) is not a quoted string ('...' or \"...\"); expected",
        ),
        ("item { id: 1 name: '' }\n", "line 1: item 1: name '' (line 1) is empty; expected"),
        (
            "item { id: 1 name: 'c\\tt' }\n",
            "line 1: item 1: name 'c\\tt' (line 1) holds the control character U+0009; expected",
        ),
        (
            f"item {{ id: 1 name: '{'x' * 300}' }}\n",
            f"line 1: item 1: name '{'x' * 37}...{'x' * 38}' (line 1) has 300 characters, more than 256; "
            'expected',
        ),
        # Malformed text: unbalanced braces, unknown top-level fields, fields without values.
        ("item { id: 1 name: 'cat' }\n}\n", 'line 2: a "}" that closes no block; expected'),
        (
            "item <\n id: 1 name: 'cat' }\n",
            'line 2: a "}" closes the block opened on line 1, which ">" closes; expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nitem < id: 2 name: 'dog'\n",
            'line 2: this "<" is never closed (the file ends first); expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nitem {\n  id: 2 name: 'dog'\n",
            'line 2: this "{" is never closed (the file ends first); expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nlabel_map_version: 2\n",
            "line 2: 'label_map_version' at the top level; a label map holds only item { ... } "
            'blocks: expected',
        ),
        (
            "item { id: 1 name: 'cat' }\nitem: 2\n",
            "line 2: 'item' at the top level; a label map holds only item { ... } blocks: expected",
        ),
        (
            'item {\n id: 1\n name }\n',
            "line 3: field 'name' has no value (expected name: value or name { ... }); expected",
        ),
        (
            "item { id: 1 name: 'cat }\n",
            "line 1: a string opened by ' is not closed on its line; expected",
        ),
        ("item { id: 1 name: 'c\\at' }\n", 'line 1: unknown escape \\a in a string; expected'),
        ("item { id: 1 name: 'cat' : }\n", "line 1: ':' where a field name was expected; expected"),
        (
            'item { ' + 'a { ' * 20 + '}' * 21 + '\n',
            'line 1: blocks nested more than 16 deep; expected',
        ),
    ],
)
def test_label_map_errors_name_the_file_line_and_item(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ValueError) as info:
        labels.read_labels_file(path)
    assert str(info.value) == f'{path}, {message} {MAP_FORMAT}'


def test_a_labels_file_starting_item_and_spaces_is_read_at_once(tmp_path):
    """The label-map test (`item`, spaces, `{`) backtracked quadratically: `item` and a MiB of
    spaces before a newline took about half an hour; it is a plain labels file."""
    path = _write(tmp_path, 'item' + ' ' * (labels.MAX_LABELS_BYTES - 20) + '\ncat\n', 'x.txt')
    assert labels.read_labels_file(path) == ('item', 'cat')


def test_label_maps_keep_the_labels_file_limits(tmp_path):
    path = _write(tmp_path, "item { id: 1 name: 'cat' }\n")
    os.truncate(path, labels.MAX_LABELS_BYTES + 1)
    with pytest.raises(safe_io.UnsafeFileError, match=re.escape(f'{path}: the labels file has ')):
        labels.read_labels_file(path)


def test_the_converter_reads_a_label_map(tmp_path):
    """tf_convert_data.py --labels_file=label_map.pbtxt: the records' classes are the map's
    names in id order; a bad map is the converter's one error line naming the flag."""
    root, out = str(tmp_path / 'voc'), str(tmp_path / 'out')
    fx.add_voc_example(root, 'a', fx.smooth_image(20, 20), [fx.voc_object('dog', (1, 1, 9, 9))])
    path = _write(tmp_path, "item { id: 4 name: 'dog' }\nitem { id: 2 name: 'cat' }\n")
    args = [
        '--dataset_name=pascalvoc',
        f'--dataset_dir={root}',
        f'--output_dir={out}',
        '--output_name=train',
    ]
    proc = run_script('tf_convert_data.py', *args, f'--labels_file={path}', timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (
        f"{path}: the label map's ids are not 1..2; the model's labels are 1..2 in id order: "
        'id 2 -> label 1 (cat), id 4 -> label 2 (dog).'
    ) in proc.stderr
    with open(os.path.join(out, 'train_metadata.json')) as f:
        classes = json.load(f)['classes']
    assert [(c['id'], c['name'], c['num_objects'], c['label_map_id']) for c in classes] == [
        (1, 'cat', 0, 2),
        (2, 'dog', 1, 4),
    ]
    # A model trained on them keeps the map's ids (detections.json's category_id).
    dataset = dataset_factory.get_dataset('custom', 'train', out)
    settings = trainer.TrainSettings(train_dir=str(tmp_path / 'train'))
    card = trainer.resolve_model_card(settings, dataset, log=lambda line: None)[0]
    assert card.class_names == ('cat', 'dog') and card.category_ids == (2, 4)
    bad = _write(tmp_path, "item { id: 0 name: 'dog' }\n", 'bad.pbtxt')
    proc = run_script('tf_convert_data.py', *args, f'--labels_file={bad}', timeout=120)
    assert proc.returncode == 1
    assert f'--labels_file: {bad}, line 1: item 1: id 0 (line 1) is the background' in proc.stderr
