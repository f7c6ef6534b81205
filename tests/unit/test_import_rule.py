"""The dependency rule (DESIGN §2): the core imports only itself and the stdlib subset MicroPython has, and never
calls eval/exec/compile; device tables import nothing."""

import ast
import pathlib

APP = pathlib.Path(__file__).resolve().parents[2] / "app" / "chargemanager"
CORE_ALLOWED_STDLIB = {"json", "math", "struct", "re", "collections"}
FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__", "open"}


def imported_modules(path):
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                yield node.lineno, "." * node.level + (node.module or "")
            else:
                yield node.lineno, node.module


def test_core_imports_only_core_and_allowed_stdlib():
    problems = []
    for path in sorted((APP / "core").rglob("*.py")):
        for lineno, module in imported_modules(path):
            top = module.split(".")[0]
            if module.startswith("chargemanager.core") or top in CORE_ALLOWED_STDLIB:
                continue
            problems.append("%s:%d imports %s" % (path.relative_to(APP), lineno, module))
    assert not problems, "core must import only core and %s:\n%s" % (sorted(CORE_ALLOWED_STDLIB), "\n".join(problems))


def test_core_never_calls_eval_exec_or_open():
    problems = []
    for path in sorted((APP / "core").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FORBIDDEN_CALLS:
                problems.append("%s:%d calls %s" % (path.relative_to(APP), node.lineno, node.func.id))
    assert not problems, "\n".join(problems)


def test_device_tables_import_nothing():
    problems = []
    devices = APP / "devices"
    for path in sorted(devices.rglob("*.py")):
        for lineno, module in imported_modules(path):
            if not module.startswith("chargemanager.devices") and not module.startswith("."):
                problems.append("%s:%d imports %s" % (path.relative_to(APP), lineno, module))
    assert not problems, "\n".join(problems)
