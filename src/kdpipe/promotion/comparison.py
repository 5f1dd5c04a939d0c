"""Rule 2 of :mod:`kdpipe.promotion.gate`: on which data the champion's figures can be set beside the student's.

The champion was validated on the data of its night, tonight's student on today's. On the same data
(sha256) the validation's predictions of the champion are compared as they are. On new data the
champion is re-measured on today's gate split, which is fair only on images it never trained on: two
prepared data sets whose stable splits share a fingerprint put every image they share in the same
split, so today's gate split holds none of the images the champion trained on. Where that cannot be
proven (a seeded split, a champion that recorded no fingerprint, a fingerprint that changed),
``gate.champion_on_new_data`` decides: ``rescore`` (the default, so that a nightly job can still
promote) compares anyway, and since a champion scored on images it may have trained on can only look
better than it is, the comparison stays conservative; ``refuse`` does not compare. A changed class set
is never compared: the two models answer different questions. Pure: no MLflow, no files.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Basis:
    """What a model was validated on: the prepared data's sha256, its split fingerprint (None: a seeded split, or
    not recorded) and its class names in label order (None: not recorded)."""

    data_sha256: str | None
    split_fingerprint: str | None
    classes: tuple[str, ...] | None


@dataclass(frozen=True)
class Comparison:
    """How champion ``version`` stands to the student's data: ``same_data``, or re-measured on today's gate split;
    ``refused``: the one line saying why the two are not compared (None: they are); ``unproven``: why today's gate
    split is not proven free of the champion's training images (None: proven, or the same data)."""

    version: str
    same_data: bool
    refused: str | None = None
    unproven: str | None = None

    @property
    def scores_champion(self) -> bool:
        """Whether the champion is measured at all."""
        return self.refused is None

    def line(self, data_sha256: str, images: int) -> str:
        """What the champion's figures were measured on, in one sentence (``images``: the gate split's size)."""
        if self.same_data:
            return f"evaluated on the champion's data {data_sha256[:12]}"
        proof = (
            "split proven disjoint"
            if self.unproven is None
            else f"not proven disjoint: {self.unproven}; gate.champion_on_new_data is rescore, and rescoring the "
            "champion on images it may have trained on can only favour it"
        )
        where = f"today's gate split ({data_sha256[:12]}, {images} images; {proof})"
        return f"champion v{self.version} re-measured on {where}"


def _names(classes: list[str]) -> str:
    return ", ".join(repr(c) for c in classes)


def _class_change(version: str, champion: tuple[str, ...], today: tuple[str, ...]) -> str:
    added = [c for c in today if c not in champion]
    removed = [c for c in champion if c not in today]
    what = "; ".join(
        part
        for part in (
            f"today's data adds {_names(added)}" if added else "",
            f"drops {_names(removed)}" if removed else "",
        )
        if part
    )
    return (
        f"the classes changed since champion v{version} was validated ({what or 'same classes in another order'}): "
        "a changed class set is never rescored, so the two are not compared (serve the new classes under another "
        "tracking.registered_model)"
    )


def _unproven(version: str, champion: Basis, today: Basis) -> str | None:
    """Why today's gate split may hold images the champion trained on; None when the fingerprints prove it cannot."""
    reasons, missing = [], []
    if today.split_fingerprint is None:
        reasons.append("today's data uses the seeded split (data.split)")
    elif champion.split_fingerprint is None:
        missing.append("split fingerprint")
    elif champion.split_fingerprint != today.split_fingerprint:
        reasons.append(
            f"the split fingerprint changed since champion v{version} "
            f"({champion.split_fingerprint} -> {today.split_fingerprint})"
        )
    if champion.classes is None:
        missing.append("class list")
    if missing:
        reasons.append(f"champion v{version} records no {' and no '.join(missing)}")
    return " and ".join(reasons) or None


def compare(version: str, champion: Basis, today: Basis, on_new_data: str) -> Comparison:
    """Rule 2: compare on the same data; on new data re-measure the champion when its classes are today's and today's
    gate split is proven free of its training images, or, unproven, when ``on_new_data`` is ``rescore``."""
    if champion.data_sha256 == today.data_sha256:
        return Comparison(version, same_data=True)
    if champion.classes is not None and today.classes is not None and champion.classes != today.classes:
        return Comparison(version, same_data=False, refused=_class_change(version, champion.classes, today.classes))
    unproven = _unproven(version, champion, today)
    if unproven is not None and on_new_data == "refuse":
        refused = (
            f"champion v{version} was validated on data {str(champion.data_sha256)[:12]}, the student on "
            f"{str(today.data_sha256)[:12]}, and today's gate split is not proven free of the images the champion "
            f"trained on ({unproven}): gate.champion_on_new_data is refuse, so the two are not compared"
        )
        return Comparison(version, same_data=False, refused=refused, unproven=unproven)
    return Comparison(version, same_data=False, unproven=unproven)
