"""The library's layers (docs/DESIGN.md, "Layers"): every module of the
repository sits in one, imports only from its own layer or those below, and
no two modules import each other, even through others. Imports are read from
the source (inside functions too), not run."""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Lowest first. Scripts (top-level files with a __main__), bench/ and tools/ are above them all.
LAYERS = (
    ('defaults', {'ser.defaults'}),
    ('foundation', {'helper', 'ser.host', 'ser.text'}),
    ('paths and precision', {'ser.paths', 'ser.mixed_precision'}),
    ('formats, text and audio', {
        'ser.audio', 'ser.embeddings', 'ser.records', 'ser.dataset', 'ser.muse',
        'ser.pronunciation', 'ser.phonetic_alignment', 'ser.alignment', 'ser.recognition',
        'ser.emotion', 'ser.partition', 'ser.distribution'}),
    ('the model', {'models', 'losses', 'data_provider', 'ser.checkpoints', 'ser.cluster'}),
    ('running the model', {
        'ser.inference', 'ser.training', 'ser.evaluation', 'ser.export', 'ser.sync_maps',
        'ser.generation', 'ser.streaming', 'ser.isolated_alignment', 'ser.ablation'}),
    ('serving', {'ser.service', 'ser.stream_protocol', 'ser.application', 'ser.metrics', 'ser.page',
                 'ser.connections'}),
)
TOOLS = 'tools and scripts'


def python_files():
    for root, directories, files in os.walk(REPO):
        directories[:] = [d for d in directories
                          if not d.startswith('.') and d not in ('tests', '__pycache__')]
        for name in files:
            if name.endswith('.py') and name != '__init__.py':
                path = os.path.join(root, name)
                yield os.path.relpath(path, REPO)[:-3].replace(os.sep, '.'), path


MODULES = dict(python_files())


def project_imports(path):
    """The repository's modules `path` imports, wherever in the file."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in MODULES)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update('%s.%s' % (node.module, alias.name) for alias in node.names
                         if '%s.%s' % (node.module, alias.name) in MODULES)
            if node.module in MODULES:
                found.add(node.module)
    return found


def layer_of(module):
    for index, (_, members) in enumerate(LAYERS):
        if module in members:
            return index
    return len(LAYERS)


def is_tool(module):
    if module.startswith(('bench.', 'tools.')):
        return True
    with open(MODULES[module], encoding='utf-8') as handle:
        return "if __name__ == '__main__':" in handle.read()


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in MODULES if layer_of(m) == len(LAYERS) and not is_tool(m))
    assert not unplaced, 'place these in LAYERS (and docs/DESIGN.md): %s' % unplaced
    tools_in_layers = sorted(m for m in MODULES if layer_of(m) < len(LAYERS) and is_tool(m))
    assert not tools_in_layers, 'a library module runs as a program: %s' % tools_in_layers


def test_imports_go_down_only():
    upward = []
    for module, path in MODULES.items():
        for imported in project_imports(path):
            if layer_of(imported) > layer_of(module):
                upward.append('%s -> %s' % (module, imported))
    assert not upward, 'imports of a higher layer: %s' % sorted(upward)


def test_no_import_cycle():
    graph = {module: project_imports(path) for module, path in MODULES.items()}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError('import cycle: %s' % ' -> '.join(
                path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)


def test_the_checks_see_an_upward_import_and_a_cycle(tmp_path):
    """The parser finds imports inside functions, under `from ser import`."""
    source = tmp_path / 'probe.py'
    source.write_text('def late():\n    from ser import service\n    import models\n')
    assert project_imports(str(source)) == {'ser.service', 'models'}
