"""check-impl reads implementations as people write them and checks every function (issue 13).

Each expectation here is also an ``# expected:`` line of the file in tests/impls_real, which the
independent oracle there confirms (test_impl_corpus.py); these tests pin the rows, the failure
rows, the diagnoses and the folder mode.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from click.testing import CliRunner

from bnderive.cli import main
from bnderive.usercode.check_impl import check_impl
from bnderive.usercode.folder import check_many, collect, exit_code, to_csv

REAL = Path(__file__).parent / "impls_real"
IMPLS = Path(__file__).parent / "impls"
ENV = {"COLUMNS": "200", "FORCE_COLOR": None, "TERM": "dumb", "NO_COLOR": "1"}


def rows(report) -> dict[tuple[str, str, str], str]:
    return {
        (v.form, s, v.quantity): v.status.value
        for v, s in zip(report.verdicts, report.sections, strict=True)
    }


def test_every_mode_and_function_of_a_file_gets_rows():
    report = check_impl(REAL / "cs231n_staged.py")
    found = rows(report)
    assert found[("batchnorm_forward", "per-activation eval", "out")] == "holds"
    assert found[("spatial_batchnorm_backward", "spatial training", "dx")] == "holds"
    assert found[("batchnorm_backward_alt", "per-activation training", "dgamma")] == "holds"
    assert report.exit_code == 0
    assert any(line.startswith("batchnorm_backward(dout, cache)") for line in report.calls)


def test_a_wrong_eval_forward_is_not_hidden_by_a_right_training_one():
    # issue 13: the test-mode forward was silently not checked, and the file "held"
    report = check_impl(REAL / "cs231n_running_eps.py")
    found = rows(report)
    assert found[("batchnorm_forward", "per-activation eval", "out")] == "refuted"
    assert found[("batchnorm_forward", "per-activation training", "running_var")] == "refuted"
    assert report.exit_code == 1


def test_a_function_that_fails_gets_its_own_row_and_the_others_are_checked():
    # the (D, D) dγ fails its own row; dx and dβ of the same backward are still compared
    report = check_impl(REAL / "cs231n_composite.py", training=True)
    failed = {(f.function, f.quantities) for f in report.failures}
    assert failed == {("batchnorm_backward", ("dgamma",)), ("batchnorm_backward_alt", ("dgamma",))}
    assert "shape (2, 2); expected (2,)" in report.failures[0].message
    found = rows(report)
    assert found[("batchnorm_backward", "per-activation training", "dbeta")] == "holds"
    assert found[("batchnorm_backward", "per-activation training", "dx")] == "refuted"


def test_a_file_with_an_unchecked_function_never_holds(tmp_path):
    text = (IMPLS / "cs231n_staged.py").read_text(encoding="utf-8")
    text = text.replace(
        "def batchnorm_backward_alt(dout, cache):\n", "def batchnorm_backward_alt(dout, cache):\n"
        "    raise NotImplementedError('todo')\n",
    )  # fmt: skip
    path = tmp_path / "half.py"
    path.write_text(text, encoding="utf-8")
    report = check_impl(path, training=True)
    assert [f.function for f in report.failures] == ["batchnorm_backward_alt"]
    assert "NotImplementedError: todo" in report.failures[0].message
    assert report.exit_code == 2
    result = CliRunner().invoke(main, ["check-impl", str(path), "--train"], env=ENV)
    assert result.exit_code == 2
    assert "! could not check" in result.output and "✓ holds:" not in result.output


def test_composite_mistakes_are_named_together():
    report = check_impl(REAL / "cs231n_composite.py", training=True)
    text = "\n".join(report.diagnoses[("batchnorm_backward", "dx")])
    assert "two at once: γ missing (gamma-missing) AND" in text
    assert "(stats-constant)" in text


def test_a_cache_unpacked_in_the_wrong_order_is_named():
    report = check_impl(REAL / "cache_order.py")
    first = report.diagnoses[("bn_backward", "dx")][0]
    assert first.startswith("the cache unpacked in the wrong order")
    assert "x_hat and x_mu" in first


def test_pairs_under_other_names_and_signatures_are_found():
    cases = {
        "kronecker_jacobian.py": ("bn_forward", "bn_backward", "per-activation training"),
        "loops_explicit.py": ("batch_norm_forward", "batch_norm_backward", "per-activation training"),
        "einsum_spatial.py": ("bn2d_forward", "bn2d_backward", "spatial training"),
        "unpacked_args_spatial.py": ("np_batch_norm_2d", "np_batch_norm_2d_backward", "spatial training"),
        "kwargs_cache.py": ("batchnorm_forward", "batchnorm_backward", "per-activation training"),
        "no_affine.py": ("batch_norm", "batch_norm_backward", "per-activation training"),
    }  # fmt: skip
    for name, (forward, backward, section) in cases.items():
        report = check_impl(REAL / name)
        found = rows(report)
        assert found[(forward, section, "out")] == "holds", name
        assert found[(backward, section, "dx")] == "holds", name
        assert report.exit_code == 0, (name, report.failures)


def test_bn_param_keys_are_read_from_the_forward():
    # ECBM style: bn_params['epsilon'], 'decay', 'moving_mean', 'moving_var', and a mode argument
    report = check_impl(REAL / "ecbm_stats_constant.py")
    found = rows(report)
    assert found[("bn_forward", "per-activation training", "out")] == "holds"
    assert found[("bn_forward", "per-activation training", "running_var")] == "holds"
    assert found[("bn_backward", "per-activation training", "dx")] == "refuted"
    assert "moving_mean" in report.calls[0]


# -- layer classes ------------------------------------------------------------------------------------
def test_a_layer_class_is_built_and_called_as_its_code_says():
    # the textbook layer class: constructor by parameter name, forward(x, is_training), backward
    # returning dx alone, dγ and dβ read back from self.dgamma and self.dbeta
    result = CliRunner().invoke(main, ["check-impl", str(REAL / "prml_style.py")], env=ENV)
    # the class takes no ε (the literal 1e-8 inside): it is checked at that ε, and holds
    assert result.exit_code == 0, result.output
    assert "called: Batch_norm_Layer(gamma=gamma, beta=beta, momentum=momentum)" in result.output
    assert "running statistics self.mov_mean, self.mov_var" in result.output
    assert ".forward(x, is_training=True in training) -> out" in result.output
    assert ".backward(dout) -> dx; dgamma, dbeta from self.dgamma, self.dbeta" in result.output
    assert (
        "note: Batch_norm_Layer takes no ε (its constructor has no eps parameter): it normalizes "
        "with ε = 1e-08, found exactly from its output" in result.output
    )


def test_parameters_in_dicts_and_gradients_accumulated_are_found_by_data_flow():
    # numpy-ml: γ is self.parameters['scaler'] (the factor of the output), dγ is added into
    # self.gradients['scaler'], a lazy initialisation is set aside; exact, and it holds
    report = check_impl(REAL / "numpyml_style.py")
    found = rows(report)
    assert set(found.values()) == {"holds"} and report.exit_code == 0
    assert found[("BatchNorm1D.backward", "per-activation training", "dgamma")] == "holds"
    assert "BatchNorm1D.forward" in report.functions
    assert any("self.parameters['scaler']" in line for line in report.calls)
    assert all(v.method == "exact" for v in report.verdicts)


def test_gradients_handed_to_an_optimizer_are_recorded():
    # ML-From-Scratch: backward_pass gives dγ to self.gamma_opt.update(self.gamma, dγ)
    report = check_impl(REAL / "mlfromscratch_style.py", training=True)
    found = rows(report)
    section = "per-activation training"
    assert found[("BatchNormalization.backward_pass", section, "dbeta")] == "holds"
    assert any("self.gamma_opt" in line for line in report.calls)
    # self.eps = 0.01 and no eps parameter: checked at ε = 0.01, exactly
    dgamma = next(v for v in report.verdicts if v.quantity == "dgamma")
    assert (dgamma.status.value, dgamma.method) == ("holds", "exact")
    assert any("normalizes with ε = 0.01" in n for n in report.notes)


def test_a_layer_that_ignores_the_momentum_it_is_given_is_named():
    report = check_impl(REAL / "pydl_momentum_ignored.py", training=True)
    row = next(v for v in report.verdicts if v.quantity == "running_mean")
    assert row.status.value == "refuted"
    assert "the momentum it is given is ignored (it uses its default 99/100)" in row.detail


def test_a_training_attribute_and_a_float32_layer():
    # PyTorch style: self.training switches the mode; running_var stores the unbiased variance
    report = check_impl(REAL / "pytorch_unbiased.py")
    assert report.exit_code == 0 and report.running == "pytorch"
    assert any("self.training = True in training" in line for line in report.calls)
    # a layer whose parameters are float32 gets its γ, β in float32, and float32's bound
    report = check_impl(REAL / "float32_layer.py", training=True)
    assert report.exit_code == 0
    assert "float32 agrees with the exact truth" in report.verdicts[0].detail


def test_a_method_written_at_module_level_is_called_with_its_object():
    report = check_impl(REAL / "module_level_method.py")
    found = rows(report)
    assert found[("batch_norm", "per-activation training", "out")] == "holds"
    assert found[("batch_norm", "per-activation training", "running_var")] == "holds"
    assert any(line.startswith("batch_norm(layer, x) -> out") for line in report.calls)


def test_class_chooses_one_layer_and_names_what_is_there(tmp_path):
    report = check_impl(REAL / "cupy_style_eps_mismatch.py", layer_class="BatchNorm2d")
    assert report.functions == ["BatchNorm2d.forward", "BatchNorm2d.backward"]
    result = CliRunner().invoke(
        main, ["check-impl", str(REAL / "prml_style.py"), "--class", "Nope"], env=ENV
    )
    assert result.exit_code == 2
    assert "no BatchNorm layer class 'Nope'" in result.output
    assert "classes found: Batch_norm_Layer" in result.output
    # a constructor parameter nobody can fill is said, not guessed
    text = (REAL / "prml_style.py").read_text(encoding="utf-8")
    odd = text.replace(
        "def __init__(self, gamma=1., beta=0., momentum=0.9):",
        "def __init__(self, optimizer, gamma=1., beta=0., momentum=0.9):",
    )
    path = tmp_path / "odd.py"
    path.write_text(odd, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-impl", str(path)], env=ENV)
    assert result.exit_code == 2
    assert "parameter 'optimizer' has no default" in result.output


def test_an_unused_missing_package_is_stood_in_for_and_a_used_one_is_said(tmp_path):
    # Deep Learning from Scratch: `from common.functions import *` outside the book's folders
    report = check_impl(REAL / "dlfs_class.py", training=True)
    assert any("common.functions, common.util" in n and "empty stand-ins" in n
               for n in report.notes)  # fmt: skip
    assert rows(report)[("BatchNormalization.backward", "per-activation training", "dbeta")] == (
        "holds"
    )
    text = (IMPLS / "cs231n_staged.py").read_text(encoding="utf-8")
    relative = "from .layer_utils import affine_forward\n" + text
    path = tmp_path / "rel.py"
    path.write_text(relative, encoding="utf-8")
    report = check_impl(path, training=True)
    assert report.exit_code == 0
    assert any(".layer_utils" in n for n in report.notes)
    used = "from .layer_utils import shift\n" + text.replace(
        "out = gamma * xhat + beta", "out = shift(gamma * xhat, beta)"
    )
    assert "shift(" in used
    path.write_text(used, encoding="utf-8")
    result = CliRunner().invoke(main, ["check-impl", str(path)], env=ENV)
    assert result.exit_code == 2
    assert "imports shift from .layer_utils, which cannot be found here" in result.output


def test_train_and_eval_together_are_a_usage_error():
    result = CliRunner().invoke(
        main, ["check-impl", str(IMPLS / "cs231n_staged.py"), "--train", "--eval"], env=ENV
    )
    assert result.exit_code == 2 and "--eval and --train" in result.output


# -- a folder of submissions ---------------------------------------------------------------------
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "class"
    (root / "alice").mkdir(parents=True)
    (root / "__pycache__").mkdir()
    for name, target in [
        ("cs231n_staged.py", "alice/layers.py"),
        ("cs231n_gamma_missing.py", "bob.py"),
        ("kratzert_fullwidth_space.py", "carol.py"),
        ("cs231n_spatial_direct.py", "dave.py"),
    ]:
        (root / target).write_text((REAL / name).read_text(encoding="utf-8"), encoding="utf-8")
    (root / "__pycache__" / "junk.py").write_text("raise SystemExit", encoding="utf-8")
    return root


def test_folder_mode_checks_every_file_in_its_own_child(tmp_path):
    root = folder(tmp_path)
    files = collect([root])
    assert [f.relative_to(root).as_posix() for f in files] == [
        "alice/layers.py", "bob.py", "carol.py", "dave.py"
    ]  # fmt: skip
    results = check_many(files, jobs=2)
    status = {Path(r.path).name: r.status for r in results}
    assert status == {
        "layers.py": "holds",
        "bob.py": "refuted",
        "carol.py": "could not check",
        "dave.py": "holds",
    }
    assert exit_code(results) == 1
    table = list(csv.DictReader(io.StringIO(to_csv(results))))
    bob = next(row for row in table if row["file"].endswith("bob.py"))
    assert bob["refuted"] == "1" and "γ missing (gamma-missing)" in bob["mistakes"]
    carol = next(row for row in table if row["file"].endswith("carol.py"))
    assert "syntax error" in carol["error"]


def test_folder_mode_on_the_command_line(tmp_path):
    root = folder(tmp_path)
    out = tmp_path / "grades.csv"
    result = CliRunner().invoke(
        main, ["check-impl", str(root), "--jobs", "2", "--csv", str(out)], env=ENV
    )
    assert result.exit_code == 1, result.output
    assert "4 files: 2 hold, 1 refuted, 0 undecided, 1 could not be checked" in result.output
    assert len(out.read_text(encoding="utf-8").splitlines()) == 5
    as_json = CliRunner().invoke(main, ["check-impl", str(root), "--json"], env=ENV)
    payload = json.loads(as_json.output)
    assert payload["exit_code"] == 1 and len(payload["files"]) == 4
    assert {f["status"] for f in payload["files"]} == {"holds", "refuted", "could not check"}


# -- the file's own ε -------------------------------------------------------------------------------
def test_a_hard_coded_eps_is_found_exactly_and_the_check_repeated_at_it():
    report = check_impl(REAL / "cs231n_hardcoded_eps.py", training=True)
    out = report.diagnoses[("batchnorm_forward", "out")][0]
    assert out.startswith("ε is fixed at 1e-08 inside the code (the eps it is given is never used)")
    assert "the forward is BatchNorm (exact at 4×1, 6×1, 4×2" in out
    dx = report.diagnoses[("batchnorm_backward", "dx")][0]
    assert dx.startswith(
        "your dx is the gradient of your own forward: it holds at ε = 1e-08 (exact)"
    )
    # the rows themselves stay refuted: BatchNorm at the ε passed is what is checked
    assert {v.status.value for v in report.verdicts if v.quantity in ("out", "dx")} == {"refuted"}


def test_a_forward_without_eps_and_a_snippet_without_import_numpy():
    report = check_impl(REAL / "bn_std_no_eps.py", training=True)
    assert any("uses np without importing it" in n for n in report.notes)
    out = report.diagnoses[("batchnorm_forward", "out")][0]
    assert out.startswith("σ is taken without ε (np.std, or the eps it is given is never used)")
    dx = report.diagnoses[("batchnorm_backward", "dx")][0]
    assert dx.startswith("your dx is the gradient of your own forward: it holds at ε = 0")


def test_a_backward_that_disagrees_with_its_own_fixed_eps_forward_is_told_so(tmp_path):
    text = (REAL / "cs231n_hardcoded_eps.py").read_text(encoding="utf-8")
    wrong = text.replace("dx_norm = dout * gamma", "dx_norm = dout")
    assert wrong != text
    path = tmp_path / "fixed_eps_nogamma.py"
    path.write_text(wrong, encoding="utf-8")
    report = check_impl(path, training=True)
    dx = report.diagnoses[("batchnorm_backward", "dx")][0]
    assert dx.startswith("your dx is not the gradient of your own forward either")


# -- running-statistics slips ------------------------------------------------------------------------
def running_detail(name: str, quantity: str) -> str:
    report = check_impl(REAL / name, training=True)
    row = next(v for v in report.verdicts if v.quantity == quantity)
    assert row.status.value == "refuted"
    return row.detail


def test_running_statistics_slips_are_named():
    assert "running_var includes ε (it averages σ² + ε)" in running_detail(
        "cs231n_running_eps.py", "running_var"
    )
    assert "the momentum inverted (it weighs the new batch)" in running_detail(
        "cs231n_momentum_inverted.py", "running_mean"
    )
    assert "running_var averages the standard deviation √σ² (np.std)" in running_detail(
        "cs231n_beta_inside.py", "running_var"
    )
