"""One definition per flag: a flag two programs share is defined once, in
helper.SHARED_FLAGS (or, for the benchmarks' own, bench/options.BENCH_FLAGS),
with one default and one help text; every other flag belongs to one program.
Read from the source of every program, and checked on what absl builds."""

import ast
import os
import subprocess
import sys

import pytest

import helper
from bench import options

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_TABLES = {'helper.SHARED_FLAGS': helper.SHARED_FLAGS,
                 'bench/options.BENCH_FLAGS': options.BENCH_FLAGS}
DEFINERS = {'define_flags': 'helper.SHARED_FLAGS', 'define': 'bench/options.BENCH_FLAGS'}


def python_sources():
    for root, directories, files in os.walk(REPO):
        directories[:] = [d for d in directories
                          if not d.startswith('.') and d not in ('tests', '__pycache__')]
        for name in files:
            if name.endswith('.py'):
                path = os.path.join(root, name)
                yield os.path.relpath(path, REPO), path


def string_arguments(call):
    return [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def flag_uses(path):
    """(names defined with flags.DEFINE_*, names taken from a shared table)."""
    defined, shared = [], []
    for node in ast.walk(ast.parse(open(path, encoding='utf-8').read())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        name = node.func.attr
        if name.startswith('DEFINE_') and string_arguments(node):
            defined.append(string_arguments(node)[0])
        elif name in DEFINERS and isinstance(node.func.value, ast.Name) \
                and node.func.value.id in ('helper', 'options'):
            shared.extend((DEFINERS[name], flag) for flag in string_arguments(node))
    return defined, shared


USES = {relative: flag_uses(path) for relative, path in python_sources()}
PROGRAMS = sorted(relative for relative, (defined, shared) in USES.items() if defined or shared)


def test_the_programs_are_found():
    for program in ('train.py', 'eval.py', 'serve.py', 'ablation.py', 'bench/run_all.py',
                    'bench/bench_train.py'):
        assert program in PROGRAMS


def test_no_flag_is_defined_twice():
    where = {}
    for relative, (defined, _) in USES.items():
        for name in defined:
            where.setdefault(name, []).append(relative)
    for table, flags in SHARED_TABLES.items():
        for name in flags:
            where.setdefault(name, []).append(table)
    twice = {name: places for name, places in where.items() if len(places) > 1}
    assert not twice, 'flags defined in more than one place: %s' % twice


def test_every_shared_flag_is_shared_and_exists():
    users = {}
    for relative, (_, shared) in USES.items():
        for table, name in shared:
            assert name in SHARED_TABLES[table], '%s asks for %s, not in %s' % (
                relative, name, table)
            users.setdefault(name, set()).add(relative)
    for table, flags in SHARED_TABLES.items():
        for name in flags:
            assert len(users.get(name, ())) >= 2, (
                '%s holds --%s, which %s alone uses: define it there'
                % (table, name, sorted(users.get(name, ())) or 'no program'))


@pytest.mark.parametrize('table', sorted(SHARED_TABLES))
def test_a_shared_definition_is_well_formed(table):
    for name, (kind, default, text, keywords) in SHARED_TABLES[table].items():
        assert kind in ('string', 'integer', 'float', 'boolean', 'enum', 'list'), name
        assert text.endswith('.'), name
        if kind == 'enum':
            assert default is None or default in keywords['enum_values'], name


def test_a_program_gets_the_one_default_and_help():
    """What absl builds from the table: train.py's and ablation.py's
    --batch_size are the same flag, with ser.defaults' value."""
    script = (
        "import sys, runpy\n"
        "sys.argv = [sys.argv[1], '--helpxml']\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    texts = {}
    for program in ('train.py', 'ablation.py', 'bench/bench_train.py'):
        result = subprocess.run([sys.executable, '-c', script, program], cwd=REPO,
                                capture_output=True, text=True, timeout=120)
        assert '<name>batch_size</name>' in result.stdout, result.stderr[-2000:]
        start = result.stdout.index('<name>batch_size</name>')
        texts[program] = result.stdout[start:result.stdout.index('</flag>', start)]
    assert len(set(texts.values())) == 1, texts
    assert '<default>%d</default>' % helper.SHARED_FLAGS['batch_size'][1] in texts['train.py']


def test_train_help_does_not_load_tensorflow():
    script = (
        "import sys, runpy\n"
        "sys.argv = ['train.py', '--help']\n"
        "try:\n"
        "    runpy.run_path('train.py', run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TENSORFLOW' if 'tensorflow' in sys.modules else 'NO TENSORFLOW')\n")
    result = subprocess.run([sys.executable, '-c', script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert '--batch_size' in result.stdout and '--precision' in result.stdout
    assert result.stdout.strip().endswith('NO TENSORFLOW'), result.stdout[-500:]
