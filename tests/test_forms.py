"""Every shipped derivation holds; form files that cannot be used fail with a helpful FormError.

The built-in catalogue is a fixture (``conftest.builtin_form``): a new file in
derivations/ is checked here without touching this module, at the sizes of its family
(``norm``: BatchNorm's batches, or samples of LayerNorm, InstanceNorm, GroupNorm, RMSNorm).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sympy as sp

from bnderive import FormError, Mode, Status, builtin_forms, find_form, load_form
from bnderive.core import notation as N
from bnderive.verify.exact import default_exact_specs, exact_check
from bnderive.verify.lines import truth_of
from bnderive.verify.randomized import large_spec, random_check

#: GroupNorm forms are checked with two groups (two channels per group in the shapes with several).
GROUPS = {"group": 2}


def exact_specs(form, mode):
    return default_exact_specs(mode, norm=form.norm, groups=GROUPS.get(form.norm.value, 1))


def expected_status(form, spec, eq) -> Status:
    """Checkable lines (the quantity has a truth) must hold; auxiliary lines are not checked."""
    truth = truth_of(form.order, form.spec(spec))
    return Status.HOLDS if eq.name in truth else Status.UNCHECKED


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_builtin_form_holds_exactly(builtin_form, mode):
    if mode not in builtin_form.modes:
        pytest.skip(f"{builtin_form.name} is not stated for {mode.value}")
    specs = exact_specs(builtin_form, mode)
    verdicts = exact_check(builtin_form, specs)
    assert [v.equation for v in verdicts] == [eq.number for eq in builtin_form.equations]
    for eq, verdict in zip(builtin_form.equations, verdicts, strict=True):
        want = expected_status(builtin_form, specs[0], eq)
        assert verdict.status is want, (eq.label, verdict.detail)
        assert verdict.method == "exact"
        assert verdict.counterexample is None
    assert any(v.status is Status.HOLDS for v in verdicts)


@pytest.mark.parametrize("mode", list(Mode), ids=[m.value for m in Mode])
def test_builtin_form_holds_at_random_points(builtin_form, mode):
    if mode not in builtin_form.modes:
        pytest.skip(f"{builtin_form.name} is not stated for {mode.value}")
    groups = GROUPS.get(builtin_form.norm.value, 1)
    spec = large_spec(mode, 512, builtin_form.norm, groups)
    assert spec.m == 512 and spec.mode is mode and spec.norm is builtin_form.norm
    verdicts = random_check(builtin_form, spec, trials=2)
    assert [v.equation for v in verdicts] == [eq.number for eq in builtin_form.equations]
    for eq, verdict in zip(builtin_form.equations, verdicts, strict=True):
        want = expected_status(builtin_form, spec, eq)
        assert verdict.status is want, (eq.label, verdict.detail)
        if want is Status.HOLDS:
            assert verdict.method == "random"
            assert verdict.trials == 2
            # Schwartz–Zippel: the stated chance of a false "holds" is small and positive
            assert verdict.bound is not None and 0 < verdict.bound < 1e-6


def test_builtin_catalogue_is_usable():
    forms = builtin_forms()
    names = [f.name for f in forms]
    assert len(names) == len(set(names)), "form names must be unique"
    assert {"staged", "kronecker", "compact", "eval"} <= set(names)
    for form in forms:
        assert form.sources, f"{form.name} cites no source"
        assert form.modes
        assert find_form(form.name) == form
        # every form derives the gradient of the input
        truth = truth_of(form.order, form.spec(exact_specs(form, form.modes[0])[0]))
        assert any(eq.name in truth for eq in form.equations)


def test_published_forms_define_the_three_gradients():
    for name in ("staged", "kronecker", "compact", "eval"):
        defined = {eq.label for eq in find_form(name).equations}
        assert {"dx[i]", "dgamma", "dbeta"} <= defined, name


def test_eval_form_is_eval_mode_and_others_are_training():
    assert find_form("eval").training is False
    for name in ("staged", "kronecker", "compact"):
        form = find_form(name)
        assert form.training and form.eps_inside and not form.unbiased


# -- load_form errors -------------------------------------------------------------------------------
GOOD_EQUATION = '[[equations]]\ndefines = "dbeta"\nexpr = "sum(g[k], k)"\n'


def write(tmp_path: Path, text: str, name: str = "form.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def form_error(path: Path) -> str:
    with pytest.raises(FormError) as info:
        load_form(path)
    message = str(info.value)
    assert str(path) in message, "the message names the file"
    return message


def test_a_minimal_form_loads(tmp_path):
    form = load_form(write(tmp_path, 'name = "mine"\n' + GOOD_EQUATION))
    assert form.name == "mine"
    (eq,) = form.equations
    assert (eq.number, eq.name, eq.index) == (1, "dbeta", None)
    assert eq.expr == sp.Sum(N.g[N.k], (N.k, 1, N.M))
    assert form.training and form.eps_inside and not form.unbiased
    assert set(form.modes) == set(Mode)


def test_missing_name(tmp_path):
    message = form_error(write(tmp_path, GOOD_EQUATION))
    assert "'name'" in message and "missing" in message


def test_missing_equations(tmp_path):
    message = form_error(write(tmp_path, 'name = "x"\n'))
    assert "'equations'" in message and "missing" in message


def test_no_equations(tmp_path):
    message = form_error(write(tmp_path, 'name = "x"\nequations = []\n'))
    assert "no equations" in message


def test_equation_without_expr(tmp_path):
    message = form_error(write(tmp_path, 'name = "x"\n[[equations]]\ndefines = "dbeta"\n'))
    assert "equation 1" in message and "'expr'" in message


def test_bad_toml(tmp_path):
    message = form_error(write(tmp_path, 'name = "x\n[[equations]\n'))
    assert "not valid TOML" in message


def test_binary_file(tmp_path):
    path = tmp_path / "form.toml"
    path.write_bytes(bytes(range(256)) * 4)
    message = form_error(path)
    assert "a binary file (it has NUL bytes)" in message


def test_missing_file(tmp_path):
    message = form_error(tmp_path / "absent.toml")
    assert "no such file" in message


def test_unknown_name_in_expr(tmp_path):
    text = 'name = "x"\n' + GOOD_EQUATION
    text += '[[equations]]\ndefines = "dx[i]"\nexpr = "gamma*foo*g[i]"\n'
    message = form_error(write(tmp_path, text))
    assert "equation 2" in message
    assert "unknown name" in message and "foo" in message


def test_elementwise_quantity_needs_an_index(tmp_path):
    text = 'name = "x"\n[[equations]]\ndefines = "dx"\nexpr = "g[i]"\n'
    message = form_error(write(tmp_path, text))
    assert "per element" in message and "dx[i]" in message


def test_per_channel_quantity_takes_no_index(tmp_path):
    text = 'name = "x"\n[[equations]]\ndefines = "dvar[i]"\nexpr = "g[i]"\n'
    message = form_error(write(tmp_path, text))
    assert "one value per channel" in message and "'dvar'" in message


def test_inputs_cannot_be_redefined(tmp_path):
    text = 'name = "x"\n[[equations]]\ndefines = "mu"\nexpr = "0"\n'
    message = form_error(write(tmp_path, text))
    assert "mu" in message and "cannot be redefined" in message


def test_malformed_defines(tmp_path):
    text = 'name = "x"\n[[equations]]\ndefines = "d x[i]"\nexpr = "g[i]"\n'
    message = form_error(write(tmp_path, text))
    assert "defines" in message and "dx[i]" in message


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[conventions]\nvariance = "bessel"\n', ("variance", "unbiased")),
        ('[conventions]\nepsilon = "under"\n', ("epsilon", "outside")),
        ("[conventions]\ntraining = 1\n", ("training", "true or false")),
        ('modes = ["sideways"]\n', ("modes", "spatial")),
    ],
)
def test_bad_conventions(tmp_path, table, words):
    text = 'name = "x"\n' + table + GOOD_EQUATION
    if table.startswith("modes"):
        text = 'name = "x"\n' + table + GOOD_EQUATION
    message = form_error(write(tmp_path, text))
    for word in words:
        assert word in message


def test_unsafe_expression_in_a_form_file(tmp_path):
    marker = tmp_path / "pwned"
    expr = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    text = f'name = "x"\n[[equations]]\ndefines = "dbeta"\nexpr = "{expr}"\n'
    message = form_error(write(tmp_path, text))
    assert "not allowed" in message or "unknown function" in message
    assert not marker.exists()


def test_free_index_other_than_i_is_renamed(tmp_path):
    # defines = "dx[j]" with j in the expression: the line is read at index i
    text = 'name = "x"\n[[equations]]\ndefines = "dx[j]"\nexpr = "g[j]*gamma/sqrt(var + eps)"\n'
    (eq,) = load_form(write(tmp_path, text)).equations
    assert eq.index == N.i
    assert eq.expr == N.g[N.i] * N.gamma / sp.sqrt(N.var + N.eps)


def test_later_lines_see_earlier_definitions(tmp_path):
    text = 'name = "x"\n' + GOOD_EQUATION
    text += '[[equations]]\ndefines = "dx[i]"\nexpr = "gamma*(g[i] - dbeta/M)"\n'
    eq = load_form(write(tmp_path, text)).equations[1]
    assert sp.Symbol("dbeta") in eq.expr.free_symbols


def test_find_form_unknown_name_lists_the_catalogue():
    with pytest.raises(FormError) as info:
        find_form("no-such-form")
    message = str(info.value)
    assert "no-such-form" in message
    for form in builtin_forms():
        assert form.name in message


def test_free_index_clash_is_an_error(tmp_path):
    text = 'name = "x"\n[[equations]]\ndefines = "dx[j]"\nexpr = "g[j]*g[i]"\n'
    message = form_error(write(tmp_path, text))
    assert "free index" in message


def test_the_built_in_forms_of_one_order_and_family_are_read_alone():
    """`bnderive check` asks for the forms of one order and family: they are the ones the full
    list holds, in its order, and only their files are read (parsed and bounded)."""
    from bnderive.core.spec import Norm
    from bnderive.read import derivations

    derivations._builtin_form.cache_clear()
    try:
        chosen = derivations.builtin_forms(order=1, norm=Norm.BATCH)
        assert derivations._builtin_form.cache_info().currsize == len(chosen)
        everything = derivations.builtin_forms()
        assert len(everything) > len(chosen) > 3
        for order in (1, 2):
            for norm in Norm:
                expected = [f for f in everything if f.order == order and f.norm is norm]
                assert derivations.builtin_forms(order=order, norm=norm) == expected
    finally:
        derivations._builtin_form.cache_clear()
