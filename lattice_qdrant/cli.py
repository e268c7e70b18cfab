"""``lattice-qdrant``: the command line over :mod:`lattice_qdrant.commands`.

Each command parses its options, calls the matching function of :mod:`lattice_qdrant.commands` and renders
the result. A command's ``--help`` is the first paragraph of that function's docstring, and the plan's and
the backfill's options are made from the fields of :class:`~lattice_qdrant.plan.PlanOptions` and
:class:`~lattice_qdrant.backfill.BackfillOptions` (see :class:`_Table`), so neither is written twice. Library
errors become one line on stderr and an exit code (``--traceback`` shows the stack):

* 0: done
* 1: an error (Qdrant, a model, a missing migration, ...); ``doctor``: not safe to start; ``verify``:
  mismatches remain
* 2: bad usage or configuration
* 3: refused by the lifecycle (below the cutover threshold, inside the rollback window, a transition not
  allowed now, or lost to another process); the message says which flag overrides it
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Annotated, Any, Protocol, TypeVar, cast

import typer
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from qdrant_client import models

from . import commands
from .backfill import BackfillOptions, BackfillProgress, BackfillReport, BackfillSettings, Shard
from .commands import Connection, Session, StatusReport
from .config import Settings, load_settings
from .embedders import EmbedderSettings
from .errors import ConfigError, LatticeError, TransitionError
from .metrics import NO_METRICS
from .options import choices, is_duration, plain, summary, value_type
from .plan import PlanOptions
from .state import format_duration
from .verify import VerifyReport

__all__ = ["app", "main"]

log = logging.getLogger("lattice_qdrant")

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

app = typer.Typer(
    name="lattice-qdrant",
    help="Move a live Qdrant collection from one embedding model to another: zero downtime, no lost "
    "writes, a safe way back.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
models_app = typer.Typer(help="Register and inspect embedding model specs.", no_args_is_help=True)
app.add_typer(models_app, name="models")


#: placeholder default of a table parameter: typer always passes the table's options
_NONE: Mapping[str, Any] = MappingProxyType({})


@dataclass
class _State:
    connection: Connection = field(default_factory=Connection)
    config: str | None = None
    traceback: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


def _state(ctx: typer.Context) -> _State:
    obj = ctx.find_root().obj
    if not isinstance(obj, _State):
        obj = _State()
        ctx.find_root().obj = obj
    return obj


def _root(
    ctx: typer.Context,
    url: Annotated[
        str | None, typer.Option(help="Qdrant server URL.", envvar=["LATTICE_QDRANT_URL", "QDRANT_URL"])
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            help="Local-mode storage folder (qdrant-client's embedded mode).", envvar="LATTICE_QDRANT_PATH"
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            help="API key for the server (never printed).",
            envvar=["LATTICE_QDRANT_API_KEY", "QDRANT_API_KEY"],
            show_default=False,
        ),
    ] = None,
    grpc: Annotated[
        bool, typer.Option(help="Talk gRPC to the server.", envvar="LATTICE_QDRANT_GRPC")
    ] = False,
    config: Annotated[
        str | None,
        typer.Option(
            help="Config file (default: ./lattice-qdrant.toml or [tool.lattice-qdrant] in pyproject.toml)."
        ),
    ] = None,
    traceback: Annotated[bool, typer.Option("--traceback", help="Show the stack trace of an error.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
    runtime: EmbedderOpts = _NONE,
) -> None:
    # No docstring: the app's --help is the Typer's help, written once. Registered as the app's callback
    # below, once its table of embedder options can be expanded.
    # The backfill draws its own progress; model loading's bars would tear through it.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = _State(
        connection=Connection(url=url, path=path, api_key=api_key, grpc=grpc),
        config=config,
        traceback=traceback,
        overrides=dict(runtime),
    )


def _fail(ctx: typer.Context, exc: BaseException, code: int) -> None:
    if _state(ctx).traceback:
        import traceback as tb

        tb.print_exception(exc, file=sys.stderr)
    secret = _state(ctx).connection.api_key
    message = str(exc)
    if secret:
        message = message.replace(secret, "***")
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


@contextmanager
def _session(ctx: typer.Context, **overrides: Any) -> Iterator[Session]:
    """Open a session, turning library errors into one line and an exit code."""
    state = _state(ctx)
    try:
        settings = load_settings({**state.overrides, **overrides}, config_file=state.config)
        session = Session(state.connection, settings)
    except ConfigError as exc:
        _fail(ctx, exc, EXIT_USAGE)
    except LatticeError as exc:
        _fail(ctx, exc, EXIT_ERROR)
    except (RuntimeError, ValueError, OSError) as exc:  # qdrant-client refusing to open
        _fail(ctx, exc, EXIT_ERROR)
    try:
        yield session
    except ConfigError as exc:
        _fail(ctx, exc, EXIT_USAGE)
    except TransitionError as exc:
        _fail(ctx, exc, EXIT_REFUSED)
    except LatticeError as exc:
        _fail(ctx, exc, EXIT_ERROR)
    finally:
        session.close()


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class _Table:
    """Command-line options made from a pydantic model's fields, written nowhere else.

    A command parameter annotated ``Annotated[Mapping[str, Any], _Table(Model)]`` stands for one
    ``--kebab-case`` option per field of ``Model`` (but ``exclude``), with the field's description as its
    help. A field the settings hold (:class:`~lattice_qdrant.config.Settings`) defaults to ``None``, so that
    an option left out falls back to the environment, the config file and the built-in default, in that
    order; any other field defaults as the model says, and the help shows it. A duration is given as text
    (``90s``, ``24h``), a ``Literal`` or enum as its value; the model checks both. The command receives a
    mapping of the options given (``None`` left out).
    """

    model: type[BaseModel]
    exclude: frozenset[str] = frozenset()

    def names(self) -> list[str]:
        """The fields that are options, in the model's order."""
        return [name for name in self.model.model_fields if name not in self.exclude]

    def parameters(self) -> list[inspect.Parameter]:
        """The options as typer reads them from a signature."""
        return [_option(name, self.model.model_fields[name]) for name in self.names()]


def _option(name: str, info: FieldInfo) -> inspect.Parameter:
    kind = str if is_duration(info) or choices(info) is not None else value_type(info)
    if info.is_required() or kind not in (str, int, float, bool):
        raise TypeError(f"the plan or backfill option {name!r} has no command-line form ({info.annotation})")
    default = None if name in Settings.model_fields else info.get_default(call_default_factory=True)
    if isinstance(default, Enum):
        default = default.value
    option = typer.Option(help=plain(info.description or ""))
    return inspect.Parameter(
        name,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        default=default,
        annotation=Annotated[kind if default is not None else kind | None, option],
    )


def _expand(function: F) -> F:
    """``function`` with each :class:`_Table` parameter replaced by the table's options, for typer."""
    signature = inspect.signature(function, eval_str=True)
    tables: dict[str, _Table] = {}
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        table = next(
            (m for m in getattr(parameter.annotation, "__metadata__", ()) if isinstance(m, _Table)), None
        )
        if table is None:
            parameters.append(parameter)
        else:
            tables[parameter.name] = table
            parameters += table.parameters()
    names = [p.name for p in parameters]
    if len(set(names)) != len(names):
        raise TypeError(f"{function.__name__}: an option of a table is also a parameter")

    @functools.wraps(function)
    def expanded(**kwargs: Any) -> Any:
        for parameter, table in tables.items():
            given = {name: kwargs.pop(name) for name in table.names()}
            kwargs[parameter] = {name: value for name, value in given.items() if value is not None}
        return function(**kwargs)

    expanded.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return cast(F, expanded)


#: each command's function here -> the function of :mod:`lattice_qdrant.commands` whose docstring is its help
HELP_SOURCES: dict[Callable[..., Any], Callable[..., Any]] = {}


def _command(group: typer.Typer, source: Callable[..., Any], name: str | None = None) -> Callable[[F], F]:
    """Register a command of ``group`` whose ``--help`` is the first paragraph of ``source``'s docstring.

    ``source`` is the :mod:`lattice_qdrant.commands` function the command runs, so the library and the CLI
    share one text (as alembic's commands do); the command's own function has no docstring.
    """

    def register(function: F) -> F:
        HELP_SOURCES[function] = source
        group.command(name, help=summary(source))(_expand(function))
        return function

    return register


#: the options of a plan (:class:`~lattice_qdrant.plan.PlanOptions`)
PlanOpts = Annotated[Mapping[str, Any], _Table(PlanOptions)]
#: the backfill options the settings hold (:class:`~lattice_qdrant.backfill.BackfillSettings`)
TuningOpts = Annotated[Mapping[str, Any], _Table(BackfillSettings)]
#: a backfill run's options (:class:`~lattice_qdrant.backfill.BackfillOptions`) that are plain values
BackfillOpts = Annotated[
    Mapping[str, Any],
    _Table(
        BackfillOptions, exclude=frozenset({"shard", "priorities", "heartbeat_interval", "progress_interval"})
    ),
]
#: how this process runs the models (:class:`~lattice_qdrant.embedders.EmbedderSettings`): options of the
#: app itself, before the command, since every command that embeds builds its models the same way
EmbedderOpts = Annotated[Mapping[str, Any], _Table(EmbedderSettings)]

app.callback()(_expand(_root))


def _backfill_options(session: Session, **values: Any) -> BackfillOptions:
    try:
        return commands.backfill_options(session, **values)
    except ValueError as exc:
        raise ConfigError(f"invalid backfill option: {exc}") from exc


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _echo_mapping(data: dict[str, Any], as_json: bool) -> None:
    """A record as JSON, or as aligned ``key value`` lines."""
    if as_json:
        _echo_json(data)
        return
    width = max((len(k) for k in data), default=0) + 1
    for key, value in data.items():
        typer.echo(f"{key:{width}} {value}")


def _bar(fraction: float, width: int = 30) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "." * (width - filled) + "]"


#: how ``status`` names a run's shard method
_SHARD_METHODS = {
    "slice": "Qdrant's slices (each worker reads its share)",
    "hash": "id hash (each worker reads every point to do)",
    "mixed": "two methods at once: stop the workers and start them again",
}


def render_status(report: StatusReport) -> str:
    """The human form of a :class:`StatusReport`."""
    lines = [
        f"{report.collection}: {report.label}",
        f"  source    {report.source}  (vector {report.source_vector!r})",
        f"  target    {report.target}  (vector {report.target_vector!r})",
        f"  coverage  {_bar(report.coverage)} {report.coverage:6.1%}  "
        f"{report.covered} of {report.total} points",
        f"  routing   writes: {report.write_route}; queries: {report.query_route} "
        f"(vector {report.query_vector!r})",
    ]
    if report.layout:
        lines.append(f"  layout    {report.layout}")
    if report.failed:
        shown = ", ".join(f"{f['point_id']} ({f['reason']})" for f in report.failures[:3])
        lines.append(f"  failed    {report.failed} point(s): {shown}")
    if report.traffic_queued:
        lines.append(f"  traffic   {report.traffic_queued} point(s) met by queries, backfilled first")
    if report.workers:
        eta = report.eta
        sharded = any(w.get("shard") for w in report.workers)
        lines.append(
            f"  backfill  {len(report.workers)} worker(s), {report.rate:.1f} points/s, "
            f"ETA {format_duration(eta) if eta is not None else 'unknown'}"
            + (
                f"; shards by {_SHARD_METHODS.get(str(report.shard_method), report.shard_method)}"
                if sharded
                else ""
            )
        )
    if report.calibration or report.calibration_hint or report.status != "cancelled":
        lines.append(f"  scores    {_calibration_line(report)}")
    if report.rollback_window_left is not None:
        lines.append(f"  window    {format_duration(report.rollback_window_left)} left before finalize")
    if report.error:
        lines.append(f"  error     {report.error}")
    if report.reason:
        lines.append(f"  paused    {report.reason}")
    lines.append(f"  next      {report.next_step}")
    return "\n".join(lines)


def _calibration_line(report: StatusReport) -> str:
    """What ``status`` says of the score calibration stored with the migration."""
    found = report.calibration
    if found is None:
        line = "not calibrated: a query's score_threshold reaches the target model untranslated"
        return f"{line}; measure one with: {report.calibration_hint}" if report.calibration_hint else line
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(found["measured_at"]))
    coverage = "" if found["coverage"] is None else f", at {found['coverage']:.1%} coverage"
    return (
        f"calibrated by {found['method']} on {when}: {found['queries']} queries x top {found['k']} "
        f"({found['source_count']} source, {found['target_count']} target scores){coverage}"
    )


def _show(reports: list[StatusReport], as_json: bool) -> None:
    if as_json:
        _echo_json([r.to_dict() for r in reports])
        return
    if not reports:
        typer.echo("no migrations")
    for report in reports:
        typer.echo(render_status(report))


JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Override the safety check that refuses this step.")]
CollectionArg = Annotated[str, typer.Argument(help="The migrated collection.")]
SaveCalibrationOpt = Annotated[
    bool,
    typer.Option(
        "--save-calibration",
        help="Store the two models' score calibration with the collection's migration (it must exist), "
        "so queries' score_threshold is translated in the target space.",
    ),
]

#: options several commands share, each with one help text; generic in the value's type where one
#: command requires the option (``SourceModelOpt[str]``) and another has it optional (``[str | None]``)
_T = TypeVar("_T")
SourceModelOpt = Annotated[
    _T, typer.Option(help="Registered source model (MODEL_ID[:vN]), for a collection not planned yet.")
]
TargetModelOpt = Annotated[
    _T, typer.Option(help="Registered target model (MODEL_ID[:vN]), for a collection not planned yet.")
]
SourceVectorOpt = Annotated[
    _T, typer.Option(help="Named vector holding the source vectors, for a collection not planned yet.")
]
TargetVectorOpt = Annotated[
    str | None,
    typer.Option(help="Named vector for the target (default: MODEL_ID-vN; reembed: the source vector)."),
]
TextFieldOpt = Annotated[
    str | None, typer.Option(help="Payload field holding the text (default: the plan's, or the setting).")
]
QueriesOpt = Annotated[
    str | None,
    typer.Option(help='Queries file: JSON lines {"query": ..., "relevant": [ids]} or one text a line.'),
]
KsOpt = Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the sample.")]
HtmlOpt = Annotated[str | None, typer.Option("--html", help="Also write a self-contained HTML report.")]
BackupIdArg = Annotated[str, typer.Argument(help="The backup id (see backups list).")]


# --------------------------------------------------------------------------- models


@_command(models_app, commands.register_model, "register")
def models_register(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Short, stable id (e.g. minilm).")],
    name: Annotated[
        str, typer.Option(help="The underlying model: a sentence-transformers name or path, or hash:bow-N.")
    ],
    version: Annotated[int, typer.Option(help="Integer version under the id.")] = 1,
    dimension: Annotated[
        int | None, typer.Option(help="Vector size (read from the model when omitted).")
    ] = None,
    distance: Annotated[str, typer.Option(help="Cosine, Dot, Euclid or Manhattan.")] = "Cosine",
    pooling: Annotated[str, typer.Option(help="Pooling mode.")] = "mean",
    normalize: Annotated[bool, typer.Option(help="Vectors are L2-normalised.")] = True,
    max_length: Annotated[int | None, typer.Option(help="Maximum tokens.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Text prepended to every input.")] = None,
    revision: Annotated[str | None, typer.Option(help="Model revision.")] = None,
    backend: Annotated[
        str,
        typer.Option(
            help="How the model runs: torch, onnx or openvino (the same vectors, so the same checksum)."
        ),
    ] = "torch",
    quantize: Annotated[
        str | None,
        typer.Option(help="int8 (with --backend onnx): a quantized model, with a checksum of its own."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        try:
            spec = commands.spec_from_options(
                model_id,
                name=name,
                version=version,
                dimension=dimension,
                distance=distance,
                pooling=pooling,
                normalize=normalize,
                max_length=max_length,
                prompt=prompt,
                revision=revision,
                backend=backend,
                quantization=quantize,
                settings=session.settings,
            )
        except ValueError as exc:
            raise ConfigError(f"invalid model spec: {exc}") from exc
        created = commands.register_model(session, spec)
        if as_json:
            _echo_json({"created": created, "spec": spec.to_payload()})
        else:
            typer.echo(f"{'registered' if created else 'already registered'} {spec.qualified_id}")


@_command(models_app, commands.list_models, "list")
def models_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    with _session(ctx) as session:
        specs = commands.list_models(session)
        if as_json:
            _echo_json([s.to_payload() for s in specs])
            return
        if not specs:
            typer.echo("no models registered")
        for spec in specs:
            runs = " ".join(x for x in (spec.backend, spec.quantization) if x and x != "torch")
            line = f"{spec.qualified_id:40} {spec.dimension:>5}-d {spec.distance.value:9} {spec.name}"
            typer.echo(f"{line} ({runs})" if runs else line)


@_command(models_app, commands.show_model, "show")
def models_show(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="MODEL_ID, MODEL_ID:vN or a qualified id.")],
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        _echo_mapping(commands.show_model(session, ref).to_payload(), as_json)


# --------------------------------------------------------------------------- lifecycle


@_command(app, commands.plan)
def plan(
    ctx: typer.Context,
    collection: CollectionArg,
    source: SourceModelOpt[str],
    target: TargetModelOpt[str],
    source_vector: SourceVectorOpt[str],
    target_vector: TargetVectorOpt = None,
    options: PlanOpts = _NONE,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        report = commands.plan(
            session,
            collection,
            source=source,
            target=target,
            source_vector=source_vector,
            target_vector=target_vector,
            **options,
        )
        _show([report], as_json)


@_command(app, commands.start)
def start(ctx: typer.Context, collection: CollectionArg, as_json: JsonOpt = False) -> None:
    with _session(ctx) as session:
        _show([commands.start(session, collection)], as_json)


@_command(app, commands.pause)
def pause(
    ctx: typer.Context,
    collection: CollectionArg,
    reason: Annotated[str, typer.Option(help="Why (shown by status).")] = "",
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        _show([commands.pause(session, collection, reason)], as_json)


@_command(app, commands.resume)
def resume(ctx: typer.Context, collection: CollectionArg, as_json: JsonOpt = False) -> None:
    with _session(ctx) as session:
        _show([commands.resume(session, collection)], as_json)


@_command(app, commands.cancel)
def cancel(
    ctx: typer.Context,
    collection: CollectionArg,
    keep_target: Annotated[
        bool,
        typer.Option(
            help="Keep the target named vector (blue-green: the target collection) instead of dropping it."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        _show([commands.cancel(session, collection, keep_target=keep_target)], as_json)


@_command(app, commands.cutover)
def cutover(
    ctx: typer.Context, collection: CollectionArg, force: ForceOpt = False, as_json: JsonOpt = False
) -> None:
    with _session(ctx) as session:
        report = commands.cutover(session, collection, force=force)
        _show([report], as_json)
        if report.calibration is None:  # the report has read the record already
            typer.echo(
                f"note: no score calibration is stored, so queries' score_threshold reaches the target model "
                f"untranslated; measure one with: lattice-qdrant calibrate {collection}",
                err=True,
            )


@_command(app, commands.rollback)
def rollback(ctx: typer.Context, collection: CollectionArg, as_json: JsonOpt = False) -> None:
    with _session(ctx) as session:
        _show([commands.rollback(session, collection)], as_json)


@_command(app, commands.finalize)
def finalize(
    ctx: typer.Context, collection: CollectionArg, force: ForceOpt = False, as_json: JsonOpt = False
) -> None:
    with _session(ctx) as session:
        _show([commands.finalize(session, collection, force=force)], as_json)


@_command(app, commands.status)
def status(
    ctx: typer.Context,
    collections: Annotated[
        list[str] | None, typer.Argument(help="Collections (default: every migration).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        _show(commands.status(session, collections), as_json)


# --------------------------------------------------------------------------- backfill


def _parse_priority(text: str) -> models.Filter:
    text = text.strip()
    try:
        if text.startswith("{"):
            return models.Filter.model_validate_json(text)
        key, _, raw = text.partition("=")
        if not key or not _:
            raise ValueError("expected FIELD=VALUE or a JSON filter")
        value: Any = int(raw) if raw.lstrip("-").isdigit() else raw
        return models.Filter(must=[models.FieldCondition(key=key, match=models.MatchValue(value=value))])
    except ValueError as exc:
        raise ConfigError(f"invalid --priority {text!r}: {exc}", key="priority") from exc


class _Reporter:
    """Progress on a terminal (a rich bar), or structured log lines every few seconds otherwise."""

    def __init__(self, interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.tty = sys.stderr.isatty()
        self._clock = clock
        # None until the first line: the monotonic clock starts near 0 on a machine that just booted, so
        # "never printed" must not be spelled as a time.
        self._last: float | None = None
        self._progress: Any = None
        self._task: Any = None
        self._collection: str | None = None

    def __call__(self, p: BackfillProgress) -> None:
        if self.tty:
            self._bar(p)
            return
        now = self._clock()
        if self._last is None or now - self._last >= self.interval:
            self._last = now
            eta = f"{p.eta:.0f}s" if p.eta is not None else "unknown"
            typer.echo(
                f"backfill collection={p.collection} written={p.written} remaining={p.remaining} "
                f"failed={p.failed} rate={p.rate:.1f}/s eta={eta}",
                err=True,
            )

    def _bar(self, p: BackfillProgress) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:.1f} pts/s"),
                TimeRemainingColumn(),
                transient=False,
                console=None,
            )
            self._progress.start()
        if self._collection != p.collection:
            self._collection = p.collection
            self._task = self._progress.add_task(p.collection, total=max(1, p.todo), rate=0.0)
        self._progress.update(self._task, completed=p.written + p.failed, rate=p.rate)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


@contextmanager
def _stop_on_signals() -> Iterator[threading.Event]:
    """SIGTERM and Ctrl-C set the returned event: the backfill stops after its batches in flight."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: Any) -> None:
        if not stop.is_set():
            typer.echo(
                f"\n{signal.Signals(signum).name}: stopping after the batches in flight "
                "(run the same command again to carry on)",
                err=True,
            )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def _watched() -> Iterator[tuple[threading.Event, _Reporter]]:
    """For a command that runs a backfill: its progress reporter, and the stop event signals set."""
    reporter = _Reporter()
    try:
        with _stop_on_signals() as stop:
            yield stop, reporter
    finally:
        reporter.close()


def _render_backfill(reports: list[BackfillReport], as_json: bool) -> None:
    if as_json:
        _echo_json([{**asdict(r), "coverage": r.coverage} for r in reports])
        return
    for r in reports:
        why = {
            "done": "done",
            "stop": "stopped by a signal; run again to carry on",
            "until": "coverage target reached",
            "max_points": "point budget reached",
            "max_tokens": "token budget reached",
            "paused": "the migration was paused or cancelled",
            "passes": "points kept changing; run again",
        }.get(r.stopped_by, r.stopped_by)
        typer.echo(
            f"{r.collection}: wrote {r.written} vectors in {r.elapsed:.1f}s "
            f"({r.written / max(r.elapsed, 1e-9):.1f}/s), {r.failed} failed, {r.truncated} truncated; "
            f"coverage {r.coverage:.1%} ({r.covered} of {r.total}); {why}"
        )


@_command(app, commands.backfill)
def backfill(
    ctx: typer.Context,
    collections: Annotated[list[str], typer.Argument(help="Collections to backfill, in order.")],
    run: BackfillOpts = _NONE,
    shard: Annotated[str | None, typer.Option(help="Take share I of N workers (I/N, e.g. 0/3).")] = None,
    priority: Annotated[
        list[str] | None, typer.Option(help="Backfill these first, in order: FIELD=VALUE or a JSON filter.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option(help="Report points, tokens, time and storage; write nothing.")
    ] = False,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        try:
            parsed = Shard.parse(shard) if shard else None
        except ValueError as exc:
            raise ConfigError(f"invalid backfill option: {exc}") from exc
        options = _backfill_options(
            session, **run, shard=parsed, priorities=tuple(_parse_priority(p) for p in priority or ())
        )
        if dry_run:
            estimates = commands.dry_run(session, collections, options)
            if as_json:
                _echo_json([asdict(e) for e in estimates])
                return
            for e in estimates:
                typer.echo(
                    f"{e.collection}: {e.todo} of {e.total} points to embed, ~{e.tokens} tokens, "
                    f"~{format_duration(e.seconds)} at {e.points_per_second:.0f} points/s "
                    f"(calibrated on {e.sampled}), +{commands.format_bytes(e.storage_bytes)} of vectors"
                )
            return
        metrics = NO_METRICS
        if metrics_port is not None:
            from .metrics import prometheus_metrics

            metrics = prometheus_metrics(metrics_port)
        with _watched() as (stop, reporter):
            reports = commands.backfill(
                session, collections, options, stop=stop, on_progress=reporter, metrics=metrics
            )
        _render_backfill(reports, as_json)


@_command(app, commands.migrate)
def migrate(
    ctx: typer.Context,
    collection: CollectionArg,
    source: SourceModelOpt[str | None] = None,
    target: TargetModelOpt[str | None] = None,
    source_vector: SourceVectorOpt[str | None] = None,
    target_vector: TargetVectorOpt = None,
    plan_options: PlanOpts = _NONE,
    tuning: TuningOpts = _NONE,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before each step.")] = False,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    def confirm(question: str) -> bool:
        return yes or typer.confirm(question, default=True)

    with _session(ctx) as session:
        options = _backfill_options(session, **tuning)
        with _watched() as (stop, reporter):
            report = commands.migrate(
                session,
                collection,
                source=source,
                target=target,
                source_vector=source_vector,
                target_vector=target_vector,
                confirm=confirm,
                options=options,
                stop=stop,
                on_progress=reporter,
                force=force,
                **plan_options,
            )
        _show([report], as_json)


@_command(app, commands.doctor)
def doctor(
    ctx: typer.Context,
    collection: CollectionArg,
    source: SourceModelOpt[str | None] = None,
    target: TargetModelOpt[str | None] = None,
    source_vector: SourceVectorOpt[str | None] = None,
    text_field: TextFieldOpt = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        report = commands.doctor(
            session,
            collection,
            source=source,
            target=target,
            source_vector=source_vector,
            text_field=text_field,
        )
        if as_json:
            _echo_json(report.to_dict())
        else:
            for f in report.findings:
                typer.echo(f"{f.verdict.upper():4}  {f.check:16} {f.detail}")
            typer.echo("safe to start" if report.safe else "NOT safe to start: fix the FAIL lines first")
        if not report.safe:
            raise typer.Exit(EXIT_ERROR)


class _Report(Protocol):
    """A report ``compare`` and ``probe`` print (:class:`~lattice_qdrant.compare.ComparisonReport`,
    :class:`~lattice_qdrant.probe.ProbeReport`)."""

    def render_text(self) -> str: ...
    def render_html(self) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...


def _echo_report(report: _Report, html: str | None, as_json: bool) -> None:
    """``report`` written to ``html`` when given, then shown as JSON or text."""
    if html is not None:
        try:
            with open(html, "w", encoding="utf-8") as handle:
                handle.write(report.render_html())
        except OSError as exc:
            raise ConfigError(f"cannot write the HTML report to {html}: {exc}", key="html") from exc
        typer.echo(f"wrote the HTML report to {html}", err=True)
    if as_json:
        _echo_json(report.to_dict())
    else:
        typer.echo(report.render_text())


@_command(app, commands.compare)
def compare(
    ctx: typer.Context,
    collection: CollectionArg,
    queries: QueriesOpt = None,
    sample: Annotated[
        int | None, typer.Option(help="Also sample N points; each one's first sentence must find it.")
    ] = None,
    k: KsOpt = "1,5,10,20",
    html: HtmlOpt = None,
    no_record: Annotated[
        bool, typer.Option("--no-record", help="Do not record the result for the cutover gate.")
    ] = False,
    save_calibration: SaveCalibrationOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from .compare import parse_ks

    with _session(ctx) as session:
        report = commands.compare(
            session,
            collection,
            queries_file=queries,
            sample=sample,
            ks=parse_ks(k),
            record=not no_record,
            save_calibration=save_calibration,
        )
        _echo_report(report, html, as_json)


@_command(app, commands.calibrate)
def calibrate(
    ctx: typer.Context,
    collection: CollectionArg,
    queries: QueriesOpt = None,
    sample: Annotated[
        int | None,
        typer.Option(help="Known-item queries sampled from the collection (default: 200 without --queries)."),
    ] = None,
    k: Annotated[int, typer.Option("--k", help="Each query's top K scores are sampled.")] = 10,
    seed: SeedOpt = 0,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        found = commands.calibrate(session, collection, queries_file=queries, sample=sample, k=k, seed=seed)
        if as_json:
            _echo_json(found.to_payload())
            return
        typer.echo(
            f"{collection}: score calibration stored with the migration ({found.source} -> {found.target})"
        )
        typer.echo(f"  measured  {found.describe()}")
        n = len(found.source_quantiles) - 1
        levels = (5, 25, 50, 75, 90, 95, 99)
        typer.echo("  quantile" + "".join(f"{f'p{p}':>9}" for p in levels))
        for name, values in (("source", found.source_quantiles), ("target", found.target_quantiles)):
            typer.echo(f"  {name:8}" + "".join(f"{values[round(p / 100 * n)]:>9.3f}" for p in levels))


@_command(app, commands.probe)
def probe(
    ctx: typer.Context,
    collection: Annotated[str, typer.Argument(help="The collection to probe.")],
    target: Annotated[
        str,
        typer.Option(help="The model to probe: registered (MODEL_ID[:vN]) or a sentence-transformers name."),
    ],
    source: Annotated[
        str | None,
        typer.Option(
            help="Model of the stored vectors, like --target (default: the migration plan's source)."
        ),
    ] = None,
    source_vector: Annotated[
        str | None,
        typer.Option(help="Named vector holding the source vectors (default: the plan's, or the only one)."),
    ] = None,
    queries: QueriesOpt = None,
    sample: Annotated[int, typer.Option(help="Points sampled (seeded) and embedded with the target.")] = 1000,
    known_items: Annotated[
        int | None,
        typer.Option(
            help="Known-item queries drawn from the sample (default: 200 without --queries, else 0)."
        ),
    ] = None,
    k: KsOpt = "1,5,10,20",
    margin: Annotated[
        float, typer.Option(help="Smallest recall@10 gain (0-1) worth migrating for, for the verdict.")
    ] = 0.02,
    seed: Annotated[
        int, typer.Option(help="Seed of the sample, the known-item queries and the bootstrap.")
    ] = 0,
    text_field: TextFieldOpt = None,
    html: HtmlOpt = None,
    save_calibration: SaveCalibrationOpt = False,
    as_json: JsonOpt = False,
) -> None:
    from .compare import parse_ks

    with _session(ctx) as session:
        report = commands.probe(
            session,
            collection,
            target=target,
            source=source,
            source_vector=source_vector,
            queries_file=queries,
            sample=sample,
            known_items=known_items,
            ks=parse_ks(k),
            seed=seed,
            margin=margin,
            text_field=text_field,
            save_calibration=save_calibration,
        )
        _echo_report(report, html, as_json)


def _render_verify(report: VerifyReport) -> str:
    """The human form of a :class:`~lattice_qdrant.verify.VerifyReport`."""
    scope = "every point" if report.sample is None else f"a sample of {report.sample} (seed {report.seed})"
    lines = [
        f"{report.collection}: checked {report.checked} of {report.total} points ({scope}); "
        f"{report.matched} match, {report.points_mismatched} mismatched, "
        f"{report.unverifiable} unverifiable (no text)",
        "  vectors   " + ", ".join(f"{name!r}: {model}" for name, model in report.vectors.items()),
    ]
    for m in report.mismatches:
        similarity = "" if m.similarity is None else f" (similarity {m.similarity:.4f})"
        fixed = "  [fixed]" if m.fixed else ""
        lines.append(f"  {m.reason:13} {m.point_id}: {m.detail}{similarity}{fixed}")
    if report.mismatched > len(report.mismatches):
        lines.append(f"  ... and {report.mismatched - len(report.mismatches)} more (--json lists them)")
    if report.unverifiable_ids:
        lines.append("  no text   " + ", ".join(str(pid) for pid in report.unverifiable_ids))
    if report.fixed or report.fix_skipped:
        lines.append(
            f"  fixed     {report.fixed} of {report.mismatched}"
            + (
                f"; {report.fix_skipped} left alone (changed meanwhile, or no stamp to set)"
                if report.fix_skipped
                else ""
            )
        )
    lines.append(
        "  result    all match" if report.clean else f"  result    {report.remaining} mismatch(es) remain"
    )
    return "\n".join(lines)


@_command(app, commands.verify)
def verify(
    ctx: typer.Context,
    collection: CollectionArg,
    sample: Annotated[
        int | None, typer.Option(help="Check a random sample of N points.  [default: 200]")
    ] = None,
    all_points: Annotated[bool, typer.Option("--all", help="Check every point instead of a sample.")] = False,
    vector: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=MODEL_REF: the registered model a vector holds (default: the migration plan)."
        ),
    ] = None,
    tolerance: Annotated[
        float, typer.Option(help="Allowed distance from the re-embedding (1 - cosine, or relative L2).")
    ] = 1e-3,
    fix: Annotated[
        bool, typer.Option("--fix", help="Rewrite mismatched vectors and re-stamp the model fields.")
    ] = False,
    seed: SeedOpt = 0,
    text_field: TextFieldOpt = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        if all_points and sample is not None:
            raise ConfigError("give --sample N or --all, not both", key="sample")
        report = commands.verify(
            session,
            collection,
            vectors=vector or (),
            sample=200 if sample is None else sample,
            all_points=all_points,
            tolerance=tolerance,
            fix=fix,
            seed=seed,
            text_field=text_field,
        )
        if as_json:
            _echo_json(report.to_dict())
        else:
            typer.echo(_render_verify(report))
        if not report.clean:
            raise typer.Exit(EXIT_ERROR)


backups_app = typer.Typer(help="List, show and delete vector backups.", no_args_is_help=True)
app.add_typer(backups_app, name="backups")


def _render_manifest(m: Any) -> str:
    state = "complete" if m.complete else "INCOMPLETE"
    return (
        f"{m.backup_id}  {m.collection}/{m.vector!r}  {m.count} vectors  {m.model}  {state}  "
        f"({m.reason or 'manual'})"
    )


@_command(backups_app, commands.list_backups, "list")
def backups_list(
    ctx: typer.Context,
    collection: Annotated[str | None, typer.Argument(help="Only this collection's backups.")] = None,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        found = commands.list_backups(session, collection)
        if as_json:
            _echo_json([m.to_dict() for m in found])
            return
        if not found:
            typer.echo("no backups")
        for m in found:
            typer.echo(_render_manifest(m))


@_command(backups_app, commands.show_backup, "show")
def backups_show(
    ctx: typer.Context,
    backup_id: BackupIdArg,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        _echo_mapping(commands.show_backup(session, backup_id).to_dict(), as_json)


@_command(backups_app, commands.delete_backup, "delete")
def backups_delete(
    ctx: typer.Context,
    backup_id: BackupIdArg,
    force: ForceOpt = False,
) -> None:
    with _session(ctx) as session:
        commands.delete_backup(session, backup_id, force=force)
        typer.echo(f"deleted {backup_id}")


@_command(app, commands.restore)
def restore(
    ctx: typer.Context,
    collection: CollectionArg,
    backup: Annotated[
        str | None,
        typer.Option(help="Backup id (default: the newest of the source vector; re-embed: its own)."),
    ] = None,
    ids: Annotated[
        str | None, typer.Option(help="Only these point ids, comma-separated (per-point rollback).")
    ] = None,
    filter_json: Annotated[
        str | None, typer.Option("--filter", help="Only backup points matching this JSON filter.")
    ] = None,
    force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    with _session(ctx) as session:
        try:
            wanted = [int(x) if x.strip().isdigit() else x.strip() for x in ids.split(",")] if ids else None
            flt = models.Filter.model_validate_json(filter_json) if filter_json else None
        except ValueError as exc:
            raise ConfigError(f"invalid --filter: {exc}", key="filter") from exc
        outcome = commands.restore(session, collection, backup_id=backup, ids=wanted, flt=flt, force=force)
        if as_json:
            _echo_json(outcome.to_dict())
        else:
            r = outcome.report
            typer.echo(
                f"restored {r.restored} vectors ({r.already} already there); "
                f"{r.skipped_changed.count} changed since the backup and {r.skipped_missing.count} deleted "
                f"were left alone; {outcome.embedded} embedded afresh; "
                f"{'verified' if r.verified else 'NOT verified: run restore again'}"
            )
            if outcome.status is not None:
                typer.echo(render_status(outcome.status))
        if not outcome.report.verified:
            raise typer.Exit(EXIT_ERROR)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lattice-qdrant`` console script."""
    try:
        app(args=argv, prog_name="lattice-qdrant", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
