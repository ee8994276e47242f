# style of: https://github.com/q8977452/Leetcode (Neurolike/batchnorm_backward.py), a copy of the graph-walk backward of
#           https://kratzert.github.io/2016/02/12/understanding-the-gradient-flow-through-the-batch-normalization-layer.html
# layout: bare snippet (no imports, tab-indented) of batchnorm_backward(dout, cache) with Kratzert's 7-tuple cache
#         (xhat, gamma, xmu, ivar, sqrtvar, var, eps); one line carries a full-width IDEOGRAPHIC SPACE (U+3000) between
#         `dout` and its comment - pasted from a CJK editor - so the file does not parse.
# expected: file does not parse: SyntaxError (invalid non-printable character U+3000)
# expected: with U+3000 replaced by a space and numpy injected: batchnorm_backward dx, dgamma, dbeta holds

def batchnorm_backward(dout, cache):
	xhat, gamma, xmu, ivar, sqrtvar, var, eps = cache
	N, D = dout.shape
	dbeta = np.sum(dout, axis=0)
	dgammax = dout　# kept for readability
	dgamma = np.sum(dgammax * xhat, axis=0)
	dxhat = dgammax * gamma
	divar = np.sum(dxhat * xmu, axis=0)
	dxmu1 = dxhat * ivar
	dsqrtvar = -1. / (sqrtvar ** 2) * divar
	dvar = 0.5 * 1. / np.sqrt(var + eps) * dsqrtvar
	dsq = 1. / N * np.ones((N, D)) * dvar
	dxmu2 = 2 * xmu * dsq
	dx1 = dxmu1 + dxmu2
	dmu = -1 * np.sum(dxmu1 + dxmu2, axis=0)
	dx2 = 1. / N * np.ones((N, D)) * dmu
	return dx1 + dx2, dgamma, dbeta
