"""What ``check`` runs: forms × modes × methods as units of work, in parallel where it helps.

The every-M proof does not depend on the mode (M is a symbol and the reduction set abstract),
so it is one unit per form, reported for both modes.  Units share caches (the truth per set of
conventions, the truth at each random point); ``Plan.run`` fills them first and then forks
workers that inherit them, so two cores do the units in about half the time.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from functools import cached_property

from bnderive.core.evaluate import TooLarge
from bnderive.core.limits import (
    EXACT_CHANNELS,
    EXACT_M,
    EXACT_TOTAL_M,
    RANDOM_M,
    TRIALS,
    too_large,
)
from bnderive.core.spec import Mode, Norm, Spec
from bnderive.errors import EvaluationError
from bnderive.read.forms import Form
from bnderive.verify.every_m import general_check
from bnderive.verify.exact import check_exact_mode, exact_plan
from bnderive.verify.lines import too_large_undecided, truth_of
from bnderive.verify.randomized import form_seed, large_spec, random_check, warm_random_truth
from bnderive.verify.verdict import Verdict

METHODS = ("general", "exact", "random")


def chosen_methods(method: str = "all", all_n: bool = False) -> list[str]:
    """The methods ``check --method`` (one of METHODS, or all) and ``--all-n`` (the proof for
    every M alone) ask for, in the order of METHODS."""
    if all_n:
        return ["general"]
    return list(METHODS) if method == "all" else [method]


@dataclass(frozen=True)
class Unit:
    form: Form
    mode: Mode | None  # None: both modes at once (the every-M proof)
    method: str

    @property
    def label(self) -> str:
        return f"{self.form.name} · {self.mode.value if self.mode else 'all M'} · {self.method}"


@dataclass(frozen=True)
class Plan:
    forms: tuple[Form, ...]
    modes: tuple[Mode, ...] = (Mode.PER_ACTIVATION, Mode.SPATIAL)
    methods: tuple[str, ...] = METHODS
    n_values: tuple[int, ...] | None = None
    shapes: tuple[Spec, ...] = ()
    m_random: int = 4096
    trials: int = 3
    groups: int = 1  # GroupNorm's G, for the forms of that family

    def __post_init__(self) -> None:
        """The caps of ``core/limits.py``, before any work starts."""
        if "random" in self.methods:
            RANDOM_M.check(self.m_random)
            TRIALS.check(self.trials)
        if "exact" in self.methods:
            for mode in self.modes:
                specs = exact_plan(mode, self.n_values, self.shapes)
                for spec in specs:
                    at = f"M for the exact method at {spec.mode.value} {spec.shape}"
                    if spec.m > EXACT_M.limit:
                        raise too_large(at, f"{spec.m:,}", EXACT_M)
                    if spec.c > EXACT_CHANNELS.limit:
                        raise too_large(
                            f"The channels of {spec.mode.value} {spec.shape}", f"{spec.c:,}",
                            EXACT_CHANNELS,
                        )  # fmt: skip
                total = sum(spec.m for spec in specs)
                if total > EXACT_TOTAL_M.limit:
                    raise too_large(
                        f"The sum of M over the exact sizes in {mode.value} mode", f"{total:,}",
                        EXACT_TOTAL_M,
                    )  # fmt: skip

    def units(self) -> list[Unit]:
        out: list[Unit] = []
        for form in self.forms:
            modes = [m for m in self.modes if m in form.modes]
            if not modes:
                continue
            for method in self.methods:
                if method == "random" and form.eps_zero:
                    # its points make √(σ²+ε) rational by the choice of ε; with ε = 0 they
                    # cannot: the exact and every-M methods decide such a form
                    continue
                if method == "general":
                    out.append(Unit(form, None if len(modes) > 1 else modes[0], method))
                else:
                    out.extend(Unit(form, m, method) for m in modes)
        return out

    def base(self, form: Form, mode: Mode | None) -> Spec:
        """A spec of the form's family and layout (the every-M proof's conventions)."""
        mode = mode or form.modes[0]
        if form.norm is Norm.BATCH:
            return Spec(mode)
        return large_spec(mode, 4, form.norm, self.groups)

    def large(self, form: Form, mode: Mode) -> Spec:
        return large_spec(mode, self.m_random, form.norm, self.groups)

    def run_unit(self, unit: Unit) -> list[Verdict]:
        if unit.method == "general":
            return general_check(unit.form, self.base(unit.form, unit.mode), unit.mode)
        if unit.method == "exact":
            return check_exact_mode(unit.form, unit.mode, self.n_values, self.shapes, self.groups)
        return self._random(unit.form, unit.mode)

    def _random(self, form: Form, mode: Mode) -> list[Verdict]:
        """The randomized method at M = ``m_random``; where a line sums a summand over so many
        indices that one reduction would build more entries than ``verify.randomized``'s budget
        there (Σ_k Σ_p f(i, k, p): 4096³ ≈ 6.9·10¹⁰, minutes and gigabytes), at M/16, M/256, …
        instead: the verdicts' scope and detail name the M used and why; other forms keep
        theirs.  A line still too large at the smallest M (16) is not decided by this method
        (``lines.too_large_undecided``); the form's other lines are, and the run goes on."""
        m, reason = self.m_random, ""
        while True:
            spec = large_spec(mode, m, form.norm, self.groups)
            smallest = m // 16 < 16
            try:
                # at the smallest M, a line still too large is left not decided (the others
                # are decided, and the run goes on)
                with too_large_undecided(m if smallest else None):
                    verdicts = random_check(form, spec, self.trials, self.seed)
            except TooLarge as exc:
                if smallest:  # pragma: no cover - too_large_undecided records it per line
                    raise EvaluationError(
                        f"{form.name}: {exc}, even at M = {m}: a line sums over more indices "
                        "at once than bnderive evaluates; check it with --method exact,general."
                    ) from None
                m //= 16
                reason = str(exc)
                continue
            if m == self.m_random:
                return verdicts
            why = f" (at M = {m}, not {self.m_random}: {reason})"
            return [replace(v, detail=(v.detail or "") + why) for v in verdicts]

    @cached_property
    def seed(self) -> int:
        """The random points' seed: drawn from every form of the plan (``form_seed``), so that
        no form can aim at them, and shared, so that the truth there is computed once."""
        return form_seed(self.forms)

    def warm(self) -> None:
        """Fill the caches every unit reads, before any worker is forked."""
        for form in self.forms:
            for mode in self.modes:
                if mode not in form.modes:
                    if form.norm is Norm.BATCH:  # as before: the truth of both layouts
                        truth_of(form.order, form.spec(Spec(mode)))
                    continue
                truth_of(form.order, form.spec(self.base(form, mode)))
                if "random" in self.methods:
                    warm_random_truth(form, self.large(form, mode), self.trials, self.seed)

    def run(self, jobs: int = 1, done: Callable[[Unit], None] | None = None) -> list[Verdict]:
        """Every verdict, in the order of ``units()``; ``done`` is told as each unit ends."""
        units = self.units()
        jobs = max(1, min(jobs, len(units)))
        if jobs == 1 or "fork" not in multiprocessing.get_all_start_methods():
            results = []
            for unit in units:
                results.append(self.run_unit(unit))
                if done:
                    done(unit)
            return [v for chunk in results for v in chunk]
        self.warm()
        global _ACTIVE
        _ACTIVE = self
        by_index: dict[int, list[Verdict]] = {}
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_worker)
        try:
            futures = {pool.submit(_run_index, i): i for i in range(len(units))}
            for future in as_completed(futures):
                index = futures[future]
                by_index[index] = future.result()
                if done:
                    done(units[index])
        except BaseException:  # Ctrl-C, or a unit failed: stop the others now
            _stop(pool)
            raise
        pool.shutdown()
        return [v for i in range(len(units)) for v in by_index[i]]


_ACTIVE: Plan | None = None  # the plan a forked worker inherited


def _worker() -> None:
    """A worker leaves Ctrl-C to the parent, which stops it (``_stop``): no traceback from
    each worker, and no worker left running."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # and dies at once on SIGTERM, even inside SymPy's or symengine's C code (the parent's
    # Python-level handler, inherited by fork, would wait for the next bytecode)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's workers now (``shutdown`` alone waits for the running units), and
    every other worker this process started: a Ctrl-C between a worker's start and the pool's
    note of it leaves one the pool does not know, which Python's exit would then wait for
    forever (it waits for its children, and the worker waits for work)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    processes += [p for p in multiprocessing.active_children() if p not in processes]
    for process in processes:
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.join(timeout=5)


def _run_index(index: int) -> list[Verdict]:
    assert _ACTIVE is not None
    return _ACTIVE.run_unit(_ACTIVE.units()[index])


def default_jobs() -> int:
    """Two workers where two cores are available to this process; one otherwise."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return min(2, cores)


def check_form(
    form: Form,
    modes: Sequence[Mode] = (Mode.PER_ACTIVATION, Mode.SPATIAL),
    methods: Sequence[str] = ("general", "exact", "random"),
    n_values: Sequence[int] | None = None,
    m_random: int = 4096,
    trials: int = 3,
    shapes: Sequence[Spec] = (),
    jobs: int = 1,
    groups: int = 1,
) -> list[Verdict]:
    """Every verdict for one form: the every-M proof, then each mode × method.  The form's
    family (``form.norm``) decides the layouts; ``groups`` is GroupNorm's G."""
    plan = Plan(
        (form,),
        tuple(modes),
        tuple(m for m in ("general", "exact", "random") if m in methods),
        tuple(n_values) if n_values is not None else None,
        tuple(shapes),
        m_random,
        trials,
        groups,
    )
    return plan.run(jobs)
