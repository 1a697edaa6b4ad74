"""What the checkpoint converters (caffe_to_tensorflow.py, pytorch_to_tensorflow.py) refuse to
write, before any work: a card or record beside --output_path that no converter wrote (a
training's model.json with --output_path=train_dir/model, an export's metadata.json), and an
--output_path naming a folder; and a training whose --train_dir holds a converter's output."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from converters import caffe_convert
from converters import checkpoint_io
from converters import pytorch_convert
from converters import pytorch_ssd
from model import card as card_lib
from model import checkpoints
from tests import caffe_fixtures
from tests import eval_fixtures
from tests import pytorch_fixtures as fx
from tests.conftest import file_bytes, run_script

v1 = tf.compat.v1


@pytest.fixture(scope='module')
def sources(tmp_path_factory):
    """A Caffe fc-reduced VGG16 and an ssd.pytorch VGG base: backbone conversions, which write
    the record `<output_path>.json`."""
    root = tmp_path_factory.mktemp('sources')
    _, caffemodel = caffe_fixtures.write_net(
        caffe_fixtures.vgg_fc_reduced(seed=6, size=64), str(root), 'fc_reduced'
    )
    pth = str(root / 'vgg16_reducedfc.pth')
    fx.write_pth(fx.ssd_pytorch_vgg(fx.SEED), pth)
    return {'caffe': caffemodel, 'pytorch': pth}


@pytest.fixture(scope='module')
def converted(sources, tmp_path_factory):
    """The pytorch backbone converted to `<folder>/base.ckpt` (read-only: `_copy_conversion`
    gives a test its own copy); returns the conversion's result."""
    return _convert('pytorch', sources, str(tmp_path_factory.mktemp('converted') / 'base.ckpt'))


def _copy_conversion(converted, directory):
    """`converted`'s folder copied into `directory` (made if missing): a converter's output, the
    state file naming the checkpoint by its file name; returns the copy's prefix."""
    shutil.copytree(os.path.dirname(converted.checkpoint_path), directory, dirs_exist_ok=True)
    return os.path.join(directory, os.path.basename(converted.checkpoint_path))


def _convert(kind, sources, output_path):
    if kind == 'caffe':
        return caffe_convert.convert(
            sources['caffe'], output_path, 'vgg_16_fc_reduced', log=lambda *_: None
        )
    return pytorch_convert.convert(sources['pytorch'], output_path, log=lambda *_: None)


def _script_args(kind, sources, output_path):
    if kind == 'caffe':
        return (
            'caffe_to_tensorflow.py',
            '--caffemodel_path=' + sources['caffe'],
            '--model_name=vgg_16_fc_reduced',
            '--output_path=' + output_path,
        )
    return (
        'pytorch_to_tensorflow.py',
        '--pth_path=' + sources['pytorch'],
        '--output_path=' + output_path,
    )


def _training_folder(directory):
    """A training's folder: model.ckpt-5 (with global_step), its `checkpoint` state file and
    the trainer's model.json."""
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        v1.get_variable('w', initializer=np.ones([2], np.float32))
        step = v1.train.get_or_create_global_step()
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            sess.run(step.assign(5))
            v1.train.Saver(save_relative_paths=True).save(
                sess, os.path.join(directory, 'model.ckpt'), global_step=5, write_meta_graph=False
            )
    card = card_lib.from_registry('ssd_300_vgg', 21).replace(
        card_id=card_lib.new_card_id(), provenance={'trained_by': 'train_ssd_network.py'}
    )
    card_lib.write(os.path.join(directory, card_lib.CARD_FILE), card)


def _error_line(proc, script):
    """The script's one error line (it failed, with no traceback)."""
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(script + ': error: ')]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.mark.parametrize('kind', ['caffe', 'pytorch'])
def test_backbone_conversion_keeps_a_trainings_card(kind, sources, tmp_path):
    """--output_path=train_dir/model: the backbone record would be train_dir/model.json, the
    training's card. Refused, in one line, and nothing in the folder changes."""
    train_dir = str(tmp_path / 'train')
    _training_folder(train_dir)
    before = file_bytes(train_dir)
    script = _script_args(kind, sources, os.path.join(train_dir, 'model'))
    line = _error_line(run_script(*script), script[0][: -len('.py')])
    card = os.path.join(train_dir, 'model.json')
    assert f'{card} exists and was not written by a converter' in line
    assert 'choose another --output_path' in line
    assert file_bytes(train_dir) == before
    card_lib.load(card)  # still the training's card


def test_backbone_conversion_keeps_an_exports_metadata(sources, tmp_path):
    """--output_path=export_dir/metadata: the record would replace the export's metadata.json
    (here of a converted model: its card says converted_by, but it is an export's)."""
    export_dir = tmp_path / 'export'
    export_dir.mkdir()
    card = card_lib.from_registry('ssd_300_vgg', 21).replace(
        provenance={'converted_by': 'caffe_to_tensorflow.py'}
    )
    meta = dict(card.to_dict(), export={'format': 'saved_model'})
    (export_dir / 'metadata.json').write_text(json.dumps(meta))
    (export_dir / 'saved_model.pb').write_bytes(b'graph')
    before = file_bytes(export_dir)
    for kind in ('caffe', 'pytorch'):
        with pytest.raises(FileExistsError, match='metadata.json exists and was not written by'):
            _convert(kind, sources, str(export_dir / 'metadata'))
    assert file_bytes(export_dir) == before


def test_a_converters_record_without_its_checkpoint_is_not_replaced(sources, converted, tmp_path):
    """A record a converter wrote, but no checkpoint of that prefix beside it (copied there, or
    the checkpoint deleted): not this output's, so not replaced."""
    other = tmp_path / 'b'
    other.mkdir()
    shutil.copy(converted.config_path, other / 'base.ckpt.json')
    before = file_bytes(other)
    with pytest.raises(FileExistsError, match=r'base.ckpt.json exists and was not written by'):
        _convert('caffe', sources, str(other / 'base.ckpt'))
    assert file_bytes(other) == before


def _assert_written(prefix, result):
    """`prefix` holds `result`'s conversion: its record and the backbone's 30 variables."""
    with open(prefix + '.json', encoding='utf-8') as f:
        assert json.load(f) == result.config
    assert len(checkpoint_io.restore_values(prefix)) == 30


def test_a_conversion_replaces_its_own_earlier_output(sources, converted, tmp_path):
    """The same conversion again (over a copy of the module's pytorch conversion), the other
    converter's backbone into the same prefix, and an older converter version's record: all
    replaced."""
    out = _copy_conversion(converted, str(tmp_path))
    _assert_written(out, converted)
    for kind in ('pytorch', 'caffe'):
        _assert_written(out, _convert(kind, sources, out))
    # The first converter version's record of a detection model (no card then).
    old = {
        'model_name': 'ssd_300_vgg',
        'backbone_only': False,
        'preprocessing': {'channel_order': 'RGB', 'mean_rgb': [123, 117, 104], 'scale': 1.0},
        'source': {'caffemodel': '/x/VGG_SSD.caffemodel', 'prototxt': None},
        'ssd_params': {'num_classes': 21},
        'detection': {'nms_threshold': 0.45},
    }
    with open(out + '.json', 'w', encoding='utf-8') as f:
        json.dump(old, f)
    assert _convert('caffe', sources, out).config['backbone_only'] is True


def _conversion_may_replace(state):
    """What `checkpoint_io._save_atomically` asks of a folder's state file."""
    return checkpoints.written_by_converter(
        state, header_less_is_ours=checkpoint_io.has_converter_sidecar
    )


def test_a_trainings_one_line_state_file_is_left_alone(sources, converted, tmp_path):
    """TF's state file listing one checkpoint (--max_to_keep=1, a first save) has the old
    converter's two-line form: a conversion into the training's folder replaced it, and eval,
    export and detect given the folder then used the converted weights."""
    train_dir = str(tmp_path / 'train')
    _training_folder(train_dir)
    state = os.path.join(train_dir, 'checkpoint')
    with open(state, encoding='utf-8') as f:
        before = f.read()
    assert before == (
        'model_checkpoint_path: "model.ckpt-5"\nall_model_checkpoint_paths: "model.ckpt-5"\n'
    )
    assert not _conversion_may_replace(state)
    _convert('caffe', sources, os.path.join(train_dir, 'base.ckpt'))
    with open(state, encoding='utf-8') as f:
        assert f.read() == before
    # An older converter's own folder: the two lines and the record beside the checkpoint.
    _copy_conversion(converted, str(tmp_path / 'old'))
    with open(os.path.join(tmp_path, 'old', 'checkpoint'), 'w', encoding='utf-8') as f:
        f.write('model_checkpoint_path: "base.ckpt"\nall_model_checkpoint_paths: "base.ckpt"\n')
    assert _conversion_may_replace(os.path.join(tmp_path, 'old', 'checkpoint'))


def test_sidecar_is_ours_reads_the_content(sources, tmp_path):
    layout = pytorch_ssd.get_layout('ssd_pytorch_ssd300')
    params = pytorch_convert.source_params(layout, 21)
    converted = pytorch_convert.model_card(
        layout, params, card_lib.default_class_names(21), sources['pytorch'], 'source'
    ).to_dict()
    trained = card_lib.from_registry('ssd_300_vgg', 21).replace(
        provenance={'trained_by': 'train_ssd_network.py'}
    )
    cases = {
        'converted.model.json': (json.dumps(converted), True),
        'record.json': (json.dumps({'model_name': 'ssd_300_vgg', 'backbone_only': True}), True),
        'trained.json': (json.dumps(trained.to_dict()), False),
        'export.json': (json.dumps(dict(converted, export={})), False),
        'empty.json': ('{}', False),
        'list.json': ('[]', False),
        'broken.json': ('{"backbone_only": tr', False),
        'other.json': (json.dumps({'provenance': {'converted_by': 'something.py'}}), False),
    }
    for name, (text, ours) in cases.items():
        (tmp_path / name).write_text(text)
        assert checkpoint_io.sidecar_is_ours(str(tmp_path / name)) is ours, name
    (tmp_path / 'folder.json').mkdir()
    assert not checkpoint_io.sidecar_is_ours(str(tmp_path / 'folder.json'))
    assert not checkpoint_io.sidecar_is_ours(str(tmp_path / 'missing.json'))


@pytest.mark.parametrize(
    'given,suggested',
    [('ck/sub/', 'ck/sub/model.ckpt'), ('ck', 'ck/model.ckpt'), ('ck/.', 'ck/./model.ckpt')],
)
def test_an_output_path_naming_a_folder_is_refused(
    sources, tmp_path, monkeypatch, given, suggested
):
    monkeypatch.chdir(tmp_path)
    _training_folder('ck')
    before = file_bytes(tmp_path)
    for kind in ('caffe', 'pytorch'):
        with pytest.raises(IsADirectoryError) as err:
            _convert(kind, sources, given)
        assert str(err.value) == (
            f'--output_path={given!r} names a folder; it takes a checkpoint prefix (a file name '
            f'stem): pass e.g. --output_path={suggested}'
        )
    assert file_bytes(tmp_path) == before
    with pytest.raises(IsADirectoryError, match=r"--output_path='' names a folder.*=model.ckpt$"):
        checkpoint_io.check_output_path('')


def test_script_refuses_a_trailing_slash_in_one_line(sources, tmp_path):
    """Was: hidden ck/.index and ck/.data-*, ck/checkpoint rewritten to name "", ck/sub/.model.json
    left, then a 138-line traceback."""
    ck = str(tmp_path / 'ck')
    _training_folder(ck)
    before = file_bytes(tmp_path)
    script = _script_args('caffe', sources, ck + '/sub/')
    line = _error_line(run_script(*script), 'caffe_to_tensorflow')
    assert 'names a folder; it takes a checkpoint prefix' in line
    assert line.endswith(f'--output_path={ck}/sub/model.ckpt')
    assert file_bytes(tmp_path) == before


@pytest.fixture(scope='module')
def records(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('records'))
    return eval_fixtures.make_synthetic_records(root, num_images=2)[1]


def test_training_refuses_a_converters_folder(converted, records, tmp_path):
    """--train_dir holding a converter's output (its state file starts with the converter's
    header): no resume from converted weights (they have no global_step: a 190-line traceback,
    with model.json and an events file left there); one line, nothing written."""
    ck4 = str(tmp_path / 'ck4')
    _copy_conversion(converted, ck4)
    with pytest.raises(ValueError, match='was written by a checkpoint converter'):
        checkpoints.resume_checkpoint(ck4)
    before = file_bytes(ck4)
    proc = run_script(
        'train_ssd_network.py',
        f'--train_dir={ck4}',
        f'--dataset_dir={records}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        '--batch_size=2',
        '--max_number_of_steps=1',
    )
    line = _error_line(proc, 'train_ssd_network')
    state, latest = os.path.join(ck4, 'checkpoint'), os.path.join(ck4, 'base.ckpt')
    assert line == (
        f'train_ssd_network: error: {state} was written by a checkpoint converter: {ck4} holds '
        f'converted weights (base.ckpt), not a training to resume; pass them as '
        f'--checkpoint_path={latest} with a new --train_dir.'
    )
    assert file_bytes(ck4) == before
    # The shared mark: what the converter writes is what the trainer looks for.
    assert checkpoint_io.STATE_FILE_HEADER == checkpoints.CONVERTER_STATE_FILE_HEADER
    with open(state, encoding='utf-8') as f:
        assert f.readline() == checkpoints.CONVERTER_STATE_FILE_HEADER + '\n'


def test_training_still_resumes_its_own_folder(tmp_path):
    train_dir = str(tmp_path / 'train')
    _training_folder(train_dir)
    assert checkpoints.resume_checkpoint(train_dir) == os.path.join(train_dir, 'model.ckpt-5')
