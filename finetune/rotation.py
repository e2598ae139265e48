"""A PCA rotation folded into the model as a final linear layer (optional; see ``rotation`` in the config).

A model that is not Matryoshka-trained spreads its variance over all coordinates, so the first 64 keep
little of it. An orthogonal rotation onto the principal axes of French medical passages (embedded by
the model, unit vectors) moves the variance to the leading coordinates: truncation then keeps the
directions that discriminate most, while full-size cosines are unchanged (an orthogonal map preserves
dot products). With centring (``pca_centered``) the layer is affine, ``R (x - mean)``: it removes the
direction every e5 vector shares (their cosines are all high), which changes full-size cosines a
little and spends no leading coordinate on a constant. No whitening: scaling axes by their variance
would distort the cosines the model was trained for.

The layers appended are ``Dense(full, full, identity)`` then ``Normalize``, so the output stays a unit
vector. The store can fit the same kind of rotation on its own vectors; the shipped model carries one
only if it measured better than the store's rotation on the unrotated model (never both).

Example::

    from finetune.rotation import fit_pca_rotation, add_rotation
    weight, bias = fit_pca_rotation(passage_vectors, center=False)
    add_rotation(model, weight, bias)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from medrag.errors import InvalidInputError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def fit_pca_rotation(vectors: np.ndarray, center: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(weight, bias)`` of the rotation onto the principal axes of ``vectors``, by decreasing variance.

    ``weight`` is orthogonal ``(d, d)`` (rows = principal axes, signs fixed so each axis's largest
    loading is positive, for reproducibility); ``bias`` is ``-weight @ mean`` when ``center``, else 0.
    The axes are those of the centred data either way (the spread around the mean is what separates
    texts).

    >>> w, b = fit_pca_rotation(np.random.default_rng(0).normal(size=(500, 8)))
    >>> bool(np.allclose(w @ w.T, np.eye(8), atol=1e-5)), float(abs(b).max())
    (True, 0.0)
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InvalidInputError(f"need a (n >= 2, d) matrix of vectors, got shape {x.shape}")
    mean = x.mean(axis=0)
    cov = np.cov(x - mean, rowvar=False)
    values, axes = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    weight = axes[:, order].T
    signs = np.sign(weight[np.arange(weight.shape[0]), np.abs(weight).argmax(axis=1)])
    weight = weight * np.where(signs == 0, 1.0, signs)[:, None]
    bias = -weight @ mean if center else np.zeros(x.shape[1])
    return weight.astype(np.float32), bias.astype(np.float32)


def add_rotation(model: "SentenceTransformer", weight: np.ndarray, bias: np.ndarray,
                 trainable: bool = False) -> None:
    """Append ``Dense(weight, bias, identity)`` and ``Normalize`` to ``model`` (in place)."""
    import torch
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize

    d = weight.shape[0]
    dense = Dense(d, d, bias=True, activation_function=None,
                  init_weight=torch.tensor(weight, dtype=torch.float32),
                  init_bias=torch.tensor(bias, dtype=torch.float32))
    for p in dense.parameters():
        p.requires_grad_(trainable)
    dense.medrag_appended = True  # this run's layer, not one the model came with (rotation_layer, the export)
    device = next(model.parameters()).device
    model.append(dense.to(device))
    model.append(Normalize())


def rotation_layer(model: "SentenceTransformer", appended_only: bool = False):
    """The rotation :class:`Dense` layer of ``model``, or ``None``: its *last* Dense layer, the one
    :func:`add_rotation` appended. (The first one was trained before: fine-tuning medrag's default
    model, which ends with its own final layer, trained that layer again and saved the new one
    untrained.) ``appended_only``: only a layer :func:`add_rotation` appended in this process (the
    adapter export: a model's own layer belongs to its base)."""
    from sentence_transformers.sentence_transformer.modules import Dense

    found = None
    for module in model:
        if isinstance(module, Dense) and (not appended_only or getattr(module, "medrag_appended", False)):
            found = module
    return found


def freeze_own_layers(model: "SentenceTransformer") -> int:
    """Freeze the Dense layers ``model`` came with (a fine-tuned base's final layer): a LoRA run over
    it trained that layer too, which its adapter (the base + the deltas + this run's layer) does not
    carry. Returns how many were frozen."""
    from sentence_transformers.sentence_transformer.modules import Dense

    own = [m for m in model if isinstance(m, Dense) and not getattr(m, "medrag_appended", False)]
    for module in own:
        module.requires_grad_(False)
    return len(own)


__all__ = ["fit_pca_rotation", "add_rotation", "rotation_layer", "freeze_own_layers"]
