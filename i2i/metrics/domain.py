"""Domain-classification score: does a translated image look like the target domain to a linear probe?

A logistic regression (scikit-learn, on standardised extractor features) learns real source vs real target
images. Its accuracy is measured on held-out images first (stratified k-fold cross-validation): near 50 %, the
features cannot tell the domains apart and the score below means nothing. Then, fitted on all real images, it
classifies the translated images: ``domain`` is the share called "target". A perfect translator scores about the
classifier's accuracy on real target images; the identity map scores about its error rate on real source images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from i2i.errors import InputError

if TYPE_CHECKING:
    import torch

MAX_FOLDS = 5


@dataclass(frozen=True)
class DomainScore:
    target_share: float         # share of translated images classified as the target domain
    classifier_accuracy: float  # cross-validated accuracy of the probe on real source vs real target
    folds: int

    def to_dict(self) -> dict:
        return {"domain": self.target_share, "domain_classifier_accuracy": self.classifier_accuracy,
                "domain_folds": self.folds}


def domain_score(real_source: "torch.Tensor", real_target: "torch.Tensor", translated: "torch.Tensor",
                 seed: int = 0) -> DomainScore:
    """Share of ``translated`` features classified as the target domain, with the probe's held-out accuracy."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_src, n_tgt = real_source.shape[0], real_target.shape[0]
    folds = min(MAX_FOLDS, n_src, n_tgt)
    if folds < 2:
        raise InputError(f"the domain score needs at least 2 real images per domain (got {n_src} and {n_tgt})")
    x = np.concatenate([real_source.double().cpu().numpy(), real_target.double().cpu().numpy()])
    y = np.concatenate([np.zeros(n_src, dtype=int), np.ones(n_tgt, dtype=int)])

    def probe():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))

    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    accuracy = float(cross_val_score(probe(), x, y, cv=split).mean())
    clf = probe().fit(x, y)
    share = float(clf.predict(translated.double().cpu().numpy()).mean())
    return DomainScore(share, accuracy, folds)
