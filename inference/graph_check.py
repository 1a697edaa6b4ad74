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
                     ours holds. Its loader runs only the restore op (which must not reach
                     `SaveV2` / `MergeV2Checkpoints`); a SavedModel with an init / main op (ours
                     have none) or with a signature reaching anything but inference ops and
                     variable reads is refused.

A refused graph is a ValueError naming the op types, a node of each, and the file. This is a
filter, not a sandbox: it keeps out what our exports never contain; a graph of allowed ops can
still be wrong or slow. Load only graphs you trust. (TFLite models and OpenVINO IRs are run by
their own runtimes, which have no file or Python ops; they are not checked here.)

To see the op types of our exports (after changing the graph): `python -m inference.graph_check`.
"""

import os

from tf_extended import safe_io

FROZEN_GRAPH_OPS = frozenset(
    {
        'AddV2',
        'BiasAdd',
        'Cast',
        'CombinedNonMaxSuppression',
        'ConcatV2',
        'Const',
        'Conv2D',
        'DepthwiseConv2dNative',
        'Exp',
        'ExpandDims',
        'Fill',
        'FusedBatchNormV3',
        'GatherV2',
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
# Initialisers and the saver of our SavedModels (reachable from neither the signatures nor, the
# writing ones, from the restore op the loader runs).
SAVED_MODEL_OPS = (
    FROZEN_GRAPH_OPS
    | VARIABLE_READ_OPS
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


class UnsafeGraphError(ValueError):
    """A graph holds ops our exports never contain (the message names them)."""


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


def check_frozen_graph(graph_def, source):
    """The check of a frozen graph (see the module docstring)."""
    check_graph_def(graph_def, source, FROZEN_GRAPH_OPS, 'frozen graph')


def _reachable_ops(graph_def, tensor_or_op_names):
    """{op type: node name} of the nodes the given tensors / ops depend on (data and control
    inputs), including the ops of library functions they call."""
    nodes = {node.name: node for node in graph_def.node}
    functions = {f.signature.name: f for f in graph_def.library.function}
    stack = [name.split(':')[0].lstrip('^') for name in tensor_or_op_names]
    seen, found, seen_functions = set(), {}, set()
    function_stack = []
    while stack:
        name = stack.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        found.setdefault(node.op, name)
        stack.extend(inp.split(':')[0].lstrip('^') for inp in node.input)
        function_stack.extend(_function_refs(node) + ([node.op] if node.op in functions else []))
    while function_stack:
        fname = function_stack.pop()
        if fname in seen_functions or fname not in functions:
            continue
        seen_functions.add(fname)
        for node in functions[fname].node_def:
            found.setdefault(node.op, f'{fname}/{node.name}')
            function_stack.extend(
                _function_refs(node) + ([node.op] if node.op in functions else [])
            )
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
            if op in WRITING_OPS
        }
        if bad:
            _refuse(source, bad, 'SavedModel (its restore op writes files)')
    for name, signature in meta_graph.signature_def.items():
        if signature_names is not None and name not in signature_names:
            continue
        outputs = [info.name for info in signature.outputs.values()]
        functions = {f.signature.name for f in graph_def.library.function}
        bad = {
            op: node
            for op, node in _reachable_ops(graph_def, outputs).items()
            if op not in FROZEN_GRAPH_OPS | VARIABLE_READ_OPS and op not in functions
        }
        if bad:
            _refuse(source, bad, f'SavedModel (signature {name!r})')


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
    `export.frozen_graph_def` does (`detection.freeze` of the outputs), and takes
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
