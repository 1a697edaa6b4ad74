"""Benchmark runner and compute floor: MACs against the Caffe model's conv shapes (OpenCV), the
floor arithmetic by hand, and `run_all` end to end on MobileNet-SSD with a failing benchmark."""

import json
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 'benchmarks'))
import bench_floor  # noqa: E402
import bench_openvino_ir  # noqa: E402
import run_all  # noqa: E402
from inference import openvino_runtime  # noqa: E402
from tf_extended import cpu_features  # noqa: E402
from tests import caffe_fixtures  # noqa: E402


def test_mobilenet_macs_match_the_caffe_model_run_by_opencv():
    # Independent count: every Caffe Convolution's weight blob (cout, cin/group, k, k) times its
    # output's spatial size as OpenCV computes it.
    net = caffe_fixtures.mobilenet_ssd('merged', seed=3)
    convs = [layer for layer in net.layers if layer.type == 'Convolution']
    outputs = caffe_fixtures.opencv_forward(
        net, np.zeros((1, 3, 300, 300), np.float32), [layer.name for layer in convs]
    )
    expected = sum(
        outputs[c.name].shape[2] * outputs[c.name].shape[3] * np.prod(c.blobs[0].shape)
        for c in convs
    )
    assert bench_floor.net_macs('ssd_300_mobilenet') == expected


def test_floor_arithmetic():
    # 1e9 MACs = 2e9 FLOPs; at 100 GFLOP/s that is 20 ms.
    assert bench_floor.floor_ms(1e9, 100.0) == pytest.approx(20.0)
    # A 1000^3 multiply in 0.02 s: 2e9 FLOPs / 0.02 s = 100 GFLOP/s.
    assert bench_floor.gflops(1000, 0.02) == pytest.approx(100.0)


def test_run_all_small(tmp_path):
    # A script that fails on its flags before importing TensorFlow (bench_floor.py imports it
    # first: 6-9 s on 2 cores for the same failure).
    broken = run_all.Benchmark(
        'broken', 'bench_openvino_ir.py', lambda p: ['--repeats', 'nine'], None, quick_args=[]
    )
    benches = {b.name: b for b in run_all.BENCHMARKS}
    floor = run_all.Benchmark(
        'floor',
        'bench_floor.py',
        lambda p: ['--output', p],
        benches['floor'].models_args,
        quick_args=['--size', '256', '--repeats', '2'],
    )
    nets = run_all.Benchmark(
        'nets',
        'bench_nets.py',
        lambda p: ['--output', p],
        benches['nets'].models_args,
        # float32 only: the report reads no bfloat16 column, and the bf16 rows nearly doubled
        # the script's time on a CPU without bf16 instructions.
        quick_args=['--repeats', '1', '--dtypes', 'float32'],
    )
    out = str(tmp_path / 'results')
    report = run_all.run_all(
        [floor, broken, nets], out, models=('ssd_300_mobilenet',), log=lambda line: None
    )
    with open(os.path.join(out, 'all.json'), encoding='utf-8') as f:
        saved = json.load(f)
    with open(os.path.join(out, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    assert saved['floor_ratios'] == [list(r) for r in report['floor_ratios']]
    status = {b['name']: b['status'] for b in saved['benchmarks']}
    assert status == {'floor': 'ok', 'broken': 'failed (exit 2)', 'nets': 'ok'}
    results = {b['name']: b['result'] for b in saved['benchmarks']}
    (floor_row,) = results['floor']['rows']
    (net_row,) = results['nets']['results']
    assert floor_row['gmacs'] == pytest.approx(net_row['gmacs'])
    best = max(results['floor']['fp32_gflops'].values())
    assert floor_row['floor_ms_fp32'] == pytest.approx(2 * floor_row['gmacs'] / best * 1e3)
    ratios = {r[2]: r for r in saved['floor_ratios']}
    assert ratios[1][3] == pytest.approx(net_row['latency_ms_b1'])
    assert ratios[8][5] == pytest.approx(net_row['ms_per_image_b8'] / floor_row['floor_ms_fp32'])
    assert '| broken | failed (exit 2) |' in readme
    assert 'invalid int value' in readme  # the failing script's error is shown
    # bench_nets' own table.
    assert '| ssd_300_mobilenet | %s | 1.15 |' % format(net_row['parameters'], ',') in readme


def test_the_two_floor_runs_measure_alike():
    # The report keeps the faster of the two floor runs: both must run the same measurement.
    benches = {b.name: b for b in run_all.BENCHMARKS}
    floor, floor_end = benches['floor'], benches['floor_end']
    for full, size, repeats in ((False, '2048', '5'), (True, '4096', '10')):
        want = [
            sys.executable,
            os.path.join(run_all.HERE, 'bench_floor.py'),
            '--output',
            'f.json',
            '--models',
            'ssd_300_mobilenet,ssd_300_vgg,ssd_512_vgg',
            '--size',
            size,
            '--repeats',
            repeats,
        ]
        assert floor.command('f.json', full) == want
        assert floor_end.command('f.json', full) == want


def test_floor_ratios_use_the_faster_floor_run():
    def floor(gflops):
        return {
            'fp32_gflops_best': gflops,
            'rows': [{'model': 'ssd_300_vgg', 'floor_ms_fp32': bench_floor.floor_ms(30e9, gflops)}],
        }

    results = {
        'floor': floor(100.0),
        'floor_end': floor(200.0),
        'nets': {
            'results': [{'model': 'ssd_300_vgg', 'latency_ms_b1': 450.0, 'ms_per_image_b8': 420.0}]
        },
    }
    # 2 * 30e9 FLOPs at 200 GFLOP/s: 300 ms; 420 / 300 = 1.4 (within the 1.5x target).
    assert run_all.floor_ratios(results) == [
        ('ssd_300_vgg', 'bench_nets (TF, variables)', 1, 450.0, 300.0, 1.5),
        ('ssd_300_vgg', 'bench_nets (TF, variables)', 8, 420.0, 300.0, pytest.approx(1.4)),
    ]
    assert 'met (1.40x the floor)' in run_all.targets(results, run_all.floor_ratios(results))[1]


@pytest.mark.parametrize(
    'flags, applies', [(['avx512_bf16'], False), (['amx_bf16', 'avx512_bf16'], True)]
)
def test_mixed_precision_target_applies_with_bf16_matrix_units(flags, applies):
    floor = {
        'fp32_gflops_best': 400.0,
        'fp32_gflops': {'numpy': 200.0, 'tensorflow': 400.0},
        'bf16_cpu_flags': flags,
        'bf16_gflops': 780.0,
        'rows': [],
    }
    train = {
        'gpu': False,
        'mixed_precision': 'bf16',
        'results': [
            {
                'model': 'ssd_300_vgg',
                'batch_size': 8,
                'fp32_images_per_s': 2.0,
                'mixed_images_per_s': 4.2,
            },
            {
                'model': 'ssd_300_mobilenet',
                'batch_size': 8,
                'fp32_images_per_s': 30.0,
                'mixed_images_per_s': 45.0,
            },
        ],
    }
    lines = run_all.mixed_precision_target({'floor': floor, 'train': train})
    if applies:
        assert lines == [
            '- Mixed precision (bf16) training, ssd_300_vgg batch 8 2.10x (4.20 vs 2.00 img/s): met.',
            '- Mixed precision (bf16) training, ssd_300_mobilenet batch 8 1.50x (45.00 vs 30.00 '
            'img/s): NOT met (target 2.0x).',
        ]
    else:
        (line,) = lines
        assert 'does not apply here' in line and 'avx512_bf16 only' in line
        assert 'ssd_300_vgg batch 8 2.10x' in line and 'matmul rate here 1.95x' in line


CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8
processor\t: 1
flags\t\t: fpu sse2 avx2
"""


def test_cpu_features_from_cpuinfo(tmp_path):
    path = tmp_path / 'cpuinfo'
    path.write_text(CPUINFO)
    flags = cpu_features.cpu_flags(str(path))  # the first CPU's line
    assert {'amx_bf16', 'avx512_bf16', 'avx2'} <= flags and 'processor' not in flags
    assert cpu_features.reported_flags(flags) == [
        'amx_bf16',
        'amx_int8',
        'amx_tile',
        'avx512_bf16',
        'avx512_vnni',
        'avx512f',
        'avx2',
    ]
    assert cpu_features.matrix_units(flags) == 'AMX (bf16 matrix units); int8: AMX-INT8'
    assert cpu_features.has_amx(flags) and cpu_features.has_bf16(flags)
    sapphire_less = {'avx2', 'avx512f', 'avx512_bf16', 'avx512_vnni'}
    assert cpu_features.matrix_units(sapphire_less) == 'AVX-512 BF16 (no AMX); int8: AVX-512 VNNI'
    assert not cpu_features.has_amx(sapphire_less) and cpu_features.has_bf16(sapphire_less)
    assert (
        cpu_features.matrix_units({'avx2', 'avx512f'})
        == 'AVX-512, no bf16 instructions; int8: no VNNI'
    )
    assert cpu_features.matrix_units({'avx2', 'avx_vnni'}).endswith('; int8: AVX-VNNI')
    assert not cpu_features.has_bf16({'avx2', 'avx512f'})
    assert cpu_features.matrix_units({'avx2'}).startswith('AVX2 only')
    assert cpu_features.cpu_flags(str(tmp_path / 'missing')) == set()


def test_timings_of_a_busy_machine_say_so():
    """A run at load 7 on 2 cores printed 41 ms for an IR that takes 12 ms on the quiet machine,
    with nothing in the table saying why."""
    # A quiet machine: a previous benchmark fading at the start, this one's threads at the end.
    assert cpu_features.busy_note(2.9, 4.0, 2) is None
    assert cpu_features.busy_note(1.2, 7.02, 2) == (
        'warning: the machine was busy (1-minute load average 1.20 at the start, 7.02 at the '
        'end, on 2 cores): these timings are slower than on a quiet machine; run again when it is '
        'idle'
    )
    assert cpu_features.busy_note(3.1, 1.0, 2) is not None


def _inference_row(model, fmt, dtype, latency, ran=None):
    """A bench_inference row whose rounds' ratios to the frozen fp32 graph (20 ms MobileNet, 300
    ms VGG) and, for OpenVINO, to OpenVINO fp32 (8 ms MobileNet, 210 ms VGG) have the ratio of
    the medians as their median; the fastest round 0.3 ms faster."""
    row = {'model': model, 'format': fmt, 'dtype': dtype, 'latency_ms': latency}
    row['latency_fastest_ms'] = latency - 0.3
    row['latency_vs_frozen_fp32'] = latency / {'ssd_300_mobilenet': 20.0}.get(model, 300.0)
    if fmt == 'openvino':
        row['latency_vs_openvino_fp32'] = latency / {'ssd_300_mobilenet': 8.0}.get(model, 210.0)
    return dict(row, ran=ran) if ran else row


def test_ratios_are_taken_round_by_round():
    # Rounds in a fast phase (1, 2), a slow one (3, 6), and one whose calls straddle a change
    # (2, 2): the rounds say 0.5, 0.5, 1.0; the ratio of the medians, 2 / 2 = 1.0, would take
    # the straddling round's.
    assert bench_openvino_ir.median_ratio([1.0, 3.0, 2.0], [2.0, 6.0, 2.0]) == 0.5
    assert bench_openvino_ir.median_ratio([1.0, 3.0, 2.0, 2.0], [2.0, 6.0, 2.0, 2.0]) == 0.75


def test_inference_table_shows_the_fastest_round_beside_the_median():
    import bench_inference

    row = _inference_row('ssd_300_mobilenet', 'openvino', 'bf16', 5.3, 'bf16')
    row.update(latency_vs_floor=0.51, batch8_ms_per_image=5.77, batch8_images_per_s=173.21)
    table = bench_inference.markdown([row]).splitlines()
    header = [c.strip() for c in table[0].strip('|').split('|')]
    cells = [c.strip() for c in table[2].strip('|').split('|')]
    shown = dict(zip(header, cells))
    assert shown['latency batch 1 (ms)'] == '5.3' and shown['fastest round (ms)'] == '5.0'
    assert shown['arithmetic (ran)'] == 'bf16 (bf16)' and shown['batch 8 (img/s)'] == '173.21'


def test_openvino_targets_from_the_rows():
    rows = [
        _inference_row('ssd_300_mobilenet', 'frozen_graph', 'float32', 20.0),
        _inference_row('ssd_300_mobilenet', 'openvino', 'fp32', 8.0, 'fp32'),
        _inference_row('ssd_300_mobilenet', 'openvino', 'bf16', 8.2, 'fp32'),
        _inference_row('ssd_300_vgg', 'frozen_graph', 'float32', 300.0),
        _inference_row('ssd_300_vgg', 'openvino', 'fp32', 210.0, 'fp32'),
    ]
    evaluation = {
        'model': 'ssd_300_mobilenet',
        'source': 'openvino',
        'batch_size': 8,
        'evaluation_images_per_s': 45.0,
        'forward_images_per_s': 50.0,
    }
    results = {
        'inference': {'rows': rows, 'cpu_matrix_units': {'summary': 'AVX2 only: no AMX'}},
        'eval': {'results': [evaluation]},
    }
    lines = run_all.openvino_targets(results)
    # 8 / 20 = 0.40 (target 0.5); 210 / 300 = 0.70 (target 0.6); 45 / 50 = 0.90 (target 0.85).
    assert lines[0].startswith('- ssd_300_mobilenet batch-1 latency, OpenVINO fp32 8.0 ms')
    assert lines[0].endswith('0.40x, met (target <= 0.5x).')
    # The verdict is the median of the rounds' ratios, not the ratio of the medians.
    rows[1]['latency_vs_frozen_fp32'] = 0.55
    assert run_all.openvino_targets(results)[0].endswith('0.55x, NOT met (target <= 0.5x).')
    assert lines[1].endswith('0.70x, NOT met (target <= 0.6x).')
    # With the IR's op times and the floor, the line says what the kernels alone cost: their
    # share by the counters (which lengthen every node) of the timed 210 ms, 195/204 of it.
    rows[4].update(op_ms_batch1={'convolutions': 195.0, 'other': 9.0}, floor_ms_fp32=189.0)
    assert run_all.openvino_targets(results)[1].endswith(
        "0.70x, NOT met (target <= 0.6x). OpenVINO's convolutions are 96% of its time by its "
        "performance counters, about 200.7 ms (0.67x the frozen graph's latency); the fp32 "
        'compute floor is 189.0 ms (0.63x).'
    )
    # Counters longer than the call itself (a busy machine): the share, never more than it.
    rows[4].update(op_ms_batch1={'convolutions': 400.0, 'other': 100.0})
    assert (
        'convolutions are 80% of its time by its performance counters, about 168.0 ms (0.56x'
        in (run_all.openvino_targets(results)[1])
    )
    assert 'applies on an AMX CPU; this CPU: AVX2 only: no AMX; OpenVINO ran fp32' in lines[2]
    assert "8.2 ms (1.02x its fp32, the median of the rounds' ratios)" in lines[2]
    rows[2]['latency_vs_openvino_fp32'] = 0.97
    assert '8.2 ms (0.97x its fp32' in run_all.openvino_targets(results)[2]
    assert lines[3].startswith('- Evaluation of ssd_300_mobilenet (openvino, batch 8)')
    assert '0.90x (10 % outside the forward pass), met' in lines[3]
    # On an AMX CPU where OpenVINO compiled bf16, the 5.9 ms target is judged.
    rows[2] = _inference_row('ssd_300_mobilenet', 'openvino', 'bf16', 4.4, 'bf16')
    results['inference']['cpu_matrix_units']['summary'] = 'AMX (bf16 matrix units)'
    assert run_all.openvino_targets(results)[2] == (
        '- MobileNet-SSD300 batch-1 OpenVINO bf16 on AMX: 4.4 ms (median; fastest round 4.1 '
        'ms), met (target <= 5.9 ms).'
    )


def test_help_exits_zero_in_the_flag_benchmarks_and_the_argparse_scripts():
    """The benchmarks on absl flags run through logs.run (absl's --help exits 1), and
    show_augmentation.py and run_demo.py (argparse) take --helpfull as the other scripts do."""
    from tests.conftest import run_script

    for script, flag in (
        ('benchmarks/bench_data.py', '--help'),
        ('benchmarks/bench_caffe.py', '--helpfull'),
        ('show_augmentation.py', '--helpfull'),
        ('run_demo.py', '--helpfull'),
    ):
        proc = run_script(script, flag, timeout=120)
        assert proc.returncode == 0, (script, proc.stderr[-2000:])
        assert '--' in proc.stdout, script


def test_benchmarks_start_without_tensorflow_lines():
    """The benchmarks printed TensorFlow's 6 start-up lines (absl preamble, CUDA stub, oneDNN)
    before their own: they now import tf_extended/logs.py first, as the scripts do. A fresh
    process: the script server of the other tests has TensorFlow loaded already."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ('TF_CPP_MIN_LOG_LEVEL',)}
    env['PYTHONPATH'] = ROOT
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'benchmarks', 'bench_nets.py'), '--help'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == '' and 'usage: bench_nets.py' in proc.stdout


def test_run_all_refuses_an_output_dir_with_a_readme_or_all_json_of_another(tmp_path, capsys):
    """--output_dir . replaced the project's README.md with the benchmark report."""
    assert run_all.foreign_report_files(str(tmp_path / 'new')) == []
    (tmp_path / 'README.md').write_text('# My project\n')
    (tmp_path / 'all.json').write_text('[1, 2]')
    assert run_all.foreign_report_files(str(tmp_path)) == ['README.md', 'all.json']
    with pytest.raises(SystemExit):
        run_all.main(['--only', 'floor', '--output_dir', str(tmp_path)])
    assert (
        f'--output_dir {tmp_path} holds README.md and all.json that this script did not write and '
        'would replace; choose another folder'
    ) in capsys.readouterr().err
    assert (tmp_path / 'README.md').read_text() == '# My project\n'
    (tmp_path / 'README.md').write_text(run_all.REPORT_TITLE + '\n\n- date: x\n')
    (tmp_path / 'all.json').write_text('{"benchmarks": [], "machine": {}}')
    assert run_all.foreign_report_files(str(tmp_path)) == []
    assert run_all.foreign_report_files(os.path.join(run_all.HERE, 'results')) == []


def _conv_ir(path):
    """A small IR of our exports' interface: uint8 `[B, H, W, 3]` in, a 3x3 convolution with
    16 outputs, float32 out."""
    import openvino as ov
    from openvino import opset13 as ops

    images = ops.parameter([-1, -1, -1, 3], np.uint8, name='images')
    x = ops.transpose(ops.convert(images, np.float32), [0, 3, 1, 2])
    weights = np.random.RandomState(0).normal(0, 0.1, (16, 3, 3, 3)).astype(np.float32)
    y = ops.convolution(x, ops.constant(weights), [1, 1], [1, 1], [1, 1], [1, 1])
    ov.save_model(ov.Model([ops.relu(y)], [images], 'conv'), str(path), compress_to_fp16=False)


def _bench_ir(*args):
    """bench_openvino_ir.py in a fresh process in which importing tensorflow fails."""
    import subprocess

    code = (
        "import runpy, sys; sys.modules['tensorflow'] = None; "
        "script = sys.argv.pop(1); runpy.run_path(script, run_name='__main__')"
    )
    return subprocess.run(
        [sys.executable, '-c', code, os.path.join(ROOT, 'benchmarks', 'bench_openvino_ir.py')]
        + [str(a) for a in args],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_openvino_ir_benchmark_runs_without_tensorflow(tmp_path):
    """bench_openvino_ir.py times an IR on a machine with openvino and numpy alone: a fresh
    process in which importing tensorflow fails. Its rows say what OpenVINO compiled (bf16 only
    where the CPU has bf16 instructions), the ratios are to its own fp32 row, and the profile
    names the convolution."""
    xml = tmp_path / 'conv.xml'
    _conv_ir(xml)
    output = tmp_path / 'out' / 'ir.json'
    proc = _bench_ir(
        *('--models', xml, '--threads', 1, '--image_shape', '40,60,3', '--repeats', 3),
        *('--profile', '--output', output),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(output.read_text())
    fp32, bf16 = result['rows']
    assert (fp32['precision'], fp32['ran'], fp32['threads']) == ('fp32', 'fp32', 1)
    assert (bf16['precision'], bf16['ran']) == (
        'bf16',
        'bf16' if cpu_features.has_bf16() else 'fp32',
    )
    assert fp32['threads_used'] == bf16['threads_used'] == 1
    assert (fp32['int8'], fp32['vs_fp32_of'], bf16['vs_fp32_of']) == (False, str(xml), str(xml))
    # Medians of the rounds' ratios (median_ratio, tested on hand values above), not the ratio
    # of the shown medians: comparing with that failed on a busy machine (0.922 vs 0.54). The
    # fp32 row against itself is 1 in every round.
    assert fp32['latency_vs_fp32'] == fp32['batch8_vs_fp32'] == 1.0
    assert bf16['latency_vs_fp32'] > 0 and bf16['batch8_vs_fp32'] > 0
    assert fp32['batch8_ms_per_image'] == pytest.approx(
        1000 / fp32['batch8_images_per_s'], abs=0.006
    )
    assert result['has_amx'] == cpu_features.has_amx()
    assert result['cpu_matrix_units']['summary'] == cpu_features.matrix_units()
    ops = fp32['op_ms_batch1']
    assert 'Convolution' in ops['by_type'] and 0 < ops['convolutions'] <= ops['total']
    table = (tmp_path / 'out' / 'ir.md').read_text()
    assert f'matrix units: {cpu_features.matrix_units()}' in table
    assert f'| `{xml}` | bf16 ({bf16["ran"]}) | 1 |' in table
    bad = _bench_ir('--models', tmp_path / 'none.xml', '--output', output)
    assert bad.returncode == 1 and bad.stderr.strip() == (
        f'bench_openvino_ir: {tmp_path / "none.xml"}: no such OpenVINO model (.xml).'
    )
    # An IR of another interface (a float32 input) is one line naming it.
    import openvino as ov
    from openvino import opset13

    x = opset13.parameter([1, 4], np.float32, name='x')
    other = tmp_path / 'other.xml'
    ov.save_model(ov.Model([opset13.relu(x)], [x], 'other'), str(other), compress_to_fp16=False)
    refused = _bench_ir('--models', other, '--output', output)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"bench_openvino_ir: {other}: inputs ['f32 [1,4]'], where an export of "
        'export_ssd_network.py --formats=openvino has one, uint8 [B, H, W, 3].'
    )
    # An --output that is a folder is refused before timing anything.
    folder = tmp_path / 'results.json'
    folder.mkdir()
    usage = _bench_ir('--models', xml, '--output', folder)
    assert usage.returncode == 2
    assert f'--output: {folder} is a folder; give a file name (.json)' in usage.stderr


def _ir_with_metadata(meta, int8=False):
    """An IR of our exports' input (in memory) with `meta` as its export metadata (None: none),
    quantised (a FakeQuantize, as NNCF's) when `int8`."""
    import openvino as ov
    from openvino import opset13 as ops

    images = ops.parameter([-1, -1, -1, 3], np.uint8, name='images')
    x = ops.convert(images, np.float32)
    if int8:
        x = ops.fake_quantize(x, *np.float32([0, 255, 0, 255]), 256)
    model = ov.Model([ops.relu(x)], [images], 'ir')
    if meta is not None:
        model.set_rt_info(json.dumps(meta), openvino_runtime.CARD_RT_INFO)
    return model


def test_openvino_ir_benchmark_finds_the_fp32_ir_of_an_int8_ir():
    """An int8 IR's "vs fp32" divides by the float IR of the same model: the same checkpoint and
    card in the IRs' export metadata (exported apart: other time, files and calibration), or,
    without metadata, the float IR in its folder; None when the run has no such IR."""

    def meta(step, time, **extra):
        checkpoint = {'path': '/train/model.ckpt', 'step': step, 'moving_averages': False}
        card = {'model_name': 'ssd_300_mobilenet', 'class_names': ['cat', 'dog']}
        return dict(card, export={'checkpoint': checkpoint, 'time': time}, **extra)

    models = {
        'a/model_openvino.xml': _ir_with_metadata(meta(100, 't1', files={'openvino': 'x'})),
        'b/model_openvino_int8.xml': _ir_with_metadata(
            meta(100, 't2', files={'openvino_int8': 'y'}, int8={'images': 8}), int8=True
        ),
        'a/other_int8.xml': _ir_with_metadata(meta(200, 't1'), int8=True),
        'c/model_openvino.xml': _ir_with_metadata(None),
        'c/model_openvino_int8.xml': _ir_with_metadata(None, int8=True),
    }
    assert bench_openvino_ir.fp32_references(models) == {
        'a/model_openvino.xml': 'a/model_openvino.xml',
        'b/model_openvino_int8.xml': 'a/model_openvino.xml',
        'a/other_int8.xml': None,  # in a's folder, but another checkpoint's
        'c/model_openvino.xml': 'c/model_openvino.xml',
        'c/model_openvino_int8.xml': 'c/model_openvino.xml',
    }


def test_openvino_ir_benchmark_compares_int8_with_the_fp32_ir():
    """The int8 IR's rows divide by the fp32 IR's fp32-hint row at the same thread count (they
    divided by the int8 IR's own fp32-hint row); without its fp32 IR in the run, "—" and a note."""
    timings = [  # model, precision, threads, median seconds at batch 1 and 8 (per call)
        ('fp32.xml', 'fp32', 2, 0.010, 0.064),
        ('fp32.xml', 'bf16', 2, 0.008, 0.048),
        ('fp32.xml', 'fp32', 'all', 0.004, 0.016),
        ('int8.xml', 'fp32', 2, 0.005, 0.032),
        ('int8.xml', 'bf16', 2, 0.004, 0.024),
        ('int8.xml', 'fp32', 'all', 0.002, 0.012),
        ('alone_int8.xml', 'fp32', 2, 0.006, 0.040),
    ]
    rows = [
        {
            'model': model,
            'precision': precision,
            'ran': precision,
            'threads': threads,
            'threads_used': 16 if threads == 'all' else threads,
            'latency_ms': round(one * 1000, 2),
            'latency_p90_ms': round(one * 1000, 2),
            'batch8_ms_per_image': round(eight * 1000 / 8, 2),
            'batch8_images_per_s': round(8 / eight, 1),
        }
        for model, precision, threads, one, eight in timings
    ]
    # Three rounds, the second in a slow phase (3x); the bf16 row's third call straddles a
    # change (2x): its rounds' ratios are 0.8, 0.8, 1.6 (the ratio of the medians, 1.6).
    times = [{1: [one, 3 * one, one], 8: [eight, 3 * eight, eight]} for *_, one, eight in timings]
    times[1][1][2] *= 2
    references = {'fp32.xml': 'fp32.xml', 'int8.xml': 'fp32.xml', 'alone_int8.xml': None}
    bench_openvino_ir.add_ratios(rows, times, references)
    got = [
        (r['int8'], r['vs_fp32_of'], r.get('latency_vs_fp32'), r.get('batch8_vs_fp32'))
        for r in rows
    ]
    assert got == [
        (False, 'fp32.xml', 1.0, 1.0),
        (False, 'fp32.xml', 0.8, 0.75),
        (False, 'fp32.xml', 1.0, 1.0),
        (True, 'fp32.xml', 0.5, 0.5),
        (True, 'fp32.xml', 0.4, 0.375),
        (True, 'fp32.xml', 0.5, 0.75),
        (True, None, None, None),
    ]
    units = {'summary': 'AVX2 only', 'openvino_capabilities': [], 'cpu_flags': []}
    table = bench_openvino_ir.markdown(rows, 'a CPU', units)
    assert (
        '\n| `int8.xml` | int8 + bf16 (bf16) | 2 | 4.0 | 4.0 | 0.4 | 3.0 | 0.375 | 333.3 |  |\n'
        in table
    )
    assert (
        '\n| `alone_int8.xml` | int8 + fp32 (fp32) | 2 | 6.0 | 6.0 | — | 5.0 | — | 200.0 |  |\n'
        in table
    )
    assert table.endswith(
        '|  |\n\nint8 + fp32 (or bf16): the quantised operations in int8, the others under that '
        "precision hint. vs fp32: the median of the rounds' ratios to the fp32-hint row at the "
        'same thread count of the same IR, or for an int8 IR of the fp32 IR of the same model:\n'
        '- `int8.xml` (int8): against `fp32.xml`\n'
        '- `alone_int8.xml` (int8): "—", the fp32 IR of its model is not in --models (add it to '
        'compare int8 with fp32)\n'
    )


def test_openvino_ir_benchmark_copied_alone_says_what_else_to_copy(tmp_path):
    """Copied to a server without the repository's folders it imports, it failed in a
    ModuleNotFoundError traceback (walkthrough)."""
    import shutil
    import subprocess

    script = tmp_path / 'bench_openvino_ir.py'
    shutil.copy(os.path.join(ROOT, 'benchmarks', 'bench_openvino_ir.py'), script)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run(
        [sys.executable, str(script), '--models', 'x.xml'],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stderr.strip() == (
        "bench_openvino_ir: No module named 'inference'; copy this repository's benchmarks/, "
        'inference/ and tf_extended/ folders together (openvino and numpy installed; no '
        'TensorFlow needed).'
    )


def test_a_run_without_the_floor_says_so():
    """`--only opencv` wrote 'the best measured fp32 matmul rate, None' and an empty table."""
    report = {'floor_gflops': None, 'floor_runs_gflops': None, 'floor_ratios': []}
    assert run_all._floor_section(report)[-1] == (
        'Not measured: bench_floor did not run (`--only` without `floor`).'
    )
    measured = dict(report, floor_gflops=253.3, floor_runs_gflops=[228.1, 253.3])
    assert 'rate, 253.3 (bench_floor' in run_all._floor_section(measured)[3]
