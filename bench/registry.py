"""One registry for detectors, suites and post-processing chains, fed by entry points.

Built-ins and third-party plugins come in through the same door: the entry-point groups
`bench.detectors`, `bench.suites`, `bench.chains` and `bench.autoencoders`. The core never
imports `detectors/`, `suites/` or `dear/` by name.

A detector entry point names either a `DetectorSpec` (what `register` below returns: metadata
plus a factory, so `bench list` needs no model) or any callable `make(weights=None) -> Detector`.
A plugin that fails to import or raises is reported by name; the others still work.

Detector names take a weight tag, timm style: `create_detector("corvi.mini")`.
"""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

from bench.api import FAMILIES, Autoencoder, BenchError, Detector, DetectorInfo, InputPolicy, SuiteSource, Transform, WeightSpec, did_you_mean

GROUPS = {"detectors": "bench.detectors", "suites": "bench.suites", "chains": "bench.chains",
          "autoencoders": "bench.autoencoders"}


class UnknownNameError(BenchError):
    pass


@dataclass(frozen=True)
class DetectorSpec:
    """A registered detector: its metadata, weight tags and builder.

    `make` is a callable `make(weights_tag, **kw) -> Detector`, or the text "module:function" of
    a builder imported on first build and called as `function(spec, weights_tag, **kw)` (one
    builder serves a family). With the text form, listing and checking names imports no model
    code (no torch): the built-in catalogs (`detectors.catalog`, `dear.catalog`) use it.

    `trained_as` names the training recipe of the backbone ("corvi", "rajan", "npr"), which
    methods that start from a trained detector read (DEAR's defaults). `tiny` builds a small
    random-weight instance of the same architecture, for the contract tests of a family whose
    weights cannot be on a fresh machine (same two forms as `make`; None: a bundled tag serves).
    `requires` covers what a tag needs beyond its own file (a frozen backbone that the CLIP
    detectors load through open_clip or transformers): `requires(spec, tag) -> str | None`, None
    when it is on this machine, else a sentence saying what is missing and where to put it (same
    two forms; a string keeps `bench list` free of model imports, so that function must be too)."""

    info: DetectorInfo
    make: Callable[..., Detector] | str
    weights: tuple[WeightSpec, ...] = ()
    default_weights: str | None = None
    trained_as: str | None = None
    tiny: Callable[..., Detector] | str | None = None
    requires: Callable[..., str | None] | str | None = None

    @property
    def name(self) -> str:
        return self.info.name

    def weight(self, tag: str) -> WeightSpec:
        for w in self.weights:
            if w.tag == tag:
                return w
        raise UnknownNameError(
            f"detector {self.name!r} has no weights {tag!r}; known: {', '.join(w.tag for w in self.weights) or 'none'}"
        )

    def __call__(self, weights: str | None = None, **kwargs: Any) -> Detector:
        tag = weights or self.default_weights
        if isinstance(self.make, str):
            return resolve_object(self.make)(self, tag, **kwargs)
        return self.make(tag, **kwargs)

    def build_tiny(self, **kwargs: Any) -> Detector:
        """The small random-weight instance of `tiny` (contract tests)."""
        if self.tiny is None:
            raise BenchError(f"detector {self.name!r} declares no tiny test model")
        return resolve_object(self.tiny)(self, **kwargs) if isinstance(self.tiny, str) else self.tiny(**kwargs)

    def missing(self, tag: str | None = None) -> str | None:
        """What `requires` says is missing for `tag` (default tag when None) besides the tag's own
        file, or None when nothing is (or nothing more is required)."""
        if self.requires is None:
            return None
        check = resolve_object(self.requires) if isinstance(self.requires, str) else self.requires
        return check(self, tag or self.default_weights)


def resolve_object(reference: str) -> Any:
    """The object named by "package.module:attribute"."""
    import importlib

    module, sep, attr = reference.partition(":")
    if not sep:
        raise ValueError(f"expected 'module:attribute', got {reference!r}")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def register(
    name: str,
    display_name: str,
    family: str,
    *,
    weights: tuple[WeightSpec, ...] = (),
    default_weights: str | None = None,
    calibrated: bool = True,
    input: InputPolicy = InputPolicy(),
    description: str = "",
    trained_as: str | None = None,
    tiny: Callable[..., Detector] | str | None = None,
    requires: Callable[..., str | None] | str | None = None,
) -> Callable[[Callable[..., Detector] | str], DetectorSpec]:
    """Decorator turning a factory `make(weights_tag, **kw) -> Detector` into a DetectorSpec;
    `register(...)("module:function")` gives the lazily imported form (see DetectorSpec)."""
    return lambda make: detector_spec_of(name, display_name, family, make, weights=weights, default_weights=default_weights,
                                         calibrated=calibrated, input=input, description=description, trained_as=trained_as,
                                         tiny=tiny, requires=requires)


def detector_spec_of(
    name: str, display_name: str, family: str, make: Callable[..., Detector] | str, *,
    weights: tuple[WeightSpec, ...] = (), default_weights: str | None = None, calibrated: bool = True,
    input: InputPolicy = InputPolicy(), description: str = "", trained_as: str | None = None,
    tiny: Callable[..., Detector] | str | None = None, requires: Callable[..., str | None] | str | None = None,
) -> DetectorSpec:
    """A DetectorSpec, its name and family checked (what `register` builds)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_\-]*", name):
        raise ValueError(f"detector names are lowercase ASCII: {name!r}")
    if family not in FAMILIES:
        raise ValueError(f"detector {name!r}: family {family!r} is not one of {', '.join(FAMILIES)}")
    info = DetectorInfo(name, display_name, family, calibrated, input, description)
    return DetectorSpec(info, make, tuple(weights), default_weights or (weights[0].tag if weights else None), trained_as, tiny,
                        requires)


@dataclass
class LoadReport:
    """What a registry scan found, including what failed to load and why."""

    loaded: dict[str, Any] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)  # name -> distribution providing it
    errors: dict[str, str] = field(default_factory=dict)  # name -> "ExcType: message"


class PluginLoadError(BenchError):
    """A registered name whose plugin cannot be used (it failed to import, or two distributions
    claim it): a run reports it and goes on with the others."""


OWN_DISTRIBUTION = "aigi-bench"

_cache: dict[str, LoadReport] = {}  # complete scans
_partial: dict[str, LoadReport] = {}  # entry points loaded one by one (lookups by name)
_points: dict[str, dict[str, Any]] = {}  # group -> name -> the entry point used
_refused: dict[str, dict[str, str]] = {}  # group -> name -> why a claim on it was refused


def _dist_name(ep: Any) -> str:
    name = ep.dist.name if getattr(ep, "dist", None) else "?"
    return re.sub(r"[-_.]+", "-", name).lower()


def _entry_points(kind: str) -> dict[str, Any]:
    """name -> entry point, each name claimed once. Which of two claims would win would depend on
    discovery order, so a second distribution claiming a name is refused: aigi-bench's own
    built-ins keep their names, and a name two plugins claim is used by neither (`_refused`
    says why, naming both)."""
    if kind not in _points:
        claims: dict[str, dict[str, Any]] = {}
        for ep in entry_points(group=GROUPS[kind]):
            claims.setdefault(ep.name, {}).setdefault(_dist_name(ep), ep)  # one distribution found twice is one claim
        found: dict[str, Any] = {}
        refused: dict[str, str] = {}
        for name, by_dist in sorted(claims.items()):
            if len(by_dist) == 1:
                found[name] = next(iter(by_dist.values()))
                continue
            others = sorted(d for d in by_dist if d != OWN_DISTRIBUTION)
            if OWN_DISTRIBUTION in by_dist:
                found[name] = by_dist[OWN_DISTRIBUTION]
                refused[name] = (f"{kind[:-1]} {name!r} is claimed by {OWN_DISTRIBUTION} and by {', '.join(others)}; "
                                 f"the claim of {', '.join(others)} is refused (rename its entry point)")
            else:
                refused[name] = (f"{kind[:-1]} {name!r} is claimed by {' and '.join(others)}: which one would load depends on "
                                 "installation order, so neither is used; uninstall one or rename its entry point")
        _points[kind], _refused[kind] = found, refused
    return _points[kind]


def refused(kind: str) -> dict[str, str]:
    """name -> why a claim on it was refused (a name claimed by two distributions)."""
    _entry_points(kind)
    return dict(_refused[kind])


def _load(kind: str, name: str, report: LoadReport) -> None:
    """Load one entry point into `report`; a broken plugin lands in `errors`, not an exception.
    Everything but Ctrl-C is caught: a plugin calling sys.exit() at import must not end `bench list`."""
    ep = _entry_points(kind)[name]
    try:
        report.loaded[name] = ep.load()
        report.origin[name] = ep.dist.name if ep.dist else "?"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # a plugin may fail in any way (SystemExit too); report it, keep the others
        report.errors[name] = f"{type(exc).__name__}: {exc}"


def scan(kind: str, refresh: bool = False) -> LoadReport:
    """Load every entry point of one group (for listings and default selections)."""
    if refresh:
        for table in (_cache, _partial, _points, _refused):
            table.pop(kind, None)
    if kind in _cache:
        return _cache[kind]
    report = _partial.pop(kind, None) or LoadReport()  # keeps the objects lookups already handed out
    for name in _entry_points(kind):
        if name not in report.loaded and name not in report.errors:
            _load(kind, name, report)
    for name, why in _refused[kind].items():
        if name not in report.loaded:
            report.errors[name] = why
    _cache[kind] = report
    return report


def _lookup(kind: str, name: str) -> Any:
    """The object registered as `name`, importing only its own entry point: building one
    detector must not pay for importing every plugin (open_clip, diffusers, ...)."""
    report = _cache.get(kind)
    points = _entry_points(kind)
    if report is None and name in points:
        report = _partial.setdefault(kind, LoadReport())
        if name not in report.loaded and name not in report.errors:
            _load(kind, name, report)
    if report is not None and name in report.loaded:
        return report.loaded[name]
    if report is not None and name in report.errors:
        raise PluginLoadError(f"{kind[:-1]} {name!r} is installed but failed to load: {report.errors[name]}")
    if name in _refused[kind]:
        raise PluginLoadError(_refused[kind][name])
    candidates = list(points)  # names only: suggesting needs no imports
    known = ", ".join(sorted(candidates)) or "none"
    raise UnknownNameError(f"unknown {kind[:-1]} {name!r}{did_you_mean(name, candidates)} (known: {known})")


def split_tag(name: str) -> tuple[str, str | None]:
    """'corvi.mini' -> ('corvi', 'mini'); 'corvi' -> ('corvi', None)."""
    base, _, tag = name.partition(".")
    return base, (tag or None)


def check_detector_name(name: str) -> None:
    """Raise UnknownNameError (with close matches) for an unknown detector or weight tag."""
    spec = detector_spec(name)
    tag = split_tag(name)[1]
    if tag is not None and isinstance(spec, DetectorSpec):
        spec.weight(tag)


def with_default_tag(name: str) -> str:
    """'heavy' -> 'heavy.official' for a registered detector, so reports name the weights."""
    base, tag = split_tag(name)
    spec = detector_spec(base)
    if tag is None and isinstance(spec, DetectorSpec) and spec.default_weights:
        return f"{base}.{spec.default_weights}"
    return name


def detector_spec(name: str) -> DetectorSpec | Callable[..., Detector]:
    return _lookup("detectors", split_tag(name)[0])


def detector_info(name: str) -> DetectorInfo:
    """Metadata without building a model (a plain-callable plugin is built once to ask it)."""
    spec = detector_spec(name)
    if isinstance(spec, DetectorSpec):
        return spec.info
    return create_detector(name).info


def create_detector(name: str, **kwargs: Any) -> Detector:
    """Build a registered detector, e.g. `create_detector("corvi.mini")`."""
    base, tag = split_tag(name)
    spec = detector_spec(base)
    try:
        det = spec(tag, **kwargs) if tag is not None or isinstance(spec, DetectorSpec) else spec(**kwargs)
    except BenchError:
        raise
    except Exception as exc:
        raise BenchError(f"detector {name!r} failed to build: {type(exc).__name__}: {exc}") from exc
    if not isinstance(det, Detector):
        raise BenchError(f"detector {name!r}: its factory returned {type(det).__name__}, not a bench.api.Detector")
    return det


def get_suite(name: str) -> SuiteSource:
    return _lookup("suites", name)


def is_autoencoder_reference(reference: str) -> bool:
    """Whether `reference` is "family:name" with a registered family (else, for AEROBLADE, a
    Hub id or a folder)."""
    family, sep, name = reference.partition(":")
    return bool(sep and name) and family in _entry_points("autoencoders")


def get_autoencoder(reference: str, **kwargs: Any) -> Autoencoder:
    """The autoencoder "family:name" (`bench.api.Autoencoder`), e.g. "mini:ldm": the entry point
    `family` of group `bench.autoencoders` names a factory `make(name, **kwargs)`."""
    family, sep, name = reference.partition(":")
    if not sep or not name:
        raise UnknownNameError(f"autoencoder {reference!r}: expected 'family:name', e.g. 'mini:ldm'")
    make = _lookup("autoencoders", family)
    autoencoder = make(name, **kwargs)
    if not isinstance(autoencoder, Autoencoder):
        raise BenchError(f"autoencoder {reference!r}: its factory returned {type(autoencoder).__name__}, not a bench.api.Autoencoder")
    return autoencoder


def create_chain(spec: str) -> Transform:
    """Parse 'rajan', 'jpeg:quality=75' or 'webp:quality=50+blur:sigma=1' into one transform.

    Strict on purpose: the spec keys the seed and the condition, so a typo or a stray '+'
    must fail here, not silently run another condition."""
    if not spec.strip():
        raise BenchError("empty post-processing spec")
    parts = spec.split("+")
    if any(not p.strip() for p in parts):
        raise BenchError(f"post-processing {spec!r}: empty step (a '+' with nothing on one side)")
    transforms = [_create_step(part.strip(), spec) for part in parts]
    return transforms[0] if len(transforms) == 1 else Compose(tuple(transforms))


def _create_step(part: str, spec: str) -> Transform:
    """One 'name:key=value,...' step of `spec`, its parameters checked against the factory."""
    name, kwargs = parse_chain_step(part, spec)
    factory = _lookup("chains", name)
    _check_params(name, factory, kwargs, spec)
    try:
        transform = factory(**kwargs)
    except TypeError as exc:
        raise BenchError(f"post-processing {spec!r}: {exc}") from exc
    unnamed = [k for k in kwargs if f"{k}=" not in str(getattr(transform, "name", ""))]
    if unnamed:  # its settings would share one cache key and one seed (see bench.api.Transform)
        raise BenchError(f"post-processing {spec!r}: the transform names itself {getattr(transform, 'name', None)!r}, "
                         f"which leaves out {', '.join(unnamed)}: a chain's `name` must spell every parameter it was given, "
                         f"as in '{name}:{unnamed[0]}=...', since it keys the cached scores and the seeds")
    return transform


def parse_chain_step(part: str, spec: str) -> tuple[str, dict[str, Any]]:
    """'jpeg:quality=75' -> ('jpeg', {'quality': 75}); names resolve case-insensitively.

    Public because a sweep reads its chain's last step the same way (`bench.runner.sweep`)."""
    name, _, args = part.partition(":")
    name = name.strip()
    if not name:
        raise BenchError(f"post-processing {spec!r}: step {part!r} has no chain name")
    if name not in _entry_points("chains"):
        name = name.lower()  # chain names are lowercase ASCII; 'JPEG' means 'jpeg'
    kwargs: dict[str, Any] = {}
    for kv in filter(None, args.split(",")):
        key, eq, value = kv.partition("=")
        key = key.strip()
        if not eq:
            raise BenchError(f"post-processing {spec!r}: expected key=value, got {kv!r}")
        if not key:
            raise BenchError(f"post-processing {spec!r}: {kv!r} has no parameter name before '='")
        if key in kwargs:
            raise BenchError(f"post-processing {spec!r}: parameter {key!r} given twice in step {part!r}")
        kwargs[key] = parse_chain_value(value.strip())
    return name, kwargs


def chain_parameters(factory: Any) -> list[inspect.Parameter] | None:
    """The keyword parameters a chain factory takes (what `name:key=value` may set), or None
    when they cannot be known (no readable signature, or **kwargs)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]


def _check_params(name: str, factory: Any, kwargs: dict[str, Any], spec: str) -> None:
    """Unknown and missing parameters, named from the factory's signature (a raw TypeError
    from a dataclass __init__ names neither the spec nor the valid choices)."""
    params = chain_parameters(factory)
    if params is None:  # let the call itself complain
        return
    known = [p.name for p in params]
    listing = f"(parameters: {', '.join(known)})" if known else "(it takes no parameters)"
    for key in kwargs:
        if key not in known:
            raise BenchError(f"post-processing {spec!r}: {name} has no parameter {key!r}{did_you_mean(key, known, n=1)} {listing}")
    missing = [p.name for p in params if p.default is p.empty and p.name not in kwargs]
    if missing:
        example = ",".join(f"{m}=..." for m in missing)
        raise BenchError(f"post-processing {spec!r}: {name} needs parameter(s) {', '.join(missing)}, e.g. {name}:{example}")


def parse_chain_value(text: str) -> Any:
    """A spec's value as the factory receives it: '75' -> 75, '0.5' -> 0.5, 'true' -> True, else the text."""
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@dataclass(frozen=True)
class Compose:
    """Transforms applied in order; their drawn parameters are kept apart by step."""

    steps: tuple[Transform, ...]

    @property
    def name(self) -> str:
        return "+".join(t.name for t in self.steps)

    def __call__(self, image: Any, rng: Any) -> tuple[Any, dict[str, Any]]:
        params: dict[str, Any] = {}
        for i, t in enumerate(self.steps):
            image, p = t(image, rng)
            params.update({f"{i}.{t.name.split(':')[0]}.{k}": v for k, v in p.items()})
        return image, params
