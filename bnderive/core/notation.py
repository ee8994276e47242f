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

import sympy as sp
from sympy.parsing.sympy_parser import (
    convert_xor,
    parse_expr,
    rationalize,
    standard_transformations,
)

from bnderive.errors import FormError

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


def reduce_sum(expr: sp.Expr, index: sp.Symbol) -> sp.Sum:
    """Σ over the reduction set: ``Sum(expr, (index, 1, M))``."""
    return sp.Sum(expr, (index, 1, M))


def reference(name: str, index: sp.Symbol | None) -> sp.Expr:
    """The expression that stands for quantity ``name`` (at ``index`` when elementwise)."""
    if index is None:
        return sp.Symbol(name)
    return sp.IndexedBase(name)[index]


def _namespace(per_element_affine: bool = False, centred: bool = True) -> dict[str, object]:
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
        "sqrt": sp.sqrt,
        "Rational": sp.Rational,
        "sum": reduce_sum,
        "Sum": sp.Sum,
        "delta": sp.KroneckerDelta,
        "KroneckerDelta": sp.KroneckerDelta,
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


_TRANSFORMS = standard_transformations + (convert_xor, rationalize)


def parse(
    text: str,
    where: str = "expression",
    extra: dict[str, sp.Basic] | None = None,
    *,
    per_element_affine: bool = False,
    centred: bool = True,
) -> sp.Expr:
    """Read one expression of the index notation; floats become exact rationals (0.5 → 1/2).

    Unknown names are an error rather than silently becoming new symbols.  ``per_element_affine``
    reads ``gamma``, ``beta`` as arrays (LayerNorm, GroupNorm, RMSNorm); ``centred=False`` is
    RMSNorm's notation (``ms``, no ``mu`` and ``var``).
    """
    namespace = _namespace(per_element_affine, centred)
    namespace.update(extra or {})
    _check_syntax(text, where, namespace)
    try:
        expr = parse_expr(text, local_dict=dict(namespace), transformations=_TRANSFORMS)
    except Exception as exc:  # SymPy raises many types for bad syntax
        raise FormError(
            f"{where}: cannot read {text!r} ({type(exc).__name__}: {exc}). Write it in the index "
            "notation, e.g. 'gamma/sqrt(var+eps)*(g[i] - sum(g[k], k)/M)'."
        ) from None
    if not isinstance(expr, sp.Expr):
        raise FormError(f"{where}: {text!r} is not an expression.")
    known: set[sp.Basic] = set()
    for value in namespace.values():
        if isinstance(value, sp.IndexedBase):
            known.add(value.label)
        elif isinstance(value, sp.Basic):
            known.add(value)
    unknown = sorted(
        str(s) for s in expr.free_symbols if not isinstance(s, sp.Indexed) and s not in known
    )
    unknown += sorted(str(f.func) + "()" for f in expr.atoms(sp.core.function.AppliedUndef))
    if unknown:
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
    if per_element_affine:
        bare = expr.xreplace({a: sp.Dummy() for a in expr.atoms(sp.Indexed)})
        for node in bare.atoms(sp.IndexedBase):
            if node.name in ("gamma", "beta"):
                raise FormError(
                    f"{where}: {node.name} is written without an index in {text!r}, but here "
                    f"{node.name} takes one value per element: write {node.name}[i] (or [k] in a sum)."
                )
    return expr


_ALLOWED_NODES = (
    ast.Expression,
    ast.BinOp,
    ast.UnaryOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.Pow,
    ast.USub,
    ast.UAdd,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Subscript,
    ast.Tuple,
)


def _check_syntax(text: str, where: str, namespace: dict[str, object]) -> None:
    """Accept arithmetic, calls of known functions and subscripts only: a form file is data,
    and SymPy's parser would otherwise evaluate arbitrary Python."""
    try:
        tree = ast.parse(text.replace("^", "**"), mode="eval")
    except SyntaxError as exc:
        raise FormError(
            f"{where}: cannot read {text!r}: {exc.msg} at column {exc.offset}. Write it in the "
            "index notation, e.g. 'gamma/sqrt(var+eps)*(g[i] - sum(g[k], k)/M)'."
        ) from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise FormError(
                f"{where}: {type(node).__name__} is not allowed in {text!r}: only arithmetic, "
                "subscripts like x[k] and the functions sqrt, sum, delta are."
            )
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise FormError(f"{where}: the constant {node.value!r} in {text!r} is not a number.")
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id not in namespace
        ):
            raise FormError(
                f"{where}: unknown name(s) {node.value.id} in {text!r}. Known arrays: x, g, xhat, "
                "y, and the elementwise quantities defined on earlier lines (dxhat, dx, ...)."
            )
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else None
            if name is None or not callable(namespace.get(name)) or node.keywords:
                raise FormError(
                    f"{where}: unknown function {ast.unparse(node.func)!r} in {text!r}: use "
                    "sqrt(...), sum(expr, k) or delta(i, k)."
                )
