"""Exact finite-width laws of a single input (docs/theory.md sections 2, 6 and 10).

Two families of results, valid at every depth-to-width ratio L/n (including L/n >= 1 where the
1/n expansions of (T10)-(T13) fail):

* **Scale-invariant activations** ``sigma(z) = a_+ z [z>0] + a_- z [z<0]`` with ``C_b = 0``:
  the collective kernel of one input is a product of independent factors (T14), so every moment
  is an exact finite binomial sum (:func:`collective_moments`, :func:`output_moments`,
  :func:`log_output_moments`, in log space at any depth, width and input norm), and the output
  law is a Gaussian scale mixture (:func:`output_distribution`). ReLU gives (T15); derivative
  channels give (T16).
* **Any activation**: for one input, Sigma^{(l)} is a scalar Markov chain. :func:`single_input`
  propagates its law on a lattice, checks every layer against the exact one-step moments, and
  returns results within a stated accuracy (``rtol``) or raises :class:`AccuracyError` naming
  the cause and what to use instead.

Every function takes the input as ``X`` of shape ``(1, n_0)`` (a 1-D array of length n_0 is
one input); the old keyword ``x=`` is deprecated.

Modules: ``closed_form`` (T14)-(T16), ``lattice`` (the solver's public face and its result),
``_chain`` (transition kernel and propagation), ``distribution`` (the output law), ``inputs``
(shared input handling).
"""

from __future__ import annotations

from .closed_form import (
    collective_log_moments,
    collective_moments,
    log_output_moments,
    output_moments,
)
from .distribution import OutputDistribution, output_distribution
from .lattice import AccuracyError, SingleInputResult, single_input

__all__ = [
    "AccuracyError",
    "OutputDistribution",
    "SingleInputResult",
    "collective_log_moments",
    "collective_moments",
    "log_output_moments",
    "output_distribution",
    "output_moments",
    "single_input",
]
