"""CoDE (Baraldi et al., ECCV 2024): scikit-learn heads on the CLS of a contrastively trained ViT,
converted once to safetensors so that nothing is unpickled at run time.

Facts from aimagelab/CoDE @ f1c0566c, src/inference/code_model.py (`VITContrastiveHF`),
src/inference/validate_d3.py and src/quantitative_evaluation/linear_training.py:
- backbone `transformers.AutoModel.from_pretrained("aimagelab/CoDE")` with `pooler = Identity`;
  features `last_hidden_state[:, 0, :]` (after ViTModel's final LayerNorm), not normalised;
- heads on the Hub repo aimagelab/CoDE, loaded with joblib (pickles):
  `sklearn/linear_tot_classifier_epoch-32.sav` (LogisticRegression, labels 0 real / 1 fake),
  `sklearn/knn_tot_classifier_epoch-32.sav` (KNeighborsClassifier, 1 neighbour, cosine),
  `sklearn/ocsvm_kernel_poly_gamma_auto_nu_0_1_crop.joblib` (OneClassSVM fit on real images:
  +1 = inlier = real, -1 = fake; validate_d3 maps fake to -1; code_model.py's docstring says the
  opposite and is contradicted by both scripts);
- the official forward returns `classifier.predict(features)`: hard labels. We return the
  continuous score behind each decision instead, so AUC/AP are defined and thresholding it at 0
  reproduces `predict`: LogisticRegression's `decision_function` (logit; > 0 = fake); minus the
  OneClassSVM's `decision_function` (> 0 = outlier = fake); for 1-NN, the distance to the nearest
  real minus the distance to the nearest fake training feature (> 0 = the nearest is fake);
- test: CenterCrop(224), ToTensor, ImageNet mean/std (no resize).

`convert` is the one place that unpickles: `bench weights convert-code FILE` runs it on a file the
user trusts and writes tensors plus a JSON-able description (safetensors metadata); `load_head`
reads only that file.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bench.api import BenchError
from detectors.checkpoint import BadCheckpointError
from detectors.clip.encoders import Encoder

FORMAT = "aigi-bench/code-head/1"
KINDS = ("linear", "svm", "knn")


class ConversionError(BenchError):
    """An estimator that is not one of CoDE's head types (or not binary real/fake)."""


@dataclass
class Converted:
    kind: str  # one of KINDS
    tensors: dict[str, np.ndarray]
    meta: dict[str, Any]
    path: Path | None = None  # where `convert` wrote it


# --------------------------------------------------------------------------- conversion (trusted files only)


def _labels(classes: Any) -> list[int]:
    return [int(c) for c in np.asarray(classes).tolist()]


def convert_estimator(est: Any) -> Converted:
    """The numbers of a fitted scikit-learn LogisticRegression (binary, classes 0/1), OneClassSVM
    or 1-nearest-neighbour KNeighborsClassifier (classes 0/1)."""
    name = type(est).__name__
    meta: dict[str, Any] = {"sklearn_class": name, "n_features": int(getattr(est, "n_features_in_", 0))}
    if name == "LogisticRegression":
        if _labels(est.classes_) != [0, 1]:
            raise ConversionError(f"LogisticRegression with classes {list(est.classes_)}: expected [0, 1] (0 real, 1 fake)")
        coef, intercept = np.asarray(est.coef_, dtype=np.float64), np.asarray(est.intercept_, dtype=np.float64)
        if coef.shape[0] != 1:
            raise ConversionError(f"LogisticRegression coef_ {coef.shape}: expected one row (binary)")
        return Converted("linear", {"weight": coef, "bias": intercept.reshape(1)}, meta)
    if name == "OneClassSVM":
        kernel = est.kernel
        if kernel not in ("linear", "poly", "rbf", "sigmoid"):
            raise ConversionError(f"OneClassSVM kernel {kernel!r} cannot be converted (linear, poly, rbf, sigmoid can)")
        meta.update(kernel=kernel, gamma=float(est._gamma), degree=int(est.degree), coef0=float(est.coef0))
        return Converted("svm", {"support_vectors": np.asarray(est.support_vectors_, dtype=np.float64),
                                 "dual_coef": np.asarray(est.dual_coef_, dtype=np.float64).reshape(-1),
                                 "intercept": np.asarray(est.intercept_, dtype=np.float64).reshape(1)}, meta)
    if name == "KNeighborsClassifier":
        if est.n_neighbors != 1:
            raise ConversionError(f"KNeighborsClassifier with {est.n_neighbors} neighbours: only CoDE's 1-NN is converted")
        metric = est.effective_metric_ if hasattr(est, "effective_metric_") else est.metric
        if metric not in ("cosine", "euclidean"):
            raise ConversionError(f"KNeighborsClassifier metric {metric!r}: cosine or euclidean only")
        classes = _labels(est.classes_)
        if classes != [0, 1]:
            raise ConversionError(f"KNeighborsClassifier with classes {classes}: expected [0, 1] (0 real, 1 fake)")
        fit_x = np.asarray(est._fit_X, dtype=np.float64)
        labels = np.asarray(est.classes_)[np.asarray(est._y)].astype(np.int64)
        meta.update(metric=metric)
        return Converted("knn", {"points": fit_x, "labels": labels}, meta)
    raise ConversionError(f"{name} is not one of CoDE's heads (LogisticRegression, OneClassSVM, KNeighborsClassifier)")


def convert(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Converted:
    """Unpickle `src` with joblib (RUNS CODE FROM THE FILE: call it only on a file you trust),
    convert it, and write `dst` (.safetensors, tensors only; default: where the detector's tag
    looks, <weights folder>/code/code-<kind>.safetensors: `code.official` for the linear head)."""
    import joblib
    import sklearn
    from safetensors.numpy import save_file

    from bench.files import atomic_path
    from bench.weights import sha256_file, weights_dir

    src = Path(src)
    conv = convert_estimator(joblib.load(src))
    conv.meta.update(format=FORMAT, kind=conv.kind, source=src.name, source_sha256=sha256_file(src), sklearn_version=sklearn.__version__)
    conv.path = Path(dst) if dst is not None else weights_dir() / "code" / f"code-{conv.kind}.safetensors"
    conv.path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(conv.path) as tmp:
        save_file({k: np.ascontiguousarray(v) for k, v in conv.tensors.items()}, str(tmp),
                  metadata={"aigi_bench": json.dumps(conv.meta, sort_keys=True)})
    return conv


# --------------------------------------------------------------------------- heads (no pickle)


class SVMHead(nn.Module):
    """Minus a OneClassSVM's decision_function: sum_i dual_coef_i K(sv_i, x) + intercept, in float64."""

    def __init__(self, support_vectors: torch.Tensor, dual_coef: torch.Tensor, intercept: torch.Tensor, *, kernel: str,
                 gamma: float, degree: int, coef0: float):
        super().__init__()
        self.register_buffer("support_vectors", support_vectors.double())
        self.register_buffer("dual_coef", dual_coef.double())
        self.register_buffer("intercept", intercept.double())
        self.kernel, self.gamma, self.degree, self.coef0 = kernel, gamma, degree, coef0

    def decision_function(self, x: torch.Tensor) -> torch.Tensor:
        x, sv = x.double(), self.support_vectors
        if self.kernel == "rbf":
            k = torch.exp(-self.gamma * torch.cdist(x, sv).pow(2))
        else:
            dot = x @ sv.t()
            k = {"linear": lambda: dot, "poly": lambda: (self.gamma * dot + self.coef0).pow(self.degree),
                 "sigmoid": lambda: torch.tanh(self.gamma * dot + self.coef0)}[self.kernel]()
        return k @ self.dual_coef + self.intercept

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.decision_function(x)


class NearestNeighbourHead(nn.Module):
    """1-NN as a score: distance to the nearest real point minus distance to the nearest fake
    (> 0 exactly when the nearest training point is fake, i.e. when `predict` says fake)."""

    def __init__(self, points: torch.Tensor, labels: torch.Tensor, *, metric: str):
        super().__init__()
        if set(labels.unique().tolist()) != {0, 1}:
            raise BadCheckpointError("a 1-NN head needs training points of both classes")
        self.metric = metric
        pts = points.double()
        if metric == "cosine":
            pts = torch.nn.functional.normalize(pts, dim=-1)
        self.register_buffer("real", pts[labels == 0])
        self.register_buffer("fake", pts[labels == 1])

    def _nearest(self, x: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        if self.metric == "cosine":
            return 1.0 - (torch.nn.functional.normalize(x, dim=-1) @ pts.t()).amax(dim=1)
        return torch.cdist(x, pts).amin(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        return self._nearest(x, self.real) - self._nearest(x, self.fake)


class ScoredHead(nn.Module):
    """Encoder tap -> a non-linear head's score: (B, 3, 224, 224) -> (B,) float32 logits."""

    def __init__(self, encoder: Encoder, tap: str, head: nn.Module):
        super().__init__()
        self.encoder, self.tap, self.scorer = encoder, tap, head
        self.normalization = encoder.normalization

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scorer(self.encoder.embed(x, self.tap)).float()


def read_converted(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and description of a file written by `convert` (safetensors: no pickle)."""
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("aigi_bench", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # not safetensors, or damaged
        raise BadCheckpointError(f"{path}: not a converted CoDE head ({type(exc).__name__}: {str(exc)[:200]}); "
                                 "convert the official file with `bench weights convert-code`") from None
    if meta.get("format") != FORMAT or meta.get("kind") not in KINDS:
        raise BadCheckpointError(f"{path}: not a converted CoDE head (format {meta.get('format')!r}); "
                                 "convert the official file with `bench weights convert-code`")
    return tensors, meta


def load_head(path: str | os.PathLike, encoder: Encoder, tap: str = "cls") -> nn.Module:
    """The model of a converted CoDE head on `encoder`'s `tap` features."""
    from detectors.clip.linear import LinearProbe, linear_from

    tensors, meta = read_converted(path)
    dim = encoder.tap_dim(tap)
    if meta.get("n_features") not in (0, dim):
        raise BadCheckpointError(f"{path}: a head for {meta['n_features']} features, but the backbone's {tap!r} has {dim}")
    if meta["kind"] == "linear":
        return LinearProbe(encoder, tap, l2=False, fc=linear_from(tensors, str(path)))
    if meta["kind"] == "svm":
        head: nn.Module = SVMHead(tensors["support_vectors"], tensors["dual_coef"], tensors["intercept"], kernel=meta["kernel"],
                                  gamma=meta["gamma"], degree=meta["degree"], coef0=meta["coef0"])
    else:
        head = NearestNeighbourHead(tensors["points"], tensors["labels"], metric=meta["metric"])
    return ScoredHead(encoder, tap, head)
