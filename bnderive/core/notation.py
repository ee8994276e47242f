"""The index notation that truth, forms and reports share.

One reduction set at a time: elements are indexed 1..M, ``x[k]`` is an input element, ``g[k]``
the upstream gradient ∂L/∂y_k, ``xhat[k]`` and ``y[k]`` the normalized and the output element;
``mu``, ``var``, ``gamma``, ``beta``, ``eps`` are the per-channel scalars and ``M`` the size of
the set.  A reduction Σ_k is SymPy's ``Sum(f, (k, 1, M))``; ``KroneckerDelta(i, k)`` is δ_ik.
Adjoints are named ``d<stage>``: ``dxhat[i]``, ``dvar``, ``dmu``, ``dx[i]``, ``dgamma``, ``dbeta``.

Machine-checkable expressions in form files use this notation, written as Python/SymPy syntax:
``sum(g[k]*(x[k]-mu), k)`` for Σ_k g_k (x_k − μ), ``delta(i, k)`` for δ_ik.

BatchNorm's relatives (``spec.Norm``) use the same notation per reduction set, with two changes:
where γ and β take one value per element of the set (LayerNorm, GroupNorm, RMSNorm) they are
arrays ``gamma[k]``, ``beta[k]`` and so are their adjoints ``dgamma[i]``, ``dbeta[i]`` (the part
of ∂L/∂γ that element i of this set contributes; ∂L/∂γ sums it over the sets); RMSNorm has no μ
and no σ², and its statistic is the mean square ``ms`` = (1/M) Σ_k x_k².
"""

from __future__ import annotations

import ast
from typing import Any

import sympy as sp

from bnderive.core import python_syntax
from bnderive.errors import BnderiveError, FormError

# -- scalars of one reduction set -----------------------------------------------------------------
M = sp.Symbol("M", integer=True, positive=True)
mu = sp.Symbol("mu")
var = sp.Symbol("var")
gamma = sp.Symbol("gamma")
beta = sp.Symbol("beta")
eps = sp.Symbol("eps")
#: RMSNorm's statistic, the mean square (1/M) Σ_k x_k²: the σ² of a set whose mean is taken as 0.
ms = sp.Symbol("ms")

# -- element arrays ---------------------------------------------------------------------------------
x = sp.IndexedBase("x")
g = sp.IndexedBase("g")
xhat = sp.IndexedBase("xhat")
y = sp.IndexedBase("y")
#: γ and β of the families whose affine parameters vary within a set (one per element).
gamma_e = sp.IndexedBase("gamma")
beta_e = sp.IndexedBase("beta")

# -- inputs of the double backward (PyTorch's names) ----------------------------------------------
#: Φ = Σ_k ggI_k·dx_k + ggG·dγ + ggB·dβ; its gradients are gI = ∂Φ/∂x, gG = ∂Φ/∂γ, ggO = ∂Φ/∂g.
ggI = sp.IndexedBase("ggI")
ggG = sp.Symbol("ggG")
ggB = sp.Symbol("ggB")

# -- indices ----------------------------------------------------------------------------------------
i, j, k, l, n, p, q = sp.symbols("i j k l n p q", integer=True)
INDICES = (i, j, k, l, n, p, q)

#: The quantities a derivation can define, and whether each is one value per element.
QUANTITIES: dict[str, bool] = {
    "dy": True,
    "dxhat": True,
    "dvar": False,
    "dmu": False,
    "dx": True,
    "dgamma": False,
    "dbeta": False,
    "gI": True,
    "gG": False,
    "ggO": True,
    "dms": False,
    "out": True,  # the layer's output y, a forward quantity (TensorFlow's folded forward)
}


def quantities(per_element_affine: bool = False, centred: bool = True) -> dict[str, bool]:
    """The quantities of a family, and whether each is one value per element: γ and β per
    element make dγ, dβ elementwise; RMSNorm (not centred) has dms instead of dvar and dmu."""
    out = dict(QUANTITIES)
    if per_element_affine:
        out.update(dgamma=True, dbeta=True)
    if not centred:
        for name in ("dvar", "dmu", "gI", "gG", "ggO"):
            out.pop(name)
    else:
        out.pop("dms")
    return out


#: Names that mean the same thing in published code; a form may use either.
ALIASES: dict[str, str] = {"dout": "g", "dy": "g", "sigma2": "var", "epsilon": "eps"}


class Partial(sp.Function):
    """∂(of)/∂(wrt) as a derivation writes it, before its value is worked out.

    ``of`` is an expression of the graph's nodes (``xhat[k]``, ``var``, ``(x[k] - mu)/...``),
    ``wrt`` one node (``x[i]``, ``mu``, ``var``, ``xhat[k]``, ``y[k]``, ``gamma``, ``beta``) and
    ``how`` says which derivative: 0 as the notation implies, 1 the partial (the other inputs of
    ``of`` held fixed), 2 the total (through μ(x) and σ²(x)).  ``derive.partial_value`` gives it
    its value; nothing evaluates a ``Partial`` itself.
    """

    nargs = 3

    @classmethod
    def eval(cls, of: sp.Expr, wrt: sp.Expr, how: sp.Expr) -> None:  # noqa: ARG003
        return None  # never evaluates to anything by itself

    @property
    def of(self) -> sp.Expr:
        return self.args[0]

    @property
    def wrt(self) -> sp.Expr:
        return self.args[1]

    @property
    def how(self) -> int:
        return int(self.args[2])

    def _eval_derivative(self, s: sp.Symbol) -> sp.Expr:  # pragma: no cover - never asked
        raise TypeError("a Partial is resolved before anything is differentiated")


class ExprNode(sp.Function):
    """A sub-expression of the forward pass taken as a node, as a derivation writes it in a
    denominator (∂y_i/∂(γx̂_i)): ``read.expr_nodes`` finds it in the forward graph and works out
    derivatives with respect to it; nothing evaluates it itself (issue 12)."""

    nargs = 1

    @classmethod
    def eval(cls, expr: sp.Expr) -> None:  # noqa: ARG003
        return None


class ExprAdjoint(sp.Function):
    """∂L/∂E for a sub-expression E of the forward pass (∂C/∂(γx̂_i)), before its value is
    worked out in the forward graph (``read.expr_nodes``)."""

    nargs = 1

    @classmethod
    def eval(cls, expr: sp.Expr) -> None:  # noqa: ARG003
        return None


def reduce_sum(expr: sp.Expr, index: sp.Symbol) -> sp.Sum:
    """Σ over the reduction set: ``Sum(expr, (index, 1, M))``."""
    return sp.Sum(expr, (index, 1, M))


def reference(name: str, index: sp.Symbol | None) -> sp.Expr:
    """The expression that stands for quantity ``name`` (at ``index`` when elementwise)."""
    if index is None:
        return sp.Symbol(name)
    return sp.IndexedBase(name)[index]


def _namespace(per_element_affine: bool = False, centred: bool = True) -> dict[str, object]:
    """The names an expression of a form may use, and what each stands for."""
    names: dict[str, object] = {
        "M": M,
        "mu": mu,
        "var": var,
        "gamma": gamma_e if per_element_affine else gamma,
        "beta": beta_e if per_element_affine else beta,
        "eps": eps,
        "x": x,
        "g": g,
        "xhat": xhat,
        "y": y,
        "ggI": ggI,
        "ggG": ggG,
        "ggB": ggB,
    }
    for idx in INDICES:
        names[str(idx)] = idx
    for name, elementwise in quantities(per_element_affine, centred).items():
        if name == "dy":
            continue
        names[name] = sp.IndexedBase(name) if elementwise else sp.Symbol(name)
    for alias, target in ALIASES.items():
        if target in names:
            names[alias] = names[target]
    if not centred:  # RMSNorm: no mean, no variance; the mean square instead
        for name in ("mu", "var", "sigma2", "ggI", "ggG", "ggB"):
            names.pop(name, None)
        names["ms"] = ms
    return names


#: The functions an expression may call, with their number of arguments.
FUNCTIONS = {"sqrt": 1, "sum": 2, "delta": 2, "KroneckerDelta": 2, "Rational": 2}
_EXAMPLE = "e.g. 'gamma/sqrt(var+eps)*(g[i] - sum(g[k], k)/M)'"


#: Expressions read before, by text and what the names meant: the corpus reads the same lines
#: in many variants of a form (479 readings, 179 different).  Only successes are kept (an error
#: names its ``where``), and a key holds everything the result depends on.
_PARSED: dict[tuple[Any, ...], sp.Expr] = {}


def parse(
    text: str,
    where: str = "expression",
    extra: dict[str, sp.Basic] | None = None,
    *,
    per_element_affine: bool = False,
    centred: bool = True,
) -> sp.Expr:
    """``read_expression``, remembered (SymPy expressions are immutable): the same text with
    the same names and conventions gives the same expression."""
    text = str(text)
    key = (text, tuple((extra or {}).items()), per_element_affine, centred)
    found = _PARSED.get(key)
    if found is None:
        found = read_expression(
            text, where, extra, per_element_affine=per_element_affine, centred=centred
        )
        if len(_PARSED) >= 4096:
            _PARSED.clear()
        _PARSED[key] = found
    return found


def read_expression(
    text: str,
    where: str = "expression",
    extra: dict[str, sp.Basic] | None = None,
    *,
    per_element_affine: bool = False,
    centred: bool = True,
) -> sp.Expr:
    """Read one expression of the index notation; decimals become exact rationals (0.5 → 1/2).

    A form file is data: the text is parsed by Python's ``ast`` (which runs nothing) and the
    tree is turned into SymPy by ``_Reader``, which knows an allow-list of node kinds (numbers,
    names, + − × / and powers, subscripts, calls of ``FUNCTIONS``) and refuses everything else:
    nothing is ever evaluated as Python (SymPy's ``parse_expr`` would ``eval`` it).  Unknown
    names are an error rather than silently becoming new symbols, and the caps of
    ``core/limits.py`` bound the text, its tree and every power *before* SymPy builds them
    (``10**10**10`` is refused, not computed).  ``per_element_affine`` reads ``gamma``, ``beta``
    as arrays (LayerNorm, GroupNorm, RMSNorm); ``centred=False`` is RMSNorm's notation (``ms``,
    no ``mu`` and ``var``).
    """
    from bnderive.core import limits

    namespace = _namespace(per_element_affine, centred)
    namespace.update(extra or {})
    text = str(text)
    if len(text) > limits.EXPRESSION_CHARACTERS.limit:
        raise FormError(f"{where}: " + limits.EXPRESSION_CHARACTERS.message(f"{len(text):,}"))
    try:
        tree = python_syntax.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise FormError(
            f"{where}: cannot read {text!r}: {exc.msg} at column {exc.offset}. Write it in the "
            f"index notation, {_EXAMPLE}."
        ) from None
    except (RecursionError, MemoryError):  # Python's own parser gives up on deep nesting
        raise FormError(
            f"{where}: " + limits.EXPRESSION_DEPTH.message("more than Python's parser reads")
        ) from None
    _check_tree(tree, text, where)
    reader = _Reader(text, where, namespace)
    expr = reader.read(tree.body)
    if reader.unknown:
        unknown = sorted(reader.unknown)
        if not centred and {"mu", "var"} & set(unknown):
            raise FormError(
                f"{where}: {text!r} uses {', '.join(u for u in unknown if u in ('mu', 'var'))}, "
                "but RMSNorm has no mean and no variance: it divides by √(ms + ε) with the mean "
                "square ms = sum(x[k]**2, k)/M. Write ms."
            )
        stats = "mu, var" if centred else "ms"
        raise FormError(
            f"{where}: unknown name(s) {', '.join(unknown)} in {text!r}. Known names: x, g, xhat, "
            f"y, {stats}, gamma, beta, eps, M, the indices i j k l n p q, and the quantities "
            "defined on earlier lines (dxhat, dvar, dmu, dx, dgamma, dbeta)."
        )
    if not isinstance(expr, sp.Expr) or isinstance(expr, sp.IndexedBase):
        raise FormError(f"{where}: {text!r} is not an expression (an array needs an index: x[k]).")
    problem = limits.expression_problem(expr)
    if problem:
        raise FormError(f"{where}: {text!r} cannot be checked: {problem.rstrip('.')}.")
    return expr


def _check_tree(tree: ast.AST, text: str, where: str) -> None:
    """The caps on the syntax tree, walked without recursion, before anything is built."""
    from bnderive.core import limits

    nodes, deepest = 0, 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        nodes += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    if nodes > limits.EXPRESSION_NODES.limit:
        raise FormError(f"{where}: " + limits.EXPRESSION_NODES.message(f"{nodes:,}"))
    if deepest > limits.EXPRESSION_DEPTH.limit:
        raise FormError(f"{where}: " + limits.EXPRESSION_DEPTH.message(f"{deepest:,}"))


class _Reader:
    """Python's syntax tree of one expression → SymPy, by an allow-list (``parse``)."""

    def __init__(self, text: str, where: str, namespace: dict[str, object]) -> None:
        self.text, self.where, self.names = text, where, namespace
        self.unknown: set[str] = set()

    def fail(self, message: str) -> FormError:
        return FormError(f"{self.where}: {message}")

    def read(self, node: ast.AST) -> sp.Basic:
        method = getattr(self, f"read_{type(node).__name__}", None)
        if method is None:
            raise self.fail(
                f"{type(node).__name__} is not allowed in {self.text!r}: only numbers, names, "
                "+ - * / and powers (** or ^), subscripts like x[k] and the functions sqrt, "
                "sum, delta are."
            )
        return method(node)

    # -- leaves -----------------------------------------------------------------------------------
    def read_Constant(self, node: ast.Constant) -> sp.Basic:
        from bnderive.core.limits import parse_decimal

        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"the constant {value!r} in {self.text!r} is not a number.")
        literal = ast.get_source_segment(self.text.replace("^", "**"), node) or repr(value)
        try:  # exact: 0.1 is 1/10, 1e-5 is 1/100000; bounded before it is built
            return sp.Rational(parse_decimal(literal.replace("_", ""), literal))
        except BnderiveError as exc:
            raise self.fail(f"{exc} (in {self.text!r})") from None

    def read_Name(self, node: ast.Name) -> sp.Basic:
        if node.id in self.names:
            return self.names[node.id]  # type: ignore[return-value]
        self.unknown.add(node.id)
        return sp.Symbol(node.id)

    # -- arithmetic ---------------------------------------------------------------------------------
    def read_UnaryOp(self, node: ast.UnaryOp) -> sp.Basic:
        if isinstance(node.op, ast.USub):
            return -self.read(node.operand)
        if isinstance(node.op, ast.UAdd):
            return self.read(node.operand)
        raise self.fail(f"{type(node.op).__name__} is not allowed in {self.text!r}.")

    def read_BinOp(self, node: ast.BinOp) -> sp.Basic:
        from bnderive.core.limits import power_problem

        left, right = self.read(node.left), self.read(node.right)
        for side in (left, right):
            if isinstance(side, sp.IndexedBase):
                name = str(side.label)
                raise self.fail(
                    f"{name} is written without an index in {self.text!r}, but here {name} "
                    f"takes one value per element: write {name}[i] (or [k] in a sum)."
                )
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if isinstance(node.op, ast.Div):
            if right == 0:
                raise self.fail(f"{self.text!r} divides by zero.")
            return left / right
        if isinstance(node.op, ast.Pow):
            if left == 0 and right.is_Number and right <= 0:
                raise self.fail(f"{self.text!r} divides by zero (0 to the power {right}).")
            problem = power_problem(left, right)
            if problem:
                raise self.fail(
                    f"{ast.get_source_segment(self.text.replace('^', '**'), node)}: {problem}."
                )
            return left**right
        raise self.fail(
            f"the operator {type(node.op).__name__} is not allowed in {self.text!r}: use + - * / "
            "and ** (or ^)."
        )

    # -- x[k] ---------------------------------------------------------------------------------------
    def read_Subscript(self, node: ast.Subscript) -> sp.Basic:
        if not isinstance(node.value, ast.Name):
            raise self.fail(f"only a named array takes an index in {self.text!r} (x[k]).")
        base = self.read_Name(node.value)
        if node.value.id in self.unknown:
            return base
        if not isinstance(base, sp.IndexedBase):
            raise self.fail(
                f"{node.value.id} is one value per channel and takes no index in {self.text!r}."
            )
        return base[self.index(node.slice, node.value.id)]

    def index(self, node: ast.AST, array: str) -> sp.Basic:
        """An element index: one of the index letters, or an element by number 1, 2, …"""
        if isinstance(node, ast.Name) and node.id in {str(s) for s in INDICES}:
            return self.names[node.id]  # type: ignore[return-value]
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int)
            and not isinstance(node.value, bool)
            and 1 <= node.value <= 1_000_000
        ):
            return sp.Integer(node.value)
        shown = ast.get_source_segment(self.text.replace("^", "**"), node) or "?"
        raise self.fail(
            f"{array}[{shown}] in {self.text!r}: an element index is one of the letters "
            "i j k l n p q, or an element by its number 1..M."
        )

    # -- calls ---------------------------------------------------------------------------------------
    def read_Call(self, node: ast.Call) -> sp.Basic:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if (
            name not in FUNCTIONS
            or node.keywords
            or any(isinstance(a, ast.Starred) for a in node.args)
        ):
            raise self.fail(
                f"unknown function {ast.unparse(node.func)!r} in {self.text!r}: use "
                "sqrt(...), sum(expr, k) or delta(i, k)."
            )
        if len(node.args) != FUNCTIONS[name]:
            raise self.fail(
                f"{name} takes {FUNCTIONS[name]} argument(s), {len(node.args)} given in "
                f"{self.text!r}."
            )
        if name == "sqrt":
            return self._sqrt(node.args[0])
        if name == "sum":
            body, index = node.args
            if not (isinstance(index, ast.Name) and index.id in {str(s) for s in INDICES}):
                raise self.fail(
                    f"sum(expr, k) in {self.text!r}: the second argument is the index summed "
                    "over, one of the letters i j k l n p q."
                )
            return reduce_sum(self.read(body), self.names[index.id])  # type: ignore[arg-type]
        if name == "Rational":
            p, q = (self.read(a) for a in node.args)
            if not (p.is_Integer and q.is_Integer) or q == 0:
                raise self.fail(f"Rational(p, q) in {self.text!r} takes two integers, q ≠ 0.")
            return sp.Rational(p, q)
        a, b = (self.index(arg, name) for arg in node.args)  # delta(i, k)
        return sp.KroneckerDelta(a, b)

    def _sqrt(self, node: ast.AST) -> sp.Basic:
        from bnderive.core.limits import power_problem

        value = self.read(node)
        problem = power_problem(value, sp.Rational(1, 2))
        if problem:
            raise self.fail(f"sqrt in {self.text!r}: {problem.rstrip('.')}.")
        return sp.sqrt(value)
