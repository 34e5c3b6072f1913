"""Is the explanation right? Perturbation curves and AOPC (Samek et al. 2017).

Units are removed from each molecule in order of decreasing relevance (most relevant first) and
the model output is recorded after each step; ``AOPC = 1/(K+1) sum_{k=0..K} (f(x) - f(x_k))``,
averaged over molecules. A faithful relevance makes the output fall fastest (largest AOPC);
random order is the baseline. Two kinds of unit:

* ``atoms``: delete the atom and every pair it belongs to (the rest of the graph, its features
  and pair features unchanged); atom relevance = its 21 feature relevances + half of each of
  its pairs'. At least one atom is always kept.
* ``types``: set every column of one of the 12 feature types to 0 in the whole molecule (all
  atoms or all pairs), types ordered by the molecule's summed signed relevance.

Each step is one forward pass of the whole (perturbed) batch -- vectorised, no per-molecule loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import keras
import numpy as np

from qmlrp.features.batch import GraphBatch
from qmlrp.features.layout import ATOM_FEATURE_TYPES, PAIR_FEATURE_TYPES
from qmlrp.models.inputs import INPUT_DTYPES, INPUT_SHAPES, batch_to_inputs
from qmlrp.relevance.model_lrp import atom_totals
from qmlrp.relevance.summary import FEATURE_TYPES, type_totals

Forward = Callable[[GraphBatch], np.ndarray]


def _n_outputs(model: keras.Model) -> int:
    return int(getattr(getattr(model, "head", None), "n_outputs", 1))


def forward_function(model: keras.Model, output: Any = None) -> Forward:
    """``GraphBatch -> (n_molecules,)`` explained output ``sum_k c_k y_k`` (``output`` as for
    :meth:`~qmlrp.relevance.model_lrp.ModelLRP.explain_inputs`; compiled once for ragged shapes)."""
    from qmlrp.models.io import inference_function
    from qmlrp.relevance.model_lrp import output_coefficients

    fn = inference_function(model)
    width = _n_outputs(model)

    def run(batch: GraphBatch) -> np.ndarray:
        y = np.asarray(fn(batch_to_inputs(batch)), np.float64).reshape(batch.n_molecules, -1)
        return (y * output_coefficients(output, width, batch.n_molecules)).sum(1)

    return run


def gradient_times_input(model: keras.Model, output: Any = None) -> Callable[[GraphBatch], tuple[np.ndarray, np.ndarray]]:
    """``GraphBatch -> (atoms (n_atoms, 21), pairs (n_pairs, 13))`` of ``x * df/dx`` per molecule for
    the explained output ``f = sum_k c_k y_k`` (molecules are independent, so the gradient of the
    summed outputs is per molecule). Works in the model's dtype (float32, or float64 for the copy
    :class:`~qmlrp.relevance.model_lrp.ModelLRP` explains with ``dtype="float64"``): the float
    features and the coefficients are cast to it."""
    from qmlrp.relevance.model_lrp import output_coefficients

    width = _n_outputs(model)
    dtype = keras.backend.standardize_dtype(model.dtype_policy.compute_dtype)
    dtypes = {k: dtype if v == "float32" else v for k, v in INPUT_DTYPES.items()}
    grad = _input_gradient(model, width, dtype, dtypes)

    def run(batch: GraphBatch) -> tuple[np.ndarray, np.ndarray]:
        coef = output_coefficients(output, width, batch.n_molecules).astype(dtype)
        given = batch_to_inputs(batch)
        inputs = {k: np.asarray(given[k], dtypes[k]) for k in INPUT_SHAPES}
        ga, gp = grad(inputs, coef)
        return np.asarray(ga), np.asarray(gp)

    return run


def _input_gradient(model: keras.Model, width: int, dtype: str, dtypes: dict[str, str]) -> Callable[..., Any]:
    """``(inputs, coef) -> (a * df/da, p * df/dp)`` for ``f = sum(coef * y)``, compiled. Keras 3 has
    no backend-neutral gradient, so this is the one place that asks the backend for one:
    ``tf.GradientTape`` in a ragged ``tf.function`` on TensorFlow, ``jax.grad`` under ``jax.jit`` on
    JAX over a batch padded to bucketed sizes (as for prediction; the padding gets coefficient 0 and
    is cut off)."""
    if keras.backend.backend() == "jax":
        import jax

        from qmlrp.models.inputs import MOLECULE_ATOMS_KEY, pad_inputs
        from qmlrp.relevance.model_lrp import jit_with_weights

        def f(a: Any, p: Any, inputs: dict[str, Any], coef: Any) -> Any:
            y = model({**inputs, "atom_features": a, "pair_features": p}, training=False)
            return keras.ops.sum(keras.ops.reshape(y, (-1, width)) * coef)

        grad_fn = jit_with_weights(model, jax.grad(f, argnums=(0, 1)))

        def padded(inputs: dict[str, np.ndarray], coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            n = int(inputs[MOLECULE_ATOMS_KEY].shape[0])
            n_atoms, n_pairs = inputs["atom_features"].shape[0], inputs["pair_features"].shape[0]
            slots = -(-(n + 1) // 64) * 64
            x, _, _ = pad_inputs(inputs, np.zeros((n, 1), np.float32), slots, 256, 4096)
            x = {k: np.asarray(x[k], dtypes[k]) for k in INPUT_SHAPES}
            c = np.concatenate([coef, np.zeros((slots - n, width), coef.dtype)])
            ga, gp = grad_fn(x["atom_features"], x["pair_features"], x, c)
            return (inputs["atom_features"] * np.asarray(ga)[:n_atoms],
                    inputs["pair_features"] * np.asarray(gp)[:n_pairs])

        return padded
    import tensorflow as tf

    signature = [{k: tf.TensorSpec((None, *INPUT_SHAPES[k]), dtypes[k]) for k in INPUT_SHAPES},
                 tf.TensorSpec((None, width), dtype)]

    @tf.function(input_signature=signature, autograph=False)
    def grad(inputs: dict[str, Any], coef: Any) -> tuple[Any, Any]:
        a, p = inputs["atom_features"], inputs["pair_features"]
        with tf.GradientTape() as tape:
            tape.watch([a, p])
            y = tf.reduce_sum(tf.reshape(model(inputs, training=False), (-1, width)) * coef)
        ga, gp = tape.gradient(y, [a, p])
        return a * ga, p * gp

    return grad


def remove_atoms(batch: GraphBatch, keep: np.ndarray) -> GraphBatch:
    """The batch without the atoms where ``keep`` is False, and without their pairs.

    Every molecule must keep at least one atom (molecule indices are unchanged).
    """
    keep = np.asarray(keep, bool)
    new_index = np.cumsum(keep) - 1
    pair_keep = keep[batch.pair_atoms[:, 0]] & keep[batch.pair_atoms[:, 1]]
    return GraphBatch(
        atom_features=batch.atom_features[keep],
        pair_features=batch.pair_features[pair_keep],
        pair_atoms=new_index[batch.pair_atoms[pair_keep]].astype(np.int32),
        atom_molecule=batch.atom_molecule[keep],
        pair_molecule=batch.pair_molecule[pair_keep],
        ids=batch.ids,
    )


def _rank_within_molecule(scores: np.ndarray, owner: np.ndarray) -> np.ndarray:
    """(n_rows,) 0-based rank of each row inside its molecule, highest score first (stable)."""
    order = np.lexsort((-scores, owner))
    starts = np.concatenate([[0], np.cumsum(np.bincount(owner))[:-1]])
    rank = np.empty(scores.size, np.int64)
    rank[order] = np.arange(scores.size) - starts[owner[order]]
    return rank


def atom_curve(batch: GraphBatch, atom_scores: np.ndarray, forward: Forward, steps: int) -> np.ndarray:
    """(steps+1, n_molecules) outputs after deleting the 0..steps highest-scoring atoms."""
    rank = _rank_within_molecule(np.asarray(atom_scores, np.float64), batch.atom_molecule)
    n_atoms = batch.atoms_per_molecule()
    out = [forward(batch)]
    for k in range(1, steps + 1):
        cap = np.minimum(k, n_atoms - 1)[batch.atom_molecule]  # keep at least one atom
        out.append(forward(remove_atoms(batch, rank >= cap)))
    return np.stack(out)


def zero_types(batch: GraphBatch, removed: np.ndarray) -> GraphBatch:
    """The batch with feature type columns set to 0 where ``removed`` (n_molecules, 12) is True."""
    atoms = batch.atom_features.copy()
    pairs = batch.pair_features.copy()
    for t, cols in enumerate(ATOM_FEATURE_TYPES.values()):
        rows = removed[batch.atom_molecule, t]
        atoms[np.ix_(rows, cols)] = 0.0
    for t, cols in enumerate(PAIR_FEATURE_TYPES.values()):
        rows = removed[batch.pair_molecule, len(ATOM_FEATURE_TYPES) + t]
        pairs[np.ix_(rows, cols)] = 0.0
    return GraphBatch(atoms, pairs, batch.pair_atoms, batch.atom_molecule, batch.pair_molecule, batch.ids)


def type_curve(batch: GraphBatch, type_scores: np.ndarray, forward: Forward, steps: int) -> np.ndarray:
    """(steps+1, n_molecules) outputs after zeroing the 0..steps highest-scoring feature types."""
    order = np.argsort(-type_scores, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(len(FEATURE_TYPES))[None, :].repeat(len(order), 0), axis=1)
    out = [forward(batch)]
    for k in range(1, min(steps, len(FEATURE_TYPES)) + 1):
        out.append(forward(zero_types(batch, rank < k)))
    return np.stack(out)


def aopc(curve: np.ndarray) -> np.ndarray:
    """(n_molecules,) ``mean_k (f_0 - f_k)`` over the curve's K+1 points."""
    return (curve[0][None, :] - curve).mean(0)


def faithfulness_table(
    batch: GraphBatch,
    attributions: Mapping[str, tuple[np.ndarray, np.ndarray]],
    forward: Forward,
    atom_steps: int = 8,
    type_steps: int = 6,
    random_repeats: int = 3,
    seed: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    """AOPC of every attribution (and of random order) for atom deletion and type zeroing.

    Args:
        batch: molecules to perturb.
        attributions: ``{method: (atom relevance (n_atoms, 21), pair relevance (n_pairs, 13))}``.
        forward: batch -> predictions.
    Returns:
        rows ``{method, unit, aopc, aopc_sem, n}`` (mean and standard error over molecules) and
        the mean curves ``{"<unit>/<method>": (steps+1,)}``.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    curves: dict[str, np.ndarray] = {}
    n_mol = batch.n_molecules

    def record(method: str, unit: str, curve: np.ndarray) -> None:
        per = aopc(curve)
        rows.append({"method": method, "unit": unit, "aopc": float(per.mean()),
                     "aopc_sem": float(per.std(ddof=1) / np.sqrt(per.size)) if per.size > 1 else 0.0, "n": int(per.size)})
        curves[f"{unit}/{method}"] = (curve[0][None, :] - curve).mean(1)

    for method, (atoms, pairs) in attributions.items():
        record(method, "atoms", atom_curve(batch, atom_totals(atoms, pairs, batch.pair_atoms), forward, atom_steps))
        totals = type_totals(atoms, pairs, batch.atom_molecule, batch.pair_molecule, n_mol)
        record(method, "types", type_curve(batch, totals, forward, type_steps))
    atom_runs = [atom_curve(batch, rng.random(batch.n_atoms), forward, atom_steps) for _ in range(random_repeats)]
    record("random", "atoms", np.mean(atom_runs, axis=0))
    type_runs = [type_curve(batch, rng.random((n_mol, len(FEATURE_TYPES))), forward, type_steps)
                 for _ in range(random_repeats)]
    record("random", "types", np.mean(type_runs, axis=0))
    return rows, curves
