"""Derivations written as NumPy code in a post's code blocks (``read/code_lines.py``): each
assignment is a line; the gradients of the post's own nodes are worked out in its own graph; a
wrong line is refuted at that line; nothing in the code is run."""

from __future__ import annotations

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
