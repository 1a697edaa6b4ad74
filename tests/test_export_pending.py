"""An export interrupted after it replaced some of an earlier export's files: every reader of the
folder refuses it (its `.export_pending.json` is there) until the export is run again with
--overwrite, which finishes it.

Seen before: the new step-800 frozen_graph.pb beside the earlier step-1600 metadata.json,
model_float.tflite and saved_model/; detect said "exported at step 1600" and eval wrote
results.json with global_step 1600 and step 800's mAP.
"""

import os

import pytest

from inference import detection
from inference import export
from inference import openvino_model
from model import card as card_lib
from tests import inference_fixtures as fx
from tests.conftest import run_python, run_script

FORMATS = ['frozen_graph', 'saved_model', 'tflite_float']


def _unfinished(out, path):
    return (
        f'{path}: the export into {out} has not finished (its .export_pending.json is there: '
        f'interrupted or still running), so its files may be of different exports; run '
        f'export_ssd_network.py --overwrite into {out} again to finish it.'
    )


@pytest.fixture(scope='module')
def interrupted(tmp_path_factory):
    """A folder of a finished step-1600 export, then a step-800 export with --overwrite
    interrupted (KeyboardInterrupt, as SIGINT raises) after it replaced frozen_graph.pb."""
    root = tmp_path_factory.mktemp('pending')
    spec = fx.small_spec()
    prefix = fx.write_checkpoint(spec, str(root / 'train'))
    old, new = fx.step_checkpoint(prefix, 1600), fx.step_checkpoint(prefix, 800)
    out = str(root / 'out')
    export.export(spec, old, out, FORMATS, log=lambda _: None)
    finished = sorted(os.listdir(out))
    with open(os.path.join(out, 'frozen_graph.pb'), 'rb') as f:
        old_graph = f.read()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    original = export._write_saved_model
    export._write_saved_model = killed
    try:
        with pytest.raises(KeyboardInterrupt):
            export.export(spec, new, out, FORMATS, log=lambda _: None, overwrite=True)
    finally:
        export._write_saved_model = original
    with open(os.path.join(out, 'frozen_graph.pb'), 'rb') as f:
        replaced = f.read() != old_graph
    return dict(spec=spec, new=new, out=out, finished=finished, replaced=replaced)


def test_a_finished_export_leaves_no_pending_file(interrupted):
    assert interrupted['finished'] == export.written_names(FORMATS)
    assert export.PENDING_FILE not in interrupted['finished']


def test_the_interrupted_folder_mixes_two_exports(interrupted):
    """Guards the fixture: the new frozen graph beside the earlier metadata (step 1600)."""
    out = interrupted['out']
    assert interrupted['replaced']
    assert sorted(os.listdir(out)) == sorted(export.written_names(FORMATS) + [export.PENDING_FILE])
    meta = card_lib.read_json_object(os.path.join(out, 'metadata.json'), 'export metadata')
    assert card_lib.export_step(meta) == 1600


@pytest.mark.parametrize(
    'name', ['frozen_graph.pb', 'model_float.tflite', 'saved_model', 'model_openvino.xml']
)
def test_every_metadata_reader_refuses_the_unfinished_folder(interrupted, name):
    out = interrupted['out']
    path = os.path.join(out, name)
    for read in (card_lib.read_export_metadata, openvino_model.load_metadata):
        with pytest.raises(card_lib.CardError) as err:
            read(path)
        assert str(err.value) == _unfinished(out, path)
    # A SavedModel's own assets.extra/metadata.json is refused too where it sits in the folder,
    # with a trailing slash as well.
    if name == 'saved_model':
        with pytest.raises(card_lib.CardError) as err:
            card_lib.read_export_metadata(path + '/')
        assert str(err.value) == _unfinished(out, path + '/')


def test_a_symlink_to_the_unfinished_saved_model_is_refused(interrupted, tmp_path):
    """`mymodel -> out/saved_model`: the pending-file check looked beside the link (abspath) and
    passed, while the metadata was read through it (step 1600 beside a step-800 frozen graph)."""
    out = interrupted['out']
    link = str(tmp_path / 'mymodel')
    os.symlink(os.path.join(out, 'saved_model'), link)
    assert os.path.isfile(os.path.join(link, 'assets.extra', 'metadata.json'))
    with pytest.raises(card_lib.ExportUnfinishedError) as err:
        card_lib.read_export_metadata(link)
    assert str(err.value) == _unfinished(os.path.realpath(out), link)
    with pytest.raises(card_lib.ExportUnfinishedError) as err:
        detection.open_exported_model(link + '/')
    assert str(err.value) == _unfinished(os.path.realpath(out), link + '/')


@pytest.mark.parametrize('name', ['frozen_graph.pb', 'saved_model'])
def test_open_exported_model_refuses_the_unfinished_folder(interrupted, name):
    out = interrupted['out']
    path = os.path.join(out, name)
    with pytest.raises(card_lib.ExportUnfinishedError) as err:
        detection.open_exported_model(path)
    assert str(err.value) == _unfinished(out, path)
    graph = os.path.join(out, 'frozen_graph.pb')
    with pytest.raises(card_lib.ExportUnfinishedError):
        detection.Detector.from_frozen_graph(graph)


def test_scripts_refuse_the_unfinished_folder_in_one_line(interrupted, tmp_path):
    out = interrupted['out']
    graph = os.path.join(out, 'frozen_graph.pb')
    image = tmp_path / 'photos'
    image.mkdir()
    (image / 'a.jpg').write_bytes(b'')  # inputs are listed before the model is loaded
    proc = run_script(
        'detect_ssd_network.py',
        f'--frozen_graph={graph}',
        f'--input={image}',
        f'--output_dir={tmp_path / "detections"}',
        timeout=200,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'detect_ssd_network: error: {_unfinished(out, graph)}'
    )
    assert 'exported at step' not in proc.stdout
    saved_model = os.path.join(out, 'saved_model')
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={saved_model}',
        f'--dataset_dir={tmp_path}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--eval_dir={tmp_path / "eval"}',
        timeout=200,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'eval_ssd_network: error: {_unfinished(out, saved_model)}'
    )
    assert not os.path.exists(tmp_path / 'eval' / 'results.json')


EXPORT_CUT_AS_IT_STARTS = r"""
import os
import signal
import sys
import tempfile

from inference import export
from tests import inference_fixtures as fx
from tf_extended import atomic_io

checkpoint, out, moment = sys.argv[1:]
pending = os.path.join(out, export.PENDING_FILE)
fsync_dir, mkdtemp = atomic_io.fsync_dir, tempfile.mkdtemp


def after_pending(path):
    fsync_dir(path)
    if os.path.exists(pending):
        signal.raise_signal(signal.SIGINT)


def after_mkdtemp(*args, **kwargs):
    made = mkdtemp(*args, **kwargs)
    signal.raise_signal(signal.SIGINT)
    return made


# Python's own Ctrl-C handler: a child of the tests' fork server inherits SIGINT ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
if moment == 'pending file written':
    atomic_io.fsync_dir = after_pending
else:
    tempfile.mkdtemp = after_mkdtemp
try:
    export.export(fx.small_spec(), checkpoint, out, ['frozen_graph'], log=print)
except KeyboardInterrupt:
    print(sorted(os.listdir(out)))
"""


@pytest.mark.parametrize('moment', ['pending file written', 'staged copy made'])
def test_a_ctrl_c_as_the_export_starts_leaves_its_folder_empty(interrupted, tmp_path, moment):
    """A Ctrl-C or SIGTERM (the scripts' KeyboardInterrupt) right after the pending file landed,
    or as the checkpoint's staged copy was made, left either in the folder (a test of the export
    script failed now and then). In a process of its own: the signal is a real one."""
    out = tmp_path / 'out'
    proc = run_python(EXPORT_CUT_AS_IT_STARTS, interrupted['new'], str(out), moment)
    assert (proc.returncode, proc.stdout) == (0, '[]\n'), proc.stderr[-2000:]


def test_rerun_with_overwrite_finishes_the_folder(interrupted):
    """Last in this module: it repairs the shared folder."""
    out = interrupted['out']
    export.export(
        interrupted['spec'], interrupted['new'], out, FORMATS, log=lambda _: None, overwrite=True
    )
    assert sorted(os.listdir(out)) == export.written_names(FORMATS)
    for name in ('frozen_graph.pb', 'model_float.tflite', 'saved_model'):
        meta, _ = card_lib.read_export_metadata(os.path.join(out, name))
        assert card_lib.export_step(meta) == 800
    for name in ('frozen_graph.pb', 'saved_model'):
        with detection.open_exported_model(os.path.join(out, name)) as detector:
            assert detector.card.class_names == interrupted['spec'].class_names
            assert detector.run(fx.random_images(1, [(90, 120)]))['detection_boxes'].shape[0] == 1
