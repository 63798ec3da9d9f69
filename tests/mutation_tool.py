"""The Python half of tests/mutation.sh (mutation testing with mutmut 3): which tests cover each module, the
per-module mutmut config, a reproducible sample of mutants, and the result table with the survivors.

Run inside the scratch copy of the tree that tests/mutation.sh makes (mutmut writes mutants/ into the
current directory, and the copy keeps that out of the checkout):

    python tests/mutation_tool.py config MODULE        rewrite ./pyproject.toml's [tool.mutmut] for MODULE, and
                                                       mark MODULE's NOT_MUTATED functions in ./ppcls
    python tests/mutation_tool.py sample N SEED OUT    generate the mutants; write N of their names to OUT (all when
                                                       N >= their count)
    python tests/mutation_tool.py report MODULE OUT    print the module's table row and survivors, append a row to OUT

MODULE is a path under ppcls/ ("loss/celoss.py"); "arch/convert/*" style globs name several files at once.
"""
import ast
import fnmatch
import json
import os
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Which tests exercise each module. mutmut runs this selection once to learn which test calls which function,
# then runs, for each mutant, only the tests that called the mutated function, so a selection only has to
# contain the covering tests, and every extra (slow) test here costs its time once per module, not per mutant.
# tests/test_mutation_kills_<stem>.py (tests written to kill a module's survivors) joins the selection of the
# module whose file name is <stem>; a module missing here gets the tests that mention its import path. Tests
# marked slow are always left out.
DISTILLATION_UNIT_TESTS = ["tests/test_distillation.py", "-k",
                           "not (frozen_teacher or same_mixed_batch or saved_alone or visualdl or eval_reports"
                           " or export_is or eval_and_export or infer_predicts or resume_is or cli_config)"]
# a test that runs tools/seg/train.py in a subprocess: it fails under mutmut's stats run, and a subprocess's
# calls are not counted anyway
SEG_SUBPROCESS = "--deselect=tests/test_paddleseg.py::test_bad_data_stops_the_command_before_training"
TESTS = {
    "loss/celoss.py": ["tests/test_loss_lr.py", "-k", "celoss or combined_loss"],
    "metric/topk.py": ["tests/test_loss_lr.py", "-k", "topk"],
    "serving/inputs.py": ["tests/test_properties.py", "-k", "base64 or request_body or image or decode"],
    "data/preprocess/batch_ops.py": ["tests/test_data.py"],
    "utils/safe_pickle.py": ["tests/test_properties.py", "-k", "unpickler"],
    "utils/weight_files.py": ["tests/test_weight_formats.py"],
    "utils/config.py": ["tests/test_config.py"],
    "engine/checkpoint.py": ["tests/test_resume_kill.py", "tests/test_faults.py", "tests/test_weights.py"],
    "arch/weights.py": ["tests/test_weights.py"],
    # a glob has no file stem to find its killer tests by: they are named here
    "arch/convert/*": ["tests/test_weight_formats.py", "tests/test_weights.py",
                       "tests/test_mutation_kills_convert.py"],
    "optimizer/__init__.py": ["tests/test_loss_lr.py", "tests/test_config.py", "tests/test_mutation_kills_lr.py",
                              "tests/test_mutation_kills_optimizer.py"],
    # in-process tests only: calls made in the tools and servers the other tests start are invisible to mutmut's
    # test-to-function map (it records the calls of its own process), so those tests would only cost time
    "inference/pipeline.py": ["tests/test_serving.py::test_decode_rgb_truncation_and_pixel_limit",
                              "tests/test_untested_paths.py::test_preprocess_without_tochw_gives_the_same_input",
                              "tests/test_properties.py", "-k", "image or decode or preprocess"],
    "inference/export.py": ["tests/test_export_deploy.py::test_export_dense_model_returns_finest",
                            "tests/test_export_deploy.py::test_export_records_eval_transforms_without_decoding",
                            "tests/test_export_deploy.py::test_export_refuses_what_cannot_deploy",
                            "tests/test_export_deploy.py::test_a_recorded_empty_preprocessing_is_named",
                            "tests/test_paddlex.py", "-k", "portable or export"],
    "metric/seg_metrics.py": ["tests/test_seg.py"],
    # the unit tests of tests/test_distillation.py; its tests of a training run (a module fixture that trains
    # for ~10 s, run again for each mutant) and of the CLI are left out
    "arch/distillation.py": DISTILLATION_UNIT_TESTS,
    "loss/distillationloss.py": DISTILLATION_UNIT_TESTS,
    "metric/distillation.py": DISTILLATION_UNIT_TESTS,
    "inference/postprocess.py": DISTILLATION_UNIT_TESTS,
    # PaddleDetection / PaddleSeg adapters (their training tests are slow, so left out: unit tests only)
    "det/coco_check.py": ["tests/test_det_data.py", "-k", "check"],
    "det/config.py": ["tests/test_det.py"],
    "det/checkpoint.py": ["tests/test_det.py"],
    "det/backbones.py": ["tests/test_det.py"],
    "det/compat.py": ["tests/test_det.py"],
    # the commands' argument handling and errors (the tests that run them on data train: slow, left out)
    "det/cli.py": ["tests/test_det.py", "-k", "cli"],
    "det/export.py": ["tests/test_mutation_kills_det_export.py"],
    "seg/data_check.py": ["tests/test_paddleseg.py", SEG_SUBPROCESS],
    "seg/backbones.py": ["tests/test_paddleseg.py", SEG_SUBPROCESS],
    "seg/models.py": ["tests/test_paddleseg.py", SEG_SUBPROCESS],
    "seg/deploy.py": ["tests/test_paddleseg.py", SEG_SUBPROCESS],
    "seg/compat.py": ["tests/test_paddleseg_compat.py"],
    "seg/cli.py": ["tests/test_paddleseg.py", "-k", "unknown_component", SEG_SUBPROCESS],
}
# Functions left unmutated, with why. mutmut 3 replaces every mutated function with a trampoline taking
# (*args, **kwargs); paddle.jit.to_static reads the argument names of a Layer's forward from its signature
# (inspect.getfullargspec, which does not follow __wrapped__) and refuses one that takes none, so every
# export, and every test that exports, would fail whichever mutant is active: all of the module's mutants
# would count as killed. The tool marks these functions "# pragma: no mutate block" in the scratch copy.
NOT_MUTATED = {
    "inference/export.py": {"ExportModel.forward": "compiled by paddle.jit.to_static (see above)"},
    "seg/deploy.py": {"_WithOutputOp.forward": "compiled by paddle.jit.to_static in export_model"},
}
# equivalent mutants: "<mutant name>  # why it cannot be told apart from the original" per line
EQUIVALENT_FILE = HERE / "mutation_equivalent.txt"

# exit codes of a mutant's test run, as mutmut records them (mutmut.stats.status_by_exit_code)
KILLED_CODES = {1, 3, -11}
SURVIVED_CODES = {0}
TIMEOUT_CODES = {36, -24, 24, 152, 255, -9}
NO_TEST_CODES = {5, 33}


def module_files(module):
    """The ppcls/ source files a MODULE argument names (a glob names several); a clear error when none."""
    hits = sorted(p.as_posix() for p in Path("ppcls").rglob("*.py")
                  if fnmatch.fnmatch(p.relative_to("ppcls").as_posix(), module))
    if not hits:
        sys.exit(f"mutation: module {module!r} names no file under ppcls/ (e.g. loss/celoss.py, arch/convert/*)")
    return hits


def selection(module):
    """The pytest arguments that select the tests covering MODULE (see TESTS)."""
    env = os.environ.get("MUTATION_TESTS")
    if env:
        args = env.split()
    elif module in TESTS:
        args = list(TESTS[module])
    else:
        import_path = "ppcls." + module.replace("/", ".").removesuffix(".py").rstrip(".*")
        args = sorted({f"tests/{p.name}" for p in Path("tests").glob("test_*.py")
                       if import_path in p.read_text(encoding="utf-8")})
        if not args:
            sys.exit(f"mutation: no test under tests/ mentions {import_path}; set MUTATION_TESTS='tests/test_x.py ...'")
    stem = Path(module).stem.replace("*", "")
    kills = sorted(p.as_posix() for p in Path("tests").glob("test_mutation_kills_*.py"))
    mine = [k for k in kills if stem and stem in Path(k).stem]
    if mine and "-k" in args:  # -k filters every file, the killer files too: let their tests through by module name
        at = args.index("-k") + 1
        args[at] = f"({args[at]}) or mutation_kills"
    return args + mine + ["-m", "not slow"]


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of these characters is a TOML basic string
    return "[" + ", ".join(toml_value(v) for v in value) + "]"


def mark_not_mutated(module):
    """Append "# pragma: no mutate block" to the header line of each function NOT_MUTATED names for MODULE
    (./ppcls, the scratch copy's; a trailing comment moves no line), so mutmut leaves it as it is."""
    for qualname, why in NOT_MUTATED.get(module, {}).items():
        for path in module_files(module):
            lines = Path(path).read_text(encoding="utf-8").splitlines(keepends=True)
            scope, node = ast.parse("".join(lines)).body, None
            for part in qualname.split("."):
                node = next((n for n in scope if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                             and n.name == part), None)
                if node is None:
                    break
                scope = node.body
            if node is None:
                continue
            # the header ends on the last line before the body whose code ends with the colon
            header = next((i for i in range(node.body[0].lineno - 2, node.lineno - 2, -1)
                           if lines[i].split("#")[0].rstrip().endswith(":")), None)
            if header is None:
                sys.exit(f"mutation: {path}:{node.lineno}: cannot find the header of {qualname} to leave it unmutated")
            lines[header] = lines[header].rstrip("\n") + "  # pragma: no mutate block\n"
            Path(path).write_text("".join(lines), encoding="utf-8")
            print(f"mutation: {path}:{node.lineno}: {qualname} is not mutated: {why}")
            break
        else:
            sys.exit(f"mutation: NOT_MUTATED names {qualname}, which {module} does not define: update tests/mutation_tool.py")


def write_config(module):
    """Rewrite the [tool.mutmut] section of ./pyproject.toml (the scratch copy's) for MODULE: the project's
    settings from that section plus the files to mutate and the tests that cover them."""
    import tomllib

    files = module_files(module)
    text = Path("pyproject.toml").read_text(encoding="utf-8")
    settings = tomllib.loads(text).get("tool", {}).get("mutmut", {})
    settings.update(
        only_mutate=files,
        pytest_add_cli_args_test_selection=selection(module),
        # a mutant whose tests take this many times their clean CPU time (+ 1 s) counts as a timeout
        timeout_multiplier=float(os.environ.get("MUTATION_TIMEOUT_FACTOR", "5")),
    )
    text = re.sub(r"(?ms)^\[tool\.mutmut\]\n.*?(?=^\[|\Z)", "", text).rstrip("\n") + "\n\n"
    section = "\n".join(["[tool.mutmut]"] + [f"{k} = {toml_value(v)}" for k, v in settings.items()])
    Path("pyproject.toml").write_text(text + section + "\n", encoding="utf-8")
    print(f"mutation: {module}: {' '.join(files)}; tests: {' '.join(selection(module))}")
    mark_not_mutated(module)


def meta_files():
    return sorted(Path("mutants").rglob("*.py.meta"))


def sample(count, seed, out_path):
    """Generate the mutants (mutmut's own generator) and write a seeded sample of COUNT of their names to
    OUT_PATH (a file: mutmut's generator prints progress on stdout)."""
    from mutmut.__main__ import copy_also_copy_files, copy_src_dir, create_mutants
    from mutmut.mutation.trampoline import set_mutant_under_test

    set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    copy_src_dir()
    copy_also_copy_files()
    create_mutants(1)
    names = sorted(n for meta in meta_files()
                   for n in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    picked = names if count >= len(names) else sorted(random.Random(seed).sample(names, count))
    Path(out_path).write_text("".join(n + "\n" for n in picked), encoding="utf-8")
    print(f"mutation: {len(names)} mutants, running {len(picked)} (seed {seed})")


def load_equivalent():
    out = {}
    if EQUIVALENT_FILE.exists():
        for line in EQUIVALENT_FILE.read_text(encoding="utf-8").splitlines():
            name, _, why = line.partition("#")
            if name.strip():
                out[name.strip()] = why.strip()
    return out


def function_line(source_path, mutant_name):
    """The line of the def the mutant was made from: mutant names spell it x_func or xǁClassǁmethod."""
    func = mutant_name.rpartition(".")[2].rsplit("__mutmut_", 1)[0]
    parts = func[1:].split("ǁ")[1:] if func.startswith("xǁ") else [func[2:]]
    tree = ast.parse(Path(source_path).read_text(encoding="utf-8"))
    scope = tree.body
    for part in parts:
        node = next((n for n in scope if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                     and n.name == part), None)
        if node is None:
            return 1
        scope = node.body
    return node.lineno


def describe(source_path, mutant_name):
    """file:line and the change ("old -> new") of one mutant, from mutmut's diff of the function."""
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    diff = get_diff_for_mutant(mutant_name, path=source_path).splitlines()
    old = [d[1:].strip() for d in diff[2:] if d.startswith("-")]
    new = [d[1:].strip() for d in diff[2:] if d.startswith("+")]
    src = Path(source_path).read_text(encoding="utf-8").splitlines()
    # the hunk counts lines from the function's def; the same text can occur twice in a function, so take
    # the occurrence of the changed line nearest to where the hunk puts it
    estimate = function_line(source_path, mutant_name)
    for i, d in enumerate(diff):
        if d.startswith("@@"):
            offset = int(re.match(r"@@ -(\d+)", d).group(1)) - 1
            body = diff[i + 1:]
            first = next((j for j, b in enumerate(body) if b.startswith("-")), 0)
            estimate += offset + len([b for b in body[:first] if not b.startswith("+")])
            break
    line = estimate
    if old:
        hits = [i + 1 for i, text in enumerate(src) if text.strip() == old[0]]
        line = min(hits, key=lambda h: abs(h - estimate), default=estimate)
    return source_path, line, f"{' / '.join(old)}  ->  {' / '.join(new)}"


def report(module, out_path):
    """Count the mutants of MODULE's files by result, print the table row and the survivors."""
    equivalent = load_equivalent()
    files = set(module_files(module))
    counts = dict(mutants=0, killed=0, survived=0, timeout=0, no_tests=0, unchecked=0, equivalent=0)
    survivors, stale = [], []
    for meta in meta_files():
        source = meta.relative_to("mutants").as_posix().removesuffix(".meta")
        if source not in files:
            continue
        for name, code in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items():
            if code is None:  # not in the sample, or the time budget ran out first
                continue
            counts["mutants"] += 1
            if code in KILLED_CODES:
                counts["killed"] += 1
            elif code in TIMEOUT_CODES:
                counts["timeout"] += 1
            elif code in NO_TEST_CODES:
                counts["no_tests"] += 1
                survivors.append((source, name, "no test covers it"))
            elif code in SURVIVED_CODES:
                if name in equivalent:
                    counts["equivalent"] += 1
                else:
                    counts["survived"] += 1
                    survivors.append((source, name, "survived"))
            else:
                counts["unchecked"] += 1
        stale += [n for n, c in json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"].items()
                  if n in equivalent and c not in SURVIVED_CODES and c is not None]
    # a timeout is a detection (the mutant changed behaviour); the score leaves the equivalent mutants out
    judged = counts["mutants"] - counts["equivalent"] - counts["unchecked"]
    score = 100.0 * (counts["killed"] + counts["timeout"]) / judged if judged else float("nan")
    row = (f"| {module} | {counts['mutants']} | {counts['killed']} | {counts['survived']} | {counts['timeout']} | "
           f"{counts['no_tests']} | {counts['equivalent']} | {score:.1f}% |")
    print("| module | mutants | killed | survived | timeout | no tests | equivalent | score |")
    print("|---|---|---|---|---|---|---|---|")
    print(row)
    for source, line, change, name, why in sorted((*describe(s, n), n, w) for s, n, w in survivors):
        print(f"  {why}: {source}:{line}  {change}  [{name}]")
    for name in stale:
        print(f"  note: {name} is listed in {EQUIVALENT_FILE.name} but was killed: remove the entry")
    with open(out_path, "a", encoding="utf-8") as f:
        f.write(row + "\n")


def main(argv):
    if len(argv) >= 2 and argv[0] == "config":
        write_config(argv[1])
    elif len(argv) == 4 and argv[0] == "sample":
        sample(int(argv[1]), int(argv[2]), argv[3])
    elif len(argv) == 3 and argv[0] == "report":
        report(argv[1], argv[2])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
