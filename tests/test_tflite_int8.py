"""TFLite int8 quantises the net only: resizing, normalisation, box decoding and NMS compute in
float32 whatever ranges the calibration sees. Quantised, the decoding of a briefly trained model whose
box codes reached 1e3 got an Exp output scale of 7.8e9, and TFLite aborted the process that
loaded the model (`allocate_tensors`: exit 134, no message). Codes that overflow when decoded
(a barely trained model's) crashed the int8 export itself, and detect's drawing."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from inference import detection
from inference import export
from tests import inference_fixtures as fx
from tests.conftest import run_python

v1 = tf.compat.v1
# Width/height codes: exp(0.2 * 140) = 1.4e12 times the anchor's size aborted the process that
# loaded the model; exp(0.2 * 1000) overflows float32, and the calibrated ranges of the decoded
# boxes (inf) crashed the export itself (SIGSEGV) while quantising.
HUGE_CODE = 1000.0
# Ops that compute: only the net's (its convolutions) may be int8. Data movement (transpose,
# top-k, unstack, ...) may carry the net's int8 outputs further; it changes no value.
ARITHMETIC = ('ADD', 'SUB', 'MUL', 'DIV', 'EXP', 'NON_MAX_SUPPRESSION_V5', 'RESIZE_BILINEAR')


def _with_box_codes(prefix, directory, value):
    """A copy of checkpoint `prefix` in `directory` whose box heads output `value` everywhere
    (their weights 0, their biases `value`); returns its prefix."""
    reader = tf.train.load_checkpoint(prefix)
    with tf.Graph().as_default():
        for name in reader.get_variable_to_shape_map():
            tensor = reader.get_tensor(name)
            if '_mbox_loc/' in name:
                tensor = np.full_like(tensor, value if name.endswith('biases') else 0.0)
            v1.get_variable(name, initializer=tensor)
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            return v1.train.Saver().save(
                sess, os.path.join(directory, 'model.ckpt'), write_meta_graph=False
            )


LOAD_AND_RUN = r"""
import json, sys
import numpy as np
from inference import detection
from tests import inference_fixtures as fx

model = detection.TFLiteDetector(sys.argv[1])
out = model.run(fx.random_images(5, [(200, 260)]), ['raw_localisations', 'num_detections'])
print(json.dumps({k: np.asarray(v).tolist() for k, v in out.items()}))
"""


def test_int8_quantises_the_net_only_and_loads_whatever_the_box_codes(tmp_path):
    spec = fx.small_spec()
    prefix = _with_box_codes(
        fx.write_checkpoint(spec, str(tmp_path / 'random')), str(tmp_path), HUGE_CODE
    )
    calibration = fx.random_images(3, [(200, 260)] * 4)
    path = tmp_path / 'model_int8.tflite'
    path.write_bytes(export.tflite_model(spec, prefix, representative_images=calibration))

    with detection.without_interpreter_notice():
        interpreter = tf.lite.Interpreter(model_path=str(path))
    tensors = interpreter.get_tensor_details()
    # Arithmetic outputs (by op type) and the net's tensors (by name).
    arithmetic = {}
    for op in interpreter._get_ops_details():
        if op['op_name'] in ARITHMETIC:
            arithmetic.setdefault(op['op_name'], []).extend(
                tensors[i]['dtype'] for i in op['outputs']
            )
    assert {'EXP', 'MUL', 'NON_MAX_SUPPRESSION_V5', 'RESIZE_BILINEAR'} <= set(arithmetic)
    assert all(dtype != np.int8 for dtypes in arithmetic.values() for dtype in dtypes), arithmetic
    # Every convolution of the net computes in int8: its input, weights and output.
    convolutions = [
        op
        for op in interpreter._get_ops_details()
        if op['op_name'] in ('CONV_2D', 'DEPTHWISE_CONV_2D')
    ]
    assert len(convolutions) > 20
    for op in convolutions:
        dtypes = [tensors[i]['dtype'] for i in (*op['inputs'][:2], *op['outputs'])]
        assert dtypes == [np.int8] * 3, (tensors[op['outputs'][0]]['name'], dtypes)

    # In a child process: the old model aborted the process that allocated it.
    proc = run_python(LOAD_AND_RUN, str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out['raw_localisations'], HUGE_CODE, rtol=0.01)
    assert 0 <= out['num_detections'][0] <= spec.detection.keep_top_k


def test_detect_leaves_out_boxes_that_overflow_and_says_so(tmp_path):
    """Box codes of 1e3 decode to inf: detect crashed drawing them (OpenCV refused the corner)
    and left a folder holding only its pending record."""
    import cv2

    from model import card as card_lib
    from tests.conftest import run_script

    spec = fx.small_spec(select_threshold=0.0)
    prefix = _with_box_codes(
        fx.write_checkpoint(spec, str(tmp_path / 'random')), str(tmp_path), HUGE_CODE
    )
    card_lib.write(str(tmp_path / card_lib.CARD_FILE), spec)
    image = tmp_path / 'photo.jpg'
    cv2.imwrite(str(image), fx.random_images(1, [(120, 160)])[0])
    out = tmp_path / 'det'
    proc = run_script(
        'detect_ssd_network.py',
        f'--checkpoint_path={prefix}',
        f'--input={image}',
        f'--output_dir={out}',
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'detection(s) above --select_threshold had a box that is not finite' in proc.stdout
    with open(out / 'detections.json') as f:  # strict JSON: no Infinity
        result = json.load(f, parse_constant=lambda name: pytest.fail(name))
    assert all(
        np.isfinite([d[k] for k in ('xmin', 'ymin', 'xmax', 'ymax')]).all()
        for entry in result['images']
        for d in entry['detections']
    )
    assert (out / 'photo_det.jpg').is_file()
