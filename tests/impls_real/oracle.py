#!/usr/bin/env python3
"""Independent float64 oracle for the BatchNorm corpus in this directory (not bnderive).

For every NAME.py next to this file it
  * loads the file the way its layout needs (plain import, numpy injected, stub package, ...),
  * drives its functions / methods through a per-file adapter (the ADAPTERS table below) on adversarial inputs:
    N >= 4, two or three features (channels), a mean near 1000, variances 0.25 ... 100 (far from 1), gamma not in
    {0, +-1} and different per feature, beta != 0, an uneven dout with a trend, eps far from the usual 1e-5,
    non-trivial running statistics; two per-activation and two spatial cases,
  * computes the ground truth itself: forward out; running statistics under each convention; eval-mode out;
    dx, dgamma, dbeta by the closed-form formula AND by 4-point central finite differences of
    L = sum(dout * out) through a separately written reference forward (the two must agree before anything is
    judged),
  * models each named mistake as a "mutant" (gamma-missing, stats-constant, reshape-without-transpose, ...) and
  * reads the `# expected:` lines of the file and confirms each one: `holds` = equal to the truth (analytic and
    FD), `refuted: TAG` = clearly different from the truth and equal to the TAG mutant, `self-consistent` = equal
    to finite differences of the file's own forward but not to the truth, plus raises / returns None / import
    and parse failures.

Prints one line per expectation and a summary; exit status 0 when every expectation of every file is confirmed.
Usage: python3 oracle.py [-v] [FILE.py ...]
"""
import ast
import copy
import glob
import os
import re
import sys
import traceback
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-8            # analytic agreement, float64
TOL_FD = 1e-6         # agreement with finite differences
DIFF = 1e-5           # "clearly different from the truth"
TOL32 = 2e-3          # float32 code
MOM = 0.9             # momentum passed where the API takes one (CS231n meaning: weight of the old value)


# ============================================================================ inputs
def make_cases():
    cases = []
    for k, (n, d, eps, sp_shape, seed) in enumerate([(5, 3, 0.3, (3, 2, 2, 3), 11), (4, 2, 0.05, (2, 3, 3, 2), 23)]):
        rng = np.random.default_rng(seed)
        means = np.array([1000.0, -250.0, 40.0])[:d]
        stds = np.array([0.5, 10.0, 3.0])[:d]
        z = rng.normal(size=(n, d))
        z = (z - z.mean(0)) / z.std(0)            # exact-ish variances 0.25, 100, 9
        x = means + stds * z
        x2 = means * 0.98 + 1.3 * stds * rng.normal(size=(n, d))    # a second batch (different statistics)
        g = np.array([1.7, -0.6, 2.5])[:d]
        b = np.array([0.3, -1.2, 2.0])[:d]
        dy = rng.normal(size=(n, d)) * np.array([1.0, 2.0, 3.0])[:d] + np.linspace(-1.0, 2.0, n)[:, None]
        rm = np.array([3.0, -2.0, 1.5])[:d]
        rv = np.array([4.0, 0.5, 9.0])[:d]
        pa = dict(x=x, x2=x2, g=g, b=b, dy=dy, eps=eps, rm=rm, rv=rv, sp=False)
        N, C, H, W = sp_shape
        cm = np.array([800.0, -60.0, 5.0])[:C].reshape(1, C, 1, 1)
        cs = np.array([0.5, 7.0, 2.0])[:C].reshape(1, C, 1, 1)
        z4 = rng.normal(size=sp_shape)
        z4 = (z4 - z4.mean(axis=(0, 2, 3), keepdims=True)) / z4.std(axis=(0, 2, 3), keepdims=True)
        x4 = cm + cs * (z4 + 0.3 * np.arange(W))   # a spatial pattern on top, so positions differ
        x42 = cm * 0.97 + 1.2 * cs * rng.normal(size=sp_shape)
        g4 = np.array([1.7, -0.6, 2.5])[:C]
        b4 = np.array([0.3, -1.2, 2.0])[:C]
        dy4 = rng.normal(size=sp_shape) + 0.5 * np.arange(W) - 0.7 * np.arange(H)[:, None]
        sp = dict(x=x4, x2=x42, g=g4, b=b4, dy=dy4, eps=eps, rm=np.array([3.0, -2.0, 1.5])[:C],
                  rv=np.array([4.0, 0.5, 9.0])[:C], sp=True)
        cases.append(dict(pa=pa, sp=sp, name='case%d' % (k + 1)))
    return cases


# ============================================================================ reference (written independently)
def to2(x):
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def to4(y, shape):
    N, C, H, W = shape
    return y.reshape(N, H, W, C).transpose(0, 3, 1, 2)


def flat(c, a):
    """(N,D) stays, (N,C,H,W) -> (N*H*W, C)."""
    return to2(a) if c['sp'] else a


def unflat(c, a):
    return to4(a, c['x'].shape) if c['sp'] else a


def ref_forward(x2, g, b, eps):
    """per-column BatchNorm on a 2-D array, the plain definition."""
    m = x2.shape[0]
    mu = x2.sum(axis=0) / m
    var = ((x2 - mu) ** 2).sum(axis=0) / m
    return g * (x2 - mu) / np.sqrt(var + eps) + b


def ref_grads(x2, g, dy2, eps):
    """closed form: dx = g/sqrt(var+eps) * (dy - mean(dy) - xhat*mean(dy*xhat))."""
    mu = x2.mean(axis=0)
    var = x2.var(axis=0)
    s = np.sqrt(var + eps)
    xh = (x2 - mu) / s
    dx = g / s * (dy2 - dy2.mean(axis=0) - xh * (dy2 * xh).mean(axis=0))
    return dx, (dy2 * xh).sum(axis=0), dy2.sum(axis=0)


def fd_grads(f, x, g, b, dy):
    """4-point central differences of L = sum(dy * f(x, g, b)) w.r.t. x, g, b (float64)."""
    def L(xx, gg, bb):
        return float(np.sum(dy * f(xx, gg, bb)))

    def d1(fun, arr, scale):
        out = np.zeros_like(arr, dtype=float)
        for idx in np.ndindex(arr.shape):
            h = 1e-3 * scale[idx]
            vals = []
            for k in (2, 1, -1, -2):
                a = arr.astype(float).copy()
                a[idx] += k * h
                vals.append(fun(a))
            out[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)
        return out

    if x.ndim == 4:
        sdx = np.broadcast_to(x.std(axis=(0, 2, 3), keepdims=True), x.shape)
    else:
        sdx = np.broadcast_to(x.std(axis=0), x.shape)
    sdx = np.maximum(sdx, 1e-3)
    dx = d1(lambda a: L(a, g, b), x, sdx)
    dg = d1(lambda a: L(x, a, b), np.asarray(g, float), np.maximum(np.abs(np.asarray(g, float)), 1.0))
    db = d1(lambda a: L(x, g, a), np.asarray(b, float), np.ones(np.shape(b)))
    return dx, dg, db


def truth_forward_fn(c, eps):
    if c['sp']:
        return lambda x, g, b: to4(ref_forward(to2(x), np.ravel(g), np.ravel(b), eps), x.shape)
    return lambda x, g, b: ref_forward(x, g, b, eps)


class Truth:
    """everything the oracle knows for one (case, eps, gamma/beta, float32?) combination."""

    def __init__(self, c, eps, f32=False, unit_affine=False):
        self.c = c
        self.eps = eps
        x, g, b, dy, rm, rv = c['x'], c['g'], c['b'], c['dy'], c['rm'], c['rv']
        if unit_affine:
            g, b = np.ones_like(g), np.zeros_like(b)
        if f32:
            r = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)
            x, g, b, dy, rm, rv, eps = r(x), r(g), r(b), r(dy), r(rm), r(rv), float(np.float32(eps))
        self.x, self.g, self.b, self.dy, self.rm, self.rv = x, g, b, dy, rm, rv
        x2, dy2 = flat(c, x), flat(c, dy)
        self.x2, self.dy2 = x2, dy2
        self.M = x2.shape[0]
        self.mu = x2.mean(axis=0)
        self.var = x2.var(axis=0)
        self.out = unflat(c, ref_forward(x2, g, b, eps))
        dx2, self.dgamma, self.dbeta = ref_grads(x2, g, dy2, eps)
        self.dx = unflat(c, dx2)
        # the two references must agree before anything is judged
        fdx, fdg, fdb = fd_grads(truth_forward_fn(c, eps), x, g, b, dy)
        self.fd = dict(dx=fdx, dgamma=fdg, dbeta=fdb)
        agree = max(rel(self.dx, fdx), rel(self.dgamma, fdg), rel(self.dbeta, fdb))
        if not agree < 1e-7:
            raise AssertionError('reference analytic and finite-difference gradients disagree: %g' % agree)
        self.ref_fd_agreement = agree
        sh = (1, -1, 1, 1) if c['sp'] else (1, -1)
        self.eval_out = g.reshape(sh) * (x - rm.reshape(sh)) / np.sqrt(rv.reshape(sh) + eps) + b.reshape(sh)
        if not c['sp']:
            self.eval_out = self.eval_out.reshape(x.shape)


def rel(a, b):
    """max |a - b| / max |b|, after squeezing singleton axes; None on shape mismatch."""
    a = np.squeeze(np.asarray(a, dtype=float))
    b = np.squeeze(np.asarray(b, dtype=float))
    if a.shape != b.shape:
        return None
    if not np.all(np.isfinite(a)):
        return np.inf
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-300))


# ============================================================================ running statistics
def batch_stats(c, x):
    x2 = flat(c, x)
    return x2.mean(axis=0), x2.var(axis=0), x2.shape[0]


def running_expected(conv, c, eps, protocol):
    """expected (running_mean, running_var) after the adapter's protocol, under convention / mistake `conv`."""
    mu, var, M = batch_stats(c, c['x'])
    rm, rv = c['rm'], c['rv']
    if protocol == 'init-two':                # first batch initialises, second is averaged in
        mu2, var2, _ = batch_stats(c, c['x2'])
        mom = {'keras-init': 0.99, 'momentum-ignored(0.99)': 0.99, 'truth': MOM}[conv]
        return mom * mu + (1 - mom) * mu2, mom * var + (1 - mom) * var2
    table = {
        'cs231n': (MOM * rm + (1 - MOM) * mu, MOM * rv + (1 - MOM) * var),
        'pytorch': (MOM * rm + (1 - MOM) * mu, MOM * rv + (1 - MOM) * var * M / (M - 1)),
        'keras': (0.99 * rm + 0.01 * mu, 0.99 * rv + 0.01 * var),
        'inverted-momentum': ((1 - MOM) * rm + MOM * mu, (1 - MOM) * rv + MOM * var),
        'includes-eps': (None, MOM * rv + (1 - MOM) * (var + eps)),
        'std-for-var': (None, MOM * rv + (1 - MOM) * np.sqrt(var)),
        'unchanged': (rm, rv),
    }
    if conv == 'reshape-without-transpose':
        xw = c['x'].reshape(-1, c['x'].shape[1])
        return MOM * rm + (1 - MOM) * xw.mean(axis=0), MOM * rv + (1 - MOM) * xw.var(axis=0)
    return table[conv]


# ============================================================================ mutants (the named mistakes)
def _pos_wrong_axes(T, eps):
    """statistics per (c,h,w) over N only; gamma/beta per channel."""
    x, dy, g, b = T.x, T.dy, T.g.reshape(1, -1, 1, 1), T.b.reshape(1, -1, 1, 1)
    mu = x.mean(axis=0, keepdims=True)
    var = x.var(axis=0, keepdims=True)
    s = np.sqrt(var + eps)
    xh = (x - mu) / s
    gd = dy * g
    dx = (gd - gd.mean(axis=0, keepdims=True) - xh * (gd * xh).mean(axis=0, keepdims=True)) / s
    return dict(out=g * xh + b, dx=dx, dgamma=(dy * xh).sum(axis=(0, 2, 3)), dbeta=dy.sum(axis=(0, 2, 3)))


def _noT(T, eps):
    """the per-activation truth applied to x.reshape(-1, C) (no transpose)."""
    C = T.x.shape[1]
    xw, dw = T.x.reshape(-1, C), T.dy.reshape(-1, C)
    dx, dg, db = ref_grads(xw, T.g, dw, eps)
    out = ref_forward(xw, T.g, T.b, eps).reshape(T.x.shape)
    rmw, rvw = T.rm, T.rv
    ev = (T.g * (xw - rmw) / np.sqrt(rvw + eps) + T.b).reshape(T.x.shape)
    return dict(out=out, dx=dx.reshape(T.x.shape), dgamma=dg, dbeta=db, eval_out=ev)


def mutant(tag, q, T):
    """value of quantity q under the mistake `tag` (normalised: tags joined by ' + ')."""
    c, eps = T.c, T.eps
    x2, dy2, g, b, M = T.x2, T.dy2, T.g, T.b, T.M
    mu, var = T.mu, T.var
    s = np.sqrt(var + eps)
    xh = (x2 - mu) / s
    gd = dy2 * g
    sh = (1, -1, 1, 1) if c['sp'] else (1, -1)
    RM, RV = T.rm.reshape(sh), T.rv.reshape(sh)
    G, B = g.reshape(sh), b.reshape(sh)
    U = lambda a: unflat(c, a)

    def at_eps(e):
        if q == 'eval_out':
            return G * (T.x - RM) / np.sqrt(RV + e) + B
        if q == 'out':
            return U(ref_forward(x2, g, b, e))
        dx, dgm, dbt = ref_grads(x2, g, dy2, e)
        return {'dx': U(dx), 'dgamma': dgm, 'dbeta': dbt}[q]

    m = re.fullmatch(r'eps-(?:hardcoded|mismatch)\(([^)]+)\)', tag)
    if m:
        return at_eps(float(m.group(1)))
    if tag == 'eps-ignored':
        return at_eps(0.0)
    if tag == 'gamma-missing' and q == 'dx':
        return U(ref_grads(x2, np.ones_like(g), dy2, eps)[0])
    if tag == 'stats-constant' and q == 'dx':
        return U(gd / s)
    if tag == 'gamma-missing + stats-constant' and q == 'dx':
        return U(dy2 / s)
    if tag == 'var-for-std' and q == 'dx':
        return U(g / (var + eps) * (dy2 - dy2.mean(0) - xh * (dy2 * xh).mean(0)))
    if tag == 'cache-order(x_hat<->x_mu)':
        xmu = x2 - mu
        if q == 'dx':
            return U((1.0 / M) / s * (M * gd - gd.sum(0) - xmu * (gd * xmu).sum(0)))
        if q == 'dgamma':
            return (dy2 * xmu).sum(0)
    if tag == 'unbiased-var':
        vu = var * M / (M - 1)
        su = np.sqrt(vu + eps)
        xu = (x2 - mu) / su
        if q == 'out':
            return U(g * xu + b)
        if q == 'dx':
            return U(g / su * (dy2 - dy2.mean(0) - xu * (dy2 * xu).mean(0)))
        if q == 'dgamma':
            return (dy2 * xu).sum(0)
    if tag == 'eps-outside-sqrt':
        sd = np.sqrt(var)
        den = sd + eps
        if q == 'eval_out':
            return G * (T.x - RM) / (np.sqrt(RV) + eps) + B
        if q == 'out':
            return U(g * (x2 - mu) / den + b)
        if q == 'dx':     # exact derivative of g*(x-mu)/(std+eps)+b
            xc = x2 - mu
            return U(g / den * (dy2 - dy2.mean(0)) - g * xc * (dy2 * xc).sum(0) / (M * sd * den ** 2))
        if q == 'dgamma':
            return (dy2 * (x2 - mu) / den).sum(0)
    if tag == 'eps-dropped' and q == 'eval_out':
        return G * (T.x - RM) / np.sqrt(RV) + B
    if tag == 'gamma-beta-missing' and q == 'eval_out':
        return (T.x - RM) / np.sqrt(RV + eps)
    if tag == 'running-ignored + gamma-beta-missing' and q == 'eval_out':
        return T.x / np.sqrt(eps)           # zero running mean and variance defaults, no affine
    if tag == 'eval-misplaced-parenthesis' and q == 'eval_out':
        xh_wrong = T.x - RM / np.sqrt(RV + eps)
        return G * (xh_wrong - RM) / np.sqrt(RV + eps) + B
    if tag == 'beta-inside + eps-ignored' and q == 'out':
        return U(g * (x2 - mu + b) / np.sqrt(var))
    if tag == 'beta-inside + var-for-std + eps-dropped' and q == 'eval_out':
        return G * (T.x - RM + B) / RV
    if tag == 'count-N-not-NHW' and q == 'dx' and c['sp']:
        N = c['x'].shape[0]
        xc = x2 - mu
        dvar = (gd * xc).sum(0) * -0.5 * s ** -3
        dmu = -(gd / s).sum(0)
        return U(gd / s + (dmu + dvar * 2 * xc) / N)
    if tag == 'reshape-without-transpose' and c['sp']:
        return _noT(T, eps)[q]
    if tag == 'wrong-axes' and c['sp']:
        return _pos_wrong_axes(T, eps)[q]
    raise KeyError('no mutant model for %r / %s' % (tag, q))


# ============================================================================ loading
class Raised:
    def __init__(self, exc):
        self.name = type(exc).__name__
        self.msg = str(exc)

    def __repr__(self):
        return 'raised %s(%s)' % (self.name, self.msg[:60])


class LoadFailed(Raised):
    pass


class ParseFailed(Raised):
    pass


def load(path, inject=None, stubs=(), transform=None):
    """exec the file as a fresh module; inject: names placed in its globals first; stubs: empty packages."""
    with open(path, encoding='utf-8') as fh:
        src = fh.read()
    if transform:
        src = transform(src)
    name = '_impl_' + re.sub(r'\W', '_', os.path.basename(path)[:-3]) + '_%d' % id(src)
    try:
        code = compile(src, path, 'exec')
    except SyntaxError as e:
        return ParseFailed(e)
    saved = {k: sys.modules.get(k) for k in stubs}
    for k in stubs:
        mod = types.ModuleType(k)
        mod.__path__ = []
        mod.im2col = mod.col2im = lambda *a, **k: None
        sys.modules[k] = mod
    mod = types.ModuleType(name)
    mod.__file__ = path
    if inject:
        mod.__dict__.update(inject)
    try:
        exec(code, mod.__dict__)
    except Exception as e:
        return LoadFailed(e)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return mod


def call(fn, *a, **k):
    try:
        return fn(*a, **k)
    except Exception as e:
        return Raised(e)


# ============================================================================ adapters
# Each adapter(path, c) returns a dict: mode -> {(function, quantity): value}. Quantities: out, eval_out,
# running_mean, running_var, dx, dgamma, dbeta, plus 'call' (a Raised marker), '__own__' (callable own forward
# for finite differences of the file's own forward), 'import' / 'parse' markers. `c` is the per-activation or the
# spatial sub-case (the adapter says which it needs through the KIND table).

def C(a):
    return np.array(a, dtype=float, copy=True)


def bnp(c, mode='train', eps=None, momentum=MOM, running=True):
    p = {'mode': mode, 'eps': c['eps'] if eps is None else eps, 'momentum': momentum}
    if running:
        p['running_mean'] = C(c['rm'])
        p['running_var'] = C(c['rv'])
    return p


def cs231n(mod, c, fwd, bwds, res, key=None):
    """CS231n API: forward(x, gamma, beta, bn_param) -> (out, cache); backward(dout, cache) -> 3-tuple."""
    f = getattr(mod, fwd)
    key = key or fwd
    p = bnp(c)
    r = call(f, C(c['x']), C(c['g']), C(c['b']), p)
    if isinstance(r, Raised):
        res[(key, 'call')] = r
        return None
    out, cache = r
    res[(key, 'out')] = out
    res[(key, 'running_mean')] = p.get('running_mean')
    res[(key, 'running_var')] = p.get('running_var')
    pe = bnp(c, mode='test')
    re_ = call(f, C(c['x']), C(c['g']), C(c['b']), pe)
    res[(key, 'eval_out')] = re_ if isinstance(re_, Raised) else re_[0]
    own = lambda x, g, b: f(x, g, b, {'mode': 'train', 'eps': c['eps']})[0]
    for bw in bwds:
        if not hasattr(mod, bw):
            continue
        r = call(getattr(mod, bw), C(c['dy']), copy.deepcopy(cache))
        if isinstance(r, Raised):
            res[(bw, 'call')] = r
            continue
        if r is None:
            r = (None, None, None)
        res[(bw, 'dx')], res[(bw, 'dgamma')], res[(bw, 'dbeta')] = r
        res[(bw, '__own__')] = own
    return cache


def A_cs231n(pa=True, sp=False, bwds=('batchnorm_backward', 'batchnorm_backward_alt')):
    def adapter(path, c):
        mod = load(path)
        res = {}
        if not c['sp'] and pa:
            cs231n(mod, c, 'batchnorm_forward', bwds, res)
        if c['sp'] and sp:
            cs231n(mod, c, 'spatial_batchnorm_forward', ['spatial_batchnorm_backward'], res)
        return {'': res}
    adapter.kinds = (['pa'] if pa else []) + (['sp'] if sp else [])
    return adapter


def A_forward_alt(path, c):
    mod = load(path)
    res = {}
    cache = cs231n(mod, c, 'batchnorm_forward', ['batchnorm_backward'], res)
    cs231n(mod, c, 'batchnorm_forward_alt', ['batchnorm_backward_alt'], res)
    r = call(mod.batchnorm_backward_alt, C(c['dy']), cache)
    res[('batchnorm_backward_alt[forward-cache]', 'call')] = r if isinstance(r, Raised) else 'ran'
    return {'': res}


def A_std_no_eps(path, c):
    out = {}
    mod = load(path)
    res = {('<module>', 'import'): mod if isinstance(mod, Raised) else 'ok'}
    r = call(mod.batchnorm_forward, C(c['x']), C(c['g']), C(c['b']), bnp(c))
    res[('batchnorm_forward', 'call')] = r if isinstance(r, Raised) else 'ran'
    out[''] = res
    mod = load(path, inject={'np': np})
    res = {}
    f = mod.batchnorm_forward
    p = bnp(c)
    o, cache = f(C(c['x']), C(c['g']), C(c['b']), p)
    res[('batchnorm_forward', 'out')] = o
    res[('batchnorm_forward', 'running_mean')] = p['running_mean']
    res[('batchnorm_forward', 'running_var')] = p['running_var']
    pe = bnp(c, mode='test')
    pe['running_std'] = np.sqrt(c['rv'])     # this layout keeps a running std: give it the same statistics
    res[('batchnorm_forward', 'eval_out')] = f(C(c['x']), C(c['g']), C(c['b']), pe)[0]
    dx, dg, db = mod.batchnorm_backward(C(c['dy']), cache)
    res.update({('batchnorm_backward', 'dx'): dx, ('batchnorm_backward', 'dgamma'): dg,
                ('batchnorm_backward', 'dbeta'): db,
                ('batchnorm_backward', '__own__'): lambda x, g, b: f(x, g, b, {'mode': 'train', 'eps': c['eps']})[0]})
    out['numpy injected'] = res
    return out


def ecbm(mod, c, res):
    f = mod.bn_forward
    p = {'epsilon': c['eps'], 'decay': MOM, 'moving_mean': C(c['rm']), 'moving_var': C(c['rv'])}
    o, cache = f(C(c['x']), C(c['g']), C(c['b']), p, 'train')
    res[('bn_forward', 'out')] = o
    res[('bn_forward', 'running_mean')] = p['moving_mean']
    res[('bn_forward', 'running_var')] = p['moving_var']
    pe = {'epsilon': c['eps'], 'decay': MOM, 'moving_mean': C(c['rm']), 'moving_var': C(c['rv'])}
    res[('bn_forward', 'eval_out')] = f(C(c['x']), C(c['g']), C(c['b']), pe, 'test')[0]
    r = call(mod.bn_backward, C(c['dy']), cache)
    if isinstance(r, Raised):
        res[('bn_backward', 'call')] = r
    else:
        res[('bn_backward', 'dx')], res[('bn_backward', 'dgamma')], res[('bn_backward', 'dbeta')] = r
        res[('bn_backward', '__own__')] = lambda x, g, b: f(x, g, b, {'epsilon': c['eps']}, 'train')[0]


def A_ecbm(path, c):
    res = {}
    ecbm(load(path), c, res)
    return {'': res}


def rep(a, c4):
    """per-channel vector -> one entry per (c, h, w) position (what a flatten-to-(N, C*H*W) layer needs)."""
    N, C_, H, W = c4['x'].shape
    return np.repeat(np.asarray(a, float), H * W)


def A_dlfs(path, c):
    out = {}
    mod = load(path)
    out[''] = {('<module>', 'import'): mod if isinstance(mod, Raised) else 'ok'}
    mod = load(path, stubs=('common', 'common.functions', 'common.util'))
    res = {}
    K = mod.BatchNormalization
    if not c['sp']:
        bn = K(C(c['g']), C(c['b']), MOM, C(c['rm']), C(c['rv']))
        res[('BatchNormalization.forward', 'out')] = bn.forward(C(c['x']), True)
        res[('BatchNormalization.forward', 'running_mean')] = bn.running_mean
        res[('BatchNormalization.forward', 'running_var')] = bn.running_var
        res[('BatchNormalization.backward', 'dx')] = bn.backward(C(c['dy']))
        res[('BatchNormalization.backward', 'dgamma')] = bn.dgamma
        res[('BatchNormalization.backward', 'dbeta')] = bn.dbeta
        res[('BatchNormalization.backward', '__own__')] = lambda x, g, b: K(g, b).forward(x, True)
        ev = K(C(c['g']), C(c['b']), MOM, C(c['rm']), C(c['rv']))
        res[('BatchNormalization.forward', 'eval_out')] = ev.forward(C(c['x']), False)
    else:
        bn = K(rep(c['g'], c), rep(c['b'], c))
        res[('BatchNormalization.forward[4d]', 'out')] = bn.forward(C(c['x']), True)
        res[('BatchNormalization.backward[4d]', 'dx')] = bn.backward(C(c['dy']))
    out['stub package common'] = res
    return out


A_dlfs.kinds = ['pa', 'sp']


def A_dlfs_nhwc(path, c):
    mod = load(path)
    res = {}
    k = '[4d]' if c['sp'] else ''
    bn = mod.BatchNorm(C(c['g']), C(c['b']), MOM, c['eps'])
    bn.running_mean, bn.running_var = C(c['rm']), C(c['rv'])
    res[('BatchNorm.forward' + k, 'out')] = bn.forward(C(c['x']), is_training=True)
    res[('BatchNorm.forward' + k, 'running_mean')] = bn.running_mean
    res[('BatchNorm.forward' + k, 'running_var')] = bn.running_var
    res[('BatchNorm.backward' + k, 'dx')] = bn.backward(C(c['dy']))
    res[('BatchNorm.backward' + k, 'dgamma')] = bn.dgamma
    res[('BatchNorm.backward' + k, 'dbeta')] = bn.dbeta
    res[('BatchNorm.backward' + k, '__own__')] = lambda x, g, b: mod.BatchNorm(g, b, MOM, c['eps']).forward(x)
    ev = mod.BatchNorm(C(c['g']), C(c['b']), MOM, c['eps'])
    ev.running_mean, ev.running_var = C(c['rm']), C(c['rv'])
    res[('BatchNorm.forward' + k, 'eval_out')] = ev.forward(C(c['x']), is_training=False)
    return {'': res}


A_dlfs_nhwc.kinds = ['pa', 'sp']


def A_cupy(path, c):
    mod = load(path)
    res = {}
    if not c['sp']:
        K = mod.BaseBatchNormalization
        bn = K(C(c['g']), C(c['b']), MOM, C(c['rm']), C(c['rv']))
        res[('BaseBatchNormalization.forward_', 'out')] = bn.forward_(C(c['x']), True)
        res[('BaseBatchNormalization.forward_', 'running_mean')] = bn.running_mean
        res[('BaseBatchNormalization.forward_', 'running_var')] = bn.running_var
        res[('BaseBatchNormalization.backward_', 'dx')] = bn.backward_(C(c['dy']))
        res[('BaseBatchNormalization.backward_', 'dgamma')] = bn.dgamma
        res[('BaseBatchNormalization.backward_', 'dbeta')] = bn.dbeta
        res[('BaseBatchNormalization.backward_', '__own__')] = lambda x, g, b: K(g, b, MOM, None, None).forward_(x, True)
        ev = K(C(c['g']), C(c['b']), MOM, C(c['rm']), C(c['rv']))
        res[('BaseBatchNormalization.forward_', 'eval_out')] = ev.forward_(C(c['x']), False)
    else:
        bn = mod.BatchNorm2d(rep(c['g'], c), rep(c['b'], c))
        res[('BatchNorm2d.forward[4d]', 'out')] = bn.forward(C(c['x']), True)
        res[('BatchNorm2d.backward[4d]', 'dx')] = bn.backward(C(c['dy']))
    return {'': res}


A_cupy.kinds = ['pa', 'sp']


def A_numpyml(path, c):
    mod = load(path)
    res = {}
    if not c['sp']:
        K, key, X, DY, back = mod.BatchNorm1D, 'BatchNorm1D', C(c['x']), C(c['dy']), (lambda a: a)
    else:
        K, key = mod.BatchNorm2D, 'BatchNorm2D'
        X, DY = C(c['x']).transpose(0, 2, 3, 1), C(c['dy']).transpose(0, 2, 3, 1)
        back = lambda a: a.transpose(0, 3, 1, 2)

    def fresh(g, b, rm, rv):
        layer = K(momentum=MOM, epsilon=c['eps'])
        layer.forward(X[:2].copy())                    # lazy initialisation
        layer.X = []
        layer.parameters.update(scaler=C(g), intercept=C(b), running_mean=C(rm), running_var=C(rv))
        for k_ in layer.gradients:
            layer.gradients[k_] = np.zeros_like(layer.gradients[k_])
        return layer

    sfx = '[nhwc]' if c['sp'] else ''
    layer = fresh(c['g'], c['b'], c['rm'], c['rv'])
    res[(key + '.forward' + sfx, 'out')] = back(layer.forward(X.copy()))
    res[(key + '.forward' + sfx, 'running_mean')] = layer.parameters['running_mean']
    res[(key + '.forward' + sfx, 'running_var')] = layer.parameters['running_var']
    res[(key + '.backward' + sfx, 'dx')] = back(layer.backward(DY.copy()))
    res[(key + '.backward' + sfx, 'dgamma')] = layer.gradients['scaler']
    res[(key + '.backward' + sfx, 'dbeta')] = layer.gradients['intercept']

    def own(x, g, b):
        L = fresh(g, b, c['rm'], c['rv'])
        xx = x.transpose(0, 2, 3, 1) if c['sp'] else x
        return back(L.forward(xx.copy()))
    res[(key + '.backward' + sfx, '__own__')] = own
    ev = fresh(c['g'], c['b'], c['rm'], c['rv'])
    res[(key + '.forward' + sfx, 'eval_out')] = back(ev.forward(X.copy(), retain_derived=False))
    return {'': res}


class RecOpt:
    def update(self, w, grad):
        self.grad = np.array(grad, copy=True)
        return w


def A_mlfs(path, c):
    mod = load(path)
    res = {}

    def fresh(g, b):
        L = mod.BatchNormalization()
        L.input_shape = (c['x'].shape[1],)
        L.initialize(RecOpt())
        L.gamma, L.beta = C(g), C(b)
        return L
    L = fresh(c['g'], c['b'])
    res[('BatchNormalization.forward_pass', 'out')] = L.forward_pass(C(c['x']))
    res[('BatchNormalization.backward_pass', 'dx')] = L.backward_pass(C(c['dy']))
    res[('BatchNormalization.backward_pass', 'dgamma')] = L.gamma_opt.grad
    res[('BatchNormalization.backward_pass', 'dbeta')] = L.beta_opt.grad
    res[('BatchNormalization.backward_pass', '__own__')] = lambda x, g, b: fresh(g, b).forward_pass(x)
    R = fresh(c['g'], c['b'])
    R.forward_pass(C(c['x']))
    R.forward_pass(C(c['x2']))
    res[('BatchNormalization.forward_pass', 'running_mean')] = R.running_mean
    res[('BatchNormalization.forward_pass', 'running_var')] = R.running_var
    E = fresh(c['g'], c['b'])
    E.running_mean, E.running_var = C(c['rm']), C(c['rv'])
    res[('BatchNormalization.forward_pass', 'eval_out')] = E.forward_pass(C(c['x']), training=False)
    return {'': res}


A_mlfs.protocol = 'init-two'


def A_hipster(path, c):
    mod = load(path)
    f = mod.bn_forward
    o, cache, rm, rv = f(C(c['x']), C(c['g']), C(c['b']), (C(c['rm']), C(c['rv'])), MOM, True)
    dx, dg, db = mod.bn_backward(C(c['dy']), cache)
    ev = f(C(c['x']), C(c['g']), C(c['b']), (C(c['rm']), C(c['rv'])), MOM, False)
    return {'': {('bn_forward', 'out'): o, ('bn_forward', 'running_mean'): rm, ('bn_forward', 'running_var'): rv,
                 ('bn_forward', 'eval_out'): ev[0], ('bn_backward', 'dx'): dx, ('bn_backward', 'dgamma'): dg,
                 ('bn_backward', 'dbeta'): db,
                 ('bn_backward', '__own__'): lambda x, g, b: f(x, g, b, (0.0, 1.0))[0]}}


def A_prml(path, c):
    mod = load(path)
    K = mod.Batch_norm_Layer

    def fresh(g, b):
        L = K(C(g), C(b), MOM)
        L.mov_mean, L.mov_var = C(c['rm']), C(c['rv'])
        return L
    L = fresh(c['g'], c['b'])
    o = L.forward(C(c['x']), True)
    dx = L.backward(C(c['dy']))
    ev = fresh(c['g'], c['b']).forward(C(c['x']), False)
    return {'': {('Batch_norm_Layer.forward', 'out'): o, ('Batch_norm_Layer.forward', 'running_mean'): L.mov_mean,
                 ('Batch_norm_Layer.forward', 'running_var'): L.mov_var, ('Batch_norm_Layer.forward', 'eval_out'): ev,
                 ('Batch_norm_Layer.backward', 'dx'): dx, ('Batch_norm_Layer.backward', 'dgamma'): L.dgamma,
                 ('Batch_norm_Layer.backward', 'dbeta'): L.dbeta,
                 ('Batch_norm_Layer.backward', '__own__'): lambda x, g, b: fresh(g, b).forward(x, True)}}


def A_cmu(path, c):
    mod = load(path)
    D = c['x'].shape[1]

    def fresh(g, b):
        L = mod.BatchNorm1d(D, alpha=MOM)
        L.BW, L.Bb = C(g).reshape(1, D), C(b).reshape(1, D)
        L.running_M, L.running_V = C(c['rm']).reshape(1, D), C(c['rv']).reshape(1, D)
        return L
    L = fresh(c['g'], c['b'])
    o = L.forward(C(c['x']))
    dx = L.backward(C(c['dy']))
    ev = fresh(c['g'], c['b']).forward(C(c['x']), eval=True)
    return {'': {('BatchNorm1d.forward', 'out'): o, ('BatchNorm1d.forward', 'running_mean'): L.running_M,
                 ('BatchNorm1d.forward', 'running_var'): L.running_V, ('BatchNorm1d.forward', 'eval_out'): ev,
                 ('BatchNorm1d.backward', 'dx'): dx, ('BatchNorm1d.backward', 'dgamma'): L.dLdBW,
                 ('BatchNorm1d.backward', 'dbeta'): L.dLdBb,
                 ('BatchNorm1d.backward', '__own__'): lambda x, g, b: fresh(g, b).forward(x)}}


def A_pydl(path, c):
    mod = load(path)
    K = mod.BatchNorm
    L = K(gamma=C(c['g']), beta=C(c['b']), momentum=MOM)
    o = L.forward(C(c['x']))
    dx = L.backward(C(c['dy']))
    R = K(gamma=C(c['g']), beta=C(c['b']), momentum=MOM)
    R.forward(C(c['x']))
    R.forward(C(c['x2']))
    E = K(gamma=C(c['g']), beta=C(c['b']), momentum=MOM)
    E.avg_mean, E.avg_var = C(c['rm']), C(c['rv'])
    return {'': {('BatchNorm.forward', 'out'): o, ('BatchNorm.forward', 'running_mean'): R.avg_mean,
                 ('BatchNorm.forward', 'running_var'): R.avg_var,
                 ('BatchNorm.forward', 'eval_out'): E.forward(C(c['x']), inference=True),
                 ('BatchNorm.backward', 'dx'): dx, ('BatchNorm.backward', 'dgamma'): L.gamma_grad,
                 ('BatchNorm.backward', 'dbeta'): L.beta_grad,
                 ('BatchNorm.backward', '__own__'): lambda x, g, b: K(gamma=g, beta=b).forward(x)}}


A_pydl.protocol = 'init-two'


def A_float32(path, c):
    mod = load(path)
    D = c['x'].shape[1]

    def fresh(g, b):
        L = mod.BN(D, eps=c['eps'], momentum=MOM)
        L.gamma, L.beta = np.float32(g), np.float32(b)
        L.running_mean, L.running_var = np.float32(c['rm']), np.float32(c['rv'])
        return L
    L = fresh(c['g'], c['b'])
    o = L(C(c['x']))
    dx, dg, db = L.grad(C(c['dy']))
    ev = fresh(c['g'], c['b'])(C(c['x']), training=False)
    return {'': {('BN.__call__', 'out'): o, ('BN.__call__', 'running_mean'): L.running_mean,
                 ('BN.__call__', 'running_var'): L.running_var, ('BN.__call__', 'eval_out'): ev,
                 ('BN.grad', 'dx'): dx, ('BN.grad', 'dgamma'): dg, ('BN.grad', 'dbeta'): db}}


def A_pytorch(path, c):
    mod = load(path)
    D = c['x'].shape[1]

    def fresh(g, b):
        L = mod.BatchNorm1d(D, eps=c['eps'], momentum=1 - MOM)
        L.weight, L.bias = C(g), C(b)
        L.running_mean, L.running_var = C(c['rm']), C(c['rv'])
        return L
    L = fresh(c['g'], c['b'])
    o = L.forward(C(c['x']))
    dx = L.backward(C(c['dy']))
    E = fresh(c['g'], c['b'])
    E.training = False
    return {'': {('BatchNorm1d.forward', 'out'): o, ('BatchNorm1d.forward', 'running_mean'): L.running_mean,
                 ('BatchNorm1d.forward', 'running_var'): L.running_var,
                 ('BatchNorm1d.forward', 'eval_out'): E.forward(C(c['x'])),
                 ('BatchNorm1d.backward', 'dx'): dx, ('BatchNorm1d.backward', 'dgamma'): L.grad_weight,
                 ('BatchNorm1d.backward', 'dbeta'): L.grad_bias,
                 ('BatchNorm1d.backward', '__own__'): lambda x, g, b: fresh(g, b).forward(x)}}


def A_fwd_cache(fwd, bwd, splat=False):
    """forward(x, gamma, beta, eps) -> (out, cache); backward(dout, cache) or backward(dout, **cache)."""
    def adapter(path, c):
        mod = load(path)
        f, bw = getattr(mod, fwd), getattr(mod, bwd)
        o, cache = f(C(c['x']), C(c['g']), C(c['b']), c['eps'])
        r = bw(C(c['dy']), **cache) if splat else bw(C(c['dy']), cache)
        return {'': {(fwd, 'out'): o, (bwd, 'dx'): r[0], (bwd, 'dgamma'): r[1], (bwd, 'dbeta'): r[2],
                     (bwd, '__own__'): lambda x, g, b: f(x, g, b, c['eps'])[0]}}
    return adapter


def A_loops(path, c):
    mod = load(path)
    f = mod.batch_norm_forward
    dx, dg, db = mod.batch_norm_backward(C(c['dy']), C(c['x']), C(c['g']), c['eps'])
    return {'': {('batch_norm_forward', 'out'): f(C(c['x']), C(c['g']), C(c['b']), c['eps']),
                 ('batch_norm_backward', 'dx'): dx, ('batch_norm_backward', 'dgamma'): dg,
                 ('batch_norm_backward', 'dbeta'): db,
                 ('batch_norm_backward', '__own__'): lambda x, g, b: f(x, g, b, c['eps'])}}


def A_unpacked_spatial(path, c):
    mod = load(path)
    Cn = c['x'].shape[1]
    g4, b4 = C(c['g']).reshape(1, Cn, 1, 1), C(c['b']).reshape(1, Cn, 1, 1)
    f = mod.np_batch_norm_2d
    dx, dg, db = mod.np_batch_norm_2d_backward(C(c['dy']), C(c['x']), g4, c['eps'])
    return {'': {('np_batch_norm_2d', 'out'): f(C(c['x']), g4, b4, c['eps']),
                 ('np_batch_norm_2d_backward', 'dx'): dx, ('np_batch_norm_2d_backward', 'dgamma'): dg,
                 ('np_batch_norm_2d_backward', 'dbeta'): db,
                 ('np_batch_norm_2d_backward', '__own__'):
                     lambda x, g, b: f(x, np.reshape(g, (1, -1, 1, 1)), np.reshape(b, (1, -1, 1, 1)), c['eps'])}}


A_unpacked_spatial.kinds = ['sp']


def A_functional(fwd, bwd):
    """bnderive's functional API: bwd(x, gamma, beta, dout, eps) -> (dx, dgamma, dbeta)."""
    def adapter(path, c):
        mod = load(path)
        dx, dg, db = getattr(mod, bwd)(C(c['x']), C(c['g']), C(c['b']), C(c['dy']), c['eps'])
        res = {(bwd, 'dx'): dx, (bwd, 'dgamma'): dg, (bwd, 'dbeta'): db}
        if fwd:
            f = getattr(mod, fwd)
            res[(fwd, 'out')] = f(C(c['x']), C(c['g']), C(c['b']), c['eps'])
            res[(bwd, '__own__')] = lambda x, g, b: f(x, g, b, c['eps'])
        return {'': res}
    return adapter


def A_no_affine(path, c):
    mod = load(path)
    xh, cache = mod.batch_norm(C(c['x']), c['eps'])
    dx = mod.batch_norm_backward(C(c['dy']), cache)
    return {'': {('batch_norm', 'out'): xh, ('batch_norm_backward', 'dx'): dx}}


def A_einsum(path, c):
    mod = load(path)
    y, cache = mod.bn2d_forward(C(c['x']), C(c['g']), C(c['b']), c['eps'])
    dx, dg, db = mod.bn2d_backward(C(c['dy']), cache)
    return {'': {('bn2d_forward', 'out'): y, ('bn2d_backward', 'dx'): dx, ('bn2d_backward', 'dgamma'): dg,
                 ('bn2d_backward', 'dbeta'): db,
                 ('bn2d_backward', '__own__'): lambda x, g, b: mod.bn2d_forward(x, g, b, c['eps'])[0]}}


A_einsum.kinds = ['sp']


def A_std_class(path, c):
    mod = load(path)
    D = c['x'].shape[1]

    def fresh(g, b):
        L = mod.StdBatchNorm(D, eps=c['eps'], momentum=MOM)
        L.gamma, L.beta = C(g), C(b)
        L.running_mean, L.running_var = C(c['rm']), C(c['rv'])
        return L
    L = fresh(c['g'], c['b'])
    o = L.forward(C(c['x']))
    dx, dg, db = L.backward(C(c['dy']))
    return {'': {('StdBatchNorm.forward', 'out'): o, ('StdBatchNorm.forward', 'running_mean'): L.running_mean,
                 ('StdBatchNorm.forward', 'running_var'): L.running_var,
                 ('StdBatchNorm.forward', 'eval_out'): fresh(c['g'], c['b']).forward(C(c['x']), train=False),
                 ('StdBatchNorm.backward', 'dx'): dx, ('StdBatchNorm.backward', 'dgamma'): dg,
                 ('StdBatchNorm.backward', 'dbeta'): db,
                 ('StdBatchNorm.backward', '__own__'): lambda x, g, b: fresh(g, b).forward(x)}}


def A_module_method(path, c):
    mod = load(path)
    D = c['x'].shape[1]
    L = mod.MyBN(MOM, c['eps'], D)
    L._gamma, L._beta = C(c['g']), C(c['b'])
    L._running_mean, L._running_var = C(c['rm']), C(c['rv'])
    o = mod.batch_norm(L, C(c['x']))
    return {'': {('batch_norm', 'out'): o, ('batch_norm', 'running_mean'): L._running_mean,
                 ('batch_norm', 'running_var'): L._running_var}}


def kratzert_cache(c):
    x, g, eps = c['x'], c['g'], c['eps']
    mu = x.mean(0)
    xmu = x - mu
    var = (xmu ** 2).mean(0)
    sq = np.sqrt(var + eps)
    return (xmu / sq, C(g), xmu, 1.0 / sq, sq, var, eps)


def A_fullwidth(path, c):
    out = {}
    mod = load(path)
    out[''] = {('<module>', 'parse'): mod if isinstance(mod, Raised) else 'ok'}
    mod = load(path, inject={'np': np}, transform=lambda s: s.replace('\u3000', ' '))
    dx, dg, db = mod.batchnorm_backward(C(c['dy']), kratzert_cache(c))
    out['U+3000 replaced'] = {('batchnorm_backward', 'dx'): dx, ('batchnorm_backward', 'dgamma'): dg,
                              ('batchnorm_backward', 'dbeta'): db}
    return out


def A_nameerror(path, c):
    out = {}
    mod = load(path)
    r = call(mod.Batchnorm_simple_for_train, C(c['x']), C(c['g']), C(c['b']), bnp(c), c['eps'])
    out[''] = {('Batchnorm_simple_for_train', 'call'): r if isinstance(r, Raised) else 'ran'}
    mod = load(path, inject={'momentum': MOM})
    r = call(mod.Batchnorm_simple_for_train, C(c['x']), C(c['g']), C(c['b']), bnp(c), c['eps'])
    out['momentum = 0.9 injected'] = {('Batchnorm_simple_for_train', 'return'): r}
    return out


def A_ecbm_none(path, c):
    res = {}
    ecbm(load(path), c, res)
    return {'': res}


ADAPTERS = {
    'cs231n_staged.py': A_cs231n(pa=True, sp=True),
    'cs231n_dictcache.py': A_cs231n(),
    'cs231n_spatial_direct.py': A_cs231n(pa=False, sp=True),
    'cs231n_spatial_count_n.py': A_cs231n(pa=False, sp=True),
    'cs231n_spatial_no_transpose.py': A_cs231n(pa=True, sp=True),
    'cs231n_running_eps.py': A_cs231n(),
    'cs231n_momentum_inverted.py': A_cs231n(),
    'cs231n_forward_alt.py': A_forward_alt,
    'cs231n_gamma_missing.py': A_cs231n(),
    'cs231n_composite.py': A_cs231n(),
    'cs231n_hardcoded_eps.py': A_cs231n(),
    'cs231n_beta_inside.py': A_cs231n(),
    'spatial_wrong_axes_loop.py': A_cs231n(pa=True, sp=True),
    'bn_std_no_eps.py': A_std_no_eps,
    'ecbm_stats_constant.py': A_ecbm,
    'ecbm_none_cache.py': A_ecbm_none,
    'dlfs_class.py': A_dlfs,
    'dlfs_class_nhwc.py': A_dlfs_nhwc,
    'cupy_style_eps_mismatch.py': A_cupy,
    'numpyml_style.py': A_numpyml,
    'numpyml_channel_last.py': A_numpyml,
    'mlfromscratch_style.py': A_mlfs,
    'hipster_style.py': A_hipster,
    'prml_style.py': A_prml,
    'cmu_mytorch.py': A_cmu,
    'pydl_momentum_ignored.py': A_pydl,
    'float32_layer.py': A_float32,
    'pytorch_unbiased.py': A_pytorch,
    'kronecker_jacobian.py': A_fwd_cache('bn_forward', 'bn_backward'),
    'cache_order.py': A_fwd_cache('bn_forward', 'bn_backward'),
    'unbiased_normalize.py': A_fwd_cache('batchnorm_forward', 'batchnorm_backward'),
    'kwargs_cache.py': A_fwd_cache('batchnorm_forward', 'batchnorm_backward', splat=True),
    'einsum_spatial.py': A_einsum,
    'loops_explicit.py': A_loops,
    'unpacked_args_spatial.py': A_unpacked_spatial,
    'functional_api.py': A_functional('bn_apply', 'bn_backward'),
    'functional_var_for_std.py': A_functional(None, 'batchnorm_backward'),
    'no_affine.py': A_no_affine,
    'eps_outside_sqrt.py': A_std_class,
    'module_level_method.py': A_module_method,
    'kratzert_fullwidth_space.py': A_fullwidth,
    'nameerror_momentum.py': A_nameerror,
}
ADAPTERS['numpyml_channel_last.py'] = lambda p, c: A_numpyml(p, c)
ADAPTERS['numpyml_channel_last.py'].kinds = ['sp']


# ============================================================================ expectations
QTY = ['out', 'eval_out', 'running_mean', 'running_var', 'dx', 'dgamma', 'dbeta']
MODE_WORDS = [('U+3000 replaced', 'U+3000 replaced'), ('momentum = 0.9 injected', 'momentum = 0.9 injected'),
              ('stub package common', 'stub package common'), ('numpy injected', 'numpy injected')]


class Expect:
    def __init__(self, raw):
        self.raw = raw
        self.mode = ''
        t = raw
        m = re.match(r'with (.*?):\s*(.*)$', t)
        if m:
            cond = m.group(1)
            self.mode = next((v for k, v in MODE_WORDS if k in cond), cond)
            t = m.group(2)
        self.text = t
        self.kind = None
        self.func = None
        self.qtys = []
        self.tag = None
        self.conv = None
        self.note = ''
        self.exc = None
        self._parse(t)

    def _parse(self, t):
        if t.startswith('import fails:'):
            self.kind, self.exc = 'import-fails', t.split(':', 1)[1].split()[0]
            return
        if t.startswith('file does not parse:'):
            self.kind, self.exc = 'parse-fails', t.split(':', 1)[1].split()[0]
            return
        m = re.match(r'module imports, but calling (\S+) raises (\w+)', t)
        if m:
            self.kind, self.func, self.exc = 'call-raises', m.group(1), m.group(2)
            return
        m = re.match(r'(\S+) raises (\w+)', t)
        if m:
            self.kind, self.func, self.exc = 'call-raises', m.group(1), m.group(2)
            return
        m = re.match(r'(\S+) returns None', t)
        if m:
            self.kind, self.func = 'returns-none', m.group(1)
            return
        m = re.match(r'(\S+) ((?:\w+)(?:, \w+)*) returns None', t)
        if m:
            self.kind, self.func, self.qtys = 'returns-none', m.group(1), m.group(2).split(', ')
            return
        m = re.match(r'(\S+) (\w+) self-consistent with its own forward(.*)$', t)
        if m:
            self.kind, self.func, self.qtys, self.note = 'self-consistent', m.group(1), [m.group(2)], m.group(3)
            return
        m = re.match(r'(\S+) ((?:\w+)(?:, \w+)*) (holds|refuted:)\s*(.*)$', t)
        if not m:
            raise ValueError('cannot read expectation: %r' % t)
        self.func = m.group(1)
        self.qtys = m.group(2).split(', ')
        rest = m.group(4)
        if m.group(3) == 'holds':
            self.kind = 'holds'
            mm = re.search(r'running stats:\s*([\w.()-]+)', rest)
            if mm:
                self.conv = mm.group(1)
                if not any(q.startswith('running') for q in self.qtys):
                    self.qtys = self.qtys + ['running_mean', 'running_var']
            self.note = rest
        else:
            self.kind = 'refuted'
            tag = re.sub(r'\s+\(.*\)$', '', rest.strip())      # drop a trailing note "(eps fixed at ...)"
            self.tag = re.sub(r'\s*\+\s*', ' + ', tag)
        for q in self.qtys:
            if q not in QTY:
                raise ValueError('unknown quantity %r in %r' % (q, self.raw))

    def eps_override(self):
        m = re.search(r'eps fixed at ([0-9.e+-]+)', self.raw)
        return float(m.group(1)) if m else None

    def f32(self):
        return 'float32' in self.raw

    def unit_affine(self):
        return 'gamma = 1' in self.raw


def read_expectations(path):
    with open(path, encoding='utf-8', errors='replace') as fh:
        lines = [ln for ln in fh.read().splitlines() if ln.startswith('#')]
    return [Expect(ln.split('# expected:', 1)[1].strip()) for ln in lines if ln.startswith('# expected:')]


# ============================================================================ judging
def fmt(v):
    if v is None:
        return 'shape!'
    return '%.1e' % v


def judge(e, results, c, protocol):
    """returns (ok, evidence) for expectation e on one sub-case."""
    res = results.get(e.mode)
    if res is None:
        return False, 'adapter has no mode %r' % e.mode
    if e.kind == 'import-fails':
        v = res.get(('<module>', 'import'))
        return isinstance(v, LoadFailed) and v.name == e.exc, repr(v)
    if e.kind == 'parse-fails':
        v = res.get(('<module>', 'parse'))
        return isinstance(v, ParseFailed) and v.name == e.exc, repr(v)
    if e.kind == 'call-raises':
        v = res.get((e.func, 'call'))
        return isinstance(v, Raised) and v.name == e.exc, repr(v)
    if e.kind == 'returns-none':
        if not e.qtys:
            v = res.get((e.func, 'return'), 'missing')
            return v is None, repr(v)
        vals = [res.get((e.func, q), 'missing') for q in e.qtys]
        return all(v is None for v in vals), repr(vals)

    eps = e.eps_override()
    eps = c['eps'] if eps is None else eps
    tol = TOL32 if e.f32() else TOL
    tol_fd = TOL32 if e.f32() else TOL_FD
    T = Truth(c, eps, f32=e.f32(), unit_affine=e.unit_affine())
    ok_all, ev = True, []
    for q in e.qtys:
        if (e.func, q) not in res:
            return False, 'no result for %s %s' % (e.func, q)
        v = res[(e.func, q)]
        if isinstance(v, Raised) or v is None:
            return False, '%s: %r' % (q, v)
        v = np.asarray(v, dtype=float) if not isinstance(v, np.ndarray) else v.astype(float)
        if q in ('running_mean', 'running_var'):
            idx = 0 if q == 'running_mean' else 1
            truth_conv = 'truth' if protocol == 'init-two' else 'cs231n'
            if e.kind == 'holds':
                want = running_expected(e.conv or truth_conv, c, eps, protocol)[idx]
                r = rel(v, want)
                ok = r is not None and r <= tol
                ev.append('%s %s vs %s %s' % (q, 'ok' if ok else 'BAD', e.conv, fmt(r)))
            else:
                want = running_expected(e.tag, c, eps, protocol)[idx]
                truth = running_expected(truth_conv, c, eps, protocol)[idx]
                rt, rmu = rel(v, truth), rel(v, want)
                ok = rt is not None and rt > DIFF and rmu is not None and rmu <= tol
                ev.append('%s vs truth %s, vs %s %s' % (q, fmt(rt), e.tag, fmt(rmu)))
            ok_all &= ok
            continue
        truth = getattr(T, q)
        r_an = rel(v, truth)
        r_fd = rel(v, T.fd[q]) if q in T.fd else None
        if e.kind == 'holds':
            ok = r_an is not None and r_an <= tol and (q not in T.fd or (r_fd is not None and r_fd <= tol_fd))
            ev.append('%s an %s%s' % (q, fmt(r_an), (' fd %s' % fmt(r_fd)) if q in T.fd else ''))
        elif e.kind == 'refuted':
            if e.tag == 'shape-DxD':
                d = c['x'].shape[1]
                ok = np.shape(v) == (d, d) and rel(np.diag(v), truth) <= tol
                ev.append('%s shape %s, diagonal vs truth %s' % (q, np.shape(v), fmt(rel(np.diag(v), truth))))
            else:
                want = mutant(e.tag, q, T)
                r_mu = rel(v, want)
                clearly = (r_an is None or r_an > DIFF) and (q not in T.fd or r_fd is None or r_fd > DIFF)
                ok = clearly and r_mu is not None and r_mu <= tol
                ev.append('%s vs truth %s%s, vs mutant %s' % (q, fmt(r_an), (' (fd %s)' % fmt(r_fd)) if q in T.fd else '',
                                                            fmt(r_mu)))
        elif e.kind == 'self-consistent':
            own = res.get((e.func, '__own__'))
            if own is None:
                return False, 'no own forward for %s' % e.func
            fdx, fdg, fdb = fd_grads(own, C(c['x']), C(c['g']), C(c['b']), C(c['dy']))
            fd_own = dict(dx=fdx, dgamma=fdg, dbeta=fdb)[q]
            r_own = rel(v, fd_own)
            ok = r_an is not None and r_an > DIFF and r_own is not None and r_own <= TOL_FD
            ev.append('%s vs truth %s, vs FD of own forward %s' % (q, fmt(r_an), fmt(r_own)))
        ok_all &= ok
    return ok_all, '; '.join(ev)


def own_consistency(results, c):
    """info only: for every backward with an own forward, |dx - FD(own forward)|."""
    out = []
    for mode, res in results.items():
        for (f, q), v in res.items():
            if q != '__own__':
                continue
            if (f, 'dx') not in res or isinstance(res[(f, 'dx')], Raised) or res[(f, 'dx')] is None:
                continue
            try:
                fdx, _, _ = fd_grads(v, C(c['x']), C(c['g']), C(c['b']), C(c['dy']))
                r = rel(res[(f, 'dx')], fdx)
                out.append('%s%s dx vs FD(own forward) %s' % (f, (' [%s]' % mode) if mode else '', fmt(r)))
            except Exception as ex:   # an own forward that cannot run on perturbed inputs
                out.append('%s own forward failed: %s' % (f, type(ex).__name__))
    return out


def kinds_of(adapter, exps):
    k = getattr(adapter, 'kinds', None)
    if k:
        return k
    return ['pa']


def run_file(path, verbose=False):
    name = os.path.basename(path)
    adapter = ADAPTERS.get(name)
    exps = read_expectations(path)
    print('=' * 100)
    print(name)
    if adapter is None:
        print('  [FAIL] no adapter for this file')
        return 0, max(len(exps), 1)
    if not exps:
        print('  [FAIL] no # expected: lines')
        return 0, 1
    protocol = getattr(adapter, 'protocol', 'single')
    kinds = kinds_of(adapter, exps)
    cases = make_cases()
    per_case = []
    for case in cases:
        for kd in kinds:
            c = case[kd]
            try:
                results = adapter(path, c)
            except Exception:
                print('  [FAIL] adapter crashed on %s/%s:\n%s' % (case['name'], kd, traceback.format_exc()))
                return 0, len(exps)
            per_case.append((case['name'] + '/' + kd, c, results))
    n_ok = 0
    covered = set()
    for e in exps:
        verdicts = []
        for label, c, results in per_case:
            res = results.get(e.mode, {})
            keys = [(e.func, q) for q in e.qtys] if e.qtys else [(e.func, 'call'), (e.func, 'return')]
            if e.kind in ('import-fails',):
                keys = [('<module>', 'import')]
            if e.kind in ('parse-fails',):
                keys = [('<module>', 'parse')]
            if not any(k in res for k in keys):
                continue          # this sub-case does not exercise that function (e.g. spatial vs per-activation)
            covered.update((e.mode,) + k for k in keys)
            ok, evidence = judge(e, results, c, protocol)
            verdicts.append((label, ok, evidence))
        if not verdicts:
            print('  [FAIL] %s\n         (no case produced a result for it)' % e.raw)
            continue
        good = all(ok for _, ok, _ in verdicts)
        n_ok += good
        print('  [%s] %s' % ('OK' if good else 'FAIL', e.raw))
        for label, ok, evidence in verdicts:
            if verbose or not ok:
                print('         %-10s %s %s' % (label, 'ok ' if ok else 'BAD', evidence))
            else:
                print('         %-10s %s' % (label, evidence))
                break
    # anything an adapter produced that no expectation speaks about
    loose = set()
    for label, c, results in per_case:
        for mode, res in results.items():
            for (f, q) in res:
                if q in ('__own__',) or (mode, f, q) in covered:
                    continue
                if q == 'call' and res[(f, q)] == 'ran':
                    continue
                if q == 'import' or q == 'parse':
                    if res[(f, q)] == 'ok':
                        continue
                loose.add('%s%s %s' % ('[%s] ' % mode if mode else '', f, q))
    if loose:
        print('  note: results not covered by any expectation: ' + ', '.join(sorted(loose)))
    if verbose:
        for label, c, results in per_case[:1]:
            for line in own_consistency(results, c):
                print('  info (%s): %s' % (label, line))
    return n_ok, len(exps)


def main(argv):
    verbose = '-v' in argv
    files = [a for a in argv if a.endswith('.py')]
    if not files:
        files = sorted(p for p in glob.glob(os.path.join(HERE, '*.py')) if os.path.basename(p) != 'oracle.py')
    # reference self-check first: analytic vs finite differences on every case
    worst = 0.0
    for case in make_cases():
        for kd in ('pa', 'sp'):
            worst = max(worst, Truth(case[kd], case[kd]['eps']).ref_fd_agreement)
    print('reference self-check: analytic dx/dgamma/dbeta vs 4-point finite differences, worst rel. diff %.1e' % worst)
    total_ok = total = 0
    bad_files = []
    for p in files:
        ok, n = run_file(os.path.abspath(p), verbose)
        total_ok += ok
        total += n
        if ok != n:
            bad_files.append(os.path.basename(p))
    print('=' * 100)
    print('%d files, %d expectations, %d confirmed, %d not confirmed' % (len(files), total, total_ok, total - total_ok))
    if bad_files:
        print('files with unconfirmed expectations: ' + ', '.join(bad_files))
    return 0 if total_ok == total else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
