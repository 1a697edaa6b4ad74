"""A model loaded with a metadata.json that does not describe it is refused, and export
--overwrite removes an earlier export's SavedModel that another model's metadata.json now sits
beside.

Seen before: another export's model_float.tflite copied beside a metadata.json ran in detect
with exit 0 and the metadata's class names; a VGG-512 frozen graph, TFLite model and OpenVINO IR
beside a MobileNet-300's metadata.json were run as "ssd_300_mobilenet, input 300x300" (the IR's
own card was not compared). And `export --overwrite --formats=frozen_graph` into a folder of
another model's full export kept its saved_model/ beside the new model's frozen graph and
metadata.json.

The two models: MobileNet-SSD300 at depth 0.25 with the synthetic dataset's 6 classes exported at
step 1600 (random weights, `inference_fixtures.write_checkpoint`), and at depth 0.5 with 2 classes
at step 800 (random weights, `eval_fixtures.write_random_checkpoint`: its detections are never
looked at).
"""

import hashlib
import json
import os
import pathlib
import shutil

import cv2
import pytest
import tensorflow as tf

from inference import detection
from inference import export
from model import card as card_lib
from tests import eval_fixtures
from tests import inference_fixtures as fx
from tests.conftest import run_script

FORMATS = ['frozen_graph', 'saved_model', 'tflite_float', 'openvino']
MODEL_FILES = ['frozen_graph.pb', 'model_float.tflite', 'model_openvino.xml']
RECORDED = 'frozen_graph.pb, model_float.tflite, model_openvino.bin, model_openvino.xml'
DESCRIBED = {
    'a': 'ssd_300_mobilenet, input 300x300, 6 classes',
    'b': 'ssd_300_mobilenet, input 300x300, 2 classes',
}


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """Two exports of different models ('a', 'b': {spec, prefix, out}) of FORMATS; 'a' is
    tests/test_openvino.py's and tests/test_fixed_size.py's (made once for the three)."""
    root = tmp_path_factory.mktemp('two_exports')
    spec_a = fx.small_spec()
    prefix_a, _, out_a = fx.seeded_export()
    spec_b = card_lib.from_registry(
        'ssd_300_mobilenet', class_names=['cat', 'dog'], depth_multiplier=0.5
    ).with_detection(select_threshold=0.05, top_k=50, keep_top_k=40)
    prefix_b = eval_fixtures.write_random_checkpoint(
        str(root / 'train_b' / 'model.ckpt'), 'ssd_300_mobilenet', 3, 800, depth_multiplier=0.5
    )
    export.export(spec_b, prefix_b, str(root / 'b'), FORMATS, log=lambda _: None)
    return {
        'a': dict(spec=spec_a, prefix=prefix_a, out=pathlib.Path(out_a)),
        'b': dict(spec=spec_b, prefix=prefix_b, out=root / 'b'),
    }


def _beside(folder, metadata_of, models_of, names):
    """`folder` holding the metadata.json of the export `metadata_of` and the files `names` of
    the export `models_of` (each a folder)."""
    folder.mkdir()
    shutil.copy(metadata_of / 'metadata.json', folder / 'metadata.json')
    for name in names:
        shutil.copy(models_of / name, folder / name)
    return folder


def _without_digests(folder):
    """Rewrites folder/metadata.json as an export before FILE_DIGESTS wrote it."""
    path = folder / 'metadata.json'
    meta = json.loads(path.read_text())
    del meta[card_lib.FILE_DIGESTS]
    path.write_text(json.dumps(meta))


def _without_cards(folder):
    """Rewrites `folder`'s frozen graph and TFLite model as an export before the cards inside
    those models wrote them (after the digests: an IR had its card already)."""
    for name in ('frozen_graph.pb', 'model_float.tflite'):
        if (folder / name).exists():
            fx.remove_embedded_card(folder / name)


def _use(name):
    return (
        f'use the metadata.json {name} was exported with, or export the model again with '
        f'export_ssd_network.py.'
    )


def _not_recorded(folder, name, described):
    return (
        f'{folder / "metadata.json"} ({described}) does not describe {folder / name}: that file '
        f'is none of the model files its export wrote ({RECORDED}, whose sizes and sha256 it '
        f'records); {_use(name)}'
    )


def test_the_metadata_records_each_model_files_size_and_digest(exports):
    out = exports['a']['out']
    meta = json.loads((out / 'metadata.json').read_text())
    assert sorted(meta[card_lib.FILE_DIGESTS]) == RECORDED.split(', ')
    graph = meta[card_lib.FILE_DIGESTS]['frozen_graph.pb']
    assert graph['size'] == os.path.getsize(out / 'frozen_graph.pb') and len(graph['sha256']) == 64
    saved = json.loads((out / 'saved_model' / 'assets.extra' / 'metadata.json').read_text())
    assert sorted(saved[card_lib.FILE_DIGESTS]) == [
        'saved_model.pb',
        'variables/variables.data-00000-of-00001',
        'variables/variables.index',
    ]


@pytest.mark.parametrize('name', MODEL_FILES + ['saved_model'])
def test_an_exports_own_files_load_checked(exports, name):
    with detection.open_exported_model(str(exports['a']['out'] / name)) as detector:
        assert detector.card == exports['a']['spec']
        assert detector.export_step == 1600
        assert detector.note is None


def test_a_renamed_copy_beside_its_metadata_loads(exports, tmp_path):
    folder = _beside(tmp_path / 'mine', exports['a']['out'], exports['a']['out'], [])
    shutil.copy(exports['a']['out'] / 'model_float.tflite', folder / 'ssd.tflite')
    with detection.open_exported_model(str(folder / 'ssd.tflite')) as detector:
        assert detector.card.class_names == exports['a']['spec'].class_names


@pytest.mark.parametrize('name', MODEL_FILES)
def test_a_model_beside_another_exports_metadata_is_refused(exports, tmp_path, name):
    names = [name] + (['model_openvino.bin'] if name.endswith('.xml') else [])
    folder = _beside(tmp_path / 'mixed', exports['b']['out'], exports['a']['out'], names)
    with pytest.raises(card_lib.ModelMismatchError) as err:
        detection.open_exported_model(str(folder / name))
    assert str(err.value) == _not_recorded(folder, name, DESCRIBED['b'])


def test_an_ir_with_other_weights_is_refused(exports, tmp_path):
    """The .xml is the metadata's export's, its .bin of the same size holds other weights (a
    .bin of another size OpenVINO refuses itself): the .bin is named."""
    names = ['model_openvino.xml', 'model_openvino.bin']
    folder = _beside(tmp_path / 'mixed', exports['a']['out'], exports['a']['out'], names)
    weights = bytearray((folder / 'model_openvino.bin').read_bytes())
    middle = len(weights) // 2
    weights[middle : middle + 64] = bytes(b ^ 0xFF for b in weights[middle : middle + 64])
    (folder / 'model_openvino.bin').write_bytes(bytes(weights))
    with pytest.raises(card_lib.ModelMismatchError) as err:
        detection.open_exported_model(str(folder / 'model_openvino.xml'))
    assert str(err.value) == (
        f'{folder / "metadata.json"} ({DESCRIBED["a"]}) does not describe '
        f'{folder / "model_openvino.bin"}: that file is none of the model files its export '
        f'wrote ({RECORDED}, whose sizes and sha256 it records); {_use("model_openvino.xml")}'
    )


def _saved_model_copy(exports, tmp_path):
    """(folder, its assets.extra/metadata.json) of a copy of export a's SavedModel."""
    saved = tmp_path / 'saved_model'
    shutil.copytree(exports['a']['out'] / 'saved_model', saved)
    return saved, saved / 'assets.extra' / 'metadata.json'


def test_a_saved_model_with_another_exports_metadata_is_refused(exports, tmp_path, monkeypatch):
    """Before the SavedModel is loaded (seconds for an SSD: the files' digests are checked
    first)."""
    saved, sidecar = _saved_model_copy(exports, tmp_path)
    shutil.copy(exports['b']['out'] / 'saved_model' / 'assets.extra' / 'metadata.json', sidecar)

    def load(*args, **kwargs):
        raise AssertionError('the SavedModel was loaded')

    monkeypatch.setattr(tf.compat.v1.saved_model.loader, 'load', load)
    with pytest.raises(card_lib.ModelMismatchError) as err:
        detection.open_exported_model(str(saved))
    assert str(err.value) == (
        f'{sidecar} ({DESCRIBED["b"]}) does not describe the SavedModel {saved}: its '
        f'saved_model.pb is not the file its export wrote (that metadata.json records the size '
        f'and sha256 of each file of its SavedModel); export the model again with '
        f'export_ssd_network.py.'
    )


def test_a_record_naming_one_file_many_ways_is_refused(exports, tmp_path):
    """'variables/x', './variables/x', 'variables//x' passed as names inside the folder: each
    alias had the file hashed again (10^5 of them fit in a metadata.json)."""
    saved, sidecar = _saved_model_copy(exports, tmp_path)
    meta = json.loads(sidecar.read_text())
    digests = meta[card_lib.FILE_DIGESTS]
    name = next(n for n in digests if n.startswith('variables/'))
    # The loader loads the graph, then refuses what its metadata reader refuses: the cases after
    # the first go to that reader alone.
    for alias, reader in (
        ('./' + name, detection.open_exported_model),
        (name.replace('/', '//'), card_lib.read_export_metadata),
    ):
        sidecar.write_text(
            json.dumps({**meta, card_lib.FILE_DIGESTS: {**digests, alias: digests[name]}})
        )
        with pytest.raises(card_lib.CardError, match='each name once, as a relative path'):
            reader(str(saved))
    many = {f'variables/{i}': digests[name] for i in range(card_lib.MAX_RECORDED_FILES + 1)}
    sidecar.write_text(json.dumps({**meta, card_lib.FILE_DIGESTS: many}))
    with pytest.raises(card_lib.CardError, match=f'at most {card_lib.MAX_RECORDED_FILES}'):
        card_lib.read_export_metadata(str(saved))


@pytest.mark.parametrize('name', MODEL_FILES)
def test_metadata_without_digests_still_loads_its_own_model(exports, tmp_path, name):
    """A metadata.json without digests (its model's card compared instead) and an export
    written before the digests: its own model loads; the IR's own card is compared with it, the
    models without a card inside get a note saying what was not checked."""
    names = [name] + (['model_openvino.bin'] if name.endswith('.xml') else [])
    folder = _beside(tmp_path / 'earlier', exports['a']['out'], exports['a']['out'], names)
    _without_digests(folder)
    with detection.open_exported_model(str(folder / name)) as detector:
        assert (detector.card, detector.note) == (exports['a']['spec'], None)
    _without_cards(folder)
    with detection.open_exported_model(str(folder / name)) as detector:
        assert detector.card == exports['a']['spec']
        if name.endswith('.xml'):
            assert detector.note is None
        else:
            assert detector.note == (
                f'note: {folder / "metadata.json"} records no sizes and sha256 digests of its '
                f'model files (an export written before they were recorded), so it is not '
                f'checked that it describes {folder / name} beyond its number of anchors and '
                f'classes; export the model again to have it checked.'
            )


def test_a_saved_model_without_digests_loads_with_the_note(exports, tmp_path):
    """The SavedModel loader gave no note where the others did."""
    saved, sidecar = _saved_model_copy(exports, tmp_path)
    meta = json.loads(sidecar.read_text())
    del meta[card_lib.FILE_DIGESTS]
    sidecar.write_text(json.dumps(meta))
    with detection.open_exported_model(str(saved)) as detector:
        assert detector.card == exports['a']['spec']
        assert detector.note.startswith(f'note: {sidecar} records no sizes and sha256 digests')


@pytest.mark.parametrize('name', MODEL_FILES)
def test_metadata_without_digests_of_another_model_is_refused(exports, tmp_path, name):
    """Compared without the digests: the model's own card (the IR's has the export time, the
    others' none); in an export before those cards, the classes and anchors the outputs have."""
    names = [name] + (['model_openvino.bin'] if name.endswith('.xml') else [])
    folder = _beside(tmp_path / 'mixed', exports['b']['out'], exports['a']['out'], names)
    _without_digests(folder)
    with pytest.raises(card_lib.ModelMismatchError) as err:
        detection.open_exported_model(str(folder / name))
    meta, model = folder / 'metadata.json', folder / name
    time = 'export time, ' if name.endswith('.xml') else ''
    assert str(err.value) == (
        f'{meta} ({DESCRIBED["b"]}) does not describe {model}: the model card in that model '
        f'({DESCRIBED["a"]}) is of another export (they differ in num_classes, ssd_params, '
        f'{time}exported checkpoint); {_use(name)}'
    )
    if not name.endswith('.xml'):
        _without_cards(folder)
        with pytest.raises(card_lib.ModelMismatchError) as err:
            detection.open_exported_model(str(folder / name))
        assert str(err.value) == (
            f'{meta} ({DESCRIBED["b"]}) does not describe {model}: the model scores 1917 anchors '
            f'in 7 classes (the background included), where that metadata.json has 1917 anchors '
            f'and 3 classes; {_use(name)}'
        )


def test_scripts_refuse_a_model_beside_another_exports_metadata(exports, tmp_path):
    """The user's commands: detect --exported_model=<tflite> and eval --exported_model, each
    one line naming both files, nothing written; an earlier export's own model runs with the
    note on the line after the model's."""
    names = ['model_float.tflite', 'frozen_graph.pb']
    folder = _beside(tmp_path / 'mixed', exports['b']['out'], exports['a']['out'], names)
    photos = tmp_path / 'photos'
    photos.mkdir()
    cv2.imwrite(str(photos / 'a.png'), fx.random_images(0, [(120, 160)])[0])
    tflite = folder / 'model_float.tflite'
    proc = run_script(
        'detect_ssd_network.py',
        f'--exported_model={tflite}',
        f'--input={photos}',
        f'--output_dir={tmp_path / "detections"}',
        timeout=200,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'detect_ssd_network: error: {_not_recorded(folder, "model_float.tflite", DESCRIBED["b"])}'
    )
    assert not (tmp_path / 'detections' / 'detections.json').exists()
    graph = folder / 'frozen_graph.pb'
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={graph}',
        f'--dataset_dir={tmp_path}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--eval_dir={tmp_path / "eval"}',
        timeout=200,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'eval_ssd_network: error: {_not_recorded(folder, "frozen_graph.pb", DESCRIBED["b"])}'
    )
    assert not (tmp_path / 'eval' / 'results.json').exists()

    earlier = _beside(tmp_path / 'earlier', exports['a']['out'], exports['a']['out'], names)
    _without_digests(earlier)
    _without_cards(earlier)
    proc = run_script(
        'detect_ssd_network.py',
        f'--exported_model={earlier / "model_float.tflite"}',
        f'--input={photos}',
        f'--output_dir={tmp_path / "detections_earlier"}',
        timeout=200,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    model = next(i for i, line in enumerate(lines) if line.startswith('model '))
    assert lines[model].endswith(', exported at step 1600')
    assert lines[model + 1] == (
        f'note: {earlier / "metadata.json"} records no sizes and sha256 digests of its model '
        f'files (an export written before they were recorded), so it is not checked that it '
        f'describes {earlier / "model_float.tflite"} beyond its number of anchors and classes; '
        f'export the model again to have it checked.'
    )


# export --overwrite and an earlier export's saved_model/


def _export(exports, which, out, formats, **kwargs):
    logged = []
    spec, prefix = exports[which]['spec'], exports[which]['prefix']
    export.export(spec, prefix, str(out), formats, log=logged.append, **kwargs)
    return logged


def test_overwrite_removes_an_earlier_exports_saved_model(exports, tmp_path):
    """The user's command: --overwrite --formats=frozen_graph into a folder of another model's
    full export leaves no saved_model/ of that model beside the new metadata.json. The earlier
    model files of other formats, which the new metadata.json does not describe, are removed too
    (detect took the new card's classes and step for an old frozen graph); the user's files
    stay."""
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)
    (out / 'notes.txt').write_text('mine')
    logged = _export(exports, 'a', out, ['frozen_graph'], overwrite=True)
    assert sorted(os.listdir(out)) == sorted(export.written_names(['frozen_graph']) + ['notes.txt'])
    assert (out / 'notes.txt').read_text() == 'mine'
    assert [line for line in logged if line.startswith('removed')] == [
        f"removed {out / name}: an earlier export's {fmt} (its metadata.json listed it), not "
        'described by the new metadata.json'
        for fmt, name in (
            ('tflite_float', 'model_float.tflite'),
            ('openvino', 'model_openvino.xml'),
            ('openvino', 'model_openvino.bin'),
            ('saved_model', 'saved_model'),
        )
    ]
    assert not [line for line in logged if line.startswith('kept')], logged
    with detection.open_exported_model(str(out / 'frozen_graph.pb')) as detector:
        assert detector.card == exports['a']['spec'] and detector.export_step == 1600


def test_finishing_an_interrupted_export_removes_the_earlier_saved_model(
    exports, tmp_path, monkeypatch
):
    """An export with --overwrite killed after its frozen graph, before its metadata.json (as
    kill -9 leaves it, .export_pending.json there): run again, it removes the earlier
    export's SavedModel too."""
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, '_write_sidecars', killed)
    with pytest.raises(KeyboardInterrupt):
        _export(exports, 'a', out, ['frozen_graph'], overwrite=True)
    monkeypatch.undo()
    assert export.PENDING_FILE in os.listdir(out) and (out / 'saved_model').is_dir()
    logged = _export(exports, 'a', out, ['frozen_graph'], overwrite=True)
    assert sorted(os.listdir(out)) == export.written_names(['frozen_graph'])
    assert [line for line in logged if line.startswith(f'removed {out / "saved_model"}:')]


def _overwrite_log(out):
    """What `export --overwrite --formats=frozen_graph` into `out` logs of the earlier files it
    removes or keeps: the folder checked, then the earlier exports' other formats removed, as
    the export does both; its own files, which play no part in that, are not written (whole
    exports: test_overwrite_removes_an_earlier_exports_saved_model and
    test_overwrite_keeps_a_saved_model_holding_a_users_file)."""
    logged = []
    earlier = export.check_output_dir(str(out), ['frozen_graph'], overwrite=True)
    export.remove_stale_formats(str(out), ['frozen_graph'], earlier, logged.append)
    return logged


def _kept(out, why):
    return (
        f"kept {out / 'saved_model'}: not shown to be an earlier export's SavedModel alone "
        f'({why}); the new metadata.json does not describe it: move it out of {out} or delete '
        f'it if it is not wanted there'
    )


def test_overwrite_keeps_a_saved_model_holding_a_users_file(exports, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)
    (out / 'saved_model' / 'assets').mkdir()
    (out / 'saved_model' / 'assets' / 'vocab.txt').write_text('mine')
    logged = _export(exports, 'a', out, ['frozen_graph'], overwrite=True)
    assert _kept(out, 'it holds assets/vocab.txt, which no export writes') in logged
    assert (out / 'saved_model' / 'assets' / 'vocab.txt').read_text() == 'mine'
    assert (out / 'saved_model' / 'saved_model.pb').exists()
    # The same folder is not replaced either: refused before any work.
    before = sorted(os.listdir(out))
    with pytest.raises(export.ForeignFileError) as err:
        _export(exports, 'a', out, ['saved_model'], overwrite=True)
    assert str(err.value) == (
        f'{out / "saved_model"} is not from an earlier export (it holds assets/vocab.txt, which '
        f'no export writes); refusing to replace it: choose another --output_dir, or move it '
        f'out of {out}.'
    )
    assert sorted(os.listdir(out)) == before


def test_overwrite_keeps_a_saved_model_no_export_wrote(exports, tmp_path):
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)
    os.remove(out / 'saved_model' / 'assets.extra' / 'metadata.json')
    logged = _overwrite_log(out)
    assert _kept(out, 'it holds no assets.extra/metadata.json an export wrote') in logged
    assert (out / 'saved_model' / 'saved_model.pb').exists()
    # A link named saved_model (to an export's SavedModel), in a folder whose record lists a
    # saved_model, is the user's too.
    shutil.rmtree(out)
    shutil.copytree(exports['b']['out'], out)
    shutil.rmtree(out / 'saved_model')
    os.symlink(exports['b']['out'] / 'saved_model', out / 'saved_model')
    logged = _overwrite_log(out)
    assert _kept(out, 'it is a link, where an export writes a folder') in logged
    assert os.path.islink(out / 'saved_model')
    assert (exports['b']['out'] / 'saved_model' / 'saved_model.pb').exists()


def test_overwrite_keeps_a_saved_model_no_record_of_the_folder_lists(exports, tmp_path):
    """A copied export's saved_model/ in a folder without the export's metadata.json: the
    refusal told to pass --overwrite, which then deleted it (no record listed it)."""
    out = tmp_path / 'out'
    out.mkdir()
    shutil.copytree(exports['b']['out'] / 'saved_model', out / 'saved_model')
    (out / 'notes.txt').write_text('mine')
    with pytest.raises(export.OutputNotEmptyError) as err:
        export.check_output_dir(str(out), ['frozen_graph'])
    assert 'saved_model' not in str(err.value).split('pass --overwrite')[1]
    logged = _overwrite_log(out)
    why = 'no metadata.json of an earlier export in the folder lists it'
    assert _kept(out, why) in logged
    assert (out / 'saved_model' / 'saved_model.pb').exists()


def test_overwrite_names_and_keeps_a_saved_model_changed_since_its_export(exports, tmp_path):
    """A saved_model/ whose variables a user saved again under the export's names passed the
    names-only check: its sidecar's sizes and sha256 tell. Named in the refusal when --overwrite
    would remove it; kept when changed."""
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)
    with pytest.raises(export.OutputNotEmptyError) as err:
        export.check_output_dir(str(out), ['frozen_graph'])
    assert 'remove' in str(err.value) and 'saved_model/' in str(err.value)
    (data,) = (out / 'saved_model' / 'variables').glob('variables.data-*')
    data.write_bytes(data.read_bytes()[:-1] + b'\0')
    logged = _overwrite_log(out)
    assert _kept(out, f'its variables/{data.name} is not the file its export wrote') in logged
    assert data.exists()


def test_a_file_put_in_saved_model_during_the_export_is_not_deleted(exports, tmp_path, monkeypatch):
    """check_output_dir looked at saved_model/ before the slow work; the replacement trusted
    that look. It checks again right before the rename."""
    out = tmp_path / 'out'
    shutil.copytree(exports['b']['out'], out)
    original = export._write_sidecars

    def user_adds_a_file(directory, *args, **kwargs):
        (out / 'saved_model' / 'notes.txt').write_text('mine')
        return original(directory, *args, **kwargs)

    monkeypatch.setattr(export, '_write_sidecars', user_adds_a_file)
    with pytest.raises(export.ForeignFileError, match='it holds notes.txt, which no export'):
        _export(exports, 'a', out, ['saved_model'], overwrite=True)
    assert (out / 'saved_model' / 'notes.txt').read_text() == 'mine'


def test_a_recorded_digest_matches_by_size_and_sha256_in_either_case(tmp_path):
    """A hand-copied record may spell the hex digest in capitals: it names the same file."""
    data = b'model bytes'
    (tmp_path / 'm.tflite').write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    path = str(tmp_path / 'm.tflite')
    assert card_lib.matches_record(path, {'size': len(data), 'sha256': digest.upper()})
    assert not card_lib.matches_record(path, {'size': len(data) + 1, 'sha256': digest})
    assert not card_lib.matches_record(path, {'size': len(data), 'sha256': digest[:-1] + 'x'})
