"""``autodisco export``: write a discovered optimizer program as a standalone ``torch.optim`` module."""

from __future__ import annotations

import argparse
import importlib.util
import keyword
import math
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.cli._common import UsageError, open_run
from search.cli._report import resolve_candidate

if TYPE_CHECKING:
    from search.store import CandidateRecord, JobRecord

EXPORTS_FOLDER = "exports"


def register(commands: argparse._SubParsersAction) -> None:
    export = commands.add_parser("export", help="write a discovered optimizer as a standalone torch.optim module")
    export.add_argument("run", help="run folder, e.g. runs/lion-hunt (with --db: the job's name)")
    export.add_argument("candidate", metavar="ID", help="candidate id or a unique prefix of its functional hash")
    export.add_argument("-o", "--output", metavar="FILE.py",
                        help="module to write (default <run>/exports/<name>.py)")
    export.add_argument("--name", help="class name (default Discovered<ID>)")
    export.add_argument("--lr", type=float, default=None, help="the class's default learning rate (default 1e-3)")
    export.add_argument("--no-simplify", action="store_true", help="export the program as found, dead code included")
    export.add_argument("--force", action="store_true",
                        help="overwrite FILE.py if it exists; export a candidate whose evaluation failed")
    export.add_argument("--db", metavar="URL", help="read the job from this database instead of <run>/results.db")
    export.set_defaults(handler=_export)


def _export(args: argparse.Namespace) -> int:
    from programs.export import DEFAULT_LR  # torch and the program language: only when exporting

    if args.name is not None:
        check_class_name(args.name)
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr}")
    if args.output is None and args.db is not None:
        raise UsageError("with --db there is no run folder to export into; give -o FILE.py")
    store, job = open_run(args.run, args.db, read_only=True)
    with store:
        candidate = resolve_candidate(store, job, args.candidate)
        standing = provenance(store, job, candidate)
    if standing["status"] in ("failed", "pending", "unevaluated") and not args.force:
        raise UsageError(f"candidate {candidate.id} has no successful evaluation ({standing['status']}"
                         f"{': ' + standing['error'] if standing.get('error') else ''}); export it anyway with --force")
    fitness = standing.get("fitness")
    if job.kind == "optimizer" and isinstance(fitness, float) and fitness < 1.0:
        print(f"autodisco: warning: candidate {candidate.id}'s proxy fitness {fitness:.4f} is below AdamW's (1.0)",
              file=sys.stderr)
    name = args.name or f"Discovered{candidate.id}"
    output = Path(args.output) if args.output else Path(args.run) / EXPORTS_FOLDER / f"{module_name(name)}.py"
    _check_output(output, force=args.force, default=args.output is None)
    lr = DEFAULT_LR if args.lr is None else args.lr
    source, note, keywords = export_source(job, candidate, name, simplify=not args.no_simplify, default_lr=lr)
    source = provenance_comment(standing) + source
    if args.output is None:
        output.parent.mkdir(exist_ok=True)
    _write_atomically(output, source)
    print(f"wrote {output}: class {name}, candidate {candidate.id} of run {job.name!r} ({note})")
    print(f"usage:  from {output.stem} import {name}")
    print(f"        optimizer = {name}(model.parameters(), lr={lr:g})  # tune lr as for any new optimizer")
    print(f"        keyword hyperparameters (defaults from the program): {keywords}")
    return 0


def export_source(job: JobRecord, candidate: CandidateRecord, name: str, *, simplify: bool,
                  default_lr: float) -> tuple[str, str, str]:
    """The module text of ``candidate``'s program as class ``name`` (default ``lr`` = ``default_lr``), a note on
    what simplification did, and the class's other hyperparameters with their defaults (``betas=(0.9, 0.99), ...``).

    ``UsageError`` for a candidate that is not an optimizer program (an architecture search's genotype).
    """
    if job.kind != "optimizer" or candidate.kind != "optimizer":
        raise UsageError(f"candidate {candidate.id} of run {job.name!r} is not an optimizer program (its kind is "
                         f"{candidate.kind!r}, the run's {job.kind!r}); only optimizers export as torch.optim classes")
    from programs import parse
    from programs import simplify as simplify_program
    from programs.export import hyperparameters, optimizer_source

    program = parse(candidate.text)
    if not simplify:
        exported, note = program, f"{len(program)} statements, not simplified"
    else:
        exported = simplify_program(program)
        note = (f"simplified from {len(program)} to {len(exported)} statements" if len(exported) < len(program)
                else f"{len(program)} statements, nothing to simplify")
    keywords = ", ".join(f"{key}={value!r}" for key, value in hyperparameters(exported).items())
    return optimizer_source(exported, name, default_lr), note, keywords


def provenance(store: Any, job: JobRecord, candidate: CandidateRecord) -> dict[str, Any]:
    """Where ``candidate`` comes from and how it fared: run, id, functional hash, status, proxy fitness (AdamW =
    1.0), and per validation stage its tuned fitness over AdamW's (``autodisco validate``), where recorded."""
    from search.cli._report import candidate_results

    result = candidate_results(store, [candidate.id])[candidate.id]
    evaluations = store.evaluations_of([candidate.id])
    failed = [e for e in evaluations if e.status == "failed"]
    stages: dict[str, float] = {}
    baseline = _validation_baseline(store, job)
    if baseline is not None:
        own = _validated(evaluations, candidate.id)
        for task, fitness in own.items():
            if baseline.get(task):
                stage = task.rpartition("@")[2]
                stages[stage] = min(stages.get(stage, math.inf), fitness / baseline[task])
    return {"run": job.name, "candidate": candidate.id, "hash": candidate.hash, "status": result.status,
            "fitness": result.fitness, "error": failed[0].error if failed and result.fitness is None else None,
            "validated": stages}


def _validation_baseline(store: Any, job: JobRecord) -> dict[str, float] | None:
    """AdamW's tuned fitness per validation task (``T@10x``...), if the run was validated."""
    from search.funnel import baseline_of
    from search.jobs._validate import validation_name

    if store.get_job(validation_name(job.name)) is None:
        return None
    found = baseline_of(store, job)
    return None if found is None else _validated(store.evaluations_of([found.id]), found.id)


def _validated(evaluations: Any, candidate_id: int) -> dict[str, float]:
    """A candidate's tuned fitness per validation task, from its ok sweeps (``search.funnel.evaluation_key``)."""
    return {e.task: e.fitness for e in evaluations
            if e.key.startswith(f"validate:c{candidate_id}:") and e.status == "ok" and e.fitness is not None}


def provenance_comment(standing: dict[str, Any]) -> str:
    """Comment lines naming where the module comes from. Every value is checked or reduced to safe characters: the
    run name comes from a database and must not reach the source as it is."""
    run = re.sub(r"[^A-Za-z0-9_.\-/ ]", "?", str(standing["run"]))[:80]
    digest = str(standing["hash"]) if re.fullmatch(r"[0-9a-f]{1,128}", str(standing["hash"])) else "?"
    fitness = standing.get("fitness")
    proxy = f"{fitness:.6g}" if isinstance(fitness, float) and math.isfinite(fitness) else "none"
    lines = [f"# Exported by autodisco from run {run!r}, candidate {int(standing['candidate'])}, functional hash "
             f"{digest}.", f"# Proxy fitness {proxy} ({standing['status']}; AdamW = 1.0)."]
    ratios = [f"{stage} {ratio:.4g}x" for stage, ratio in sorted(standing["validated"].items())
              if isinstance(ratio, float) and math.isfinite(ratio)]
    if ratios:
        lines.append(f"# Validated against a tuned AdamW (worst task per stage): {', '.join(ratios)}.")
    return "\n".join(lines) + "\n"


def check_class_name(name: str) -> None:
    """``UsageError`` unless ``name`` can be a Python class name that leaves the exported module working."""
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise UsageError(f"--name {name!r} is not a valid Python class name; use letters, digits and _, "
                         "not starting with a digit, e.g. MyOptimizer")
    from programs.export import check_name

    try:
        check_name(name)
    except ValueError as error:
        raise UsageError(str(error).replace(f"optimizer name {name!r}", f"--name {name!r}")) from None


def module_name(class_name: str) -> str:
    """``MyOpt`` -> ``my_opt``, ``Discovered42`` -> ``discovered42``: a module name for a class name."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


def _check_output(output: Path, *, force: bool, default: bool) -> None:
    if output.suffix != ".py":
        raise UsageError(f"-o {str(output)!r}: the module must end in .py so that it can be imported")
    if not output.stem.isidentifier() or keyword.iskeyword(output.stem):
        raise UsageError(f"-o {str(output)!r}: {output.stem!r} cannot be imported as a module; use letters, digits "
                         "and _, e.g. my_optimizer.py")
    if _shadows(output):
        raise UsageError(f"-o {str(output)!r}: a module named {output.stem!r} would hide Python's or an installed "
                         f"{output.stem!r} from code that imports it (the exported module imports torch and math); "
                         "choose another name, e.g. my_optimizer.py")
    if output.is_dir():
        raise UsageError(f"-o {str(output)!r} is a folder; give a file name such as my_optimizer.py")
    if output.exists() and not force:
        raise UsageError(f"{str(output)!r} exists; give --force to overwrite it or choose another -o")
    folder = output.parent.parent if default else output.parent  # the default exports/ folder is made on demand
    if not folder.is_dir():
        raise UsageError(f"no folder {str(folder)!r} to write {output.name!r} into; create it first")


def _shadows(output: Path) -> bool:
    """Whether a module ``output`` would hide a module of the standard library or an installed package."""
    stem = output.stem
    if stem in sys.stdlib_module_names or stem in sys.builtin_module_names or stem == "torch":
        return True
    try:
        spec = importlib.util.find_spec(stem)
    except (ImportError, ValueError):
        return False
    origin = getattr(spec, "origin", None) if spec is not None else None
    return spec is not None and (origin is None or Path(origin).resolve() != output.resolve())


def _write_atomically(output: Path, text: str) -> None:
    """Write ``text`` to ``output`` through a temporary file and a rename: a reader never sees half a module."""
    from evaluators.files import write_text

    write_text(output, text)
