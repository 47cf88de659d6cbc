"""Which detectors a run scores, built with which options, and the label each row carries.

- The default selection: every registered detector whose weights for the suite's tag are on
  this machine. What is left out is said once, with the exact tag to name and where its file
  goes; when nothing is left, the error says what can be run instead (the bundled `.mini`
  weights, and that they are toys).
- Builder options (`bench run --detector-option tile=false`): passed to every selected detector
  whose builder takes that keyword; one that none takes is refused before any work.
- Labels: a row is labelled with its weight tag whenever the tag is not the official one ("NPR
  (mini)"), and with the options it was built with, so a toy or a variant is never mistaken for
  the published detector in a table, figure or CSV.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

from bench import registry
from bench.api import BenchError, Detector

log = logging.getLogger("bench.runner")

OFFICIAL_TAG = "official"
TOY_TAG = "mini"  # the AIGI-mini weights: trained on a synthetic miniature
_BUILDER_ARGS = {"spec", "weights", "self", "path", "device"}  # not options a run sets


@dataclass
class Selection:
    """The default detectors of a suite, and the ones left out with why."""

    names: list[str] = field(default_factory=list)
    unavailable: list[tuple[str, str]] = field(default_factory=list)  # (name.tag, where its file goes / how to get it)
    toys: list[str] = field(default_factory=list)  # name.mini of detectors that do have toy weights here


def default_selection(weights_tag: str | None) -> Selection:
    """Every registered detector whose `weights_tag` weights (its default weights when None) are
    on this machine, with whatever else its spec `requires` (a backbone), plus plain-callable
    plugins, which have no tags. Weights that would have to be downloaded are left out
    (offline, every such detector would fail the run)."""
    from bench.weights import local_path, status

    sel = Selection()
    for name, spec in sorted(registry.scan("detectors").loaded.items()):
        if isinstance(spec, registry.DetectorSpec):
            tag = weights_tag or spec.default_weights
            weight = next((w for w in spec.weights if w.tag == tag), None)
            if any(w.tag == TOY_TAG and status(name, w) in ("local", "bundled") for w in spec.weights):
                sel.toys.append(f"{name}.{TOY_TAG}")
            if weight is None:
                continue
            where = status(name, weight)
            missing = spec.missing(tag) if where in ("local", "bundled") else None  # a frozen backbone, say
            if missing:
                sel.unavailable.append((f"{name}.{tag}", missing))
            elif where in ("local", "bundled"):
                sel.names.append(f"{name}.{tag}")
            elif weight.hf_repo or weight.url:
                source = "the Hub" if weight.hf_repo else weight.url
                sel.unavailable.append((f"{name}.{tag}", f"name {name}.{tag} in --detectors to fetch it from {source}"))
            else:
                sel.unavailable.append((f"{name}.{tag}", f"put the file at {local_path(name, weight)}"))
        elif callable(spec):
            sel.names.append(name)
    return sel


def default_detector_names(weights_tag: str | None) -> list[str]:
    """The names of `default_selection`."""
    return default_selection(weights_tag).names


def explain_defaults(sel: Selection, tag: str | None, suite: str) -> None:
    """Say once what the default selection leaves out; refuse an empty one with what to do."""
    if sel.names:
        if sel.unavailable:
            log.warning("%d detector(s) skipped, their %s weights or what they need are not on this machine: %s "
                        "(`bench list` says where each file goes)", len(sel.unavailable), tag or "default",
                        ", ".join(n for n, _ in sel.unavailable))
        return
    lines = [f"no detector has its {tag or 'default'} weights on this machine, so suite {suite!r} has nothing to score:"]
    lines += [f"  {name}: {how}" for name, how in sel.unavailable]
    if sel.toys:
        lines.append(f"The bundled AIGI-mini weights run offline, but they are toys trained on a synthetic miniature, "
                     f"not the published detectors: --detectors {','.join(sel.toys)} (their rows read e.g. 'NPR (mini)').")
    raise BenchError("\n".join(lines))


def builder_options(name: str) -> set[str] | None:
    """The keyword options the builder of detector `name` takes, or None when it takes any
    (**kwargs) or cannot be inspected."""
    spec = registry.detector_spec(name)
    target = spec.make if isinstance(spec, registry.DetectorSpec) else spec
    if isinstance(target, str):
        target = registry.resolve_object(target)
    params = registry.chain_parameters(target)  # the same signature reading as a chain factory's
    return None if params is None else {p.name for p in params} - _BUILDER_ARGS


def options_for(names: Sequence[str], options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """name -> the options its builder takes; an option no named detector takes is refused."""
    if not options:
        return {n: {} for n in names}
    taken: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    accepted: dict[str, set[str] | None] = {}
    for n in names:
        try:
            accepted[n] = builder_options(n)
        except BenchError:  # a plugin that failed to load: reported when it is built
            accepted[n] = set()
        taken[n] = {k: v for k, v in options.items() if accepted[n] is None or k in accepted[n]}
        used |= set(taken[n])
    unused = sorted(set(options) - used)
    if unused:
        takes = "; ".join(f"{n}: {', '.join(sorted(a)) or 'none'}" for n, a in accepted.items() if a is not None)
        raise BenchError(f"no selected detector takes the option(s) {', '.join(unused)} (options they take: {takes or 'none'})")
    return taken


def row_label(det: Detector, options: dict[str, Any] | None = None) -> str:
    """The display name a row of `det` carries: "NPR", or "NPR (mini)" for weights other than
    the official ones, "Corvi (tile=False)" for a detector built with options."""
    tag = registry.split_tag(det.weights)[1] if det.weights else None
    parts = ([tag] if tag and tag != OFFICIAL_TAG else []) + [f"{k}={v}" for k, v in sorted((options or {}).items())]
    return f"{det.info.display_name} ({', '.join(parts)})" if parts else det.info.display_name


def warn_about_toys(dets: Sequence[Detector], suite_tag: str | None, suite: str) -> None:
    """Once per run: toy weights scored on a suite that is not their world."""
    toys = [d.weights for d in dets if registry.split_tag(d.weights or "")[1] == TOY_TAG]
    if toys and suite_tag != TOY_TAG:
        log.warning("%s: these weights were trained on AIGI-mini, a synthetic miniature; their numbers on suite %r say "
                    "nothing about the published detectors (rows are labelled '(mini)')", ", ".join(toys), suite)
