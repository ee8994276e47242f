"""Layer classes, read statically: how to build one and call it, and where its state lives.

A BatchNorm layer class (the textbook ``BatchNormalization(gamma, beta, momentum)`` with
``forward(x, train_flg)`` and ``backward(dout)``, the layers of NumPy libraries with parameter
dicts, PyTorch-flavoured modules with ``self.training``) keeps γ, β, the running statistics and
the gradients on ``self`` under names that vary from library to library.  The parent finds them
here, in the file's syntax tree, before anything runs, and tells the child exactly what to do:
construct the class with these keyword arguments, set these attributes (γ, β, the running
statistics, an accumulator at 0), call ``forward`` with the training flag, then ``backward``,
and send back these attributes.  Nothing is guessed at run time in the child.

How each is found, by the data flow the code shows rather than by a list of names:

* **γ and β**: the forward's output (its return value, followed through local names, attributes
  it assigns and the private methods it calls) is ``A·(…) + B``: the leaf B that is added is β,
  a leaf A that multiplies is γ.  A leaf is an attribute (``self.gamma``) or an entry of a dict
  attribute (``self.parameters['scaler']``, also through an alias ``p = self.parameters``) that
  the forward reads but never assigns: a parameter, not a value it computes.
* **running statistics**: the attributes the forward updates from themselves (a moving average
  ``self.r = m·self.r + (1−m)·μ``); the one whose name says var/V/std is the variance.
* **gradients**: what the backward assigns (or adds, ``+=``) to an attribute named like γ's with a
  gradient's prefix or suffix (``dgamma``, ``dLdBW`` for ``BW``, ``_gamma_grad``, ``grad_weight``)
  or to another dict under γ's key (``self.gradients['scaler']``); or the gradient handed to an
  optimizer object next to γ (``self.gamma_opt.update(self.gamma, grad)``), read by giving the
  layer a recording stand-in.  A backward that returns (dx, dγ, dβ) needs none of this.
* **training or eval**: a flag parameter by name (``train_flg``, ``training``; ``eval`` and
  ``inference`` mean the opposite), else by which branch of ``if flag:`` computes the batch
  mean; or an attribute tested the same way (``if self.training:``).
* **the constructor**: its parameters by name and by where they go (``self.<γ> = gamma``); the
  number of features where it sizes arrays (``np.ones(num_features)``).
* **spatial input**: reductions over ``axis=(0, 2, 3)`` or a transpose to channel-last mean
  (N, C, H, W) input; ``axis=(0, 1, 2)`` means channel-last (N, H, W, C) input.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from fractions import Fraction

from bnderive.usercode.layout import Source

#: A place on the layer: ("attr", name) or ("item", dict attribute, key).
Ref = tuple[str, ...]

FORWARD = re.compile(r"^_?(forward|fwd|forward_pass|forward_prop|call)_?$|^__call__$")
BACKWARD = re.compile(r"^_?(backward|bwd|backward_pass|backprop|back_prop|grad|gradient)_?$")
FLAGS = ("train", "training", "is_training", "train_flg", "train_mode", "is_train", "mode_train")
INVERTED = ("eval", "inference", "is_eval", "test", "is_test", "evaluation", "predict", "eval_mode")
MOMENTUM = ("momentum", "alpha", "decay", "moment", "rho", "avg_decay")
EPS = ("eps", "epsilon")
FEATURES = ("num_features", "n_features", "features", "feature_size", "size", "dim", "d", "n",
            "channels", "num_channels", "n_in", "in_features", "c", "units", "input_dim",
            "in_ch", "n_channels", "nfeatures")  # fmt: skip
GAMMA = ("gamma", "g", "weight", "w", "scale", "scaler", "bw")
BETA = ("beta", "b", "bias", "shift", "intercept", "bb")
RUNNING_MEAN = ("running_mean", "moving_mean", "mean_running", "rm")
RUNNING_VAR = ("running_var", "moving_var", "var_running", "rv")


@dataclass(frozen=True)
class LayerPlan:
    """What the parent tells the child to do with a layer, decided from the syntax tree."""

    label: str  # the row prefix: the class name (or the module-level function's)
    cls: str  # the class constructed
    init: tuple[tuple[str, str], ...]  # (keyword, role): gamma, beta, momentum, eps, features,
    # running_mean, running_var
    forward: str  # method name (or the module-level function, see forward_global)
    backward: str | None
    forward_global: bool = False  # forward(layer, x) at module level
    flag: tuple[str, str, bool] | None = None  # ("param" | "attr", name, the value for training)
    gamma: Ref | None = None
    beta: Ref | None = None
    running: dict[str, Ref] = field(default_factory=dict)
    #: dgamma/dbeta: ("ref", place, "set" | "add") or ("recorder", attribute, argument index)
    grads: dict[str, tuple] = field(default_factory=dict)
    guards: tuple[tuple[str, str], ...] = ()  # (attribute, "true" | "features") set before forward
    layout: str = "nchw"  # the SPATIAL input layout: "nchw" or "nhwc" (channel-last)
    modes: tuple[str, ...] = ("per-activation",)
    momentum_default: Fraction | None = None
    problem: str | None = None  # why the class cannot be called (a constructor parameter unknown)

    @property
    def forward_name(self) -> str:
        return self.forward if self.forward_global else f"{self.label}.{self.forward}"

    @property
    def backward_name(self) -> str | None:
        return f"{self.label}.{self.backward}" if self.backward else None

    def describe(self) -> list[str]:
        """How the layer is called, for the report's ``called:`` lines."""
        args = ", ".join(f"{k}={role}" for k, role in self.init)
        flag = ""
        if self.flag is not None:
            kind, name, value = self.flag
            flag = (
                f", {name}={value} in training"
                if kind == "param"
                else f"; self.{name} = {value} in training"
            )
        gamma = _show(self.gamma) if self.gamma else "none (checked with γ = 1, β = 0)"
        lines = [
            f"{self.cls}({args}); γ, β set as {gamma}, {_show(self.beta) if self.beta else '-'}"
            + (f"; running statistics {', '.join(_show(r) for r in self.running.values())}"
               if self.running else "")
        ]  # fmt: skip
        call = f"{self.forward}(layer, x{flag})" if self.forward_global else (
            f".{self.forward}(x{flag})"
        )  # fmt: skip
        lines.append(f"{call} -> out")
        if self.backward:
            grads = [
                _show(g[1]) if g[0] == "ref" else f"self.{g[1]}.…(…) argument {g[2] + 1}"
                for g in self.grads.values()
            ]
            got = f"dx; dgamma, dbeta from {', '.join(grads)}" if grads else "(dx, dgamma, dbeta)"
            lines.append(f".{self.backward}(dout) -> {got}")
        return lines


def _show(ref: Ref | None) -> str:
    if ref is None:
        return "-"
    return f"self.{ref[1]}" if ref[0] == "attr" else f"self.{ref[1]}[{ref[2]!r}]"


# -- the class table --------------------------------------------------------------------------------
class _Classes:
    def __init__(self, source: Source) -> None:
        self.nodes: dict[str, ast.ClassDef] = {}
        self.functions: dict[str, ast.FunctionDef] = {}
        for node in ast.walk(source.tree):
            if isinstance(node, ast.ClassDef) and node.name not in self.nodes:
                self.nodes[node.name] = node
        for node in source.tree.body:
            if isinstance(node, ast.FunctionDef):
                self.functions[node.name] = node

    def methods(self, name: str) -> dict[str, ast.FunctionDef]:
        """The class's methods, its bases' (defined in the file) first, overridden by its own."""
        out: dict[str, ast.FunctionDef] = {}
        node = self.nodes.get(name)
        if node is None:
            return out
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in self.nodes and base.id != name:
                out.update(self.methods(base.id))
        for item in node.body:
            if isinstance(item, ast.FunctionDef):
                out[item.name] = item
        return out

    def own(self, name: str) -> set[str]:
        node = self.nodes[name]
        return {item.name for item in node.body if isinstance(item, ast.FunctionDef)}


def _self_name(fn: ast.FunctionDef) -> str:
    args = fn.args.posonlyargs + fn.args.args
    return args[0].arg if args else "self"


# -- data flow inside one method and the private methods it calls -----------------------------------
class _Flow:
    """The assignments of a method and of the methods of the same object it calls (``self.m``),
    as the parent reads them: local names and the places on ``self`` (attributes, dict entries)."""

    def __init__(self, methods: dict[str, ast.FunctionDef], start: ast.FunctionDef) -> None:
        self.methods = methods
        self.locals: dict[str, list[ast.expr]] = {}
        self.places: dict[Ref, list[ast.expr]] = {}
        self.augmented: set[Ref] = set()
        self.aliases: dict[str, Ref] = {}
        self.returns: list[ast.expr] = []
        self.calls: list[tuple[ast.Call, str]] = []
        self.ifs: list[ast.If] = []
        self.visited: set[str] = set()
        self.self = _self_name(start)
        self._visit(start, top=True)

    def _visit(self, fn: ast.FunctionDef, top: bool = False) -> None:
        if fn.name in self.visited or len(self.visited) > 12:
            return
        self.visited.add(fn.name)
        me = _self_name(fn)
        for node in ast.walk(fn):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    self._assign(target, node.value, me)
            elif isinstance(node, ast.AugAssign):
                ref = self.ref(node.target, me)
                if ref is not None:
                    self.places.setdefault(ref, []).append(node.value)
                    self.augmented.add(ref)
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                self._assign(node.target, node.value, me)
            elif isinstance(node, ast.Return) and node.value is not None and top:
                self.returns.append(node.value)
            elif isinstance(node, ast.If):
                self.ifs.append(node)
            elif isinstance(node, ast.Call):
                self.calls.append((node, me))
                f = node.func
                if (
                    isinstance(f, ast.Attribute)
                    and isinstance(f.value, ast.Name)
                    and f.value.id == me
                    and f.attr in self.methods
                ):
                    self._visit(self.methods[f.attr])

    def _assign(self, target: ast.expr, value: ast.expr, me: str) -> None:
        if isinstance(target, ast.Tuple | ast.List):
            values = value.elts if isinstance(value, ast.Tuple | ast.List) else None
            for k, t in enumerate(target.elts):
                self._assign(t, values[k] if values and k < len(values) else value, me)
            return
        if isinstance(target, ast.Name):
            self.locals.setdefault(target.id, []).append(value)
            ref = self.ref(value, me)
            if ref is not None and ref[0] == "attr":
                self.aliases[target.id] = ref  # p = self.parameters
            return
        ref = self.ref(target, me)
        if ref is not None:
            self.places.setdefault(ref, []).append(value)

    def ref(self, e: ast.expr, me: str | None = None) -> Ref | None:
        """``self.a`` → ("attr", a); ``self.a[k]`` or ``p[k]`` (p = self.a) → ("item", a, k)."""
        me = me or self.self
        if isinstance(e, ast.Attribute) and isinstance(e.value, ast.Name) and e.value.id == me:
            return ("attr", e.attr)
        if isinstance(e, ast.Subscript) and isinstance(e.slice, ast.Constant):
            key = e.slice.value
            if not isinstance(key, str):
                return None
            inner = e.value
            if isinstance(inner, ast.Name) and inner.id in self.aliases:
                return ("item", self.aliases[inner.id][1], key)
            base = self.ref(inner, me)
            if base is not None and base[0] == "attr":
                return ("item", base[1], key)
        return None

    def leaves(self, e: ast.expr, depth: int = 0) -> ast.expr:
        """``e`` with wrappers that keep the values removed: .reshape, .astype, np.asarray, …"""
        while isinstance(e, ast.Call) and depth < 20:
            depth += 1
            f = e.func
            if isinstance(f, ast.Attribute) and f.attr in (
                "reshape", "astype", "copy", "squeeze", "ravel", "flatten", "transpose"
            ):  # fmt: skip
                e = f.value
            elif isinstance(f, ast.Attribute) and f.attr in ("asarray", "array") and e.args:
                e = e.args[0]
            else:
                break
        return e

    def expand(self, e: ast.expr) -> list[ast.expr]:
        """What ``e`` stands for: a local name, a place the method assigns, or a call of one of
        the object's methods is replaced by the values assigned to it (returned by it)."""
        e = self.leaves(e)
        if isinstance(e, ast.Name) and e.id in self.locals:
            return self.locals[e.id]
        ref = self.ref(e)
        if ref is not None and ref in self.places:
            return self.places[ref]
        if (
            isinstance(e, ast.Call)
            and isinstance(e.func, ast.Attribute)
            and isinstance(e.func.value, ast.Name)
            and e.func.value.id == self.self
            and e.func.attr in self.methods
        ):
            fn = self.methods[e.func.attr]
            return [
                n.value for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None
            ]
        return []

    def parameter(self, e: ast.expr) -> Ref | None:
        """A place the code reads but never assigns in this flow: a parameter of the layer."""
        ref = self.ref(self.leaves(e))
        if ref is None:
            return None
        return ref if ref not in self.places else None


def _affine(flow: _Flow) -> tuple[Ref | None, Ref | None]:
    """γ and β: in the output A·(…) + B, the parameter B added and a parameter A multiplying."""
    gammas: list[Ref] = []
    betas: list[Ref] = []
    seen: set[int] = set()

    def factors(e: ast.expr, depth: int) -> list[Ref]:
        if depth > 8 or id(e) in seen:
            return []
        e = flow.leaves(e)
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult):
            return factors(e.left, depth + 1) + factors(e.right, depth + 1)
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Div):
            return factors(e.left, depth + 1)
        p = flow.parameter(e)
        if p is not None:
            return [p]
        seen.add(id(e))
        found = [f for v in flow.expand(e) for f in factors(v, depth + 1)]
        seen.discard(id(e))
        return found

    def visit(e: ast.expr, depth: int) -> None:
        if depth > 8:
            return
        e = flow.leaves(e)
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Add):
            for one, other in ((e.left, e.right), (e.right, e.left)):
                p = flow.parameter(one)
                if p is not None:
                    betas.append(p)
                    gammas.extend(factors(other, depth + 1))
            return
        if isinstance(e, ast.BinOp) and isinstance(e.op, ast.Mult | ast.Div):
            gammas.extend(factors(e, depth + 1))  # no β: the product alone
            return
        for v in flow.expand(e):
            visit(v, depth + 1)

    for r in flow.returns:
        visit(r, 0)
    if isinstance(r := flow.returns[0] if flow.returns else None, ast.Tuple) and r.elts:
        visit(r.elts[0], 0)  # forward -> (out, cache)
    gamma = _most(gammas)
    beta = _most([b for b in betas if b != gamma])
    return gamma, beta


def _most(refs: list[Ref]) -> Ref | None:
    if not refs:
        return None
    return max(dict.fromkeys(refs), key=refs.count)


def _mentions(e: ast.AST, ref: Ref, flow: _Flow) -> bool:
    return any(flow.ref(n) == ref for n in ast.walk(e) if isinstance(n, ast.expr))


def _leaf_name(ref: Ref) -> str:
    return ref[-1]


def _running(flow: _Flow) -> dict[str, Ref]:
    """The places the forward updates from themselves (moving averages)."""
    found = [
        ref for ref, values in flow.places.items() if any(_mentions(v, ref, flow) for v in values)
    ]
    out: dict[str, Ref] = {}
    for ref in found:
        low = _leaf_name(ref).lower().lstrip("_")
        is_var = "var" in low or "std" in low or low.endswith("v") or low.endswith("sigma")
        role = "running_var" if is_var else "running_mean"
        out.setdefault(role, ref)
    return out if len(out) == 2 else {}


def _normal(name: str) -> str:
    return name.lower().lstrip("_")


def _grad_of(name: str, param: str) -> bool:
    """Whether attribute ``name`` is named as the gradient of parameter ``param``."""
    n, p = _normal(name), _normal(param)
    if n == p:
        return False
    for prefix in ("dldd", "dld", "dl_d", "d_", "d", "grad_", "grad", "g_", "delta_"):
        if n == prefix + p:
            return True
    return any(n == p + suffix for suffix in ("_grad", "grad", "_gradient", "_d", "_delta"))


def _grads(flow: _Flow, gamma: Ref | None, beta: Ref | None) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for role, param in (("dgamma", gamma), ("dbeta", beta)):
        if param is None:
            continue
        for ref in flow.places:
            same_key = ref[0] == "item" and param[0] == "item" and ref[2] == param[2]
            named = ref[0] == "attr" and _grad_of(ref[1], _leaf_name(param))
            keyed = ref[0] == "item" and param[0] == "attr" and _grad_of(ref[2], param[1])
            if ref != param and (same_key and ref[1] != param[1] or named or keyed):
                out[role] = ("ref", ref, "add" if ref in flow.augmented else "set")
                break
        else:
            # handed to an optimizer object beside the parameter: self.o.update(self.gamma, grad)
            for call, me in flow.calls:
                f = call.func
                if not (isinstance(f, ast.Attribute) and len(call.args) == 2):
                    continue
                holder = flow.ref(f.value, me)
                if holder is None or holder[0] != "attr":
                    continue
                where = [k for k, a in enumerate(call.args) if flow.ref(a, me) == param]
                if len(where) == 1:
                    out[role] = ("recorder", holder[1], 1 - where[0])
                    break
    return out


def _batch_statistics(node: ast.AST) -> bool:
    """Whether the code computes a mean or variance over the batch (np.mean(x, axis=0),
    x.var(axis=(0, 2, 3)), np.sum(x, axis=0) / n)."""
    for n in ast.walk(node):
        if isinstance(n, ast.Call):
            f = n.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in ("mean", "var", "std", "sum", "average") and (
                n.args or any(k.arg == "axis" for k in n.keywords)
            ):
                return True
    return False


def _flag(fn: ast.FunctionDef, flow: _Flow, params: list[ast.arg]) -> tuple[str, str, bool] | None:
    """How training is chosen: a parameter or an attribute tested by ``if``."""
    for p in params:
        low = p.arg.lower()
        if low in FLAGS:
            return ("param", p.arg, True)
        if low in INVERTED:
            return ("param", p.arg, False)
    names = {p.arg for p in params}
    for node in flow.ifs:
        test, negated = node.test, False
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            test, negated = test.operand, True
        kind = name = None
        if isinstance(test, ast.Name) and test.id in names:
            kind, name = "param", test.id
        elif (ref := flow.ref(test)) is not None and ref[0] == "attr":
            if ref in flow.places:
                continue  # set by the forward itself: not a switch from outside
            low = ref[1].lower().lstrip("_")
            if low not in FLAGS + INVERTED and not _is_switch(node, flow):
                continue
            kind, name = "attr", ref[1]
        if kind is None or name is None:
            continue
        body = any(_batch_statistics(s) for s in node.body)
        orelse = any(_batch_statistics(s) for s in node.orelse)
        if body and not orelse:
            training = not negated
        elif orelse and not body:
            training = negated
        elif not body and not orelse:
            training = negated  # `if not train: return <eval>` / `if eval: <eval>`
        else:
            continue
        return (kind, name, training)
    return None


def _is_switch(node: ast.If, flow: _Flow) -> bool:
    body = any(_batch_statistics(s) for s in node.body)
    orelse = any(_batch_statistics(s) for s in node.orelse)
    return body != orelse


def _guards(flow: _Flow, ours: set[Ref]) -> tuple[tuple[str, str], ...]:
    """Lazy initialisation the plan sets aside: ``if not self.ready:`` (set ready True) and
    ``if self.n is None: self.n = x.shape[1]`` (set n to the number of features)."""
    out: list[tuple[str, str]] = []
    for node in flow.ifs:
        test = node.test
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            ref = flow.ref(test.operand)
            if ref is not None and ref[0] == "attr" and ref not in ours:
                if not any(_batch_statistics(s) for s in node.body):
                    out.append((ref[1], "true"))
        elif (
            isinstance(test, ast.Compare)
            and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Is | ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value is None
        ):
            ref = flow.ref(test.left)
            if ref is not None and ref[0] == "attr" and ref not in ours:
                sized = any(
                    isinstance(n, ast.Attribute) and n.attr == "shape"
                    for s in node.body for n in ast.walk(s)
                )  # fmt: skip
                if sized and not any(_batch_statistics(s) for s in node.body):
                    out.append((ref[1], "features"))
    return tuple(dict.fromkeys(out))


def _literal(e: ast.expr | None) -> Fraction | None:
    if (
        isinstance(e, ast.Constant)
        and isinstance(e.value, int | float)
        and not isinstance(e.value, bool)
    ):
        return Fraction(str(e.value))
    return None


def _init_roles(
    init: ast.FunctionDef | None, gamma: Ref | None, beta: Ref | None, running: dict[str, Ref]
) -> tuple[tuple[tuple[str, str], ...], Fraction | None, str | None]:
    """The constructor's keywords and what each gets; the momentum's default; a problem."""
    if init is None:
        return (), None, None
    params, defaults = _init_params(init)
    goes = _where_params_go(init)
    sized = _sized_names(init)
    attr = {role: ref[1] for role, ref in (("gamma", gamma), ("beta", beta)) if ref}
    attr.update({role: ref[1] for role, ref in running.items()})
    roles: list[tuple[str, str]] = []
    momentum_default = None
    for p, default in zip(params, defaults, strict=True):
        role = _param_role(p.arg, goes.get(p.arg, set()), attr, sized)
        if role == "momentum":
            momentum_default = _literal(default)
        if role is None:
            if default is None:
                return (
                    (),
                    None,
                    (
                        f"its constructor's parameter {p.arg!r} has no default and check-impl cannot "
                        "tell what it is (γ, β, momentum, eps, the number of features or the running "
                        "statistics)"
                    ),
                )
            continue
        roles.append((p.arg, role))
    return tuple(roles), momentum_default, None


def _init_params(init: ast.FunctionDef) -> tuple[list[ast.arg], list[ast.expr | None]]:
    """The constructor's parameters after self (positional, then keyword-only), each with its
    default (None: it has none)."""
    a = init.args
    params = (a.posonlyargs + a.args)[1:]
    defaults: list[ast.expr | None] = [None] * (len(params) - len(a.defaults)) + list(a.defaults)
    params += a.kwonlyargs
    defaults += list(a.kw_defaults)
    return params, defaults


def _where_params_go(init: ast.FunctionDef) -> dict[str, set[str]]:
    """Where each parameter goes: the attributes ``self.<attr> = … param …`` assigns it to
    (a tuple assignment item by item)."""
    me = _self_name(init)
    goes: dict[str, set[str]] = {}
    for node in ast.walk(init):
        if not isinstance(node, ast.Assign):
            continue
        for t in node.targets:
            targets = t.elts if isinstance(t, ast.Tuple) else [t]
            values = (
                node.value.elts
                if isinstance(node.value, ast.Tuple) and isinstance(t, ast.Tuple)
                else [node.value] * len(targets)
            )
            for target, value in zip(targets, values, strict=False):
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == me
                ):
                    direct = _direct(value)
                    if direct is not None:
                        goes.setdefault(direct, set()).add(target.attr)
    return goes


#: The array constructors whose arguments are a size (``np.ones(num_features)``).
_SIZED_BY = ("ones", "zeros", "empty", "full", "rand", "randn", "normal", "uniform")


def _sized_names(init: ast.FunctionDef) -> set[str]:
    """The names the constructor sizes an array with (``np.ones(n)``: n is the number of
    features)."""
    sized: set[str] = set()
    for node in ast.walk(init):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name in _SIZED_BY:
                for n in ast.walk(node):
                    if isinstance(n, ast.Name):
                        sized.add(n.id)
    return sized


def _param_role(name: str, places: set[str], attr: dict[str, str], sized: set[str]) -> str | None:
    """What a constructor parameter is: the role of the attribute it is stored in (γ, β, a
    running statistic), else what its name says, else "features" when it sizes an array;
    None: check-impl cannot tell."""
    role = None
    for r in ("gamma", "beta", "running_mean", "running_var"):
        if r in attr and attr[r] in places:
            role = r
    if role is not None:
        return role
    low = name.lower()
    if low in GAMMA:
        return "gamma"
    if low in BETA:
        return "beta"
    if low in MOMENTUM:
        return "momentum"
    if low in EPS:
        return "eps"
    if low in RUNNING_MEAN:
        return "running_mean"
    if low in RUNNING_VAR:
        return "running_var"
    if low in FEATURES or name in sized:
        return "features"
    return None


def _direct(value: ast.expr) -> str | None:
    """The parameter a value is, as written: ``p``, ``p if p is not None else …``, ``p or …``."""
    if isinstance(value, ast.Name):
        return value.id
    if isinstance(value, ast.IfExp) and isinstance(value.body, ast.Name):
        return value.body.id
    if isinstance(value, ast.BoolOp) and isinstance(value.values[0], ast.Name):
        return value.values[0].id
    if isinstance(value, ast.Call) and value.args and isinstance(value.args[0], ast.Name):
        f = value.func
        if getattr(f, "id", getattr(f, "attr", "")) in ("float", "asarray", "array", "DTYPE"):
            return value.args[0].id
    return None


def _reductions(node: ast.AST) -> set[tuple[int, ...]]:
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.keyword) and n.arg == "axis" and isinstance(n.value, ast.Tuple):
            values = [e.value for e in n.value.elts if isinstance(e, ast.Constant)]
            if all(isinstance(v, int) for v in values):
                out.add(tuple(values))
    return out


#: ``x.reshape(x.shape[0], -1)`` or ``x.reshape(N, -1)``: a 4-D input flattened to (N, C·H·W)
FLATTEN = re.compile(r"reshape\(\s*\w+(\.shape\[0\]|\.shape\[\s*0\s*\])?\s*,\s*-1\s*\)")


def spatial_layout(node: ast.AST) -> tuple[tuple[str, ...], str]:
    """The modes a piece of code handles and its SPATIAL layout, from its reductions: "nchw",
    "nhwc" (channel-last), or "flat" for a layer that flattens a 4-D input to (N, C·H·W) and
    normalizes that per activation (the textbook layer's ``x.reshape(x.shape[0], -1)``): it is
    checked as SPATIAL BatchNorm too, which is what a 4-D input to a BatchNorm layer asks."""
    axes = _reductions(node)
    text = ast.unparse(node)
    nhwc = (0, 1, 2) in axes
    nchw = (0, 2, 3) in axes or re.search(r"transpose\(\s*0\s*,\s*2\s*,\s*3\s*,\s*1\s*\)", text)
    if not (nhwc or nchw):
        if FLATTEN.search(text):
            return ("per-activation", "spatial"), "flat"
        return ("per-activation",), "nchw"
    both = re.search(r"\.ndim\b|len\(\s*\w+\.shape\s*\)", text) is not None
    modes = ("per-activation", "spatial") if both else ("spatial",)
    return modes, "nhwc" if nhwc and not nchw else "nchw"


# -- the plans -------------------------------------------------------------------------------------
def layer_plans(source: Source, only: str | None = None) -> list[LayerPlan]:
    """A plan for every BatchNorm layer class of the file (one with a forward that computes batch
    statistics), and for a module-level forward(self, x) that uses such a class's object."""
    table = _Classes(source)
    plans = []
    for name in table.nodes:
        if only is not None and name != only:
            continue
        methods = table.methods(name)
        own = table.own(name)
        forwards = [m for m in methods if FORWARD.match(m)]
        if not forwards:
            continue
        # the class's own public forward first, then inherited ones
        forwards.sort(key=lambda m: (m not in own, m.startswith("_") and m != "__call__", m))
        forward = forwards[0]
        backwards = [m for m in methods if BACKWARD.match(m)]
        backwards.sort(key=lambda m: (m not in own, m.startswith("_"), m))
        backward = backwards[0] if backwards else None
        plan = _plan(source, table, name, name, methods, methods[forward], backward)
        if plan is not None:
            plans.append(plan)
    if only is None:
        plans += _module_level(source, table)
    return plans


def _plan(
    source: Source,
    table: _Classes,
    label: str,
    cls: str,
    methods: dict[str, ast.FunctionDef],
    forward: ast.FunctionDef,
    backward: str | None,
    forward_global: bool = False,
) -> LayerPlan | None:
    flow = _Flow(methods, forward)
    if not _batch_statistics_in(flow, methods):
        return None
    gamma, beta = _affine(flow)
    running = _running(flow)
    a = forward.args
    params = (a.posonlyargs + a.args)[1:] + a.kwonlyargs
    flag = _flag(forward, flow, params[1:])
    grads: dict[str, tuple] = {}
    if backward is not None:
        grads = _grads(_Flow(methods, methods[backward]), gamma, beta)
    ours = {r for r in (gamma, beta, *running.values()) if r}
    guards = _guards(flow, ours)
    init_roles, momentum_default, problem = _init_roles(
        methods.get("__init__"), gamma, beta, running
    )
    whole = table.nodes[cls]
    modes, layout = spatial_layout(forward if forward_global else whole)
    return LayerPlan(
        label, cls, init_roles, forward.name, backward, forward_global, flag, gamma, beta,
        running, grads, guards, layout, modes, momentum_default, problem,
    )  # fmt: skip


def _batch_statistics_in(flow: _Flow, methods: dict[str, ast.FunctionDef]) -> bool:
    return any(_batch_statistics(methods[m]) for m in flow.visited if m in methods)


def _module_level(source: Source, table: _Classes) -> list[LayerPlan]:
    """``def batch_norm(self, x)`` written at module level (a method dedented out of its class):
    called with an object of the file's class whose constructor sets what it reads."""
    plans = []
    for name, fn in table.functions.items():
        args = fn.args.posonlyargs + fn.args.args
        if len(args) < 2 or args[0].arg != "self" or name.startswith("_"):
            continue
        read = {
            n.attr
            for n in ast.walk(fn)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
        }
        # the class whose constructor sets most of what the function reads
        best, owner = 0, None
        for cls in table.nodes:
            init = table.methods(cls).get("__init__")
            if init is None:
                continue
            sets = _assigned(init)
            if len(read & sets) > best and 2 * len(read & sets) >= len(read):
                best, owner = len(read & sets), cls
        if owner is None:
            continue
        methods = dict(table.methods(owner))
        methods[name] = fn
        plan = _plan(source, table, name, owner, methods, fn, None, forward_global=True)
        if plan is not None:
            plans.append(plan)
    return plans


def _assigned(fn: ast.FunctionDef) -> set[str]:
    return {
        n.attr
        for n in ast.walk(fn)
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
    }


def module_level_methods(source: Source) -> set[str]:
    """Module-level functions whose first parameter is ``self``: not a functional API."""
    return {name for name, f in source.functions.items() if f.params and f.params[0] == "self"}
