#!/usr/bin/env python3
"""Minimax fits behind the polynomial tables in protocols/nonlinear/gelu.ts.

GELU(x) - x/2 is even, so on |x| <= T it is fitted as a polynomial in
t = (x/T)^2 in [0, 1]; outside, GELU(x) is taken as relu(x). The fit is a
linear program (minimise the max error on a dense grid), so the printed error
is the approximation error alone; fixed-point rounding comes on top.

    python3 scripts/fit-polynomials.py      (needs numpy and scipy)
"""
import numpy as np
from scipy.optimize import linprog
from scipy.special import erf

T = 4.0
DEGREE = 6


def gelu_erf(x):
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def minimax(f, degree, n=6000):
    t = np.linspace(0, 1, n)
    y = f(t)
    A = np.stack([t ** k for k in range(degree + 1)], 1)
    m = degree + 1
    cost = np.zeros(m + 1)
    cost[-1] = 1
    ones = np.ones((n, 1))
    res = linprog(cost, A_ub=np.vstack([np.hstack([A, -ones]), np.hstack([-A, -ones])]),
                  b_ub=np.concatenate([y, -y]), bounds=[(None, None)] * m + [(0, None)], method='highs')
    return res.x[:m], res.x[m]


for name, g in (('erf', gelu_erf), ('tanh', gelu_tanh)):
    even = lambda t, g=g: g(T * np.sqrt(t)) - 0.5 * T * np.sqrt(t)
    coeffs, err = minimax(even, DEGREE)
    tail = abs(g(T) - T)
    print(f'{name}: T={T} degree={DEGREE} max fit error {err:.3e}, tail error at |x|=T {tail:.3e}')
    print('  [' + ', '.join(f'{c:.12g}' for c in coeffs) + ']')
