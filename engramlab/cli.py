"""`engram`: the command line of engramlab — train, eval, read, generate, bench, demo, data, list.

The CLI is the only place that talks to a person. Library errors (EngramError) become one line on
stderr and exit code 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from engramlab.errors import BadConfig, EngramError

EXAMPLES = {
    "train": "engram train hopfield-learned-digits --set train.steps=200 --out runs/hl",
    "eval": "engram eval runs/hl --episodes 64",
    "read": "engram read runs/hl --images a.png b.png c.png --corrupt block:size=4 --out read.png",
    "generate": "engram generate runs/vbm --n 16 --out samples.png",
    "bench": "engram bench hopfield-capacity --quick; engram bench ebmm-ladder --preset cpu --resume",
    "demo": "engram demo",
    "data": "engram data check",
    "list": "engram list --verbose",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadConfig(f"{self.prog}: {message} (see {self.prog} --help)")


def _positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a bad value becomes a one-line usage error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _add(sub, name: str, help_text: str) -> argparse.ArgumentParser:
    # argparse %-formats help strings (the command list) but not descriptions: escape only the help.
    return sub.add_parser(
        name,
        help=help_text.replace("%", "%%"),
        description=help_text,
        epilog=f"example:\n  {EXAMPLES[name]}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="engram",
        description="Meta-learned memory: write an episode of patterns, read it back, generate from it.",
        epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data directory (default: $ENGRAM_DATA, ../shared/data, or a cache dir)",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _add(sub, "train", "Meta-train a memory from a preset (see `engram list`) or a TOML file.")
    p.add_argument("config", help="preset name or path to a .toml file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. train.steps=100 or memory.beta=4.0 (repeatable)",
    )
    p.add_argument("--out", type=Path, default=None, help="run directory (default: runs/<config>)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = _add(sub, "eval", "Evaluate a checkpoint on fixed test episodes (mean and 95% CI over episodes).")
    p.add_argument("checkpoint", type=Path, help="run directory or checkpoint directory")
    p.add_argument("--episodes", type=_positive_int, default=64, help="number of test episodes")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--corrupt", default=None, help="override the corruption, e.g. flip:p=0.2")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", type=Path, default=None, help="also write the metrics to this JSON file")

    p = _add(sub, "read", "Write the given images as one episode, read them back from corrupted queries, save a grid.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--images", nargs="+", type=Path, required=True, help="image files (png/jpg), one episode")
    p.add_argument("--corrupt", default="block:size=8,noise=uniform", help="corruption spec")
    p.add_argument("--out", type=Path, default=Path("read.png"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")

    p = _add(sub, "generate", "Sample from a generative memory written with test episodes.")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--n", type=_positive_int, default=16, help="samples per episode")
    p.add_argument("--episodes", type=_positive_int, default=2)
    p.add_argument("--out", type=Path, default=Path("samples.png"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")

    p = _add(sub, "bench", "Run a benchmark suite; writes results/SUITE/{quick,cpu,full}.json, .md and PNGs.")
    p.add_argument("suite", nargs="?", help="suite name (omit to list suites)")
    p.add_argument("--quick", action="store_true", help="CPU-quick budget (minutes); same as --preset quick")
    p.add_argument(
        "--preset",
        choices=["quick", "cpu", "full"],
        default=None,
        help="budget: quick (minutes), cpu (≤ 90 CPU-minutes per model, where a suite has it), full (the paper's)",
    )
    p.add_argument("--resume", action="store_true", help="continue the suite's checkpointed training (cpu preset)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "demo", "Meta-train a learned Hopfield memory on digits (~1 min); compare with baselines.")
    p.add_argument("--out", type=Path, default=Path("results/demo"))
    p.add_argument("--seconds", type=_positive_float, default=110.0, help="training time budget")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")

    p = _add(sub, "data", "Download (with sha256 verification) or check datasets in the data directory.")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    d = dsub.add_parser("download", help="fetch a dataset from its official source")
    d.add_argument("name")
    dsub.add_parser("check", help="verify the checksums of what is present")

    p = _add(sub, "list", "List memories, write rules, benchmark suites and presets.")
    p.add_argument("--verbose", action="store_true", help="also build each memory and print its parameter count")
    return parser


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise BadConfig(f"unknown device '{name}': {e}") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadConfig(f"device '{name}' requested but CUDA is not available")
    return device


def cmd_train(args) -> int:
    from engramlab.training import Experiment, train

    experiment = Experiment.from_preset(args.config, args.overrides)
    out = args.out or Path("runs") / Path(args.config).stem
    if out.exists() and not out.is_dir():
        raise BadConfig(f"--out {out} is a file; a run directory is a folder")
    result = train(
        experiment,
        out,
        device=_device(args.device),
        resume=args.resume,
        progress=not args.no_progress,
        data_dir=args.data_dir,
    )
    if result.interrupted:
        print(f"engram: interrupted at step {result.step}; resume with --resume --out {out}", file=sys.stderr)
        return 130
    print(f"trained to step {result.step}; run directory {out}")
    if getattr(result, "best_val", None) is not None:
        print(f"best validation loss {result.best_val:.4g}")
    return 0


def cmd_eval(args) -> int:
    from engramlab.evaluation.evaluate import evaluate_checkpoint

    if args.json is not None and args.json.is_dir():
        raise BadConfig(f"--json {args.json} is a folder; give a file name")
    metrics = evaluate_checkpoint(
        args.checkpoint,
        episodes=args.episodes,
        split=args.split,
        corruption=args.corrupt,
        seed=args.seed,
        device=_device(args.device),
        data_dir=args.data_dir,
    )
    width = max(len(k) for k in metrics)
    for key, value in metrics.items():
        if key.endswith("_ci"):
            continue
        ci = metrics.get(f"{key}_ci")
        print(f"{key:<{width}}  {value:.5g}" + (f" ± {ci:.3g}" if ci is not None else ""))
    if args.json:
        args.json.write_text(json.dumps(metrics, indent=2))
    return 0


def cmd_read(args) -> int:
    from engramlab.evaluation.evaluate import read_images

    path = read_images(
        args.checkpoint, args.images, args.corrupt, args.out, seed=args.seed, device=_device(args.device)
    )
    print(f"wrote {path}")
    return 0


def cmd_generate(args) -> int:
    from engramlab.evaluation.evaluate import generate_samples

    path = generate_samples(
        args.checkpoint,
        n=args.n,
        episodes=args.episodes,
        out=args.out,
        seed=args.seed,
        device=_device(args.device),
        data_dir=args.data_dir,
    )
    print(f"wrote {path}")
    return 0


def cmd_bench(args) -> int:
    from engramlab.evaluation.bench import run_suite, suites

    if not args.suite:
        for name, suite in suites().items():
            print(f"{name:<22} {suite.description}")
        return 0
    paths = run_suite(
        args.suite,
        quick=args.quick,
        preset=args.preset or ("quick" if args.quick else "full"),
        resume=args.resume,
        seed=args.seed,
        device=_device(args.device),
        out_root=args.out,
        data_dir=args.data_dir,
        progress=not args.no_progress,
    )
    print(Path(paths["markdown"]).read_text())
    print(f"wrote {paths['json']} and {paths['markdown']}")
    return 0


def cmd_demo(args) -> int:
    from engramlab.demo import run_demo

    summary = run_demo(args.out, seconds=args.seconds, device=_device(args.device), progress=not args.no_progress)
    print(summary["table"])
    print(f"grid: {summary['grid']}\ntable: {summary['markdown']}")
    return 0


def cmd_data(args) -> int:
    from engramlab.episodes import download

    data_dir = download.resolve_data_dir(args.data_dir)
    if args.data_command == "download":
        paths = download.download(args.name, data_dir, progress=True)
        for path in paths:
            print(f"ok  {path}")
        return 0
    failed = 0
    for name, status in download.check(data_dir):
        print(f"{status:<10} {name}")
        failed += status not in ("ok", "missing", "unverified")  # unverified: no published checksum
    print(f"data directory: {data_dir}")
    return 2 if failed else 0


def cmd_list(args) -> int:
    from engramlab.config import preset_names
    from engramlab.evaluation.bench import suites
    from engramlab.memories import memory_class, memory_names
    from engramlab.rules import rule_class, rule_names

    print("memories:")
    for name in memory_names():
        cls = memory_class(name)
        line = f"  {name:<26} {_first_line(cls)}"
        if args.verbose:
            line += f"  [{_parameter_summary(cls)}]"
        print(line)
    print("write rules:")
    for name in rule_names():
        print(f"  {name:<26} {_first_line(rule_class(name))}")
    print("benchmark suites:")
    for name, suite in suites().items():
        print(f"  {name:<22} {suite.description}")
    print("presets:\n  " + "\n  ".join(preset_names()))
    return 0


def _parameter_summary(cls) -> str:
    """Parameter counts of a memory built with its default config on its default pattern shape."""
    shape = getattr(cls, "default_pattern_shape", None)
    if shape is None:
        return "no default pattern shape"
    try:
        memory = cls(cls.Config(), shape)
    except EngramError as e:
        return f"cannot build with defaults: {e}"
    total = sum(p.numel() for p in memory.parameters())
    try:
        floats = f"{memory.memory_floats():,} memory floats"
    except EngramError:  # a verbatim store: its size grows with the episode length T
        floats = f"{memory.memory_floats(episode_length=1):,}·T memory floats"
    except NotImplementedError:
        floats = "no memory"
    return f"pattern {tuple(shape)}, {total:,} parameters, {floats}"


def _first_line(obj) -> str:
    doc = (obj.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


COMMANDS = {
    "train": cmd_train,
    "eval": cmd_eval,
    "read": cmd_read,
    "generate": cmd_generate,
    "bench": cmd_bench,
    "demo": cmd_demo,
    "data": cmd_data,
    "list": cmd_list,
}
COMPUTE = ("train", "eval", "read", "generate", "bench", "demo")  # commands that run models


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
        if args.command in COMPUTE:
            from engramlab.nn.fast import keep_freed_memory

            keep_freed_memory()  # steps reuse their memory instead of page-faulting it in anew (issue 15)
        return COMMANDS[args.command](args)
    except EngramError as e:
        if debug:
            raise
        print(f"engram: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # the file system refused: an --out that is a folder or a file, no permission, full disk
        if debug:
            raise
        print(f"engram: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("engram: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
