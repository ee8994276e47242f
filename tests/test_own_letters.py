"""A post's own letters for the layer's roles, learned from its forward line (issue 12,
``bnderive/read/letters.py``): Sinai 2022's Z = a·(X − μ)/(σ + ε) + b, llm.c's w ⊙ … + b.  Each
rule has a right line that holds and a wrong one refuted; a letter the post uses otherwise is
refused with the reason, and a letter whose meaning changes is read per section or not at all."""

from __future__ import annotations

from pathlib import Path

from bnderive.read.documents import load_document
from bnderive.read.latex_syntax import _tree
from bnderive.read.letters import forward_roles
from tests.test_reading_rules import verdicts

FORWARD = r"z_i = a \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} + b"
DGAMMA = r"\frac{\partial L}{\partial a} = \sum_{i=1}^{N} \frac{\partial L}{\partial z_i} \hat{x}_i"
DBETA_WRONG = (
    r"\frac{\partial L}{\partial b} = \sum_{i=1}^{N} \frac{\partial L}{\partial z_i} \hat{x}_i"
)


#: ∂L/∂x_i from ∂L/∂z with z = x̂ (right, and with N dropped from its first term: wrong)
DX_RIGHT = (
    r"\frac{\partial L}{\partial x_i} = \frac{1}{N\sqrt{\sigma^2+\epsilon}}\left(N "
    r"\frac{\partial L}{\partial z_i} - \sum_{k=1}^{N} \frac{\partial L}{\partial z_k} - "
    r"\hat{x}_i \sum_{k=1}^{N} \frac{\partial L}{\partial z_k}\hat{x}_k\right)"
)
DX_WRONG = DX_RIGHT.replace(r"\left(N ", r"\left(")


def doc(tmp_path: Path, text: str, name: str = "post.md"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_document(path)


def blocks(*rows: str) -> str:
    """One $$ block per row: row k is line 2k + 1 of the file."""
    return "\n".join(f"$$ {r} $$\n" for r in rows)


def test_the_roles_follow_from_the_shape_of_the_forward_line():
    def roles(text: str) -> dict[str, str] | None:
        return forward_roles(_tree(text, "line", 1, 1), frozenset({"l"}))

    sinai = r"Z^l = a^{l}\frac{X^{l}-\mu^{l}}{\sigma^{l}+\epsilon} + b^{l}"
    assert roles(sinai) == {"a": "gamma", "b": "beta", "Z": "y"}
    assert roles(r"o = w \odot \frac{v - \mu}{\sqrt{\sigma^2 + \epsilon}} + b") == {
        "w": "gamma",
        "b": "beta",
        "v": "x",
        "o": "y",
    }
    assert roles(r"z_1 = \frac{x_1-\mu}{\sigma+\epsilon}") == {"z": "xhat"}
    assert roles(r"y_i = \gamma \hat{x}_i + \beta") is None  # not the shape: nothing learned
    assert roles(r"z = a \frac{x - \mu}{\sqrt{\sigma^2+\epsilon}} + a") is None  # a twice
    assert roles(r"z = a \frac{x - m}{\sqrt{\sigma^2+\epsilon}} + b") is None  # no μ
    assert roles(r"z = a \frac{x - \mu}{N} + b") is None  # D is no spread


def test_letters_learned_from_the_forward_line_read_right_and_wrong_lines(tmp_path):
    form = doc(tmp_path, blocks(FORWARD, DGAMMA, DBETA_WRONG))
    assert [line.status for line in form.lines] == ["checked"] * 3
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "refuted"}
    assert any("read a as γ, b as β, z as y: line 1" in n for n in form.notes)


def test_a_wrong_forward_line_in_the_shape_is_refuted(tmp_path):
    """The shape binds the letters; the line itself is still checked: σ² for the spread is
    wrong, and so is a β added inside."""
    wrong = r"z_i = a \frac{x_i - \mu}{\sigma^2 + \epsilon} + b"
    form = doc(tmp_path, blocks(wrong, DGAMMA))
    assert verdicts(form)[1] == "refuted"


def test_a_letter_the_post_uses_otherwise_is_refused_with_the_reason(tmp_path):
    """b is also an index here (Σ_b): it is not read as β, the note says why, and the line
    that differentiates with respect to it is not checked; a stays γ."""
    other = r"\mu = \frac{1}{N}\sum_{b=1}^{N} x_b"
    form = doc(tmp_path, blocks(FORWARD, other, DGAMMA, DBETA_WRONG))
    assert any("b is not read as β" in n and "b is an index of this post" in n for n in form.notes)
    assert form.lines[3].status == "not checked"
    assert verdicts(form).get(5) == "holds"
    assert 7 not in verdicts(form)


def test_a_letter_defined_by_a_line_of_its_own_is_not_bound(tmp_path):
    mean = r"\mu = \frac{1}{N}\sum_{i=1}^{N} x_i"
    own = r"a = \frac{1}{\sqrt{\sigma^2+\epsilon}}"
    form = doc(tmp_path, blocks(FORWARD, own, DGAMMA, mean))
    assert any("line 3 defines a as a quantity of its own" in n for n in form.notes)
    assert form.lines[0].status == "not read"


def test_a_letter_redefined_in_a_new_section_means_the_new_thing_from_there_on(tmp_path):
    """z is y in the first section and x̂ from the forward line of the next (Sinai 2022):
    ∂L/∂z_i there is ∂L/∂x̂_i, and a wrong one is refuted."""
    right, wrong = DX_RIGHT, DX_WRONG
    text = (
        "# Forward\n\n"
        + blocks(FORWARD, DGAMMA)
        + "\n# Without a and b\n\n"
        + blocks(r"z_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}", right, wrong)
    )
    form = doc(tmp_path, text)
    got = verdicts(form)
    assert got[3] == "holds" and got[5] == "holds"  # line 5: dγ with z as y
    assert got[9] == "holds" and got[11] == "holds" and got[13] == "refuted", got
    assert any("z read as x̂ from line 9" in n and "new section" in n for n in form.notes)


def test_a_letter_redefined_in_the_same_section_is_not_read_after(tmp_path):
    form = doc(
        tmp_path, blocks(FORWARD, r"z_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}", DGAMMA)
    )
    last = form.lines[-1]
    assert last.status == "not read"
    assert "in the same section" in last.reason and "which one" in last.reason


def test_after_a_rebinding_to_xhat_a_line_that_writes_gamma_again_is_not_read(tmp_path):
    """Sinai 2022 drops a and b for z = x̂, then writes ∂z_k/∂a in its summary, where z is y
    again: from the first line that writes γ or β again, z is ambiguous, never guessed."""
    text = (
        "# Forward\n\n"
        + blocks(FORWARD)
        + "\n# Without a and b\n\n"
        + blocks(
            r"z_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}}",
            r"\frac{\partial z_i}{\partial a} = \hat{x}_i",
        )
    )
    form = doc(tmp_path, text)
    last = form.lines[-1]
    assert last.status == "not read"
    assert "writes a (γ) again" in last.reason and "may mean y" in last.reason


def test_two_arrays_written_without_an_index_are_not_taken_for_each_element(tmp_path):
    """∂L/∂x = ∂y/∂x ∂L/∂y (Sinai 2022, z for y): a Jacobian times a vector, or elementwise?
    The two differ, so the line is not checked (it was refuted as the elementwise product)."""
    line = r"\frac{\partial L}{\partial x} = \frac{\partial y}{\partial x} \frac{\partial L}{\partial y}"
    form = doc(tmp_path, blocks(line, DGAMMA.replace("a}", "\\gamma}").replace("z_", "y_")))
    assert form.lines[0].status == "not checked"
    assert "the Jacobian" in form.lines[0].reason


def test_an_unindexed_partial_beside_the_other_paths_is_each_elements_own(tmp_path):
    """Calvin Feng's ∂L/∂x = ∂L/∂x̂·∂x̂/∂x + ∂L/∂σ²·∂σ²/∂x + ∂L/∂μ·∂μ/∂x: beside the paths
    through σ² and μ, ∂x̂/∂x is each element's own partial (μ, σ² held), as before; a wrong
    path is refuted."""
    right = (
        r"\frac{\partial L}{\partial x} = \frac{\partial L}{\partial \hat{x}} \cdot "
        r"\frac{\partial \hat{x}}{\partial x} + \frac{\partial L}{\partial \sigma^{2}} \cdot "
        r"\frac{\partial \sigma^{2}}{\partial x} + \frac{\partial L}{\partial \mu} \cdot "
        r"\frac{\partial \mu}{\partial x}"
    )
    wrong = right.replace(r"\frac{\partial \mu}{\partial x}", "2")
    form = doc(tmp_path, blocks(right, wrong))
    assert verdicts(form) == {1: "holds", 3: "refuted"}


#: tfjgeorge 2019 normalizes a layer's y: \hat{y} = (y − μ)/σ, y the input
Y_FORWARD = r"\hat{y}_i = \frac{y_i - \mu}{\sqrt{\sigma^2 + \epsilon}}"
Y_MEAN = r"\mu = \frac{1}{N}\sum_{i=1}^{N} y_i"
Y_DX_RIGHT = DX_RIGHT.replace("x_i}", "y_i}").replace("z_", r"\hat{y}_")
Y_DX_WRONG = DX_WRONG.replace("x_i}", "y_i}").replace("z_", r"\hat{y}_")


def test_y_normalized_by_the_forward_line_is_the_input(tmp_path):
    r"""\hat{y}_i = (y_i − μ)/σ and no line writes y as an output: y is x, ŷ is x̂, ∂L/∂y is
    ∂L/∂x (a note says so); the right ∂L/∂y holds, the wrong one is refuted."""
    assert Y_DX_RIGHT.startswith(r"\frac{\partial L}{\partial y_i}") and r"\hat{y}_k" in Y_DX_RIGHT
    form = doc(tmp_path, blocks(Y_FORWARD, Y_MEAN, Y_DX_RIGHT, Y_DX_WRONG))
    assert any("y is the layer's input here" in n and "ŷ as x̂" in n for n in form.notes)
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "holds", 7: "refuted"}


def test_y_written_as_an_output_anywhere_is_never_the_input(tmp_path):
    """A line that writes y as an output (y_i = γ ŷ_i + β): y keeps the reader's meaning, the
    output, and is not read as x, with the reason; the forward line is not read."""
    output = r"y_i = \gamma \hat{y}_i + \beta"
    form = doc(tmp_path, blocks(Y_FORWARD, Y_MEAN, output))
    said = [n for n in form.notes if "y is not read as x" in n]
    assert said and "line 5 writes y as an output" in said[0]
    assert not any("y is the layer's input" in n for n in form.notes)
    assert form.lines[0].status == "not read"


def test_y_as_an_index_is_never_the_input(tmp_path):
    r"""x_y: y is an index, not the input (a statistic's subscript, μ_y, is not an index)."""
    index = r"\mu = \frac{1}{N}\sum_{y=1}^{N} x_y"
    form = doc(tmp_path, blocks(Y_FORWARD, index))
    assert any("y is not read as x" in n and "as an index" in n for n in form.notes)


def test_a_chain_that_names_the_output_by_a_function_and_var_of_the_input(tmp_path):
    r"""tfjgeorge's \hat{y} = BN(y) = (y − μ_y)/√(var(y) + ε): BN(y) is another name of the left
    side (not checked, and said so), μ_y is μ, \text{var}(y) is σ² (on a left side too: a
    forward line of σ²); with ε outside the root the line is refuted."""
    right = r"\hat{y}=BN\left(y\right) =\frac{y-\mu_{y}}{\sqrt{\text{var}\left(y\right)+\epsilon}}"
    wrong = r"\hat{y}_i =\frac{y_i-\mu_{y}}{\sqrt{\text{var}\left(y\right)}+\epsilon}"
    var = r"\text{var}\left(y\right) = \frac{1}{N}\sum_{i=1}^{N} (y_i - \mu_y)^2"
    var_wrong = r"\text{var}\left(y\right) = \frac{1}{N}\sum_{i=1}^{N} y_i^2"
    form = doc(tmp_path, blocks(right, var, var_wrong, wrong))
    assert verdicts(form) == {1: "holds", 3: "holds", 5: "refuted", 7: "refuted"}
    first = form.lines[0]
    assert first.members[0] is None and first.members[1] is not None
    assert any("names the layer's output as a function of its input" in n for n in first.notes)
    assert form.lines[1].read.defines == "var"


def test_a_latex_section_starts_a_new_meaning_too(tmp_path):
    r"""\section{…} in a .tex file is a heading: z is y before it and x̂ after its forward line."""
    body = "\n".join(
        [
            r"\section{Forward}",
            r"\[ " + FORWARD + r" \]",
            r"\[ " + DGAMMA + r" \]",
            r"\section{Without a and b}",
            r"\[ z_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}} \]",
            r"\[ " + DX_RIGHT + r" \]",
            r"\[ " + DX_WRONG + r" \]",
        ]
    )
    form = doc(tmp_path, body, "post.tex")
    got = verdicts(form)
    assert got[3] == "holds"  # ∂L/∂a with z as y
    assert got[6] == "holds" and got[7] == "refuted", got  # ∂L/∂z is ∂L/∂x̂ there


def test_a_letter_also_written_with_a_number_is_not_read_as_beta(tmp_path):
    """b_1, b_2 elsewhere (Ouroboros 2021: a linear layer's biases beside BatchNorm's b) are
    other quantities than β: b is not bound, and the note names the line."""
    linear = r"\frac{\partial L}{\partial b_1} = \frac{\partial L}{\partial y_1}"
    form = doc(tmp_path, blocks(FORWARD, linear, DGAMMA))
    assert any(
        "b is not read as β" in n and "line 3 writes b with a number" in n for n in form.notes
    )
    assert form.lines[0].status == "not read"  # its b is unknown
    assert verdicts(form).get(5) == "holds"  # a is still γ


def test_a_left_side_that_names_a_function_of_the_input_is_the_output(tmp_path):
    """llm.c's \\text{LayerNorm}(x) = w ⊙ (x − μ)/√(σ² + ε) + b: the left side is y (its right
    side is the forward line), w is γ, b is β; with ε outside the root it is refuted."""
    right = r"\text{LayerNorm}(x) = w \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + b"
    wrong = r"\mathrm{LN}(x_i) = w \odot \frac{x_i - \mu}{\sqrt{\sigma^2} + \epsilon} + b"
    grad = (
        r"\frac{\partial L}{\partial w} = \sum_{i=1}^{N} \frac{\partial L}{\partial y_i} \hat{x}_i"
    )
    form = doc(tmp_path, blocks(right, grad, wrong))
    got = verdicts(form)
    assert got[1] == "holds" and got[3] == "holds" and got[5] == "refuted", got
    assert any("left side of line 1" in n and "read as y" in n for n in form.notes)
    # a function of something else than the forward line's input is not the output
    other = doc(
        tmp_path,
        blocks(r"\mathrm{LN}(h) = w \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + b", grad),
        "o.md",
    )
    assert not any("left side" in n for n in other.notes)
