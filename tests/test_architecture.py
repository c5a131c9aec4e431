"""The package imports one way: no module imports, even from inside a function, one that imports it back."""

import ast
import os
import pathlib
import subprocess
import sys

import chordkeras

REPOSITORY = pathlib.Path(__file__).resolve().parents[1]


def module_imports(package_dir: pathlib.Path, package: str) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from the source, anywhere in each file.

    `from a import b` counts as importing `a.b` when that is a module, else `a`.
    """
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                           for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_function_local_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text("def f():\n    from pkg import high\n")
    (package / "high.py").write_text("from pkg.low import f\n")
    (package / "other.py").write_text("import pkg.low\n")
    graph = module_imports(package, "pkg")
    assert graph == {"pkg": set(), "pkg.high": {"pkg.low"}, "pkg.low": {"pkg.high"}, "pkg.other": {"pkg.low"}}
    assert find_cycle(graph) == ["pkg.high", "pkg.low", "pkg.high"]
    (package / "low.py").write_text("def f():\n    pass\n")
    assert find_cycle(module_imports(package, "pkg")) is None


def test_no_import_cycle_in_the_package():
    package_dir = pathlib.Path(chordkeras.__file__).parent
    graph = module_imports(package_dir, "chordkeras")
    assert "chordkeras.inference" in graph and graph["chordkeras.predict"] >= {"chordkeras.inference"}
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


# Thin command-line modules: parse arguments and call library code; nothing imports them.
CLI_MODULES = {"chordkeras.fit", "chordkeras.prepare", "chordkeras.predict", "chordkeras.evaluate",
               "chordkeras.synth.cli", "chordkeras.synth.__main__"}


def test_no_library_module_imports_a_command_line_module():
    graph = module_imports(pathlib.Path(chordkeras.__file__).parent, "chordkeras")
    assert CLI_MODULES <= set(graph)
    offenders = {name: sorted(edges & CLI_MODULES) for name, edges in graph.items()
                 if name not in CLI_MODULES and edges & CLI_MODULES}
    assert offenders == {}


def test_scoring_annotations_loads_no_tensorflow():
    # `python -m chordkeras.evaluate REFERENCES ESTIMATES` and the scoring library stay light.
    code = ("import sys, chordkeras.evaluate, chordkeras.scoring, chordkeras.annotations; "
            "print(sorted(m for m in ('tensorflow', 'keras', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_the_tuning_tests_are_collected_from_any_folder(tmp_path):
    # `tuning` is not installed. Started from another folder, `python -m pytest` does not have the repository
    # on sys.path, no more than the `pytest` script has from anywhere: only pytest.ini can put it there.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    tests = REPOSITORY / "tests" / "test_tuning.py"
    result = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                             str(tests)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    collected = {line.split("::")[1].split("[")[0] for line in result.stdout.splitlines() if "::" in line}
    defined = {node.name for node in ast.parse(tests.read_text(encoding="utf-8")).body
               if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}
    assert collected == defined and len(defined) >= 1
