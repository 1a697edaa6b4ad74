"""The TensorFlow-free part of the OpenVINO runtime: importing openvino, reading a user's IR as an
untrusted file (`read_ir`, `check_sizes`), the CPU plugin's compile settings for a precision,
what it compiled, and the CPU's matrix units.

`inference/openvino_model.py` (export and `OpenVINODetector`) and `benchmarks/bench_openvino_ir.py`
(an exported IR timed on a machine with only openvino and numpy) compile models the same way here.
"""

import math
import os

from inference import graph_check
from tf_extended import cpu_features
from tf_extended import safe_io
from tf_extended import signals

# --precision values -> OpenVINO's INFERENCE_PRECISION_HINT.
PRECISIONS = {'fp32': 'f32', 'bf16': 'bf16'}
# The runtime-info key under which our IRs carry their export's metadata (the model card).
CARD_RT_INFO = 'model_card'
# Our IRs' .xml holds the graph only (MobileNet-SSD300's: 210 KB); the weights are in the .bin.
MAX_XML_BYTES = 64 << 20


def load():
    """The openvino module; an ImportError saying how to install it."""
    try:
        import openvino
    except ImportError as err:
        raise ImportError(
            'the OpenVINO export and runtime need the openvino package (pinned in '
            'requirements.txt): pip install -r requirements.txt'
        ) from err
    return openvino


def compile_model(core, model, config=None):
    """`core.compile_model(model, 'CPU', config)`, the thread's signal stack kept as it was
    (`signals.kept_signal_stack`: the CPU plugin's own, once freed, turned a Ctrl-C into
    SIGSEGV)."""
    with signals.kept_signal_stack():
        return core.compile_model(model, 'CPU', config or {})


def compile_config(precision='fp32', num_threads=None, num_requests=1, cpu_flags=None):
    """The CPU plugin's config: `precision` ('fp32' or 'bf16') as INFERENCE_PRECISION_HINT, the
    latency hint for one request, else the throughput hint with `num_requests` streams (0:
    OpenVINO's number), `num_threads` threads (None or 0: all cores).

    'bf16' is asked for only where the CPU has bf16 instructions (`cpu_features.has_bf16` of
    `cpu_flags`, default this CPU's), else 'f32': OpenVINO 2026.4 honours the bf16 hint on
    AVX-512 CPUs without them by emulating bf16, slower than fp32 and with bf16's rounding
    (MobileNet-SSD300 at depth 0.25 on a 2-core AVX-512 Xeon: 15.3 against 11.2 ms).
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {sorted(PRECISIONS)}; got {precision!r}.')
    if precision == 'bf16' and not cpu_features.has_bf16(cpu_flags):
        precision = 'fp32'
    config = {
        'INFERENCE_PRECISION_HINT': PRECISIONS[precision],
        'PERFORMANCE_HINT': 'LATENCY' if num_requests == 1 else 'THROUGHPUT',
    }
    if num_threads:
        config['INFERENCE_NUM_THREADS'] = int(num_threads)
    if num_requests > 1:
        config['NUM_STREAMS'] = int(num_requests)
    return config


def compiled_precision(compiled):
    """What a compiled model computes in: 'fp32', 'bf16' (only where the CPU has bf16
    instructions: `compile_config` asks for f32 elsewhere) or OpenVINO's name."""
    name = compiled.get_property('INFERENCE_PRECISION_HINT').to_string()
    return {'f32': 'fp32', 'bf16': 'bf16', 'f16': 'fp16'}.get(name, name)


def cpu_matrix_units():
    """The CPU's bf16 / int8 matrix and vector units as OpenVINO and /proc/cpuinfo see them:
    {'openvino_capabilities': [...], 'cpu_flags': [...], 'summary': str}."""
    flags = cpu_features.cpu_flags()
    try:
        capabilities = list(load().Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES'))
    except Exception:  # noqa: BLE001 - no openvino or no CPU plugin: report what cpuinfo says.
        capabilities = []
    return {
        'openvino_capabilities': capabilities,
        'cpu_flags': cpu_features.reported_flags(flags),
        'summary': cpu_features.matrix_units(flags),
    }


def reason(err):
    """The last line of an OpenVINO RuntimeError that says why (its message: "Exception from
    <source>:" / "Check ... failed at" lines, then why)."""
    lines = [
        line.strip()
        for line in str(err).splitlines()
        if line.strip() and not line.startswith(('Exception from', 'Check '))
    ]
    return lines[-1] if lines else type(err).__name__


def rt_info_metadata(model):
    """The export metadata an IR carries in its runtime info (dict), None when it has none.
    Raises ValueError (`safe_io.parse_card_json`: 'more than ...', 'not JSON (...)', 'not a JSON
    object') when it is unreadable: a card of tens of MB, which the XML's limit allows, took
    gigabytes to parse."""
    if not model.has_rt_info(CARD_RT_INFO):
        return None
    return safe_io.parse_card_json(model.get_rt_info(CARD_RT_INFO).astype(str))


def _element_bytes(output):
    """Bytes per element of an op's output (strings and dynamic types: graph_check.OBJECT_BYTES)."""
    return output.get_element_type().size or graph_check.OBJECT_BYTES


def check_sizes(model, path):
    """Raises UnsafeGraphError (a ValueError) when the `ov.Model` of `path` holds more than
    graph_check.MAX_CONSTANT_BYTES in constants and tensors of static shape computed from
    constants alone (OpenVINO folds them when compiling: a 3 KB IR broadcasting one value to a
    huge shape made it allocate gigabytes), when one image's part of a tensor (its static dims
    after the first, dynamic ones as 1) is larger, or when it has sub-graphs (If, Loop; ours
    have none). As `graph_check.check_sizes` walks a TF graph, over OpenVINO's op types and
    shapes, with its SizeBudget."""
    budget = graph_check.SizeBudget(
        path,
        'OpenVINO model',
        'our largest model needs ~250 MB',
        'export it again with export_ssd_network.py --formats=openvino',
    )
    constant = set()  # get_name() of the ops computed from constants (unique, unlike friendly)
    for op in model.get_ordered_ops():  # inputs before the ops using them
        kind, name = op.get_type_name(), op.get_friendly_name()
        if hasattr(op, 'get_function'):
            budget.refuse(f'node {name!r} ({kind}) has sub-graphs, which our exports never have')
        for out in op.outputs():
            shape = out.get_partial_shape()
            if shape.rank.is_static and len(shape) > 1:
                dims = static_dims(shape)[1:]
                budget.check_image(name, kind, shape, dims, _element_bytes(out))
        inputs = [i.get_source_output().get_node().get_name() for i in op.inputs()]
        if kind in ('Parameter', 'Result') or any(i not in constant for i in inputs):
            continue
        constant.add(op.get_name())
        if kind in ('Reshape', 'Squeeze', 'Unsqueeze'):  # folded sharing their input's data
            continue
        size = sum(
            math.prod(out.get_partial_shape().to_shape()) * _element_bytes(out)
            for out in op.outputs()
            if out.get_partial_shape().is_static
        )
        budget.sizes.append((name, size))
    budget.check_total('constants and the tensors computed from constants alone')


def static_dims(shape):
    """An OpenVINO PartialShape of static rank as a list: each dimension's length, None where it
    is dynamic. None for a shape of dynamic rank."""
    if not shape.rank.is_static:
        return None
    return [d.get_length() if d.is_static else None for d in shape]


def _models_beside(path):
    """A hint naming the IRs (an .xml with its .bin) in `path`'s folder, or `path` itself when it
    is a folder, other than `path`; else the export command."""
    folder = path if os.path.isdir(path) else os.path.dirname(path) or '.'
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        names = []
    models = [
        os.path.join(folder, name)
        for name in names
        if name.endswith('.xml') and name[:-4] + '.bin' in names
    ]
    models = [m for m in models if os.path.abspath(m) != os.path.abspath(path)][:5]
    if models:
        return f'pass the model\'s .xml: {" or ".join(models)}'
    return 'export the model with export_ssd_network.py --formats=openvino'


def read_ir(core, path):
    """`core.read_model(path)` of a user's IR, checked as an untrusted file first: the .xml and
    its .bin regular files (OpenVINO would block on a FIFO and read a device forever), the .xml
    at most MAX_XML_BYTES; then its sizes (`check_sizes`). Raises FileNotFoundError,
    UnsafeFileError or ValueError (not an IR OpenVINO reads, or too large), naming the file and,
    for a folder or another file of an export (its .bin, metadata.json), the IRs beside it."""
    if not os.path.exists(path):
        raise FileNotFoundError(f'{path}: no such OpenVINO model (.xml).')
    if os.path.isdir(path):
        raise ValueError(f'{path}: a folder, not an OpenVINO model (.xml); {_models_beside(path)}.')
    what = 'OpenVINO model (.xml)'
    with safe_io.open_text(path, what, encoding='latin-1') as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4096).lstrip('\xef\xbb\xbf \t\r\n')  # a UTF-8 BOM, blanks
    if size > MAX_XML_BYTES:
        raise safe_io.UnsafeFileError(
            f'{path}: the {what} has {size} bytes, more than the limit of {MAX_XML_BYTES} (an '
            f'IR\'s .xml holds the graph; its weights are in the .bin).'
        )
    # read_model would also hand other formats (ONNX, TF graphs, ...) to their frontends.
    if not head.startswith(('<?xml', '<net')):
        raise ValueError(
            f'{path}: not an OpenVINO IR (an IR\'s .xml is XML with a <net> root); '
            f'{_models_beside(path)}.'
        )
    weights = os.path.splitext(path)[0] + '.bin'
    if os.path.lexists(weights):
        safe_io.check_regular(weights, 'OpenVINO weights (.bin)')
    try:
        model = core.read_model(path)
    except RuntimeError as err:
        # The usual slip when copying a model: the .xml alone ("... bin file cannot be found").
        if not os.path.lexists(weights) and 'bin file' in str(err):
            raise FileNotFoundError(
                f'{path}: its weights {weights} are missing (an IR is the .xml and the .bin '
                f'beside it: copy both).'
            ) from None
        raise ValueError(
            f'{path}: OpenVINO cannot read it as a model ({reason(err)}); export it with '
            f'export_ssd_network.py --formats=openvino.'
        ) from None
    check_sizes(model, path)
    return model
