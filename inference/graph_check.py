"""What a shared graph may contain before we import it: the ops of our own exports, nothing else.

A frozen GraphDef or a SavedModel is a program. Running it runs whatever ops it holds, and
TensorFlow has ops that read and write files (`ReadFile`, `WriteFile`, `MatchingFiles`,
`SaveV2`, `PrintV2` to a file), run Python (`PyFunc`, `EagerPyFunc`), or talk to the network; a
crafted `.pb` with our input and output names would pass every other check. So before a graph is
imported, every op type in it (and in its function library, e.g. the body of the per-image
`StatelessWhile`) must be one that `export_ssd_network.py` itself writes:

  FROZEN_GRAPH_OPS   the frozen graphs of every net (ssd_300_vgg, ssd_512_vgg, ssd_300_mobilenet),
                     every compute dtype (float32, bfloat16, float16), fixed-size and any-size,
                     any or a static batch size (measured with `export_op_types`; the test
                     tests/test_graph_check.py rebuilds our exports and checks them against it).
  SAVED_MODEL_OPS    plus the variables, their initialisers and the saver that a SavedModel of
                     ours holds, and the image decoding of its `serving_encoded` signature
                     (DECODE_OPS). Its loader runs only the restore op (which must not reach
                     `SaveV2` / `MergeV2Checkpoints` nor that decoding); a SavedModel with an
                     init / main op (ours have none) or with a signature reaching anything but
                     inference ops and variable reads (`serving_encoded`: and that decoding) is
                     refused.

Sizes are checked too (`check_sizes`): a Const stores one value that TF broadcasts to its declared
shape, so a 2 KB file can declare gigabytes. The constants at their declared shapes (and a
SavedModel's variables), plus every tensor of static shape computed from constants alone (a Fill,
Range or Tile of constant inputs, which TF materialises when the graph first runs), may take at
most MAX_CONSTANT_BYTES together; one image's part of any tensor at most that too. A frozen
graph imported for this check is the one then run (a SavedModel's loader imports its own). The
inputs and outputs of either must have our names, dtypes and ranks (`check_interface`: others
would fail where they are used).

A refused graph is a ValueError naming the op types (or the node too large), a node of each, and
the file. This is a filter, not a sandbox: it keeps out what our exports never contain; a graph of
allowed ops can still be wrong or slow (e.g. a tensor whose size a fed input sets). Load only
graphs you trust. (TFLite models and OpenVINO IRs are run by their own runtimes, which have no
file or Python ops; they are not checked here: `detection.check_tflite_ops` refuses TFLite's
custom ops, Select TF ops included, and `openvino_runtime.check_sizes` applies
MAX_CONSTANT_BYTES to IRs.)

To see the op types of our exports (after changing the graph): `python -m inference.graph_check`.
"""

import math
import os

from tf_extended import safe_io

FROZEN_GRAPH_OPS = frozenset(
    {
        'AddV2',
        'Assert',
        'BiasAdd',
        'Cast',
        'CombinedNonMaxSuppression',
        'ConcatV2',
        'Const',
        'Conv2D',
        'DepthwiseConv2dNative',
        'EnsureShape',
        'Exp',
        'ExpandDims',
        'Fill',
        'FusedBatchNormV3',
        'GatherV2',
        'Greater',
        'Identity',
        'IdentityN',
        'Less',
        'LogicalAnd',
        'MaxPool',
        'Maximum',
        'Minimum',
        'Mul',
        'Pack',
        'Pad',
        'Placeholder',
        'PlaceholderWithDefault',
        'Range',
        'RealDiv',
        'Relu',
        'Reshape',
        'ResizeBilinear',
        'Rsqrt',
        'SelectV2',
        'Shape',
        'Softmax',
        'Square',
        'Squeeze',
        'StatelessWhile',
        'StridedSlice',
        'Sub',
        'Sum',
        'TensorListFromTensor',
        'TensorListGetItem',
        'TensorListReserve',
        'TensorListSetItem',
        'TensorListStack',
        'Tile',
        'TopKV2',
        'Transpose',
        'Unpack',
    }
)
# Variables and what reads them: what a signature of our SavedModels may reach besides the above.
VARIABLE_READ_OPS = frozenset({'VarHandleOp', 'ReadVariableOp'})
# The image decoding of our SavedModels' signature of JPEG or PNG files' bytes
# (`detection.decode_image_file`: the format, size and JPEG scans read from the bytes, asserted
# with a message naming the file, then decoded, 16-bit PNGs rounded to 8 bits; the header read and
# the decoding in datasets of that one file, so that their failure is asserted naming it too; NoOp:
# an assertion's passing branch): no file access (the datasets hold the fed bytes, and no reader
# of files). Reachable from that signature and TF_EXAMPLE_SIGNATURE only, which none of our
# loaders runs (a crafted one may decode a constant image: a user's TF Serving runs it);
# elsewhere a crafted graph could decode a constant image of any size.
ENCODED_SIGNATURE = 'serving_encoded'
# The signature of serialized tf.Examples: the same decoding after parsing each one (in a dataset
# as well, `detection.image_of_tf_example`); the parsing is reachable from it only.
TF_EXAMPLE_SIGNATURE = 'serving_tf_example'
PARSE_OPS = frozenset({'ParseExampleV2'})
DECODE_OPS = frozenset(
    {
        'Assert',
        'ConcatenateDataset',
        'DatasetToSingleElement',
        'DecodeImage',
        'DecodeJpeg',
        'DecodeRaw',
        'Equal',
        'ExtractJpegShape',
        'FloorDiv',
        'GreaterEqual',
        'If',
        'IgnoreErrorsDataset',
        'LessEqual',
        'LogicalOr',
        'MapDataset',
        'NoOp',
        'StatelessIf',
        'StringFormat',
        'StringJoin',
        'StringLength',
        'StringSplitV2',
        'Substr',
        'TakeDataset',
        'TensorDataset',
        'While',
    }
)
# What the loader's restore op must not reach either: it runs at load, before any bytes are fed
# (NoOp and StringJoin are the saver's too).
RESTORE_REFUSED_DECODE_OPS = (DECODE_OPS | PARSE_OPS) - {'NoOp', 'StringJoin'}
# Initialisers and the saver of our SavedModels (reachable from neither the signatures nor, the
# writing ones, from the restore op the loader runs).
SAVED_MODEL_OPS = (
    FROZEN_GRAPH_OPS
    | VARIABLE_READ_OPS
    | DECODE_OPS
    | PARSE_OPS
    | frozenset(
        {
            'AssignVariableOp',
            'MergeV2Checkpoints',
            'NoOp',
            'RandomUniform',
            'RestoreV2',
            'SaveV2',
            'Select',
            'ShardedFilename',
            'StaticRegexFullMatch',
            'StringJoin',
            'VarIsInitializedOp',
        }
    )
)
# Never reachable from what the SavedModel loader runs.
WRITING_OPS = frozenset({'SaveV2', 'MergeV2Checkpoints', 'Save', 'SaveSlices', 'WriteFile'})
# Collections and signatures whose ops the SavedModel loader runs at load time; ours have none.
INIT_COLLECTIONS = (
    'saved_model_main_op',
    'legacy_init_op',
    'saved_model_train_op',
    'table_initializer',
    'init_op',
    'local_init_op',
)
INIT_SIGNATURE = '__saved_model_init_op'
_TRUST = (
    'a graph is code: load only graphs you trust, or export it again with export_ssd_network.py'
)


# The bytes of constants (see the module docstring). Our largest model, SSD512 VGG, holds ~27 M
# float32 weights (~110 MB, plus ~55 MB of their bfloat16 / float16 casts); 1 GiB leaves room for
# far larger nets while keeping a crafted file from making TF allocate gigabytes (or fail with a
# traceback on a shape it cannot allocate). The same limit holds for one image's part of any
# tensor (its static dims after the first, unknown ones as 1: a Fill to [batch, 2**30], a resize
# to a constant 65536x65536); ours peak at 64 MB (SSD512's first convolutions, 512x512x64 float32).
MAX_CONSTANT_BYTES = 1 << 30
# Bytes per element of a string, variant or resource tensor and of a TensorListReserve (a Tensor
# each: measured 32 bytes).
OBJECT_BYTES = 32
# Ops whose output is computed from their inputs alone (so from constants when those are), and
# those among them that share their input's buffer (not counted again).
PURE_OPS = FROZEN_GRAPH_OPS - {'Placeholder', 'PlaceholderWithDefault'}
ALIASING_OPS = frozenset({'ExpandDims', 'Identity', 'IdentityN', 'Reshape', 'Squeeze'})


class UnsafeGraphError(ValueError):
    """A graph holds ops our exports never contain, or far larger constants (the message names
    them)."""


def _function_refs(node_def):
    """Names of library functions a node refers to (attributes of type func / list of func)."""
    refs = []
    for value in node_def.attr.values():
        if value.HasField('func'):
            refs.append(value.func.name)
        if value.HasField('list'):
            refs.extend(f.name for f in value.list.func)
    return refs


def op_types(graph_def):
    """{op type: first node name (`function/node` inside the library)} of a GraphDef and its
    function library. A node whose op is a library function counts that function's name."""
    found = {}
    for node in graph_def.node:
        found.setdefault(node.op, node.name)
    for function in graph_def.library.function:
        for node in function.node_def:
            found.setdefault(node.op, f'{function.signature.name}/{node.name}')
    return found


def _refuse(source, bad, what):
    listing = '; '.join(f'{op} (node {node!r})' for op, node in sorted(bad.items()))
    raise UnsafeGraphError(
        f'{source}: refusing to load this {what}: it has op(s) our exports never '
        f'contain: {listing}. Ops that read or write files or run code would '
        f'run with your rights; {_TRUST}.'
    )


def check_graph_def(graph_def, source, allowed=FROZEN_GRAPH_OPS, what='graph'):
    """Raises UnsafeGraphError unless every op of `graph_def` (nodes and library functions) is in
    `allowed`; calls of library functions are allowed (their bodies are checked)."""
    functions = {f.signature.name for f in graph_def.library.function}
    bad = {
        op: node
        for op, node in op_types(graph_def).items()
        if op not in allowed and op not in functions
    }
    if bad:
        _refuse(source, bad, what)


def check_frozen_graph(graph_def, source, interface):
    """The check of a frozen graph (see the module docstring) and of its interface
    (`check_interface` of the first outputs of the nodes `interface` names).

    Returns:
      The tf.Graph that `check_sizes` imported `graph_def` into (nothing has run in it), to run:
      importing it again took as long again (0.05-0.3 s for our exports, measured).
    """
    check_graph_def(graph_def, source, FROZEN_GRAPH_OPS, 'frozen graph')
    graph = check_sizes(graph_def, source, 'frozen graph')
    tensors = {
        op.name: op.outputs[0]
        for op in graph.get_operations()
        if op.name in interface and op.outputs
    }
    check_interface(tensors, source, 'frozen graph', interface)
    return graph


def check_interface(tensors, source, what, interface):
    """Raises ValueError unless `tensors` ({name: tf.Tensor}) has each name of `interface`
    ({name: (tf.DType, rank)}) at that dtype, of a shape of that rank: other inputs and outputs
    would fail where they are used (e.g. a TypeError slicing by a string count)."""
    missing = sorted(set(interface) - set(tensors))
    if missing:
        raise ValueError(
            f'{source}: the {what} has no {missing} node(s); export it with export_ssd_network.py.'
        )
    for name, (dtype, rank) in interface.items():
        tensor = tensors[name]
        if tensor.dtype != dtype or tensor.shape.rank != rank:
            raise ValueError(
                f"{source}: the {what}'s tensor {name!r} is {tensor.dtype.name} of shape "
                f'{tensor.shape}, not {dtype.name} of rank {rank}; export it with '
                f'export_ssd_network.py.'
            )


def _element_bytes(dtype):
    """Bytes per element of a DataType enum or tf.DType (TypeError when it is none)."""
    import tensorflow as tf

    return tf.dtypes.as_dtype(dtype).size or OBJECT_BYTES


def _declared_bytes(shape, dtype):
    """Bytes of a tensor of a TensorShapeProto and DataType, or None when either is invalid."""
    if shape.unknown_rank or any(d.size < 0 for d in shape.dim):
        return None
    try:
        return math.prod(d.size for d in shape.dim) * _element_bytes(dtype)
    except TypeError:
        return None


def _nodes(graph_def):
    """(label, NodeDef) of the graph and its library (`function/node`, as `op_types`)."""
    for node in graph_def.node:
        yield node.name, node
    for function in graph_def.library.function:
        for node in function.node_def:
            yield f'{function.signature.name}/{node.name}', node


class SizeBudget:
    """MAX_CONSTANT_BYTES applied to one model: the walk of its graph (`check_sizes` here,
    `openvino_runtime.check_sizes` for IRs) adds the constants it finds to `sizes` and has each
    tensor's part of one image checked; the messages name the model and the node.

    Args:
      source, what: the model's file and kind ('frozen graph'), named in errors.
      ours: what our largest export of that kind needs (quoted in errors).
      advice: what to do instead (the errors' end).
    """

    def __init__(self, source, what, ours, advice=_TRUST):
        self.source, self.what, self.ours, self.advice = source, what, ours, advice
        self.sizes = []  # (node label, bytes)

    def refuse(self, why):
        """Raises UnsafeGraphError saying `why` the model is refused."""
        raise UnsafeGraphError(
            f'{self.source}: refusing to load this {self.what}: {why}; {self.advice}.'
        )

    def check_image(self, label, kind, shape, dims, element_bytes):
        """Refuses node `label` (op type `kind`) when one image's part of its output (`shape`,
        as the message shows it; `dims`: its dims after the first, None where unknown, counted
        as 1) is larger than MAX_CONSTANT_BYTES."""
        image = math.prod(1 if d is None else d for d in dims) * element_bytes
        if image > MAX_CONSTANT_BYTES:
            self.refuse(
                f'node {label!r} ({kind}) makes a tensor of shape {shape} of at least {image:,} '
                f'bytes per image, more than the limit of {MAX_CONSTANT_BYTES:,}'
            )

    def check_total(self, held):
        """Refuses the model when `sizes` (`held`: what they are, 'constants at their declared
        shapes') take more than MAX_CONSTANT_BYTES together."""
        total = sum(size for _, size in self.sizes)
        if total > MAX_CONSTANT_BYTES:
            label, largest = max(self.sizes, key=lambda item: item[1])
            self.refuse(
                f'its {held} take {total:,} bytes (largest: node {label!r}, {largest:,} bytes), '
                f'more than the limit of {MAX_CONSTANT_BYTES:,} ({self.ours})'
            )


def _add_computed_bytes(budget, graph, prefix):
    """Adds to the SizeBudget the tensors the tf.Graph `graph` computes from constants alone
    (Consts excluded: counted at their declared shapes), `prefix` + op name their labels, and
    checks every tensor's part of one image. Refuses a TensorListReserve of a length computed
    from constants."""
    constant = set()
    for op in graph.get_operations():  # in topological order, as imported
        label = prefix + op.name
        for out in op.outputs:
            if out.shape.rank:
                budget.check_image(
                    label, op.type, out.shape, out.shape.as_list()[1:], _element_bytes(out.dtype)
                )
        if op.type not in PURE_OPS or any(t.op.name not in constant for t in op.inputs):
            continue
        constant.add(op.name)
        if op.type == 'TensorListReserve':
            budget.sizes.append((label, _list_length(op, label, budget) * OBJECT_BYTES))
        elif op.type not in ALIASING_OPS | {'Const'}:
            size = sum(
                out.shape.num_elements() * _element_bytes(out.dtype)
                for out in op.outputs
                if out.shape.is_fully_defined()
            )
            budget.sizes.append((label, size))


def _list_length(op, label, budget):
    """The length of a constant TensorListReserve: its scalar Const `num_elements` (ours: the
    static batch size); else the SizeBudget refuses it."""
    from tensorflow.python.framework import tensor_util

    length = op.inputs[1].op
    if length.type == 'Const' and op.inputs[1].shape.rank == 0:
        try:
            return max(int(tensor_util.MakeNdarray(length.get_attr('value'))), 0)
        except (ValueError, TypeError):
            pass
    budget.refuse(
        f'node {label!r} (TensorListReserve) has a length computed from constants, which our '
        f'exports never have'
    )


def check_sizes(graph_def, source, what='graph', variables=False):
    """Raises UnsafeGraphError when the constants of `graph_def` (with `variables`: its
    VarHandleOps too) at their declared shapes and the tensors it computes from constants alone
    take more than MAX_CONSTANT_BYTES, or one image's part of a tensor does (see the module
    docstring); ValueError when TensorFlow cannot import it. The declared sizes are checked
    first, then the graph and its functions are imported (nothing runs).

    Returns:
      The tf.Graph `graph_def` was imported into (with name='').
    """
    import tensorflow as tf
    from tensorflow.python.framework import function_def_to_graph

    from tf_extended import tf_errors

    budget = SizeBudget(source, what, 'our largest export, SSD512 VGG, needs ~170 MB')
    for label, node in _nodes(graph_def):
        if node.op == 'Const':
            tensor = node.attr['value'].tensor
            size = _declared_bytes(tensor.tensor_shape, tensor.dtype)
        elif variables and node.op == 'VarHandleOp':
            size = _declared_bytes(node.attr['shape'].shape, node.attr['dtype'].type)
        else:
            continue
        if size is None:
            budget.refuse(
                f'node {label!r} ({node.op}) declares an unknown or invalid shape or dtype'
            )
        budget.sizes.append((label, size))
    held = 'constants' + (' and variables' if variables else '') + ' at their declared shapes'
    budget.check_total(held)  # before importing: shape inference reads constants
    try:
        graph = tf.Graph()
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name='')
            # In the graph, whose library has the functions a function calls (a cond's branches
            # in a map's body).
            graphs = [(graph, '')] + [
                (
                    function_def_to_graph.function_def_to_graph(f, include_library_functions=True),
                    f.signature.name + '/',
                )
                for f in graph_def.library.function
            ]
    except (ValueError, TypeError, tf.errors.OpError) as err:
        raise ValueError(
            f'{source}: TensorFlow cannot import this {what} ({tf_errors.reason(err)}); export '
            f'it with export_ssd_network.py.'
        ) from None
    for imported, prefix in graphs:
        _add_computed_bytes(budget, imported, prefix)
    budget.check_total(held + ' and the tensors computed from constants')
    return graph


def _calls(node_def, functions):
    """Names of the library functions (of `functions`) a node calls."""
    return _function_refs(node_def) + ([node_def.op] if node_def.op in functions else [])


def called_functions(graph_def, nodes=None):
    """Names of the library functions that `nodes` (NodeDefs; default: the graph's) call, directly
    or through other functions."""
    functions = {f.signature.name: f for f in graph_def.library.function}
    nodes = graph_def.node if nodes is None else nodes
    stack = [name for node in nodes for name in _calls(node, functions)]
    called = set()
    while stack:
        name = stack.pop()
        if name in called or name not in functions:
            continue
        called.add(name)
        stack.extend(ref for node in functions[name].node_def for ref in _calls(node, functions))
    return called


def _reachable_ops(graph_def, tensor_or_op_names):
    """{op type: node name} of the nodes the given tensors / ops depend on (data and control
    inputs), including the ops of library functions they call."""
    nodes = {node.name: node for node in graph_def.node}
    stack = [name.split(':')[0].lstrip('^') for name in tensor_or_op_names]
    seen, found = set(), {}
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        found.setdefault(node.op, name)
        stack.extend(inp.split(':')[0].lstrip('^') for inp in node.input)
    functions = {f.signature.name: f for f in graph_def.library.function}
    for fname in sorted(called_functions(graph_def, [nodes[name] for name in seen])):
        for node in functions[fname].node_def:
            found.setdefault(node.op, f'{fname}/{node.name}')
    return found


def check_meta_graph(meta_graph, source, signature_names=None):
    """The check of a SavedModel's MetaGraphDef (see the module docstring).

    signature_names: the signatures that will run (default: all)."""
    graph_def = meta_graph.graph_def
    check_graph_def(graph_def, source, SAVED_MODEL_OPS, 'SavedModel')
    init = [key for key in INIT_COLLECTIONS if key in meta_graph.collection_def]
    if INIT_SIGNATURE in meta_graph.signature_def:
        init.append(INIT_SIGNATURE)
    if init:
        raise UnsafeGraphError(
            f'{source}: refusing to load this SavedModel: it runs op(s) when '
            f'loaded ({", ".join(init)}); our exports do not. {_TRUST}.'
        )
    restore = meta_graph.saver_def.restore_op_name
    if restore:
        bad = {
            op: node
            for op, node in _reachable_ops(graph_def, [restore]).items()
            if op in WRITING_OPS | RESTORE_REFUSED_DECODE_OPS
        }
        if bad:
            _refuse(
                source,
                bad,
                'SavedModel (its restore op writes files or decodes images or tf.Examples)',
            )
    for name, signature in meta_graph.signature_def.items():
        if signature_names is not None and name not in signature_names:
            continue
        outputs = [info.name for info in signature.outputs.values()]
        functions = {f.signature.name for f in graph_def.library.function}
        reach = FROZEN_GRAPH_OPS | VARIABLE_READ_OPS
        if name == ENCODED_SIGNATURE:
            reach |= DECODE_OPS
        if name == TF_EXAMPLE_SIGNATURE:
            reach |= DECODE_OPS | PARSE_OPS
        bad = {
            op: node
            for op, node in _reachable_ops(graph_def, outputs).items()
            if op not in reach and op not in functions
        }
        if bad:
            _refuse(source, bad, f'SavedModel (signature {name!r})')
    check_sizes(graph_def, source, 'SavedModel', variables=True)


def check_saved_model(export_dir, tags=('serve',), signature_names=None):
    """Reads `export_dir/saved_model.pb` and checks the MetaGraph with `tags` (see
    `check_meta_graph`) before anything is imported. Raises UnsafeGraphError, or ValueError when
    the file is not a SavedModel."""
    from tensorflow.core.protobuf import saved_model_pb2
    from google.protobuf import message

    path = os.path.join(export_dir, 'saved_model.pb')
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString(
            safe_io.read_bytes(path, safe_io.SERIALIZED_MODEL_LIMIT, 'SavedModel')
        )
    except (OSError, message.DecodeError) as err:
        raise ValueError(f'{path}: not a readable SavedModel ({err}).') from None
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == set(tags):
            check_meta_graph(meta_graph, export_dir, signature_names)
            return
    raise ValueError(f'{export_dir}: no MetaGraph with tags {list(tags)}.')


def export_op_types(
    model_name, compute_dtype='float32', fixed_size=False, batch_size=None, num_classes=5, **params
):
    """(frozen graph op types, SavedModel op types) of our export of a random-weight model.

    Builds `detection.build_detection_graph` as export_ssd_network.py does, freezes it as
    `export.export` does (`detection.freeze` of the outputs), and takes
    the whole graph plus a sharded V2 saver (what `SavedModelBuilder` adds) for the SavedModel.
    """
    import tensorflow as tf
    from inference import detection
    from model import card as card_lib

    v1 = tf.compat.v1
    card = card_lib.from_registry(model_name, num_classes=num_classes, **params).replace(
        compute_dtype=compute_dtype
    )
    graph = tf.Graph()
    with graph.as_default():
        detection.build_detection_graph(card, batch_size=batch_size, fixed_size=fixed_size)
        detection.add_encoded_input(card, batch_size)
        detection.add_encoded_input(card, batch_size, tf_examples=True)
        v1.train.Saver(sharded=True, write_version=v1.train.SaverDef.V2)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            frozen = detection.freeze(sess, detection.OUTPUTS)
        whole = graph.as_graph_def()
    return set(op_types(frozen)), set(op_types(whole))


def main():
    import itertools
    import tensorflow as tf

    tf.compat.v1.disable_eager_execution()
    frozen_ops, saved_ops = set(), set()
    for model, dtype, fixed, batch in itertools.product(
        ('ssd_300_mobilenet', 'ssd_300_vgg', 'ssd_512_vgg'),
        ('float32', 'bfloat16', 'float16'),
        (False, True),
        (None, 2),
    ):
        frozen, whole = export_op_types(model, dtype, fixed, batch)
        frozen_ops |= frozen
        saved_ops |= whole
        print(
            f'{model} {dtype} fixed_size={fixed} batch={batch}: {len(frozen)} op types', flush=True
        )
    print('frozen graph ops:', sorted(frozen_ops))
    print('SavedModel ops besides them:', sorted(saved_ops - frozen_ops))
    print('not in FROZEN_GRAPH_OPS:', sorted(frozen_ops - FROZEN_GRAPH_OPS))
    print('not in SAVED_MODEL_OPS:', sorted((saved_ops | frozen_ops) - SAVED_MODEL_OPS))


if __name__ == '__main__':
    main()
