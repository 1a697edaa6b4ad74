"""Model files a user hands us (cards, export metadata, frozen graphs, TFLite and OpenVINO models,
.pth weights, results files, the trainer's marker) read as possibly hostile: devices and FIFOs
refused before they block or never end, sizes bounded, broken content a one-line error naming the
file. All of them go through tf_extended/safe_io."""

import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from converters import pth_reader
from inference import detection
from inference import openvino_model
from inference import openvino_runtime
from model import card as card_lib
from model import checkpoints
from tests.conftest import interrupt_when
from tests.conftest import process_running
from tests.conftest import run_python
from tests.conftest import run_script
from tf_extended import coco_metrics
from tf_extended import safe_io
from tf_extended import voc_metrics


@pytest.fixture(autouse=True)
def no_blocking():
    """Fails a test whose code blocks (opening a FIFO) or reads without end (/dev/zero)."""

    def hung(signum, frame):
        raise AssertionError('blocked: a hostile file was opened or read without end')

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def _fifo(path):
    os.mkfifo(path)
    return str(path)


def _zero_link(path):
    os.symlink('/dev/zero', path)
    return str(path)


def test_read_json_refuses_devices_fifos_and_broken_text(tmp_path):
    cases = {
        _fifo(tmp_path / 'fifo.json'): 'is a FIFO',
        _zero_link(tmp_path / 'zero.json'): r'is a character device \(through a symlink\)',
        str(tmp_path): 'is a directory',
    }
    big = tmp_path / 'big.json'
    big.write_text('[' + '0,' * 600 + '0]')
    cases[str(big)] = 'has 1203 bytes, more than the limit of 1000'
    for path, why in cases.items():
        with pytest.raises(safe_io.UnsafeFileError, match=why):
            safe_io.read_json(path, 'card', max_bytes=1000)
    for name, content, why in (
        ('latin.json', b'{"a": "\xe9"}', r'latin.json: the card is not UTF-8 text'),
        ('cut.json', b'{"a": [1, 2', r'cut.json: the card is not valid JSON \(Expecting'),
        ('deep.json', b'[' * 100000 + b']' * 100000, 'deep.json: the card nests its JSON too'),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=why):
            safe_io.read_json(str(tmp_path / name), 'card')
    (tmp_path / 'ok.json').write_text('{"a": [1, 2.5, "x"]}')
    assert safe_io.read_json(str(tmp_path / 'ok.json')) == {'a': [1, 2.5, 'x']}


def test_cards_and_export_metadata(tmp_path):
    card = card_lib.from_registry('ssd_300_vgg', num_classes=3)
    good = card_lib.write(str(tmp_path / 'model.json'), card)
    assert card_lib.load(good) == card
    for path, why in (
        (_fifo(tmp_path / 'fifo.json'), 'fifo.json: the model card is a FIFO'),
        (_zero_link(tmp_path / 'zero.json'), 'zero.json: the model card is a character device'),
    ):
        with pytest.raises(card_lib.CardError, match=f'cannot read the model card: .*{why}'):
            card_lib.load(path)
    (tmp_path / 'list.json').write_text('[1, 2]')
    with pytest.raises(card_lib.CardError, match='list.json: the model card is not a JSON object'):
        card_lib.load(str(tmp_path / 'list.json'))
    huge = tmp_path / 'huge.json'
    with open(huge, 'wb') as f:
        f.truncate(card_lib.MAX_CARD_BYTES + 1)  # sparse: no disk used
    with pytest.raises(card_lib.CardError, match='more than the limit'):
        card_lib.load(str(huge))

    export = tmp_path / 'export'
    export.mkdir()
    model = export / 'frozen_graph.pb'
    model.write_bytes(b'')
    with pytest.raises(FileNotFoundError, match='frozen_graph.pb: no metadata.json beside it'):
        card_lib.read_export_metadata(str(model))
    _fifo(export / 'metadata.json')
    with pytest.raises(card_lib.CardError, match='the export metadata is a FIFO'):
        card_lib.read_export_metadata(str(model))
    os.remove(export / 'metadata.json')
    (export / 'metadata.json').write_text(json.dumps(card.to_dict()))
    meta, path = card_lib.read_export_metadata(str(model))
    assert path == str(export / 'metadata.json') and card_lib.from_dict(meta, path) == card
    saved = tmp_path / 'saved'
    (saved / 'assets.extra').mkdir(parents=True)
    (saved / 'assets.extra' / 'metadata.json').write_text('{"cut": ')
    with pytest.raises(card_lib.CardError, match=r'assets.extra/metadata.json: the export meta'):
        card_lib.read_export_metadata(str(saved))


def test_frozen_graphs_and_tflite_models(tmp_path):
    for reader, what, ext in (
        (detection.Detector.from_frozen_graph, 'frozen graph', 'pb'),
        (detection.TFLiteDetector, 'TFLite model', 'tflite'),
    ):
        with pytest.raises(safe_io.UnsafeFileError, match=f'zero.{ext}: the {what} is a char'):
            reader(_zero_link(tmp_path / f'zero.{ext}'))
        with pytest.raises(safe_io.UnsafeFileError, match=f'fifo.{ext}: the {what} is a FIFO'):
            reader(_fifo(tmp_path / f'fifo.{ext}'))
    junk = tmp_path / 'junk.bin'
    junk.write_bytes(b'\xff' * 64)
    with pytest.raises(ValueError, match='junk.bin: not a frozen GraphDef'):
        detection.Detector.from_frozen_graph(str(junk))
    with pytest.raises(ValueError, match='junk.bin: TFLite cannot load it as a model'):
        detection.TFLiteDetector(str(junk))
    # Empty: TFLite said "`model_path` or `model_content` must be specified"; a frozen graph
    # parsed as one without nodes, then lacked every output.
    empty = tmp_path / 'empty.bin'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match=r'empty.bin: an empty file \(0 bytes\), not a TFLite'):
        detection.TFLiteDetector(str(empty))
    with pytest.raises(ValueError, match=r'empty.bin: an empty file \(0 bytes\), not a frozen'):
        detection.Detector.from_frozen_graph(str(empty))


def test_detection_images(tmp_path):
    import cv2

    bomb = bytearray(cv2.imencode('.jpg', np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = bomb.find(b'\xff\xc0')
    bomb[sof + 5 : sof + 9] = (30000).to_bytes(2, 'big') * 2  # claims 30000x30000 = 2.7 GB
    (tmp_path / 'bomb.jpg').write_bytes(bytes(bomb))
    for path, why in (
        (str(tmp_path / 'bomb.jpg'), r'bomb.jpg: the JPEG header claims 30000x30000 = 900000000'),
        (_fifo(tmp_path / 'fifo.jpg'), 'fifo.jpg: the image is a FIFO'),
        (_zero_link(tmp_path / 'zero.jpg'), 'zero.jpg: the image is a character device'),
    ):
        with pytest.raises(ValueError, match=why):
            detection.load_image_rgb(path)
    # Detection decodes a sequential JPEG over the limit at a reduced size that fits it
    # (test_detect_large_images.py), but not a progressive one: libjpeg would hold the full
    # image's coefficients (6 GB for a 519-byte file claiming 46000x46000).
    bomb[sof + 1] = 0xC2
    (tmp_path / 'progressive.jpg').write_bytes(bytes(bomb))
    with pytest.raises(ValueError, match=r'30000x30000 = 900000000 .* this one is progressive'):
        detection.load_image(str(tmp_path / 'progressive.jpg'))


def _tiny_ir(path):
    """A small OpenVINO IR (x + constant) written by OpenVINO itself."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([1, 4], np.float32, name='x')
    model = ov.Model([ops.add(x, ops.constant(np.arange(4, dtype=np.float32)))], [x], 'tiny')
    ov.save_model(model, str(path), compress_to_fp16=False)
    return model


def test_openvino_models(tmp_path):
    import openvino as ov

    core = ov.Core()
    xml = tmp_path / 'tiny.xml'
    _tiny_ir(xml)
    assert len(openvino_runtime.read_ir(core, str(xml)).outputs) == 1
    bin_path = tmp_path / 'tiny.bin'
    weights = bin_path.read_bytes()
    os.remove(bin_path)
    _fifo(bin_path)
    with pytest.raises(safe_io.UnsafeFileError, match=r'tiny.bin: the OpenVINO weights \(.bin\)'):
        openvino_runtime.read_ir(core, str(xml))
    os.remove(bin_path)
    bin_path.write_bytes(weights[:3])
    with pytest.raises(ValueError, match=r'tiny.xml: OpenVINO cannot read it as a model \(Inc'):
        openvino_runtime.read_ir(core, str(xml))
    bin_path.write_bytes(weights)
    cut = tmp_path / 'cut.xml'
    cut.write_bytes(xml.read_bytes()[:200])
    with pytest.raises(ValueError, match=r'cut.xml: OpenVINO cannot read it as a model \(\w'):
        openvino_runtime.read_ir(core, str(cut))
    # Other formats' frontends are not reached: a TF text graph or any binary is refused first.
    for name, content in (('graph.xml', b'node { name: "a" op: "ReadFile" }'), ('b.xml', b'\x08')):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=f'{name}: not an OpenVINO IR'):
            openvino_runtime.read_ir(core, str(tmp_path / name))
    with pytest.raises(safe_io.UnsafeFileError, match=r'fifo.xml: the OpenVINO model \(.xml\)'):
        openvino_runtime.read_ir(core, _fifo(tmp_path / 'fifo.xml'))
    with pytest.raises(FileNotFoundError, match='none.xml: no such OpenVINO model'):
        openvino_runtime.read_ir(core, str(tmp_path / 'none.xml'))
    # The other files of an export, or its folder, name the IR to pass (walkthrough: the advice
    # was to export again); an .xml copied without its .bin says so.
    with pytest.raises(ValueError) as info:
        openvino_runtime.read_ir(core, str(bin_path))
    assert str(info.value) == (
        f"{bin_path}: not an OpenVINO IR (an IR's .xml is XML with a <net> root); pass the "
        f"model's .xml: {xml}."
    )
    with pytest.raises(ValueError) as info:
        openvino_runtime.read_ir(core, str(tmp_path))
    assert str(info.value) == (
        f"{tmp_path}: a folder, not an OpenVINO model (.xml); pass the model's .xml: {xml}."
    )
    alone = tmp_path / 'copied' / 'tiny.xml'
    alone.parent.mkdir()
    alone.write_bytes(xml.read_bytes())
    with pytest.raises(FileNotFoundError) as info:
        openvino_runtime.read_ir(core, str(alone))
    assert str(info.value) == (
        f'{alone}: its weights {alone.parent / "tiny.bin"} are missing (an IR is the .xml and '
        'the .bin beside it: copy both).'
    )

    # The card: metadata.json beside the IR, else the IR's runtime info; either checked.
    model = core.read_model(str(xml))
    with pytest.raises(FileNotFoundError, match='no metadata.json beside it and no model card'):
        openvino_model.load_metadata(str(xml), model)
    model.set_rt_info('{"model_name": ', openvino_runtime.CARD_RT_INFO)
    with pytest.raises(card_lib.CardError, match='tiny.xml: the model card in the IR is not JSON'):
        openvino_model.load_metadata(str(xml), model)
    model.set_rt_info('{"model_name": "x"}', openvino_runtime.CARD_RT_INFO)
    assert openvino_model.load_metadata(str(xml), model) == {'model_name': 'x'}
    (tmp_path / 'metadata.json').write_text('["not", "a", "card"]')
    with pytest.raises(card_lib.CardError, match='the export metadata is not a JSON object'):
        openvino_model.load_metadata(str(xml), model)


def _bomb_ir(path, target):
    """A few-KB IR: `images` f32 [?, 4] plus a ReduceSum of one value broadcast to the i64 shape
    `target(ops, images)` (OpenVINO folds a constant one when compiling: 2**28 floats took 1 GB
    and 5 s)."""
    import openvino as ov
    from openvino import opset13 as ops

    x = ops.parameter([-1, 4], np.float32, name='images')
    big = ops.broadcast(ops.constant(np.float32(1.0)), target(ops, x))
    big.set_friendly_name('bomb')
    total = ops.reduce_sum(ops.reshape(big, _i64(ops, [-1]), False), _i64(ops, 0), False)
    model = ov.Model([ops.add(x, total)], [x], 'bomb')
    ov.save_model(model, str(path), compress_to_fp16=False)


def _i64(ops, values):
    return ops.constant(np.array(values, np.int64))


def test_openvino_models_too_large_or_failing_to_compile(tmp_path):
    import openvino as ov
    from openvino import opset13 as ops

    core = ov.Core()
    for name, target, why in (
        (
            'const.xml',
            lambda ops, x: _i64(ops, [2**36]),
            r'its constants and the tensors computed from constants alone take 274,877,906,9\d\d '
            r"bytes \(largest: node 'bomb', 274,877,906,944 bytes\), more than the limit of "
            r'1,073,741,824 ',
        ),
        (
            'per_image.xml',
            lambda ops, x: ops.concat(
                [
                    ops.gather(ops.shape_of(x, 'i64'), _i64(ops, [0]), _i64(ops, 0)),
                    _i64(ops, [2**30]),
                ],
                0,
            ),
            r"node 'bomb' \(Broadcast\) makes a tensor of shape \[\?,1073741824\] of at least "
            r'4,294,967,296 bytes per image, more than the limit of 1,073,741,824',
        ),
    ):
        _bomb_ir(tmp_path / name, target)
        assert (tmp_path / name).stat().st_size < 8192
        with pytest.raises(
            ValueError,
            match=f'^{tmp_path}/{name}: refusing to load this OpenVINO model: {why}.*; export it '
            r'again with export_ssd_network.py --formats=openvino.$',
        ):
            openvino_runtime.read_ir(core, str(tmp_path / name))

    # Sub-graphs (If, Loop) are refused: ours have none and their bodies are not checked.
    x = ops.parameter([1, 4], np.float32, name='images')
    branch = ops.if_op(ops.constant(np.array(True)))
    bodies = []
    for _ in range(2):
        inner = ops.parameter([1, 4], np.float32)
        bodies.append((ov.Model([ops.result(inner)], [inner]), inner))
    branch.set_then_body(bodies[0][0])
    branch.set_else_body(bodies[1][0])
    branch.set_input(x.output(0), bodies[0][1], bodies[1][1])
    out = branch.set_output(bodies[0][0].get_results()[0], bodies[1][0].get_results()[0])
    branch.set_friendly_name('branch')
    ov.save_model(ov.Model([out], [x]), str(tmp_path / 'if.xml'))
    with pytest.raises(ValueError, match=r"if.xml: .*: node 'branch' \(If\) has sub-graphs"):
        openvino_runtime.read_ir(core, str(tmp_path / 'if.xml'))

    # A model CPU plugin cannot compile: one line naming the file, not OpenVINO's traceback.
    images = ops.parameter(ov.PartialShape.dynamic(), np.uint8, name='images')
    results = []
    for output in detection.DETECTION_OUTPUTS:
        result = ops.result(ops.convert(images, 'f32'))
        result.output(0).get_tensor().set_names({output})
        results.append(result)
    ov.save_model(ov.Model(results, [images]), str(tmp_path / 'dynamic.xml'))
    card = card_lib.from_registry('ssd_300_vgg', num_classes=3)
    (tmp_path / 'metadata.json').write_text(json.dumps(card.to_dict()))
    with pytest.raises(
        ValueError,
        match=r"dynamic.xml: OpenVINO cannot compile it \(.*doesn't support Parameter operation "
        r'with dynamic rank.*\); export it with export_ssd_network.py --formats=openvino.$',
    ):
        openvino_model.OpenVINODetector(str(tmp_path / 'dynamic.xml'))


def test_pth_results_files_and_training_marker(tmp_path):
    with pytest.raises(safe_io.UnsafeFileError, match=r'w.pth: the .pth file is a FIFO'):
        pth_reader.load(_fifo(tmp_path / 'w.pth'))

    names = {1: 'cat'}
    path = voc_metrics.voc_results_path(str(tmp_path), 'test', 'cat')
    with open(path, 'wb') as f:
        f.write(b'im1 0.5 1 2 3 4\nim2 0.\xff 1 2 3 4\n')
    with pytest.raises(ValueError, match=r'comp4_det_test_cat.txt: not UTF-8 text'):
        voc_metrics.read_voc_results(str(tmp_path), 'test', names)
    with pytest.raises(safe_io.UnsafeFileError, match=r'c.json: the COCO results file is a FIFO'):
        coco_metrics.read_coco_results(_fifo(tmp_path / 'c.json'))

    marker = tmp_path / checkpoints.FINISHED_MARKER
    assert checkpoints.training_finished(str(tmp_path)) is None
    for content, why in (
        ('{"checkpoint": "model.ckpt-5", ', 'not valid JSON.*If no trainer wrote it, delete it'),
        ('{"checkpoint": "../../x/model.ckpt-5", "step": 5}', 'not the marker the trainer'),
        ('{"checkpoint": "model.ckpt-5", "step": "5"}', 'not the marker the trainer'),
    ):
        marker.write_text(content)
        with pytest.raises(ValueError, match=why):
            checkpoints.training_finished(str(tmp_path))
    marker.write_text('{"checkpoint": "model.ckpt-5", "step": 5, "time": "t"}')
    assert checkpoints.training_finished(str(tmp_path))['step'] == 5


def _one_op_model(op_name, tensors, num_inputs):
    """A TFLite model (the schema's flatbuffer, as converters write it) of one builtin op
    `op_name` (e.g. 'ADD'); `tensors`: (name, shape, type name, quantization or None) of its
    inputs, then its output."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    graph = schema.SubGraphT()
    graph.tensors = []
    for buffer, (name, shape, dtype, quantization) in enumerate(tensors, 1):
        t = schema.TensorT()
        t.name, t.shape, t.buffer = name.encode(), shape, buffer
        t.type, t.quantization = getattr(schema.TensorType, dtype), quantization
        graph.tensors.append(t)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = getattr(schema.BuiltinOperator, op_name)
    op = schema.OperatorT()
    op.opcodeIndex = 0
    op.inputs, op.outputs = list(range(num_inputs)), [len(tensors) - 1]
    graph.inputs, graph.outputs, graph.operators = op.inputs, op.outputs, [op]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, [code], [graph]
    model.buffers = [schema.BufferT() for _ in range(len(tensors) + 1)]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b'TFL3')
    return bytes(builder.Output())


def _quantize_model(scale, width=8):
    """One QUANTIZE op: float32 `x` [1, width] -> int8 `y` [1, width] at quantisation `scale`,
    zero point 0."""
    from tensorflow.lite.python import schema_py_generated as schema

    quantization = schema.QuantizationParametersT()
    quantization.scale, quantization.zeroPoint = [scale], [0]
    return _one_op_model(
        'QUANTIZE', [('x', [1, width], 'FLOAT32', None), ('y', [1, width], 'INT8', quantization)], 1
    )


def test_a_tflite_model_that_crashes_tflite_is_an_error(tmp_path):
    """An int8 tensor of quantisation scale 0 makes TFLite's allocate_tensors crash the process
    (SIGSEGV): detect died without a word. The model is tried in a child process first. The
    same model at scale 0.5 passes that try (x = 3 -> y = 6) and is refused for its outputs."""
    healthy = tmp_path / 'healthy.tflite'
    healthy.write_bytes(_quantize_model(0.5))
    with detection.without_interpreter_notice():
        interpreter = tf.lite.Interpreter(model_path=str(healthy))
    interpreter.allocate_tensors()
    interpreter.set_tensor(0, np.full([1, 8], 3.0, np.float32))
    interpreter.invoke()
    np.testing.assert_array_equal(interpreter.get_tensor(1), np.full([1, 8], 6, np.int8))
    with pytest.raises(ValueError, match=r"healthy.tflite: no output\(s\) \['detection_boxes'"):
        detection.TFLiteDetector(str(healthy))

    crashing = tmp_path / 'model.tflite'
    crashing.write_bytes(_quantize_model(0.0))
    assert run_python(CRASH, str(crashing)).returncode == -signal.SIGSEGV
    message = (
        f'{crashing}: TFLite crashed (SIGSEGV) loading it and running it once on a blank input, '
        f'in a child process; it is damaged or was not written by a TFLite converter: export it '
        f'again with export_ssd_network.py --formats=tflite_float or tflite_int8.'
    )
    with pytest.raises(ValueError) as raised:
        detection.TFLiteDetector(str(crashing))
    assert str(raised.value) == message
    image = tmp_path / 'a.png'
    image.write_bytes(b'')
    proc = run_script(
        'detect_ssd_network.py',
        f'--tflite_model={crashing}',
        f'--input={image}',
        f'--output_dir={tmp_path / "out"}',
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == f'detect_ssd_network: error: {message}'
    assert not (tmp_path / 'out').exists()


def test_a_tflite_model_that_never_ends_or_declares_huge_tensors_is_an_error(
    tmp_path, monkeypatch, capsys
):
    """A 2 kB model whose WHILE loop never ends hung detect forever in its blank-run check (and
    the check's child ran on after the parent was killed); one declaring 1.5 GB of tensors made
    its process take them. The child now runs at most TFLITE_CHECK_SECS, in bounded memory."""
    import time

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def loop(x):
        endless = tf.while_loop(lambda v: v > -1.0, lambda v: v + 1.0, [tf.reduce_mean(x)])
        return {'detection_boxes': tf.reshape(endless, [1, 1, 1]) * tf.ones([1, 1, 4])}

    looping = tmp_path / 'loop.tflite'
    looping.write_bytes(_converted(loop))
    monkeypatch.setattr(detection, 'TFLITE_CHECK_SECS', 2)
    monkeypatch.setattr(detection, '_WAIT_NOTICE_SECS', 1)
    children, fork = [], os.fork
    monkeypatch.setattr(os, 'fork', lambda: children.append(fork()) or children[-1])
    start = time.monotonic()
    with pytest.raises(ValueError) as raised:
        detection.TFLiteDetector(str(looping))
    assert time.monotonic() - start < 20
    assert capsys.readouterr().err == (
        f'note: {looping}: still checking the model (TFLite runs it once on a blank input, in a '
        f'child process stopped after 2 s)\n'
    )
    assert str(raised.value) == (
        f'{looping}: TFLite did not finish running it once on a blank input within 2 s, in a '
        f'child process (stopped): a loop that never ends (a damaged model, or one no TFLite '
        f'converter wrote) or a model far too slow for this machine; export it again with '
        f'export_ssd_network.py --formats=tflite_float or tflite_int8.'
    )
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(children[0], os.WNOHANG)

    # A kill of the parent (SIGTERM: `timeout`, a scheduler) ends the child too.
    pid_file = tmp_path / 'child.pid'
    status, lines = interrupt_when(
        ['-c', RECORD_CHILD, str(looping), str(pid_file), 'bare'],
        lambda: pid_file.exists() and pid_file.read_text(),
        signum=signal.SIGTERM,
    )
    assert status == -signal.SIGTERM, lines[-20:]
    child, deadline = int(pid_file.read_text()), time.monotonic() + 30
    while process_running(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_running(child)

    # In a script (`logs.run`) the parent's SIGTERM handler (its cleanup, its last line) is not
    # the child's: the child sets SIGTERM's default action, and the parent ends it.
    pid_file, seen = tmp_path / 'script_child.pid', []

    def child_set_up():
        if not (pid_file.exists() and pid_file.read_text()):
            return False
        seen.append(time.monotonic())
        return not _catches(int(pid_file.read_text()), signal.SIGTERM) or seen[-1] > seen[0] + 10

    status, lines = interrupt_when(
        ['-c', RECORD_CHILD, str(looping), str(pid_file), 'script'],
        child_set_up,
        signum=signal.SIGTERM,
    )
    assert seen[-1] <= seen[0] + 10, 'the child kept the parent\'s SIGTERM handler'
    assert status == -signal.SIGTERM, lines[-20:]
    assert lines[-1:] == ['-c: terminated (SIGTERM).'], lines[-5:]
    assert not process_running(int(pid_file.read_text()))

    # 8 inputs tiled to 300M (1.2 GB) inside: TFLite's allocate_tensors returned without its
    # arena at the memory limit, so only the numpy blank of a huge input was caught.
    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def tiles(x):
        total = tf.reduce_sum(tf.tile(x, [1, 37_500_000]))
        return {'detection_boxes': tf.reshape(total, [1, 1, 1]) * tf.ones([1, 1, 4])}

    huge = tmp_path / 'huge.tflite'
    huge.write_bytes(_converted(tiles))
    assert huge.stat().st_size < 2000
    monkeypatch.setattr(detection, '_tflite_check_memory', lambda: 2**29)
    with pytest.raises(ValueError) as raised:
        detection.TFLiteDetector(str(huge))
    assert str(raised.value) == (
        f'{huge}: TFLite ran out of memory loading it and running it once on a blank input '
        f'(Cannot set tensor: Tensor is unallocated. Try calling allocate_tensors() first), in a '
        f'child process given 0.5 GiB (half of what this process may use); a tiny file can '
        f'declare huge tensors. For an export of ours, export it again with a smaller '
        f'--tflite_batch_size; else export it again with export_ssd_network.py '
        f'--formats=tflite_float or tflite_int8.'
    )
    # A model within the limit is tried, then refused for what it is.
    small = tmp_path / 'small.tflite'
    small.write_bytes(_quantize_model(0.5, width=1000))
    with pytest.raises(ValueError, match=r"small.tflite: no output\(s\) \['detection_boxes'"):
        detection.TFLiteDetector(str(small))
    # Another failure to allocate (an ADD of [1, 8] and [1, 3]) is no lack of memory: the
    # load reports it.
    broken = tmp_path / 'broken.tflite'
    broken.write_bytes(_mismatched_add_model())
    with pytest.raises(ValueError) as raised:
        detection.TFLiteDetector(str(broken))
    assert str(raised.value).startswith(f'{broken}: TFLite cannot load it as a model (')


# Ctrl-C (SIGINT to itself) at once after the check's fork, on both sides of it; prints which
# process its KeyboardInterrupt reached.
INTERRUPTED_FORK = r"""
import os, signal, sys
from inference import detection
parent, fork = os.getpid(), os.fork

def interrupted():
    pid = fork()
    os.kill(os.getpid(), signal.SIGINT)
    return pid

os.fork = interrupted
signal.signal(signal.SIGINT, signal.default_int_handler)
try:
    detection.TFLiteDetector(sys.argv[1])
except KeyboardInterrupt:
    print('parent' if os.getpid() == parent else 'child', 'interrupted', flush=True)
"""


def test_a_ctrl_c_at_the_tflite_checks_fork_reaches_the_parent_only(tmp_path):
    """A Ctrl-C in the instants after the check's fork raised KeyboardInterrupt in the child too,
    which then ran the parent's cleanup (its `except`, its `finally`s) as a second copy of it.
    Both signals now wait until each side is ready: the child ends by it, the parent stops it."""
    model = tmp_path / 'small.tflite'
    model.write_bytes(_quantize_model(0.5))
    result = run_python(INTERRUPTED_FORK, str(model))
    assert result.stdout == 'parent interrupted\n', result.stderr[-2000:]


def _converted(function, *extra_ops):
    """The TFLite model of a tf.function of a fixed input signature, with TFLite's builtin ops
    and `extra_ops` (e.g. tf.lite.OpsSet.SELECT_TF_OPS)."""
    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [function.get_concrete_function()], function
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, *extra_ops]
    return converter.convert()


def _catches(pid, signum):
    """Whether process `pid` has a handler of its own for `signum` (SigCgt of /proc)."""
    try:
        with open(f'/proc/{pid}/status') as f:
            (caught,) = [line.split()[1] for line in f if line.startswith('SigCgt:')]
    except FileNotFoundError:
        return False
    return bool(int(caught, 16) & (1 << (signum - 1)))


# Loads a TFLite model (argv[1]), writing the pid of the check's child to argv[2]; argv[3]:
# 'script' runs it as the scripts do (`logs.run_plain`), 'bare' as a plain program.
RECORD_CHILD = r"""
import os, sys
from inference import detection
from tf_extended import logs
fork = os.fork

def recorded():
    pid = fork()
    if pid:
        with open(sys.argv[2] + '.tmp', 'w') as f:
            f.write(str(pid))
        os.replace(sys.argv[2] + '.tmp', sys.argv[2])
    return pid

os.fork = recorded
if sys.argv[3] == 'script':
    logs.run_plain(lambda: detection.TFLiteDetector(sys.argv[1]))
else:
    detection.TFLiteDetector(sys.argv[1])
"""


def _mismatched_add_model():
    """One ADD of float32 `x` [1, 8] and `y` [1, 3] (shapes no converter writes: allocating its
    tensors fails)."""
    return _one_op_model(
        'ADD',
        [
            ('x', [1, 8], 'FLOAT32', None),
            ('y', [1, 3], 'FLOAT32', None),
            ('z', [1, 8], 'FLOAT32', None),
        ],
        2,
    )


def test_a_tflite_model_with_custom_ops_is_refused(tmp_path):
    """A Select TF ("Flex") op that writes a file: refused by its op codes before any runtime
    loads it (only a runtime without Flex kept it from running)."""
    target = tmp_path / 'written.txt'

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def writes(x):
        with tf.control_dependencies([tf.io.write_file(str(target), 'by a model')]):
            return {'detection_boxes': tf.reshape(x, [1, 2, 4])}

    flex = tmp_path / 'flex.tflite'
    flex.write_bytes(_converted(writes, tf.lite.OpsSet.SELECT_TF_OPS))
    with pytest.raises(ValueError) as raised:
        detection.TFLiteDetector(str(flex))
    assert str(raised.value) == (
        f'{flex}: the model has custom ops (FlexWriteFile), which our TFLite exports never hold '
        f'(builtin ops only) and which may run any code their runtime links (Select TF ops: file '
        f'writes); refused: export it with export_ssd_network.py --formats=tflite_float or '
        f'tflite_int8.'
    )
    assert not target.exists()


# What the model did to a process that loaded it before it was tried in a child.
CRASH = r"""
import sys
import tensorflow as tf
interpreter = tf.lite.Interpreter(model_path=sys.argv[1])
interpreter.allocate_tensors()
"""


def test_scripts_say_which_model_file_is_bad(tmp_path):
    image = tmp_path / 'a.png'
    image.write_bytes(b'')
    proc = run_script(
        'detect_ssd_network.py',
        f'--frozen_graph={_fifo(tmp_path / "frozen_graph.pb")}',
        f'--input={image}',
        f'--output_dir={tmp_path / "out"}',
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f'detect_ssd_network: error: {tmp_path}/frozen_graph.pb: the frozen graph is a '
        f'FIFO (named pipe), not a regular file; refusing to read it.'
    )
    export = tmp_path / 'export'
    export.mkdir()
    _tiny_ir(export / 'model_openvino.xml')
    (export / 'metadata.json').write_text('{"model_name": "ssd_300_vgg"')
    proc = run_script(
        'eval_ssd_network.py',
        f'--exported_model={export}/model_openvino.xml',
        f'--dataset_dir={tmp_path}',
        '--dataset_name=custom',
        '--dataset_split_name=test',
        f'--eval_dir={tmp_path / "eval"}',
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(
            f'eval_ssd_network: error: cannot read the export metadata: {export}/metadata.json: the '
            f'export metadata is not valid JSON'
        )
    ), proc.stderr
