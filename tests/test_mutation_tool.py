"""tests/mutation_tool.py, the Python half of tests/mutation.sh, without mutmut: which files a module argument
names, the per-module test selection and config, and the result table from mutmut's result files."""
import json
import tomllib

import pytest

import mutation_tool


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A scratch tree like the one tests/mutation.sh makes: ppcls/ with a few modules, tests/, pyproject.toml."""
    for path in ("ppcls/loss/celoss.py", "ppcls/arch/convert/core.py", "ppcls/arch/convert/dla.py",
                 "ppcls/extra/thing.py", "tests/test_loss_lr.py", "tests/test_mutation_kills_celoss.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("")
    (tmp_path / "tests/test_other.py").write_text("import ppcls.extra.thing\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.mutmut]\nsource_paths = ["ppcls"]\n'
                                             'use_git_change_detection = false\n\n[tool.other]\nkeep = 1\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUTATION_TESTS", raising=False)
    monkeypatch.setattr(mutation_tool, "EQUIVALENT_FILE", tmp_path / "equivalent.txt")
    return tmp_path


def test_module_arguments_name_files_and_unknown_ones_are_an_error(tree):
    assert mutation_tool.module_files("loss/celoss.py") == ["ppcls/loss/celoss.py"]
    assert mutation_tool.module_files("arch/convert/*") == ["ppcls/arch/convert/core.py", "ppcls/arch/convert/dla.py"]
    with pytest.raises(SystemExit, match="module 'loss/nope.py' names no file under ppcls/"):
        mutation_tool.module_files("loss/nope.py")


def test_selection_adds_the_modules_killer_tests_through_its_k_expression(tree):
    args = mutation_tool.selection("loss/celoss.py")
    assert args == ["tests/test_loss_lr.py", "-k", "(celoss or combined_loss) or mutation_kills",
                    "tests/test_mutation_kills_celoss.py", "-m", "not slow"]
    # a module with no entry: the tests that import it
    assert mutation_tool.selection("extra/thing.py") == ["tests/test_other.py", "-m", "not slow"]


def test_config_keeps_the_projects_settings_and_the_other_sections(tree):
    mutation_tool.write_config("loss/celoss.py")
    doc = tomllib.loads((tree / "pyproject.toml").read_text())
    assert doc["tool"]["other"] == {"keep": 1} and doc["project"]["name"] == "x"
    mm = doc["tool"]["mutmut"]
    assert mm["source_paths"] == ["ppcls"] and mm["use_git_change_detection"] is False
    assert mm["only_mutate"] == ["ppcls/loss/celoss.py"]
    assert mm["pytest_add_cli_args_test_selection"][:1] == ["tests/test_loss_lr.py"]
    mutation_tool.write_config("arch/convert/*")  # a second run replaces the section, not adds one
    mm = tomllib.loads((tree / "pyproject.toml").read_text())["tool"]["mutmut"]
    assert mm["only_mutate"] == ["ppcls/arch/convert/core.py", "ppcls/arch/convert/dla.py"]


def test_report_counts_each_result_and_leaves_equivalent_and_unchecked_mutants_out(tree, capsys):
    name = "ppcls.loss.celoss.xǁCELossǁforward__mutmut_{}".format
    codes = {name(1): 1, name(2): 1, name(3): 3, name(4): 36, name(5): 0, name(6): None, name(7): -24}
    (tree / "mutants/ppcls/loss").mkdir(parents=True)
    (tree / "mutants/ppcls/loss/celoss.py.meta").write_text(json.dumps({"exit_code_by_key": codes}))
    (tree / "equivalent.txt").write_text(f"{name(5)}  # why\n")
    mutation_tool.report("loss/celoss.py", str(tree / "table.md"))
    row = "| loss/celoss.py | 6 | 3 | 0 | 2 | 0 | 1 | 100.0% |"
    assert row in capsys.readouterr().out
    assert (tree / "table.md").read_text() == row + "\n"


def test_functions_paddle_compiles_are_left_unmutated_and_keep_their_lines(tree, monkeypatch, capsys):
    """A Layer's forward that paddle.jit.to_static compiles cannot be a mutmut trampoline: the tool marks it
    "# pragma: no mutate block" in the scratch copy (its lines stay where they were) and mutmut's generator
    then makes no mutant of it, while the module's other functions are still mutated."""
    source = ("class ExportModel:\n"
              "    def forward(self, x,\n"
              "                y=1):  # the output a deployment needs\n"
              "        return x + y\n\n"
              "    def other(self, x):\n"
              "        return x + 1\n")
    (tree / "ppcls/extra/thing.py").write_text(source)
    monkeypatch.setitem(mutation_tool.NOT_MUTATED, "extra/thing.py", {"ExportModel.forward": "to_static"})
    mutation_tool.write_config("extra/thing.py")
    marked = (tree / "ppcls/extra/thing.py").read_text()
    assert marked.splitlines()[2] == "                y=1):  # the output a deployment needs  # pragma: no mutate block"
    assert [line for i, line in enumerate(marked.splitlines()) if i != 2] == \
        [line for i, line in enumerate(source.splitlines()) if i != 2]
    assert "thing.py:2: ExportModel.forward is not mutated: to_static" in capsys.readouterr().out
    mutmut_files = pytest.importorskip("mutmut.mutation.file_mutation")
    from mutmut.configuration import reset_config
    reset_config()
    try:
        names = mutmut_files.mutate_file_contents("ppcls/extra/thing.py", marked).mutant_names
    finally:
        reset_config()
    assert names and all("ǁother__mutmut_" in n for n in names), names
    monkeypatch.setitem(mutation_tool.NOT_MUTATED, "extra/thing.py", {"ExportModel.gone": "renamed"})
    with pytest.raises(SystemExit, match="NOT_MUTATED names ExportModel.gone, which extra/thing.py does not define"):
        mutation_tool.write_config("extra/thing.py")
