"""Derivations written as NumPy code in a post's code blocks (``read/code_lines.py``): each
assignment is a line; the gradients of the post's own nodes are worked out in its own graph; a
wrong line is refuted at that line; nothing in the code is run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnderive.cli import main
from bnderive.core.spec import Mode
from bnderive.errors import FormError
from bnderive.read.documents import load_document
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode
from bnderive.verify.verdict import Status

# A staged computational-graph derivation as such posts write it (style of Kratzert 2016's
# step-numbered NumPy; the node names and steps here are our own).
STAGED = """# Backward through the graph

Forward, node by node:

```python
N, D = x.shape
mu = np.mean(x, axis=0)
c = x - mu                      # centred
c2 = c ** 2
var = np.sum(c2, axis=0) / N
s = np.sqrt(var + eps)
r = 1. / s
xhat = c * r
out = gamma * xhat + beta
```

Backward, in reverse:

```python
dbeta = dout.sum(axis=0)
dgamma = np.sum(dout * xhat, axis=0)
dxhat = dout * gamma
dr = np.sum(dxhat * c, axis=0)
ds = -dr / s ** 2
dvar = ds / (2 * s)
dc2 = np.ones((N, D)) * dvar / N
dc = dxhat * r + 2 * c * dc2
dmu = -np.sum(dc, axis=0)
dx = dc + dmu / N
```
"""


def verdicts_by_line(form):
    out: dict[str, set[Status]] = {}
    verdicts = check_exact_mode(form, Mode.PER_ACTIVATION, [3, 4]) + general_check(form)
    for v in verdicts:
        if v.equation is None or v.follows is not None:
            continue
        line = form.line_of(v.equation)
        assert line is not None
        out.setdefault(line.latex, set()).add(v.status)
    return out


def write(tmp_path: Path, text: str, name: str = "post.md") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_staged_code_derivation_is_read_and_holds(tmp_path):
    form = load_document(write(tmp_path, STAGED))
    status = {line.latex.split("=")[0].strip(): line.status for line in form.lines}
    # forward quantities and gradients are checked; the post's own names are definitions
    for name in ("mu", "var", "xhat", "out", "dbeta", "dgamma", "dxhat", "dvar", "dmu", "dx"):
        assert status[name] == "checked", name
    for name in ("c", "c2", "s", "r"):
        assert status[name] == "definition", name
    # the gradients of the post's own nodes are checked in the post's own graph
    for name in ("dr", "ds", "dc2", "dc"):
        assert status[name] == "checked", name
        line = next(line for line in form.lines if line.latex.startswith(name + " "))
        assert any(f"∂L/∂{name[1:]} in the post's own graph" in note for note in line.notes)
    # code is the (N, D) layout: the per-activation mode
    assert form.modes == (Mode.PER_ACTIVATION,)
    found = verdicts_by_line(form)
    assert found and all(s == {Status.HOLDS} for s in found.values()), found


MUTANTS = [
    ("dc2 = np.ones((N, D)) * dvar / N", "dc2 = np.ones((N, D)) * dvar"),  # the 1/N lost
    ("dr = np.sum(dxhat * c, axis=0)", "dr = np.sum(dxhat, axis=0)"),  # the path's factor lost
    ("ds = -dr / s ** 2", "ds = dr / s ** 2"),  # a sign
    ("dc = dxhat * r + 2 * c * dc2", "dc = dxhat * r + c * dc2"),  # the 2 of the square
    ("dvar = ds / (2 * s)", "dvar = ds / s"),  # the ½ of the root
    ("var = np.sum(c2, axis=0) / N", "var = np.sum(c2, axis=0) / (N - 1)"),  # Bessel
]


@pytest.mark.parametrize(("right", "wrong"), MUTANTS, ids=[m[1] for m in MUTANTS])
def test_a_wrong_line_is_refuted_at_that_line(tmp_path, right, wrong):
    assert right in STAGED
    form = load_document(write(tmp_path, STAGED.replace(right, wrong)))
    found = verdicts_by_line(form)
    assert Status.REFUTED in found[wrong], found
    # the lines before it still hold
    before = STAGED.split(right)[0]
    for latex, statuses in found.items():
        if latex in before:
            assert statuses == {Status.HOLDS}, latex


def test_a_node_used_by_a_line_not_read_is_not_checked(tmp_path):
    text = STAGED.replace("xhat = c * r", "xhat = c * r\nq = np.linalg.norm(c)")
    form = load_document(write(tmp_path, text))
    q = next(line for line in form.lines if line.latex.startswith("q ="))
    assert q.status == "not read"
    dc = next(line for line in form.lines if line.latex.startswith("dc ="))
    assert dc.status == "not checked"
    assert "could not be read" in dc.reason


def test_a_post_that_writes_grad_names_its_own_d_names(tmp_path):
    """Calvin Feng's notebook: grad_var is ∂L/∂σ², its dvar a local derivative of its own."""
    text = """```python
mean = np.mean(x, axis=0)
var = np.var(x, axis=0)
x_norm = (x - mean) / np.sqrt(var + eps)
grad_x_norm = grad_y * gamma
dvar = -0.5 * (x - mean) * (var + eps) ** (-1.5)
grad_var = np.sum(grad_x_norm * dvar, axis=0)
dvar_dx = 2 * (x - mean)
dmean_dx = 1 / x.shape[0]
```
"""
    form = load_document(write(tmp_path, text))
    kinds = {line.latex.split("=")[0].strip(): line for line in form.lines}
    assert kinds["dvar"].status == "definition"
    assert kinds["grad_var"].read.defines == "dvar"
    found = verdicts_by_line(form)
    assert found[kinds["grad_var"].latex] == {Status.HOLDS}
    assert Status.REFUTED in found[kinds["dvar_dx"].latex]  # ∂σ²/∂x_i lost its 1/M
    assert found[kinds["dmean_dx"].latex] == {Status.HOLDS}


def test_code_that_states_no_quantity_is_not_maths(tmp_path):
    text = "```python\nimport numpy as np\nlr = 0.1\nw = w - lr * grad\n```\n"
    with pytest.raises(FormError, match="no display math"):
        load_document(write(tmp_path, text))


def test_nothing_in_the_code_is_run(tmp_path):
    marker = tmp_path / "ran"
    text = STAGED.replace(
        "dx = dc + dmu / N",
        f"dx = __import__('os').system('touch {marker}')\nhook = open('{marker}', 'w')",
    )
    form = load_document(write(tmp_path, text))
    line = next(line for line in form.lines if line.latex.startswith("dx ="))
    assert line.status == "not read"
    verdicts_by_line(form)
    result = CliRunner().invoke(main, ["check", str(write(tmp_path, text, "again.md"))])
    assert result.exit_code in (0, 1, 3), result.output
    assert not marker.exists()


def test_check_command_on_a_code_derivation(tmp_path):
    result = CliRunner().invoke(main, ["check", str(write(tmp_path, STAGED))])
    assert result.exit_code == 0, result.output
    assert "holds" in result.output


def test_code_is_not_read_in_spatial_mode(tmp_path):
    """np.sum(…, axis=0) sums the batch of an (N, D) array, not a channel's N·H·W elements."""
    with pytest.raises(FormError, match="no display math"):
        load_document(write(tmp_path, "---\nmode: spatial\n---\n" + STAGED))


def test_a_node_whose_consumer_is_computed_twice_is_not_checked(tmp_path):
    """σ² computed twice from c2: the gradient flows through one of them, and which is not said
    (summing both would count it twice)."""
    text = STAGED.replace(
        "var = np.sum(c2, axis=0) / N", "var = np.sum(c2, axis=0) / N\nvar = np.mean(c2, axis=0)"
    )
    form = load_document(write(tmp_path, text))
    dc2 = next(line for line in form.lines if line.latex.startswith("dc2 ="))
    assert dc2.status == "not checked"
    assert "σ² is computed more than once" in dc2.reason


# ASCII maths typed in a code block next to the code (the style of the CS231n notes of GitHub
# user zbgzbg2007: quotients dA/dB of the code's names, index suffixes _ij, sum_i, chains broken
# after a trailing '='); the rows and names here are our own.
ASCII = """# Backward in plain text

```
mu = np.mean(x, axis = 0)
var = np.var(x, axis = 0)
xn = (x - mu) / np.sqrt(var + eps)
out = gamma * xn + beta
```

```
dxn_ij/dvar_j = -0.5 * (x_ij - mu_j) * (var_j + eps) ** (-1.5)
dout/dvar_j = sum_i dout/dxn_ij * dxn_ij/dvar_j =
  -0.5 * gamma_j * (var_j + eps) ** (-1.5) * sum_i dout_ij * (x_ij - mu_j)
dmu_j/dx_ij = 1. / N
da = dxn/dx * dout * gamma = dout * gamma / np.sqrt(var + eps)
db = dout/dvar_j * dvar_j/dx_ij = dout/dvar_j * 2 * (x - mu) / N
dc = dout/dmu_j * dmu_j/dx_ij
dx = da + db + dc = gamma / N / np.sqrt(var + eps) * (N * dout - np.sum(dout, axis = 0) - xn * np.sum(dout * xn, axis = 0))
```
"""


def test_ascii_maths_in_a_code_block_is_read_and_holds(tmp_path):
    form = load_document(write(tmp_path, ASCII))
    status = {line.line: line.status for line in form.lines}
    assert all(s in ("checked", "definition") for s in status.values()), [
        (line.line, line.reason) for line in form.lines
    ]
    by_text = {line.latex.split(" =")[0]: line for line in form.lines}
    # the chain broken after "=" is one row: ∂L/∂σ² = member 1 = member 2
    chain = by_text["dout/dvar_j"]
    assert chain.read is not None and chain.read.defines == "dvar" and len(chain.read.rhs) == 2
    assert any("dout/dvar read as ∂L/∂var" in note for note in chain.notes)
    assert by_text["dmu_j/dx_ij"].read.defines == "dmu_dx"
    # xn = (x - mu) / np.sqrt(var + eps): dxn/dx is its line's derivative, μ and σ² held, said
    assert any("dxn/dx with μ, σ² held fixed" in note for note in by_text["da"].notes)
    found = verdicts_by_line(form)
    assert found and all(s == {Status.HOLDS} for s in found.values()), found


ASCII_MUTANTS = [
    # the -0.5 of the power lost
    ("dxn_ij/dvar_j = -0.5 *", "dxn_ij/dvar_j = 0.5 *"),
    # the sum's body cut short: sum_i binds the rest of its term only, so the (x - mu) is outside
    ("sum_i dout_ij * (x_ij - mu_j)", "sum_i dout_ij + 0 * (x_ij - mu_j)"),
    # the factor 2 of the square lost
    ("dout/dvar_j * 2 * (x - mu) / N", "dout/dvar_j * (x - mu) / N"),
    # ∂x̂/∂x as the direct path needs the other two; dropping one is wrong
    ("dx = da + db + dc =", "dx = da + db ="),
]


@pytest.mark.parametrize(("right", "wrong"), ASCII_MUTANTS, ids=[m[1] for m in ASCII_MUTANTS])
def test_a_wrong_ascii_row_is_refuted(tmp_path, right, wrong):
    assert right in ASCII
    form = load_document(write(tmp_path, ASCII.replace(right, wrong, 1)))
    found = verdicts_by_line(form)
    row = next(latex for latex in found if wrong in latex)
    assert Status.REFUTED in found[row], found


def test_a_row_broken_after_an_equals_sign_continues_on_the_next_line_only(tmp_path):
    from bnderive.read.code_lines import code_rows

    text = "```\nmu = np.mean(x, axis=0)\ndx = dout =\n  dout * 1\ndy =\n\nvar = np.var(x, axis=0)\n```\n"
    rows = [row for _, row in code_rows(text)]
    assert rows == [
        "mu = np.mean(x, axis=0)",
        "dx = dout = dout * 1",
        "dy =",
        "var = np.var(x, axis=0)",
    ]


def test_ascii_notation_made_explicit():
    from bnderive.read.ascii_maths import (
        explicit_quotients,
        explicit_sums,
        is_maths_row,
        members,
    )

    assert explicit_sums("a * sum_i b_i * c_i - d") == "a * sum_i( b_i * c_i )- d"
    assert (
        explicit_sums("sum_i sum_k x_i * 1e-5 * x_k + 2") == "sum_i( sum_k( x_i * 1e-5 * x_k ))+ 2"
    )
    assert explicit_quotients("dout/dn_ij * dn_ij/dv_j") == "(dout/dn_ij) * (dn_ij/dv_j)"
    assert explicit_quotients("a / dx/dy") == "a / dx/dy"
    assert members("dx = np.sum(a, axis = 0) = b == c") == ["dx", "np.sum(a, axis = 0)", "b == c"]
    # a chained assignment that is Python is code (two names set), not a claim they are equal
    assert not is_maths_row("dgamma = dbeta = 0")
    assert is_maths_row("dx1 = dnorm/dx * dnorm = dnorm")
    assert is_maths_row("dmu_j/dx_ij = 1. / N")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("dq = dxn_kj/dx_ij * dout = 0", "bound by no sum"),
        ("dq = sum_j dout_ij = 0", "binds a new letter"),
        ("dq = dout_j * 2 = 0", "feature index alone"),
        ("dq = mu_ij * 2 = 0", "with an element index"),
        ("dq = dout/dout = 0", "not a derivative bnderive knows"),
        ("dq = dout * sum_i dout_ij * x_ij = 0", "sum_i on a row about element i"),
    ],
)
def test_ascii_rows_that_cannot_be_read(tmp_path, row, message):
    text = ASCII.replace("dmu_j/dx_ij = 1. / N", row)
    form = load_document(write(tmp_path, text))
    line = next(line for line in form.lines if line.latex.startswith("dq"))
    assert line.status == "not read" and message in line.reason, line.reason


# ASCII maths that happens to parse as Python (issue 12, a held-out example: sum_i (…) is a call,
# ^ is XOR, x_i a name): no code line defines its suffixed names, so it is maths; the rows here are
# our own, in the plain-text style of the block above.
PYTHONISH = """# Backward in plain text

```
mu = 1/N * sum_i x_i
var = 1/N * sum_i (x_i - mu)^2
xhat_i = (x_i - mu) / sqrt(var + eps)
y_i = gamma * xhat_i + beta
dbeta = sum_i dy_i
dgamma = sum_i dy_i * xhat_i
dxhat_i = dy_i * gamma
```
"""


def test_ascii_maths_that_parses_as_python_is_read_as_maths(tmp_path):
    form = load_document(write(tmp_path, PYTHONISH))
    lines = {line.latex: line for line in form.lines}
    assert all(line.status == "checked" for line in lines.values()), [
        (line.line, line.status, line.reason) for line in form.lines
    ]
    note = "read as ASCII maths though it parses as Python"
    var = lines["var = 1/N * sum_i (x_i - mu)^2"]
    assert any(note in n and "^ is a power" in n for n in var.notes), var.notes
    assert any(note in n and "x_i" in n for n in lines["dxhat_i = dy_i * gamma"].notes)
    assert not any(note in n for n in lines["mu = 1/N * sum_i x_i"].notes)  # not Python
    assert lines["xhat_i = (x_i - mu) / sqrt(var + eps)"].read.defines == "xhat"
    assert lines["dxhat_i = dy_i * gamma"].read.defines == "dxhat"
    found = verdicts_by_line(form)
    assert len(found) == 7 and all(s == {Status.HOLDS} for s in found.values()), found


PYTHONISH_MUTANTS = [
    ("var = 1/N * sum_i (x_i - mu)^2", "var = 1/N * sum_i (x_i - mu)^3"),
    # ^ binds tighter than * and - (as in maths, not as Python's XOR): E[x²] − μ² is right …
    ("var = 1/N * sum_i (x_i - mu)^2", "var = 1/N * sum_i x_i^2 - mu^2"),
    # … and E[x²] − μ is not
    ("var = 1/N * sum_i (x_i - mu)^2", "var = 1/N * sum_i x_i^2 - mu"),
    ("/ sqrt(var + eps)", "/ (var + eps)"),
    ("y_i = gamma * xhat_i + beta", "y_i = gamma * x_i + beta"),
    ("dgamma = sum_i dy_i * xhat_i", "dgamma = sum_i dy_i * x_i"),
    ("dxhat_i = dy_i * gamma", "dxhat_i = dy_i"),
]


@pytest.mark.parametrize(
    ("right", "wrong"), PYTHONISH_MUTANTS, ids=[m[1] for m in PYTHONISH_MUTANTS]
)
def test_a_wrong_pythonish_ascii_row_is_refuted(tmp_path, right, wrong):
    assert right in PYTHONISH
    form = load_document(write(tmp_path, PYTHONISH.replace(right, wrong, 1)))
    found = verdicts_by_line(form)
    row = next(latex for latex in found if wrong in latex)
    if wrong.endswith("- mu^2"):
        assert found[row] == {Status.HOLDS}, found
    else:
        assert Status.REFUTED in found[row] and Status.HOLDS not in found[row], found


@pytest.mark.parametrize("wrong", [False, True])
def test_code_whose_names_are_defined_stays_code(tmp_path, wrong):
    """``x_i = x - mu`` is a name of the code: the rows that use it are code, not maths, and
    ``^`` in a code row is a power (no BatchNorm code means XOR), with the note."""
    over = "" if wrong else " / N"
    text = (
        "```python\nmu = np.mean(x, axis=0)\nx_i = x - mu\n"
        f"var = np.sum(x_i ** 2, axis=0){over}\nvar2 = np.sum((x - mu)^2, axis=0){over}\n"
        "dq = var2 - var\n```\n"
    )
    form = load_document(write(tmp_path, text))
    lines = {line.latex.split(" =")[0]: line for line in form.lines}
    assert not any("ASCII" in n for n in lines["var"].notes), lines["var"].notes
    assert any("^ is a power" in n for n in lines["var2"].notes), lines["var2"].notes
    found = verdicts_by_line(form)
    row = next(latex for latex in found if latex.startswith("var ="))
    if wrong:
        assert Status.REFUTED in found[row] and Status.HOLDS not in found[row], found
    else:
        assert found[row] == {Status.HOLDS}, found


# The same in per-feature suffixes only (x_ij, mu_j): no left side is a bare name, yet the block
# states the layer's quantities (var_j, dgamma_j) and is read; the rows are our own.
SUFFIXED = """```
mu_j = 1/N * sum_i x_ij
var_j = 1/N * sum_i (x_ij - mu_j)^2
xhat_ij = (x_ij - mu_j) / sqrt(var_j + eps)
dgamma_j = sum_i dy_ij * xhat_ij
dx_i = gamma / sqrt(var + eps) * (dy_i - 1/N * sum_k dy_k - xhat_i / N * sum_k dy_k * xhat_k)
```
"""


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("", ""),
        ("dgamma_j = sum_i dy_ij * xhat_ij", "dgamma_j = sum_i dy_ij"),
        ("xhat_i / N * sum_k", "xhat_i * sum_k"),
        ("(x_ij - mu_j)^2", "(x_ij - mu_j)^2 / 2"),
    ],
)
def test_a_block_of_suffixed_ascii_rows_is_read(tmp_path, right, wrong):
    form = load_document(write(tmp_path, SUFFIXED.replace(right, wrong, 1)))
    assert [ln.status for ln in form.lines] == ["checked"] * 5, [
        (ln.line, ln.reason) for ln in form.lines
    ]
    found = verdicts_by_line(form)
    for latex, statuses in found.items():
        if wrong and wrong in latex:
            assert Status.REFUTED in statuses and Status.HOLDS not in statuses, found
        else:
            assert statuses == {Status.HOLDS}, found


def test_a_pythonish_ascii_row_not_read_says_why_as_maths(tmp_path):
    """``xhat_k = x_k`` parses as Python; it is maths by its names, so the reason is the ASCII
    reading's (k is bound by no sum), not "unknown name x_k"."""
    form = load_document(write(tmp_path, SUFFIXED.replace("dgamma_j", "xhat_k = x_k\ndgamma_j")))
    line = next(ln for ln in form.lines if ln.latex == "xhat_k = x_k")
    assert line.status == "not read" and "bound by no sum" in line.reason, line.reason


def test_a_node_whose_user_was_not_read_says_so(tmp_path):
    """s = np.sqrt(var + eps) then r = 1. / sqrt (a typo, not read): the gradient of s is not
    said, and the reason names the line not read rather than claiming nothing uses s."""
    form = load_document(write(tmp_path, STAGED.replace("r = 1. / s", "r = 1. / sqrt")))
    ds = next(line for line in form.lines if line.latex.startswith("ds ="))
    assert ds.status == "not checked"
    assert "could not be read" in ds.reason, ds.reason


# A post's own names defined through each other (avg, then cen = x - avg), with ASCII quotients
# of them below (the plain-text style of zbgzbg2007's CS231n notes; the rows are our own).
THROUGH = """# Backward by hand

```
avg = np.mean(x, axis = 0)
cen = x - avg
var = np.mean(cen ** 2, axis = 0)
xn = cen / np.sqrt(var + eps)
out = gamma * xn + beta
```

```
dxhat = dout * gamma
dx = dout/dcen_ij * dcen_ij/dx_ij + dout/davg_j * davg_j/dx_ij
```
"""
HIDDEN = "∂xn/∂x: xn is defined through cen, which depends on x too"


@pytest.mark.parametrize("row", ["dxn_ij/dx_ij = 0", "dxn_ij/dx_ij = 1 / np.sqrt(var + eps)"])
def test_an_ascii_quotient_through_a_name_that_depends_on_x_is_not_checked(tmp_path, row):
    """dxn/dx with xn = cen / √(var + ε) and cen = x − avg: with cen held fixed it is 0, through
    cen it is not; the notation does not say which, as ∂μ_{bh}/∂x_{pq} in LaTeX
    (``no_hidden_path``): not checked, with the same question, never read as 0."""
    form = load_document(
        write(tmp_path, THROUGH.replace("dxhat = dout * gamma", row + "\ndxhat = dout * gamma"))
    )
    line = next(ln for ln in form.lines if ln.latex == row)
    assert line.status == "not checked" and HIDDEN in line.reason, line.reason
    assert "held fixed (the local one of the post's graph) or through it" in line.reason


def test_an_ascii_member_through_a_name_that_depends_on_x_is_not_checked(tmp_path):
    """A chain's member with the ambiguous quotient is not checked (its reason in the notes);
    a row whose only member it is states nothing checkable."""
    rows = "dq = dxn/dx * 2 = 0\ndx = dout/dcen_ij * dcen_ij/dx_ij\ndxhat = dout * gamma"
    form = load_document(write(tmp_path, THROUGH.replace("dxhat = dout * gamma", rows)))
    dq = next(ln for ln in form.lines if ln.latex.startswith("dq"))
    assert any(note.startswith("member 1 not checked: " + HIDDEN) for note in dq.notes), dq.notes
    dx = next(ln for ln in form.lines if ln.latex == "dx = dout/dcen_ij * dcen_ij/dx_ij")
    assert dx.status == "not checked", dx.status
    assert "∂cen/∂x: cen is defined through avg, which depends on x too" in dx.reason


def test_an_ascii_row_that_spells_out_the_path_reads_the_local_derivative(tmp_path):
    """dout/dcen · dcen/dx + dout/davg · davg/dx writes the path through avg itself, so dcen/dx
    is the local one (avg held, a note says so), and the row holds; a wrong weight on the path
    is refuted."""
    form = load_document(write(tmp_path, THROUGH))
    found = verdicts_by_line(form)
    dx = next(ln for ln in form.lines if ln.latex.startswith("dx ="))
    assert dx.status == "checked" and found[dx.latex] == {Status.HOLDS}, found
    assert any("dcen/dx with avg held fixed" in note for note in dx.notes), dx.notes
    wrong = THROUGH.replace("+ dout/davg_j", "+ 2 * dout/davg_j")
    found = verdicts_by_line(load_document(write(tmp_path, wrong)))
    row = next(latex for latex in found if "2 * dout/davg_j" in latex)
    assert Status.REFUTED in found[row], found


# LayerNorm in PyTorch as llm.c's tutorial writes it (Karpathy 2024, doc/layernorm: B,T,C, the
# set the last axis, weight and bias w, b); the backward lines here are our own.
LAYER = """# Layer normalization

```python
eps = 1e-5
mean = x.sum(-1, keepdim=True) / C
xshift = x - mean
var = (xshift**2).sum(-1, keepdim=True) / C
rstd = (var + eps) ** -0.5
norm = xshift * rstd
out = norm * w + b
db = dout.sum((0, 1))
dw = (dout * norm).sum((0, 1))
dx = dout * w - (dout * w).mean(-1, keepdim=True)
dx -= norm * (dout * w * norm).mean(-1, keepdim=True)
dx *= rstd
```
"""


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("dw = (dout * norm).sum((0, 1))", "dw = (dout * xshift).sum((0, 1))"),
        ("var = (xshift**2).sum(-1, keepdim=True) / C", "var = (xshift**2).sum(-1, keepdim=True)"),
        ("out = norm * w + b", "out = norm * w + b * w"),
    ],
)
def test_layernorm_code_is_read_with_the_set_last(tmp_path, right, wrong):
    """A LayerNorm post's PyTorch: Σ over axis -1 is over the set (keepdim=True), Σ over (0, 1)
    is over the samples and only ∂L/∂γ_i, ∂L/∂β_i take it (this sample's term), w and b are γ_i
    and β_i, ``eps = 1e-5`` is ε's value (ε stays a symbol); a name changed in place later
    (dx -= …, dx *= rstd) is a stage where it is first assigned, a definition, and its last
    value is checked.  Right holds, wrong is refuted."""
    form = load_document(write(tmp_path, LAYER.replace(right, wrong)))
    statuses = {ln.latex.split("  #")[0]: ln.status for ln in form.lines}
    assert statuses["dx = dout * w - (dout * w).mean(-1, keepdim=True)"] == "definition"
    got = verdicts_by_line(form)
    assert Status.REFUTED in got[wrong], got
    form = load_document(write(tmp_path, LAYER, "right.md"))
    got = verdicts_by_line(form)
    assert all(Status.REFUTED not in s and Status.HOLDS in s for s in got.values()), got
    assert sum(ln.status == "checked" for ln in form.lines) == 6


def test_layernorm_code_sums_over_the_samples_only_for_the_parameters(tmp_path):
    text = LAYER.replace("dx = dout * w -", "dxhat = (dout * w).sum((0, 1)) -")
    form = load_document(write(tmp_path, text))
    line = next(ln for ln in form.lines if ln.latex.startswith("dxhat"))
    assert line.status == "not read" and "only ∂L/∂γ and ∂L/∂β" in line.reason


# A C kernel in the style of llm.c's layernorm_backward (Karpathy 2024, doc/layernorm: loops over
# b, t, a pointer to the sample's row, two loops over the set C); the kernel is our own.
KERNEL = (
    LAYER.split("db = ")[0]
    + """```

```c
void ln_backward(float* dinp, float* dweight, float* dbias, float* dout, float* inp,
                 float* weight, float* mean, float* rstd, int B, int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float* g_bt = dout + b * T * C + t * C;
            float* x_bt = inp + (b * T + t) * C;
            float* dx_bt = dinp + b * T * C + t * C;
            float m = mean[b * T + t];
            float s = rstd[b * T + t];
            float acc1 = 0.0f;
            float acc2 = 0.0f;
            for (int i = 0; i < C; i++) {
                float n = (x_bt[i] - m) * s;
                float dn = weight[i] * g_bt[i];
                acc1 += dn; // sum
                acc2 += dn * n;
            }
            acc1 = acc1 / C;
            acc2 = acc2 / C;
            for (int i = 0; i < C; i++) {
                float n = (x_bt[i] - m) * s;
                float dn = weight[i] * g_bt[i];
                dbias[i] += g_bt[i];
                dweight[i] += n * g_bt[i];
                float v = dn;
                v -= acc1;
                v -= n * acc2;
                v *= s;
                dx_bt[i] += v;
            }
        }
    }
}
```
"""
)

C_MUTANTS = [
    ("v -= acc1;", "v -= 0.0f;", "dx_bt[i] += v;"),  # the mean of ∂L/∂x̂ left out
    ("acc1 = acc1 / C;", "acc1 = acc1 / (C - 1);", "dx_bt[i] += v;"),  # a wrong divisor
    ("acc2 += dn * n;", "acc2 += dn;", "dx_bt[i] += v;"),  # the x̂ of the second sum lost
    ("v *= s;", "v *= s * s;", "dx_bt[i] += v;"),  # a wrong final scale
    ("dweight[i] += n * g_bt[i];", "dweight[i] += g_bt[i];", "dweight[i] += g_bt[i];"),
]


def test_a_c_kernel_is_read_and_holds(tmp_path):
    """A ```c block: sums over the set by += in the loop over it, a mean by / C after it,
    element lines by a[i] += e; dbias, dweight, dinp are checked as ∂L/∂β, ∂L/∂γ, ∂L/∂x."""
    form = load_document(write(tmp_path, KERNEL))
    checked = {ln.latex.split("# read from C: ")[-1]: ln for ln in form.lines}
    for row, quantity in [
        ("dbias[i] += g_bt[i];", "dbeta"),
        ("dweight[i] += n * g_bt[i];", "dgamma"),
        ("dx_bt[i] += v;", "dx"),
    ]:
        assert checked[row].status == "checked", (row, checked[row].reason)
        assert checked[row].read.defines == quantity
        assert any(note.startswith("read from C as") for note in checked[row].notes)
    acc = next(ln.latex for ln in form.lines if "read from C: acc1 += dn; // sum" in ln.latex)
    assert acc.startswith("acc1 = acc1 + np.sum(dn, axis=-1)"), acc
    # the second loop's n = (x_bt[i] - m) * s is the first loop's n computed again: checked
    # against it (the same value), and n keeps its place in the post's graph
    (again,) = [ln for ln in form.lines if ln.read is not None and ln.read.kind == "identity"]
    assert again.status == "checked" and again.latex.startswith("n = (inp - m) * s"), again
    assert any(note.startswith("n is computed again with line") for note in again.notes)
    got = verdicts_by_line(form)
    assert sum(1 for t in got if "read from C" in t) == 4, got
    assert all(s == {Status.HOLDS} for s in got.values()), got


@pytest.mark.parametrize(("right", "wrong", "refuted"), C_MUTANTS, ids=[m[1] for m in C_MUTANTS])
def test_a_wrong_c_kernel_is_refuted(tmp_path, right, wrong, refuted):
    assert right in KERNEL
    form = load_document(write(tmp_path, KERNEL.replace(right, wrong)))
    got = verdicts_by_line(form)
    line = next(t for t in got if t.endswith("# read from C: " + refuted))
    assert Status.REFUTED in got[line], got


@pytest.mark.parametrize(
    ("right", "wrong", "why"),
    [
        ("acc1 += dn; // sum", "if (i > 0) { acc1 += dn; }", "not a C assignment"),
        ("float* g_bt = dout + b * T * C + t * C;", "float* g_bt = dout + t;", "pointer"),
        ("acc1 = acc1 / C;", "acc1 = acc1 * (1 / C);", "division of two ints"),
        ("acc2 += dn * n;", "acc2 *= dn * n;", "only += and -="),
        ("float m = mean[b * T + t];", "float m = mean[b];", "the sample's entry"),
        ("v -= acc1;", "v -= (float)acc1;", "not C arithmetic"),
        ("acc2 += dn * n;", "acc2 = dn * n;", "declared before it"),
        ("dx_bt[i] += v;", "dx_bt[i] += v;\n                dx_bt[i] += v;", "a second write"),
        ("dbias[i] += g_bt[i];", "dbias[i] = g_bt[i];", "each sample overwrites the last"),
    ],
)
def test_c_outside_the_subset_is_not_read(tmp_path, right, wrong, why):
    """Branches, other pointer arithmetic and indexing, C's integer division, a product over the
    loop, casts, a plain = over the loop, a second write to an element: the statement is not read, with its reason; what uses it is not checked."""
    assert right in KERNEL
    form = load_document(write(tmp_path, KERNEL.replace(right, wrong)))
    key = wrong.split("{")[0].splitlines()[-1].strip()
    line = [ln for ln in form.lines if key in ln.latex][-1]
    assert line.status == "not read" and why in line.reason, (line.status, line.reason)
    got = verdicts_by_line(form)
    assert all(Status.REFUTED not in s for s in got.values()), got


def test_a_loop_inside_the_loop_over_the_set_is_not_read(tmp_path):
    text = KERNEL.replace(
        "                v -= acc1;\n",
        "                for (int k = 0; k < C; k++) {\n                    v -= acc1 / C;\n"
        "                }\n",
    )
    form = load_document(write(tmp_path, text))
    line = next(ln for ln in form.lines if "v -= acc1 / C;" in ln.latex)
    assert line.status == "not read" and "a loop inside the loop over the set" in line.reason
    dx = next(ln for ln in form.lines if ln.latex.endswith("dx_bt[i] += v;"))
    assert dx.status != "checked"


def test_an_assignment_changed_in_place_later_is_a_stage_and_the_last_value_is_checked(tmp_path):
    """``dx = dc + dmu / N`` then ``dx *= 1`` (Karpathy's ``dx = dnorm - …`` then ``dx *=
    rstd``): the first value is a stage, a definition of the post's own (dx'), and ``dx *= 1``,
    read as ``dx = dx * (1)``, states ∂L/∂x and is checked; a wrong scale is refuted there.  The
    output says what each line was read as."""
    text = STAGED.replace("dx = dc + dmu / N\n", "dx = dc + dmu / N\ndx *= 1\n")
    path = write(tmp_path, text)
    form = load_document(path)
    (stage,) = [d for d in form.lines if d.latex.startswith("dx = dc")]
    assert stage.status == "definition" and stage.read.defines == "dx'", stage
    assert any("dx here is a stage" in note for note in stage.notes), stage.notes
    (final,) = [d for d in form.lines if d.latex.startswith("dx = dx * (1)")]
    assert final.status == "checked" and final.read.defines == "dx", final
    assert verdicts_by_line(form)[final.latex] == {Status.HOLDS}
    result = CliRunner().invoke(main, ["check", str(path), "--method", "exact", "--no-timing"])
    assert result.exit_code == 0, result.output
    assert "dx *= 1 read as dx = dx * (1): the value dx holds after it" in result.output
    assert "dx here is a stage, read as a name of the post's own (dx')" in result.output
    wrong = write(tmp_path, text.replace("dx *= 1", "dx *= 2"), "wrong.md")
    got = verdicts_by_line(load_document(wrong))
    assert Status.REFUTED in got[next(t for t in got if t.startswith("dx = dx * (2)"))], got
    refuted = CliRunner().invoke(main, ["check", str(wrong), "--method", "exact", "--no-timing"])
    assert refuted.exit_code == 1, refuted.output


@pytest.mark.parametrize(
    ("change", "said"),
    [
        ("dx **= 1", "dx **= …"),  # an operator not read
        ("for k in range(1):\n    dx += 0 * k", "dx += …"),  # an accumulation in a loop
        ("dx[0] = 0", "dx[0] = …"),  # a write into part of the array
    ],
)
def test_a_change_in_place_not_read_leaves_the_earlier_value_not_read(tmp_path, change, said):
    """A change of dx that is not read (``**=``, ``+=`` in a loop, which adds once per pass, a
    write to an element) leaves dx's earlier value not its final one: reported not read, never
    checked as ∂L/∂x, and counted by --strict."""
    text = STAGED.replace("dx = dc + dmu / N\n", f"dx = dc + dmu / N\n{change}\n")
    path = write(tmp_path, text)
    (line,) = [d for d in load_document(path).lines if d.latex.startswith("dx = dc")]
    assert line.status == "not read", line
    assert f"dx is changed in place later in the block ({said})" in line.reason
    strict = CliRunner().invoke(main, ["check", str(path), "--method", "exact", "--strict"])
    assert strict.exit_code == 3, strict.output


def test_an_in_place_change_of_a_name_not_assigned_in_the_block_is_not_read(tmp_path):
    """``dx *= 1`` in a block that does not assign dx before: which value it changes (another
    block's?) is not said, so it is no row (the earlier block's dx stays as it was checked)."""
    text = STAGED.replace("```\n\nBackward", "dx *= 1\n```\n\nBackward")
    form = load_document(write(tmp_path, text))
    assert not [d for d in form.lines if "dx *= 1" in d.latex]
    assert [d.status for d in form.lines if d.latex.startswith("dx = dc")] == ["checked"]


def test_layernorm_code_states_dgamma_and_dbeta_summed_over_the_samples(tmp_path):
    """LayerNorm code whose dβ is dout itself (no sum over the batch: one sample's term, an
    (N, D) array for a (D,) gradient) is not read; with the sum it holds."""
    text = """---
norm: layer
---
```python
mean = x.mean(-1, keepdims=True)
var = x.var(-1, keepdims=True)
xhat = (x - mean) / np.sqrt(var + eps)
dbeta = dout.sum(0)
```
"""
    form = load_document(write(tmp_path, text))
    assert verdicts_by_line(form)["dbeta = dout.sum(0)"] == {Status.HOLDS}
    form = load_document(write(tmp_path, text.replace("dout.sum(0)", "dout"), "bare.md"))
    (line,) = [d for d in form.lines if d.latex == "dbeta = dout"]
    assert line.status == "not read" and "without a sum over the samples" in line.reason


def test_a_write_into_part_of_an_array_later_is_a_change_in_place(tmp_path):
    text = STAGED.replace("dbeta = dout.sum(axis=0)\n", "dbeta = dout.sum(axis=0)\ndbeta[0] *= 2\n")
    (line,) = [
        d for d in load_document(write(tmp_path, text)).lines if d.latex.startswith("dbeta =")
    ]
    assert line.status == "not read" and "dbeta[0] *= …" in line.reason


# A LayerNorm backward that recomputes the normalised input from the forward's cache, as llm.c's
# PyTorch reference does (Karpathy 2024, doc/layernorm); the lines are our own.
RECOMPUTED = (
    LAYER.split("db = ")[0]
    + """```

```python
norm = (x - mean) * rstd
dnorm = dout * w
dw = (dout * norm).sum((0, 1))
dx = rstd * (dnorm - dnorm.mean(-1, keepdim=True) - norm * (dnorm * norm).mean(-1, keepdim=True))
```
"""
)


def test_a_forward_name_computed_again_keeps_its_place_in_the_graph(tmp_path):
    """``norm = (x - mean) * rstd`` in the backward block is the forward's ``norm = xshift *
    rstd`` written out: checked against it, and ``dnorm`` after it is ∂L/∂norm of the forward
    graph (γ_i g_i), checked; a wrong dnorm is refuted."""
    path = write(tmp_path, RECOMPUTED)
    form = load_document(path)
    again = next(ln for ln in form.lines if ln.latex == "norm = (x - mean) * rstd")
    assert again.status == "checked" and again.read.kind == "identity", again
    dnorm = next(ln for ln in form.lines if ln.latex == "dnorm = dout * w")
    assert dnorm.status == "checked" and dnorm.read.kind == "node", dnorm
    got = verdicts_by_line(form)
    assert got[again.latex] == {Status.HOLDS} and got[dnorm.latex] == {Status.HOLDS}, got
    result = CliRunner().invoke(main, ["check", str(path), "--method", "exact", "--no-timing"])
    assert result.exit_code == 0, result.output
    assert "norm is computed again with line" in result.output
    wrong = load_document(
        write(tmp_path, RECOMPUTED.replace("dout * w\n", "dout * w * 2\n"), "w.md")
    )
    assert Status.REFUTED in verdicts_by_line(wrong)["dnorm = dout * w * 2"]


def test_a_forward_name_assigned_another_value_does_not_take_its_place(tmp_path):
    """``norm = (x - mean) * rstd * 2`` is not the forward's norm: a new name of the post's own
    (norm'), said in a note; ∂L/∂norm after it is that name's, which no forward line uses, so
    dnorm is not checked (never checked against the forward norm's gradient), and dw, which
    uses the new value, is refuted."""
    text = RECOMPUTED.replace("norm = (x - mean) * rstd\n", "norm = (x - mean) * rstd * 2\n")
    form = load_document(write(tmp_path, text))
    other = next(ln for ln in form.lines if ln.latex == "norm = (x - mean) * rstd * 2")
    assert other.status == "definition" and other.read.defines == "norm'", other
    assert any("does not take the place of line" in note for note in other.notes), other.notes
    dnorm = next(ln for ln in form.lines if ln.latex == "dnorm = dout * w")
    assert dnorm.status == "not checked", dnorm
    got = verdicts_by_line(form)
    assert Status.REFUTED in got["dw = (dout * norm).sum((0, 1))"], got


def test_a_name_computed_again_through_sums_is_the_same_value(tmp_path):
    """Two Σ alike but for their letters are the same value: ``ssq = (xshift**2).sum(-1,
    keepdim=True)`` computed again is checked against the first, not a new name."""
    ssq = "ssq = (xshift**2).sum(-1, keepdim=True)\n"
    text = RECOMPUTED.replace(
        "var = (xshift**2).sum(-1, keepdim=True) / C\n", ssq + "var = ssq / C\n"
    ).replace("norm = (x - mean) * rstd\n", ssq + "norm = (x - mean) * rstd\n")
    form = load_document(write(tmp_path, text))
    first, again = [ln for ln in form.lines if ln.latex == ssq.strip()]
    assert first.status == "definition" and again.read.kind == "identity", again
    assert verdicts_by_line(form)[again.latex] == {Status.HOLDS}


@pytest.mark.parametrize(
    ("divide", "verdict"), [("mean /= C", "holds"), ("mean /= 2 * C", "refuted")]
)
def test_a_forward_quantity_computed_in_stages(tmp_path, divide, verdict):
    """``mean = x.sum(-1, keepdim=True)`` then ``mean /= C``: the sum is a stage (mean'), the
    last value states μ and is checked; the lines after it use μ, not the stage."""
    text = LAYER.replace(
        "mean = x.sum(-1, keepdim=True) / C\n", f"mean = x.sum(-1, keepdim=True)\n{divide}\n"
    )
    form = load_document(write(tmp_path, text))
    stage = next(ln for ln in form.lines if ln.latex.startswith("mean = x.sum"))
    assert stage.status == "definition", stage
    got = verdicts_by_line(form)
    final = next(t for t in got if t.startswith("mean = mean /"))
    assert Status(verdict) in got[final] and (verdict == "refuted" or len(got[final]) == 1), got
    if verdict == "holds":  # xshift = x - mean used μ: everything after it holds
        assert all(s == {Status.HOLDS} for s in got.values()), got


def _element_suffixed(kernel: str) -> str:
    """KERNEL with llm.c's element-suffixed name: ``float dnorm_i = weight[i] * g_bt[i];``."""
    return re.sub(r"\bdn\b", "dnorm_i", kernel)


def test_a_c_name_suffixed_with_the_loop_index_is_the_element(tmp_path):
    """``float dnorm_i = weight[i] * g_bt[i];`` in the loop over i is dnorm at element i: by the
    d-prefix convention ∂L/∂norm of the post's forward graph (γ_i g_i), checked in both loops,
    with a note saying the suffix was read as the element; a wrong one is refuted there."""
    text = _element_suffixed(KERNEL)
    form = load_document(write(tmp_path, text))
    rows = [ln for ln in form.lines if "float dnorm_i = " in ln.latex]
    assert len(rows) == 2, rows
    for row in rows:
        assert row.status == "checked" and row.read.kind == "node", row
        assert any(note.startswith("dnorm_i read as dnorm") for note in row.notes), row.notes
    got = verdicts_by_line(form)
    assert all(s == {Status.HOLDS} for t, s in got.items() if "dnorm_i" in t), got
    wrong = text.replace("dnorm_i = weight[i] * g_bt[i];", "dnorm_i = 2 * weight[i] * g_bt[i];", 1)
    got = verdicts_by_line(load_document(write(tmp_path, wrong, "wrong.md")))
    line = next(t for t in got if "float dnorm_i = 2 * weight[i]" in t)
    assert Status.REFUTED in got[line], got


def test_a_c_suffixed_name_is_kept_when_the_kernel_uses_the_bare_name(tmp_path):
    """A kernel that also names something ``dnorm``: ``dnorm_i`` keeps its suffix, a name of the
    kernel's own (a definition), never taken for ∂L/∂norm."""
    text = _element_suffixed(KERNEL).replace(
        "float acc1 = 0.0f;", "float acc1 = 0.0f;\n            float dnorm = 0.0f;"
    )
    form = load_document(write(tmp_path, text))
    rows = [ln for ln in form.lines if "float dnorm_i = " in ln.latex]
    assert rows and all(row.status == "definition" for row in rows), rows
    assert all(row.latex.startswith("dnorm_i = ") for row in rows), rows


@pytest.mark.parametrize(("scale", "exit_code"), [("rstd", 0), ("rstd ** 2", 1), ("1 / rstd", 1)])
def test_layernorm_dx_scaled_in_place_is_checked_at_the_scale(tmp_path, scale, exit_code):
    """LayerNorm code whose dx is scaled in place last (``dx *= rstd``, as llm.c's reference
    does): the scaled value is ∂L/∂x, checked; a wrong scale is refuted at that line."""
    path = write(tmp_path, LAYER.replace("dx *= rstd\n", f"dx *= {scale}\n"))
    form = load_document(path)
    got = verdicts_by_line(form)
    line = next(t for t in got if t.startswith(f"dx = dx * ({scale})"))
    assert (Status.REFUTED in got[line]) == (exit_code == 1), got
    result = CliRunner().invoke(main, ["check", str(path), "--method", "exact", "--no-timing"])
    assert result.exit_code == exit_code, result.output
    assert (
        f"dx *= {scale} read as dx = dx * ({scale}): the value dx holds after it" in result.output
    )


@pytest.mark.parametrize(
    ("change", "row"), [("dx = dx * 1", "dx = dx * 1"), ("dx /= 1", "dx = dx / (1)")]
)
def test_a_value_the_next_assignment_computes_from_is_a_stage(tmp_path, change, row):
    """Not only ``x op= e``: ``dx = dx * 1`` computes dx's next value from its last one too, so
    the value before it is a stage (a definition), and the last one is checked."""
    text = STAGED.replace("dx = dc + dmu / N\n", f"dx = dc + dmu / N\n{change}\n")
    form = load_document(write(tmp_path, text))
    (stage,) = [d for d in form.lines if d.latex.startswith("dx = dc")]
    assert stage.status == "definition", stage
    got = verdicts_by_line(form)
    assert got[next(t for t in got if t.startswith(row))] == {Status.HOLDS}, got


def test_a_c_quantity_computed_in_stages(tmp_path):
    """llm.c's ``dval`` named ``dx_i``: each ``dx_i -= …`` is a stage, ``dx_i *= s`` states
    ∂L/∂x_i and is checked, and the element written from it too; a wrong final scale is refuted
    at both."""
    text = (
        KERNEL.replace("float v = dn;", "float dx_i = dn;")
        .replace("v -= acc1;", "dx_i -= acc1;")
        .replace("v -= n * acc2;", "dx_i -= n * acc2;")
        .replace("v *= s;", "dx_i *= s;")
        .replace("dx_bt[i] += v;", "dx_bt[i] += dx_i;")
    )
    form = load_document(write(tmp_path, text))
    stages = [d for d in form.lines if "dx_i -= " in d.latex or "float dx_i" in d.latex]
    assert len(stages) == 3 and all(d.status == "definition" for d in stages), stages
    got = verdicts_by_line(form)
    final = [t for t in got if t.endswith(("dx_i *= s;", "dx_bt[i] += dx_i;"))]
    # (the element line, dinp = dx, is not proven for every M: its definition names dx itself)
    assert len(final) == 2, got
    assert all(Status.HOLDS in got[t] and Status.REFUTED not in got[t] for t in final), got
    got = verdicts_by_line(
        load_document(write(tmp_path, text.replace("*= s;", "*= s * s;"), "w.md"))
    )
    final = [t for t in got if t.endswith(("dx_i *= s * s;", "dx_bt[i] += dx_i;"))]
    assert len(final) == 2 and all(Status.REFUTED in got[t] for t in final), got
